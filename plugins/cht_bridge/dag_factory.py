"""Turn each ``include/pipelines/*.yaml`` file into one Airflow DAG.

Called from the DAG file at parse time, so it reads only local YAML: no Connections, no
network, no heavy imports. A file that fails its checks still yields a DAG with the same id,
unscheduled, whose task fails with the file, key and reason; every other pipeline loads as usual.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from airflow.sdk import DAG

from cht_bridge.config import load_pipeline
from cht_bridge.config.loader import NAME_RE
from cht_bridge.config.model import Pipeline
from cht_bridge.errors import ConfigError
from cht_bridge.operators import ChtSyncOperator

log = logging.getLogger(__name__)

DEFAULT_ARGS = {"owner": "cht-bridge", "retries": 2, "retry_delay": timedelta(minutes=2)}
BROKEN_START = datetime(2026, 1, 1, tzinfo=UTC)


def build_dags(folder: str | Path) -> dict[str, DAG]:
    """One DAG per pipeline file in ``folder``, keyed by DAG id."""
    dags: dict[str, DAG] = {}
    for path in sorted(Path(folder).glob("*.y*ml")):
        try:
            pipeline = load_pipeline(path)
            if pipeline.name in dags:
                raise ConfigError(str(path), [f"name: '{pipeline.name}' is already used by another pipeline file"])
        except ConfigError as exc:
            log.error("%s", exc)
            dag = _broken_dag(path, exc)
        else:
            dag = _pipeline_dag(pipeline, path)
        dags.setdefault(dag.dag_id, dag)
    return dags


def _pipeline_dag(pipeline: Pipeline, path: Path) -> DAG:
    dest = pipeline.destination
    doc = (
        f"### {pipeline.name}\n{pipeline.description}\n\n"
        f"CHT connection `{pipeline.cht_conn_id}` (db `{pipeline.cht_db}`) → "
        f"{dest.method} `{dest.path}` on connection `{dest.conn_id}` ({dest.mode} mode).\n\n"
        f"Pipeline file: `{path.name}`. Relevant to: `{pipeline.relevant_to}`"
    )
    with DAG(
        dag_id=pipeline.name,
        description=pipeline.description or f"CHT → {dest.conn_id}",
        schedule=pipeline.schedule,
        start_date=pipeline.start_date,
        catchup=False,
        max_active_runs=1,  # two runs of one pipeline would race for the same checkpoint
        default_args={**DEFAULT_ARGS, "retries": pipeline.retries},
        tags=["cht-bridge", f"to-{dest.type}", *pipeline.tags],
        doc_md=doc,
    ) as dag:
        ChtSyncOperator(task_id="sync", pipeline_file=str(path.resolve()))
    return dag


def _broken_dag_id(path: Path) -> str:
    """The id the DAG has when the file is fixed: its ``name`` if that much can be read."""
    try:
        name = yaml.safe_load(path.read_text(encoding="utf-8")).get("name")
    except Exception:  # unreadable or not a mapping: the file name is all there is
        return path.stem
    return name if isinstance(name, str) and NAME_RE.match(name) else path.stem


def _broken_dag(path: Path, error: ConfigError) -> DAG:
    with DAG(
        dag_id=_broken_dag_id(path),
        description=f"INVALID pipeline file {path.name}",
        schedule=None,
        start_date=BROKEN_START,
        catchup=False,
        default_args={**DEFAULT_ARGS, "retries": 0},
        tags=["cht-bridge", "config-error"],
        doc_md=f"### Invalid pipeline file\n```\n{error}\n```",
    ) as dag:
        ChtSyncOperator(task_id="sync", pipeline_file=str(path.resolve()))
    return dag
