"""The Trigger form says what is optional: a Param a run can do without is not marked required,
a null in it reads as its default, and every description says what the default is."""

from __future__ import annotations

from pathlib import Path

import pytest

from cht_bridge.operators.params import DRY_RUN_SAMPLES, backfill_window, replay_choice

ROOT = Path(__file__).resolve().parents[2]
#: The one Param a person must choose: which pipeline's dead letters the replay DAG sends again
#: (the reconcile DAG's ``pipeline`` is optional: empty compares every DHIS2 pipeline).
CHOSEN = {("cht_bridge_replay", "pipeline"), ("cht_bridge_backfill", "pipeline")}


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


def required_in_form(schema: dict) -> bool:
    """Airflow 3.3's Trigger form rule (ui/dist, ``flexibleForm``): a field is required when its
    schema has a ``type`` and that type is not a list holding ``"null"``."""
    kind = schema.get("type")
    return bool(kind) and (not isinstance(kind, list) or "null" not in kind)


def all_params(bag) -> list[tuple[str, str, object]]:
    return [(dag_id, name, dag.params.get_param(name)) for dag_id, dag in bag.dags.items() for name in dag.params]


def test_every_dag_kind_has_params(bag):
    dag_ids = {dag_id for dag_id, _, _ in all_params(bag)}
    assert {"cht_bridge_replay", "cht_bridge_housekeeping"} <= dag_ids and len(dag_ids) >= 4


def test_every_param_has_a_default_or_allows_null_and_says_its_default(bag):
    for dag_id, name, param in all_params(bag):
        allows_null = "null" in (param.schema.get("type") or [])
        assert param.value is not None or allows_null, (dag_id, name)
        assert "Default:" in (param.description or ""), (dag_id, name, param.description)


def test_only_the_replay_pipeline_is_required_in_the_form(bag):
    required = {(dag_id, name) for dag_id, name, param in all_params(bag) if required_in_form(param.schema)}
    assert required == CHOSEN


def test_the_backfill_lists_are_optional_in_the_form(bag):
    forward = next(d for d in bag.dags.values() if "forms" in d.params)
    for name in ("forms", "places"):
        param = forward.params.get_param(name)
        assert not required_in_form(param.schema)
        assert param.resolve(None) is None  # the form's empty field validates


def test_a_null_param_reads_as_its_default():
    window = backfill_window(
        {"start": "2026-01-01", "end": "2026-02-01", "forms": None, "places": None, "mode": "missing"},
        "manual",
        (None, None),
    )
    assert window.forms == () and window.places == ()
    assert replay_choice({"replay": "failed", "source_ids": None, "give_up": None, "dry_run": None}).source_ids == ()


def test_a_null_sample_count_is_the_default(tmp_path, monkeypatch):
    from cht_bridge.operators.resources import dry_run_for

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    dry = dry_run_for({"dry_run": True, "dry_run_payloads": None}, "p", "run-1")
    assert dry is not None and dry.samples == DRY_RUN_SAMPLES
