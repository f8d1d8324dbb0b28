"""``code_label``: how a row's place code appears in ledger reasons and logs. A code a person can add
to the place table is shown; a phone code or a free-text answer (a respondent's words) never is."""

from __future__ import annotations

import pytest

from cht_bridge.reverse.phone_places import LABEL, NOT_A_CODE, code_label, looks_like_code


@pytest.mark.parametrize("code", ["13101", 13101, "MFL-100", "ImspTQPwCqd", "ward_3/zone.b"])
def test_a_code_is_shown_so_a_person_can_add_it_to_the_place_table(code):
    assert looks_like_code(code)
    assert code_label(code) == f"'{str(code).strip()}'"


@pytest.mark.parametrize(
    "answer",
    [
        "near Mama Achieng's shop",  # free text with spaces
        "0712345678",  # a phone number typed as the answer
        "+254712345678",
        "achieng@example.org",
        "Kisumu-East-Nyalenda-B-near-the-market-stall",  # longer than a code
        "12345678",  # an ID number
        {"value": "x"},
        True,
    ],
)
def test_an_answer_that_is_not_a_code_is_never_shown(answer):
    assert not looks_like_code(answer)
    assert code_label(answer) == NOT_A_CODE
    assert str(answer) not in code_label(answer)


def test_a_list_shows_each_code_in_turn_and_hides_phones_and_free_text():
    label = code_label(["MFL-100", "phone:+254712000001", "my aunt's place in Ahero"])
    assert label == f"'MFL-100' or {LABEL} or {NOT_A_CODE}"
    assert "+2547" not in label and "aunt" not in label
    assert code_label([None, ""]) == "(none)"
