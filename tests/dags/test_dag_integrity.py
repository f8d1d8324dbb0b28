"""DAG policy written as tests: every example pipeline becomes a DAG, parsing is cheap and
needs no network, and a broken pipeline file fails only its own DAG."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.integration.dagrun import run_dag

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "include" / "pipelines"
REVERSE = ROOT / "include" / "reverse"
REVERSE_NAMES = sorted(yaml.safe_load(p.read_text())["name"] for p in REVERSE.glob("*.yaml"))


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


def test_no_import_errors_and_one_dag_per_pipeline_file(bag):
    assert bag.import_errors == {}
    names = {yaml.safe_load(p.read_text())["name"] for p in PIPELINES.glob("*.yaml")}
    assert names and REVERSE_NAMES
    assert set(bag.dag_ids) == names | set(REVERSE_NAMES) | {"cht_bridge_replay", "cht_bridge_housekeeping"}


@pytest.mark.parametrize("dag_id", REVERSE_NAMES)
def test_reverse_policy(bag, dag_id):
    dag = bag.dags[dag_id]
    assert {"cht-bridge", "to-cht"} <= set(dag.tags)
    assert dag.max_active_runs == 1 and not dag.catchup  # two runs would ask the same questions
    order = ["receive", "match", "write_decided", "waiting_review", "review", "write_reviewed"]
    assert [t.task_id for t in dag.topological_sort()] == order
    review = dag.get_task("review")
    assert type(review).__name__ == "MappedOperator" and review.operator_class.__name__ == "MatchReviewOperator"
    # runs when nobody was asked (review skipped), but a failed step upstream fails the run
    assert dag.get_task("write_reviewed").trigger_rule == "none_failed"


@pytest.mark.parametrize("dag_id", sorted(yaml.safe_load(p.read_text())["name"] for p in PIPELINES.glob("*.yaml")))
def test_policy(bag, dag_id):
    dag = bag.dags[dag_id]
    assert "cht-bridge" in dag.tags
    assert dag.default_args["retries"] >= 2
    assert dag.max_active_runs == 1  # two runs would race for one checkpoint
    assert not dag.catchup
    assert [t.task_id for t in dag.tasks] == ["sync"]
    assert set(dag.params) == {"start", "end", "forms", "places", "mode", "dry_run", "dry_run_payloads"}
    assert dag.params["mode"] == "missing" and dag.params["dry_run"] is False  # a plain trigger is a plain run


def test_replay_dag_offers_every_valid_pipeline(bag):
    dag = bag.dags["cht_bridge_replay"]
    assert dag.schedule is None and [t.task_id for t in dag.tasks] == ["replay"]
    names = sorted(yaml.safe_load(p.read_text())["name"] for p in PIPELINES.glob("*.yaml"))
    assert dag.params.get_param("pipeline").schema["enum"] == names
    assert dag.params["status"] == "dead"


def test_housekeeping_runs_daily_with_documented_defaults_and_a_dry_run(bag):
    dag = bag.dags["cht_bridge_housekeeping"]
    assert dag.schedule == "@daily" and not dag.catchup and dag.max_active_runs == 1
    assert [t.task_id for t in dag.tasks] == ["housekeeping"]
    assert {k: dag.params[k] for k in dag.params} == {
        "retention_days": 30, "dry_run_days": 7, "csv_days": 7, "dry_run": False
    }  # fmt: skip
    assert dag.get_task("housekeeping").reverse_folder == str(REVERSE.resolve())


def test_a_backfill_of_one_month_is_covered_by_its_runs_data_intervals(bag):
    """`airflow backfill create` makes one run per schedule interval (as Airflow computes them for
    a backfill); together their data intervals cover the month, with no gap and none empty."""
    from datetime import UTC, datetime

    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags["referrals"]))  # */5 * * * *
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    intervals = [info.data_interval for info in dag.iter_dagrun_infos_between(start, end)]
    assert intervals[0].start == start and intervals[-1].end >= end
    assert all(a.end == b.start for a, b in zip(intervals, intervals[1:], strict=False))
    assert all(i.end - i.start == timedelta(minutes=5) for i in intervals)


def test_parsing_is_fast_and_touches_no_network_or_heavy_modules():
    """Parse the DAG file in a fresh interpreter with sockets disabled; time it and list imports."""
    probe = textwrap.dedent(
        f"""
        import json, socket, sys, time
        def refuse(*a, **k):
            raise RuntimeError("network access at parse time")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "plugins")!r}]
        import airflow.sdk  # Airflow itself is loaded before any DAG file is parsed
        before = set(sys.modules)
        start = time.perf_counter()
        import runpy
        namespace = runpy.run_path({str(ROOT / "dags" / "cht_bridge_pipelines.py")!r})
        namespace.update(runpy.run_path({str(ROOT / "dags" / "cht_bridge_reverse.py")!r}))
        namespace.update(runpy.run_path({str(ROOT / "dags" / "cht_bridge_housekeeping.py")!r}))
        elapsed = time.perf_counter() - start
        added = set(sys.modules) - before
        heavy = sorted(
            m for m in added
            if m.split(".")[0] in ("py_mini_racer", "pandas", "requests", "sqlalchemy", "splink", "duckdb", "phonenumbers")
        )
        dags = sorted(k for k, v in namespace.items() if type(v).__name__ == "DAG")
        print(json.dumps({{"elapsed": elapsed, "heavy": heavy, "dags": dags}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert len(result["dags"]) == len(list(PIPELINES.glob("*.yaml"))) + 2 + len(REVERSE_NAMES)  # + replay, housekeeping
    assert result["elapsed"] < 2.0, result  # generous: measured ~0.05 s on 2 cores


BAD = """
name: {name}
start_date: 2026-01-01
cht: {{conn_id: cht_test}}
relevant_to: "doc.type === 'person'"
mapping: {{id: _id}}
destination: {{conn_id: receiver_test, path: /x, method: GET}}
retries: 0
"""
GOOD = """
name: {name}
start_date: 2026-01-01
cht: {{conn_id: cht_test, db: {db}}}
relevant_to: "doc.type === 'person'"
mapping: {{id: doc._id}}
destination: {{conn_id: receiver_test, path: /people, auth: basic}}
retries: 0
"""


@pytest.mark.integration
def test_a_broken_pipeline_file_fails_only_its_own_dag(cht, receiver, airflow_db, monkeypatch, tmp_path, capfd):
    from tests.conftest import receiver_connection

    cht.seed(100)
    monkeypatch.setenv("AIRFLOW_CONN_CHT_TEST", cht.connection())
    monkeypatch.setenv("AIRFLOW_CONN_RECEIVER_TEST", receiver_connection(receiver))
    folder = tmp_path / "pipelines"
    folder.mkdir()
    bad = folder / "broken.yaml"
    bad.write_text(BAD.format(name="broken_pipeline"))
    (folder / "good.yaml").write_text(GOOD.format(name="good_pipeline", db=cht.db))

    state, _ = run_dag(monkeypatch, folder, "good_pipeline")
    assert state == "success"
    assert receiver.stats()["items"] > 0

    state, summary = run_dag(monkeypatch, folder, "broken_pipeline")
    assert state == "failed" and summary is None
    log = "".join(capfd.readouterr())
    assert f"{bad}: invalid pipeline configuration" in log
    assert "mapping.id: source path '_id' must start with 'doc.'" in log
    assert "destination.method: must be one of POST, PUT (got 'GET')" in log
