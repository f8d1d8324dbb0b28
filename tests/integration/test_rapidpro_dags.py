"""The two example RapidPro pipelines of ``include/`` as real DAG runs (``dag.test()``), through the
Airflow Connections: the token from the Connection's password, presented as ``Authorization:
Token …`` (the pipeline's ``auth`` block forward, the Connection's extras in reverse)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cht_bridge.reverse.choices import NEW
from standins.rapidpro import RapidProStandIn
from tests.integration.dagrun import run_dag
from tests.integration.reverse_setup import HH2, api_connection, place_table, seed_area
from tests.integration.test_rapidpro_forward import follow_ups
from tests.integration.test_rapidpro_reverse import seed_runs
from tests.integration.test_reverse_pipeline import run_reverse_dag

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "rp-dag-token"


def connection(rapidpro: RapidProStandIn) -> str:
    extra = {"auth": "header", "header": "Authorization", "prefix": "Token "}
    return json.dumps({"conn_type": "http", "host": rapidpro.url, "password": TOKEN, "extra": extra})


def example(path: str, folder: Path, **changes) -> str:
    config = yaml.safe_load((ROOT / path).read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{config['name']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config["name"]


def test_the_self_quarantine_example_starts_each_follow_up_once(tmp_path, monkeypatch, cht, airflow_db):
    docs = follow_ups(30) + follow_ups(6, start=500, symptom="yes")
    for i, doc in enumerate(docs):
        doc["reported_date"] = 1_780_000_000_000 + (i % 2) * 86_400_000  # two days: two params values
    cht.put(*docs)
    monkeypatch.setenv("AIRFLOW_CONN_CHT_TEST", cht.connection())
    with RapidProStandIn(TOKEN) as rapidpro:
        rapidpro.add_flow("Self quarantine", "f5901b62-ba76-4003-9c62-72fdacc1b7b7")
        monkeypatch.setenv("AIRFLOW_CONN_RAPIDPRO_LOCAL", connection(rapidpro))
        name = example(
            "include/pipelines/self_quarantine_rapidpro.yaml", tmp_path / "pipelines",
            cht={"conn_id": "cht_test", "db": cht.db}, name="self_quarantine_test", schedule=None,
        )  # fmt: skip
        state, summary = run_dag(monkeypatch, tmp_path / "pipelines", name)
        assert state == "success", summary
        assert summary["relevant"] == summary["sent"] == 30 and summary["waiting"] == 0
        assert summary["budget_left"] == {"contacts": 600, "flow_starts": 598}
        starts = rapidpro.starts
        assert len(starts) == 2 and sorted(len(s["urns"]) for s in starts) == [15, 15]
        assert {s["params"]["self_quarantine_enrollment"] for s in starts} == {"2026-05-28", "2026-05-29"}

        state, summary = run_dag(monkeypatch, tmp_path / "pipelines", name)
        assert state == "success" and summary["sent"] == 0 and len(rapidpro.starts) == 2


def test_the_self_screening_example_writes_each_completed_run_once(tmp_path, monkeypatch, cht_api, airflow_db):
    seed_area(cht_api.db)
    monkeypatch.setenv("AIRFLOW_CONN_CHT_API_LOCAL", api_connection(cht_api))
    with RapidProStandIn(TOKEN, page_size=2) as rapidpro:
        flow = rapidpro.add_flow("Self screening", "3c6f5a2e-8d7b-4f1e-9a4c-2b5d8e7f6a10")
        seed_runs(rapidpro, flow)
        for run in rapidpro.state.runs:  # the example reads the answer `facility`, the test runs say `village`
            if "village" in run["values"]:
                run["values"]["facility"] = run["values"].pop("village")
        monkeypatch.setenv("AIRFLOW_CONN_RAPIDPRO_LOCAL", connection(rapidpro))
        name = example(
            "include/reverse/self_screening_rapidpro.yaml", tmp_path / "reverse",
            name="self_screening_test", schedule=None,
            places={"table": str(place_table(tmp_path / "places.csv")), "key": "place"},
        )  # fmt: skip
        state, xcoms, answered = run_reverse_dag(monkeypatch, tmp_path / "reverse", name, lambda q: NEW.label)
        assert state == "success", xcoms
        assert xcoms["receive"]["received"] == 4 and xcoms["receive"]["pages"] == 3
        match = xcoms["match"]
        assert (match["link"], match["new"], match["review"], match["unplaced"]) == (1, 1, 1, 1)
        assert len(answered) == 1
        reports = [d for d in cht_api.db.all_docs() if d.get("form") == "SELF_SCREENING"]
        assert len(reports) == 3
        assert {r["fields"]["symptoms"] for r in reports} == {"yes", "no"}
        juma = next(d for d in cht_api.db.all_docs() if d.get("name") == "Juma Ouma")
        assert juma["parent"]["_id"] == HH2

        state, xcoms, _ = run_reverse_dag(monkeypatch, tmp_path / "reverse", name, lambda q: NEW.label)
        assert state == "success" and xcoms["receive"]["received"] == 0
        assert len([d for d in cht_api.db.all_docs() if d.get("form") == "SELF_SCREENING"]) == 3
