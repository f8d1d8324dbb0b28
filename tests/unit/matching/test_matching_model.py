"""The shipped model JSON is the one the builder writes, and it loads into Splink."""

from __future__ import annotations

import json

from splink import DuckDBAPI, Linker

from cht_bridge.matching.model import MODEL_PATH, load_model, settings


def test_shipped_json_matches_the_builder() -> None:
    # Regenerate with `python -m cht_bridge.matching.model` after editing model.py.
    assert json.loads(MODEL_PATH.read_text()) == settings()


def test_every_level_has_fixed_m_and_u_so_runs_only_score() -> None:
    for comparison in load_model()["comparisons"]:
        for level in comparison["comparison_levels"]:
            if not level.get("is_null_level"):
                assert 0 < level["m_probability"] <= 1 and 0 < level["u_probability"] <= 1


def test_blocking_never_relies_on_place_alone() -> None:
    rules = [rule["blocking_rule"] for rule in load_model()["blocking_rules_to_generate_predictions"]]
    assert len(rules) > 1 and any("phone" in r for r in rules) and any("date_of_birth" in r for r in rules)


def test_model_loads_into_a_linker() -> None:
    db_api = DuckDBAPI()
    frame = db_api.register({"unique_id": ["a"], "names": [["x"]], "name_key": ["x"]}, table_name="t")
    Linker(frame, load_model(), log_level=None)  # validates comparisons and blocking rules
