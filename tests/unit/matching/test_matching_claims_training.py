"""The other rows' claims (``exclusive.py``) in trained models: written by ``train``, kept by the
model file, off for model files from before, and never across two lists (pipelines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cht_bridge.matching import MatchConfig, Person, match, matcher
from cht_bridge.matching.decisions import config_for_model
from cht_bridge.matching.exclusive import EXCLUSIVE_CLAIMS
from cht_bridge.matching.matcher import score_people
from cht_bridge.matching.model import BRIDGE_KEY, load_model, load_model_file, save_model_file
from cht_bridge.matching.training import train
from standins.populations import population


@pytest.fixture(scope="module")
def data():
    return population(400, 300, seed=9)


@pytest.fixture(scope="module")
def model(data):
    return train(data.existing, data.incoming, seed=4)


def test_train_writes_the_flag_and_the_model_file_keeps_it(model, tmp_path: Path) -> None:
    assert model[BRIDGE_KEY][EXCLUSIVE_CLAIMS] is True
    save_model_file(tmp_path / "model.json", model)
    loaded = load_model_file(tmp_path / "model.json")
    assert loaded[BRIDGE_KEY][EXCLUSIVE_CLAIMS] is True
    assert loaded == model


def _outcomes(decisions) -> list[tuple]:
    return [(d.incoming_id, d.decision, d.existing_id, round(d.probability or 0.0, 9)) for d in decisions]


def test_a_model_file_without_the_flag_scores_without_claims(data, model, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def unchanged(pairs, *args, **kwargs):
        calls.append(len(pairs))
        return list(pairs)

    old = {**model, BRIDGE_KEY: {k: v for k, v in model[BRIDGE_KEY].items() if k != EXCLUSIVE_CLAIMS}}
    with_flag = match(data.incoming, data.existing, config_for_model(model))
    without_flag = match(data.incoming, data.existing, config_for_model(old))
    assert _outcomes(with_flag) != _outcomes(without_flag)  # the claims move some probabilities
    assert not any(item[0] == "other_rows" for d in without_flag for c in d.candidates for item in c.evidence)
    # the old file scores exactly as the flagged model would with the claims left out
    monkeypatch.setattr(matcher, "with_claims", unchanged)
    # (to the last bits: DuckDB's pair order moves a sum's rounding)
    assert _outcomes(match(data.incoming, data.existing, config_for_model(model))) == _outcomes(without_flag)
    assert calls  # (the flagged model did ask for the claims)
    calls.clear()
    match(data.incoming, data.existing, config_for_model(old))
    assert calls == []


def test_rows_of_different_pipelines_do_not_compete_for_a_person() -> None:
    flagged = {**load_model(), BRIDGE_KEY: {EXCLUSIVE_CLAIMS: True}}
    config = MatchConfig(model=flagged)
    crowd = [Person(id=f"p{k}", given_name=f"name{k}", family_name="Otieno", place=f"hh-{100 + k}") for k in range(200)]
    amina = dict(given_name="Amina", family_name="Wanjiru", sex="F", date_of_birth="1990-03-04", phone="0712345678")
    existing = [Person(id="x", place="hh-1", **amina), *crowd]
    # pipeline 1 names Amina; pipeline 2's row is Amina again, without her date of birth and
    # phone, in another village: among a list of 1,002 the two rows are not recognised as one
    # (within-list duplicates are rare), and both fit Amina
    others = [
        Person(id=f"q{k}", given_name=f"other{k}", family_name="Kamau", place=f"hh-{900 + k}") for k in range(1000)
    ]
    incoming = [
        Person(id="a", place="hh-1", **amina),
        Person(id="b", place="hh-77", **(amina | {"date_of_birth": None, "phone": None})),
        *others,
    ]

    def amina_for_b(lists):
        scored = score_people(incoming, existing, config, lists)
        return next(c for c in scored.ranked["i1"].candidates if c.existing_id == "x")

    one_list, two_lists = amina_for_b(None), amina_for_b(["pipeline-1", "pipeline-2"] + ["pipeline-1"] * len(others))
    assert any(item[0] == "other_rows" and item[2] < -0.5 for item in one_list.evidence)
    assert not any(item[0] == "other_rows" for item in two_lists.evidence)
    assert two_lists.probability > 0.99 > 0.5 > one_list.probability
    with pytest.raises(ValueError, match="1 list names for 1002 incoming people"):
        score_people(incoming, existing, config, ["pipeline-1"])
