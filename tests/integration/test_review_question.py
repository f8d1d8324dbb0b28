"""The review question built against the local CHT API: the table a person reads and the offer a
program reads name the same candidates, and a candidate gone from CHT is not offered."""

from __future__ import annotations

import pytest

from cht_bridge.hooks import ChtHook
from cht_bridge.reverse.choices import Choice, read_offer
from cht_bridge.reverse.loader import load_reverse_pipeline
from cht_bridge.reverse.review import review_question
from cht_bridge.state.inbound import REVIEW, InboundRow
from standins.reviewer import Question
from tests.integration.reverse_setup import HC, api_connection, csv_pipeline, place_table, seed_area

pytestmark = pytest.mark.integration


def test_the_question_offers_the_candidates_still_in_cht(tmp_path, monkeypatch, cht_api) -> None:
    seed_area(cht_api.db)
    monkeypatch.setenv("AIRFLOW_CONN_CHT_API_TEST", api_connection(cht_api))
    path, name = csv_pipeline(tmp_path / "reverse", tmp_path, place_table(tmp_path / "places.csv"))
    pipeline = load_reverse_pipeline(path)
    row = InboundRow(
        name, "c-3", "v1", REVIEW,
        record={"person": {"given_name": "Mary", "family_name": "Wanjiru", "date_of_birth": "1992-03-03"}},
        place_id=HC, reason="ambiguous: 2 candidates within 0.05",
        candidates=[
            {"id": "p-mary-1", "probability": 0.5, "reason": "names, date of birth",
             "evidence": [["date_of_birth", "same date of birth", 11.8], ["phone", "phone differs in one digit", 4.2],
                          ["names", "same names; the name is a common one in this area", 6.1]]},
            {"id": "p-deleted", "probability": 0.3, "reason": "names"},
            {"id": "p-mary-2", "probability": 0.2, "reason": "names, date of birth"},
        ],
    )  # fmt: skip
    question = review_question(pipeline, row, ChtHook("cht_api_test").get_api_client(pipeline.target.timeout))

    offer = read_offer(question.body)
    assert offer.record == "c-3" and offer.candidates == {0: "p-mary-1", 2: "p-mary-2"}
    assert question.options == [
        "Link to candidate 1",
        "Link to candidate 3",
        "Create a new person",
        "Skip this row",
        "Decide later",
    ]
    assert "Mary Wanjiru" in question.body and "Candidate(s) 2 no longer exist in CHT" in question.body
    # the evidence per field, in words, with each field's match weight
    assert "| Evidence: date of birth |" in question.body and "same date of birth (+11.8)" in question.body
    assert "phone differs in one digit (+4.2)" in question.body and "common one in this area (+6.1)" in question.body
    # the scripted reviewer reads the same offer from the question Airflow stored
    asked = Question(name, "review", 0, question.subject, question.body, question.options)
    assert asked.offer.link_to("p-mary-2") == Choice.link(2) == Choice.parse(question.options[1])
