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
#: DHIS2 aggregate pipelines: one ``aggregate`` task, and nothing the replay DAG could re-send.
AGGREGATE_NAMES = {
    raw["name"]
    for raw in (yaml.safe_load(p.read_text()) for p in PIPELINES.glob("*.yaml"))
    if ((raw.get("destination") or {}).get("dhis2") or {}).get("kind") == "aggregate"
}


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(ROOT / "dags"))


def test_no_import_errors_and_one_dag_per_pipeline_file(bag):
    assert bag.import_errors == {}
    names = {yaml.safe_load(p.read_text())["name"] for p in PIPELINES.glob("*.yaml")}
    assert names and REVERSE_NAMES
    assert set(bag.dag_ids) == names | set(REVERSE_NAMES) | {
        "cht_bridge_replay",
        "cht_bridge_backfill",
        "cht_bridge_housekeeping",
        "cht_bridge_reconcile",
        "cht_bridge_matching_train",
    }


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
    assert [t.task_id for t in dag.tasks] == (["aggregate"] if dag_id in AGGREGATE_NAMES else ["sync"])
    assert set(dag.params) == {"start", "end", "forms", "places", "mode", "dry_run", "dry_run_payloads"}
    assert dag.params["mode"] == "missing" and dag.params["dry_run"] is False  # a plain trigger is a plain run


def test_replay_dag_offers_every_valid_pipeline(bag):
    dag = bag.dags["cht_bridge_replay"]
    assert dag.schedule is None and [t.task_id for t in dag.tasks] == ["replay"]
    names = sorted(yaml.safe_load(p.read_text())["name"] for p in PIPELINES.glob("*.yaml"))
    assert dag.params.get_param("pipeline").schema["enum"] == [n for n in names if n not in AGGREGATE_NAMES]
    assert dag.params["status"] == "dead"


def test_every_task_of_every_dag_has_an_execution_timeout(bag):
    """Nothing hangs: each task is stopped after its pipeline's task_timeout_minutes (default 60)."""
    from cht_bridge.config.model import DEFAULT_TASK_TIMEOUT_MINUTES

    tasks = [(dag_id, task) for dag_id, dag in bag.dags.items() for task in dag.tasks]
    assert len(tasks) >= len(bag.dags)
    for dag_id, task in tasks:
        assert task.execution_timeout == timedelta(minutes=DEFAULT_TASK_TIMEOUT_MINUTES), (dag_id, task.task_id)


def test_a_review_waits_for_its_response_timeout_not_the_execution_timeout(bag):
    """The review's wait is bounded by review.timeout_hours (72 h), far longer than the task timeout;
    HITLOperator turns an execution_timeout into the response wait only when response_timeout is unset."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    review = bag.dags["ltfu_from_emr"].get_task("review")
    assert review.partial_kwargs["response_timeout"] == timedelta(hours=72)
    assert review.execution_timeout == timedelta(minutes=60)
    unmapped = HITLOperator(
        task_id="probe",
        subject="q",
        options=["a"],
        response_timeout=timedelta(hours=72),
        execution_timeout=timedelta(minutes=5),
    )
    assert (unmapped.execution_timeout, unmapped.response_timeout) == (timedelta(minutes=5), timedelta(hours=72))


REVERSE_FILE = """
name: {name}
start_date: 2026-01-01
source: {{type: rest, conn_id: emr_list, path: /cursor, items: data.results,
         paging: {{type: cursor, param: cursor, next: next_cursor}}}}
mapping: {{person.name: doc.patient.given, place: doc.place}}
places: {{table: include/places/facilities.csv}}
target: {{conn_id: cht_api, form: LTFU_FOLLOWUP}}
task_timeout_minutes: {minutes}
"""


def test_a_pipeline_sets_its_task_timeout_and_a_bad_one_fails_only_its_file(tmp_path):
    from cht_bridge.dag_factory import build_dags, build_reverse_dags

    forward, reverse = tmp_path / "forward", tmp_path / "reverse"
    forward.mkdir()
    reverse.mkdir()
    good = GOOD.format(name="quick", db="medic") + "task_timeout_minutes: 7\n"
    (forward / "quick.yaml").write_text(good)
    (forward / "slow.yaml").write_text(good.replace("quick", "slow").replace(": 7", ": 0"))
    (reverse / "list.yaml").write_text(REVERSE_FILE.format(name="list", minutes=12))
    (reverse / "endless.yaml").write_text(REVERSE_FILE.format(name="endless", minutes="forever"))

    dags = {**build_dags(forward), **build_reverse_dags(reverse)}

    assert dags["quick"].get_task("sync").execution_timeout == timedelta(minutes=7)
    assert {t.task_id: t.execution_timeout for t in dags["list"].tasks} == {
        task: timedelta(minutes=12)
        for task in ("receive", "match", "write_decided", "waiting_review", "review", "write_reviewed")
    }
    for name, file in (("slow", forward / "slow.yaml"), ("endless", reverse / "endless.yaml")):
        assert "config-error" in dags[name].tags and dags[name].schedule is None
        assert f"{file}: invalid" in dags[name].doc_md
        assert "task_timeout_minutes: must be a whole number from 1 to 1440" in dags[name].doc_md
        assert all(t.execution_timeout == timedelta(minutes=60) for t in dags[name].tasks)
    assert dags["cht_bridge_replay"].get_task("replay").execution_timeout == timedelta(minutes=60)


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
    assert len(result["dags"]) == len(list(PIPELINES.glob("*.yaml"))) + 3 + len(
        REVERSE_NAMES
    )  # + replay, backfill, housekeeping
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
