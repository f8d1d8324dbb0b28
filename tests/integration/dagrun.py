"""Run a pipeline file as a real Airflow DAG run (``dag.test()``) and read back its summary."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

PREGNANCY_PIPELINE: dict[str, Any] = {
    "schedule": None,
    "start_date": "2026-01-01",
    "cht": {"conn_id": "cht_test"},
    "relevant_to": "doc.type === 'data_record' && doc.form === 'pregnancy'",
    "mapping": {
        "report_id": "doc._id",
        "patient.cht_id": "doc.patient._id",
        "patient.shortcode": "doc.fields.patient_id",
        "patient.sex": {"path": "doc.patient.sex", "optional": True},
        "lmp_date": "doc.fields.lmp_date",
        "anc_visits": "doc.fields.anc_visits",
        "chw.id": "doc.contact._id",
        "facility.name": "doc.contact.parent.name",
    },
    "destination": {"conn_id": "receiver_test", "path": "/emr/anc", "auth": {"type": "basic"}},
    "batch_size": 100,
    "retries": 0,
}


def write_pipeline(folder: Path, name: str, **overrides: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"name": name, **PREGNANCY_PIPELINE, **overrides}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def new_pipeline(
    monkeypatch, tmp_path: Path, cht, receiver_conn: str, prefix: str, **overrides: Any
) -> tuple[Path, str]:
    """Point the test Connections at ``cht`` and a receiver (its Connection as JSON), and write a
    pipeline whose name is unique to the test; return its folder and name."""
    monkeypatch.setenv("AIRFLOW_CONN_CHT_TEST", cht.connection())
    monkeypatch.setenv("AIRFLOW_CONN_RECEIVER_TEST", receiver_conn)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "pipelines"
    write_pipeline(folder, name, cht={"conn_id": "cht_test", "db": cht.db}, **overrides)
    return folder, name


def run_dag(monkeypatch, folder: Path, dag_id: str, conf: dict | None = None) -> tuple[str, dict | None]:
    """Run ``dag_id`` from the pipelines in ``folder`` (with Params ``conf``); return the run state and
    the XCom summary of its task (``sync``, or ``replay`` for the replay DAG)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    monkeypatch.setenv("CHT_BRIDGE_PIPELINES", str(folder))
    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    run = dag.test(run_conf=conf)
    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, task_ids=dag.task_ids[0], key="return_value")
        ).all()
    return str(run.state), (rows[0].value if rows else None)


def state_store():
    from cht_bridge.hooks import default_state_url
    from cht_bridge.state import StateStore

    return StateStore(default_state_url())
