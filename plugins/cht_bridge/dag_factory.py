"""Turn each ``include/pipelines/*.yaml`` file into one Airflow DAG, plus ``cht_bridge_replay``.

Called from the DAG file at parse time, so it reads only local YAML: no Connections, no
network, no heavy imports. A file that fails its checks still yields a DAG with the same id,
unscheduled, whose task fails with the file, key and reason; every other pipeline loads as usual.

A cron schedule becomes a data-interval timetable, so each run of
``airflow backfill create --dag-id <pipeline> --from-date ... --to-date ...`` covers one schedule
interval and re-syncs the reports reported in it (Airflow 3's default cron timetable gives runs
an empty interval).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from airflow.sdk import DAG, CronDataIntervalTimetable

from cht_bridge.config import load_pipeline
from cht_bridge.config.kinds.dhis2_aggregate import is_aggregate
from cht_bridge.config.loader import NAME_RE
from cht_bridge.config.model import DEFAULT_TASK_TIMEOUT_MINUTES, Pipeline
from cht_bridge.errors import ConfigError
from cht_bridge.operators import ChtReplayOperator, ChtSyncOperator
from cht_bridge.operators.params import pipeline_params, replay_params, reverse_params
from cht_bridge.pools import task_pool
from cht_bridge.reverse.model import ReversePipeline

log = logging.getLogger(__name__)

#: Every task of every DAG here has an ``execution_timeout``: a pipeline's own
#: ``task_timeout_minutes``, or the default for the DAGs that belong to no one pipeline.
DEFAULT_ARGS = {
    "owner": "cht-bridge",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": timedelta(minutes=DEFAULT_TASK_TIMEOUT_MINUTES),
}
BROKEN_START = datetime(2026, 1, 1, tzinfo=UTC)
REPLAY_DAG_ID = "cht_bridge_replay"
NOT_CRON = {"@once", "@continuous"}


def build_dags(folder: str | Path) -> dict[str, DAG]:
    """One DAG per pipeline file in ``folder``, keyed by DAG id."""
    dags: dict[str, DAG] = {}
    names: list[str] = []
    cht_conn_ids: list[str] = []
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
            if not is_aggregate(pipeline):  # its ledger rows are data values, not documents to re-send
                names.append(pipeline.name)
                cht_conn_ids.append(pipeline.cht_conn_id)
        dags.setdefault(dag.dag_id, dag)
    dags.setdefault(REPLAY_DAG_ID, _replay_dag(Path(folder), names))
    dags.setdefault(BACKFILL_DAG_ID, _backfill_dag(Path(folder), names, sorted(set(cht_conn_ids))))
    return dags


def _timetable(schedule: str | None) -> object:
    if schedule is None or schedule in NOT_CRON:
        return schedule
    return CronDataIntervalTimetable(schedule, timezone="UTC")


def _task_args(pipeline: Pipeline | ReversePipeline) -> dict[str, object]:
    """The default_args of a pipeline's DAG: its retries and each task's execution_timeout."""
    return {
        **DEFAULT_ARGS,
        "retries": pipeline.retries,
        "execution_timeout": timedelta(minutes=pipeline.task_timeout_minutes),
    }


def _pipeline_dag(pipeline: Pipeline, path: Path) -> DAG:
    dest = pipeline.destination
    doc = (
        f"### {pipeline.name}\n{pipeline.description}\n\n"
        f"CHT connection `{pipeline.cht_conn_id}` (db `{pipeline.cht_db}`) → "
        f"{dest.method} `{dest.path}` on connection `{dest.conn_id}` ({dest.mode} mode).\n\n"
        f"Pipeline file: `{path.name}`. Relevant to: `{pipeline.relevant_to}`\n\n"
        "Trigger with `start`/`end` to backfill reports of a date window (the checkpoint stays), "
        "or with `dry_run` to see the payloads in a file without sending them."
    )
    with DAG(
        dag_id=pipeline.name,
        description=pipeline.description or f"CHT → {dest.conn_id}",
        schedule=_timetable(pipeline.schedule),
        start_date=pipeline.start_date,
        catchup=False,
        max_active_runs=1,  # two runs of one pipeline would race for the same checkpoint
        default_args=_task_args(pipeline),
        tags=["cht-bridge", f"to-{dest.type}", *pipeline.tags],
        doc_md=doc,
        params=pipeline_params(),
    ) as dag:
        if is_aggregate(pipeline):
            from cht_bridge.operators.aggregate import ChtAggregateOperator

            ChtAggregateOperator(
                task_id="aggregate", pipeline_file=str(path.resolve()), pool=task_pool(pipeline.cht_conn_id)
            )
        else:
            # In its CHT Connection's pool (when switched on): many pipelines read one CHT a few at a time;
            # its sends take the destination Connection's send slots (cht_bridge.pools).
            ChtSyncOperator(task_id="sync", pipeline_file=str(path.resolve()), pool=task_pool(pipeline.cht_conn_id))
    return dag


def _broken_dag_id(path: Path) -> str:
    """The id the DAG has when the file is fixed: its ``name`` if that much can be read."""
    try:
        name = yaml.safe_load(path.read_text(encoding="utf-8")).get("name")
    except Exception:  # unreadable or not a mapping: the file name is all there is
        return path.stem
    return name if isinstance(name, str) and NAME_RE.match(name) else path.stem


def _broken_dag(path: Path, error: ConfigError, kind: str = "pipeline") -> DAG:
    """An unscheduled DAG whose one task fails with the file's problems, so the UI shows them."""
    with DAG(
        dag_id=_broken_dag_id(path),
        description=f"INVALID {kind} file {path.name}",
        schedule=None,
        start_date=BROKEN_START,
        catchup=False,
        default_args={**DEFAULT_ARGS, "retries": 0},
        tags=["cht-bridge", "config-error"],
        doc_md=f"### Invalid {kind} file\n```\n{error}\n```",
    ) as dag:
        if kind == "pipeline":
            ChtSyncOperator(task_id="sync", pipeline_file=str(path.resolve()))
        else:
            from cht_bridge.operators.reverse import ReverseStepOperator

            ReverseStepOperator(task_id="receive", pipeline_file=str(path.resolve()), step="receive")
    return dag


def _replay_dag(folder: Path, names: list[str]) -> DAG:
    with DAG(
        dag_id=REPLAY_DAG_ID,
        description="Send a pipeline's dead letters (or pending failures) again",
        schedule=None,
        start_date=BROKEN_START,
        catchup=False,
        default_args={**DEFAULT_ARGS, "retries": 0},
        tags=["cht-bridge", "replay"],
        params=replay_params(names),
        doc_md=(
            "### Replay failed documents\n"
            "Choose a pipeline and which of its ledger rows to send again: `dead` letters, `failed` ones "
            "still pending, or `both`; optionally only some `doc_ids` or those whose last failure lies "
            "between `start` and `end`. Documents are read again from CHT and mapped with the pipeline "
            "file as it is now. Each replayed document gets a fresh count of failed runs."
        ),
    ) as dag:
        ChtReplayOperator(task_id="replay", pipelines_folder=str(folder.resolve()))
    return dag


BACKFILL_DAG_ID = "cht_bridge_backfill"


def _backfill_dag(folder: Path, names: list[str], cht_conn_ids: list[str]) -> DAG:
    """``cht_bridge_backfill``: a long backfill split into parts run as mapped tasks (operators/backfill.py)."""
    from airflow.sdk import TriggerRule

    from cht_bridge.operators.backfill import (
        BackfillPartOperator,
        BackfillSummaryOperator,
        BackfillWindowsOperator,
        backfill_params,
        task_id_for,
        windows_task_id_for,
    )

    file_folder = str(folder.resolve())
    with DAG(
        dag_id=BACKFILL_DAG_ID,
        description="Backfill a long window of a pipeline in parts (a month each) over all workers",
        schedule=None,
        start_date=BROKEN_START,
        catchup=False,
        default_args=DEFAULT_ARGS,
        tags=["cht-bridge", "backfill"],
        params=backfill_params(names),
        doc_md=(
            "### Split backfill\n"
            "Choose a pipeline and a window (`start`/`end`): the window is cut into parts (`split_months`, "
            "default a calendar month, or `split_days`), each backfilled as its own mapped task on any worker, "
            "in the pool of the pipeline's CHT Connection; `summary` adds the parts up. `mode`, `forms` and "
            "`places` mean what they mean in a pipeline's own backfill; no part moves the checkpoint."
        ),
    ) as dag:
        summary = BackfillSummaryOperator(
            task_id="summary",
            part_task_ids=[task_id_for(conn) for conn in cht_conn_ids],
            trigger_rule=TriggerRule.NONE_FAILED,
        )
        for conn in cht_conn_ids:
            windows = BackfillWindowsOperator(
                task_id=windows_task_id_for(conn), pipelines_folder=file_folder, cht_conn_id=conn
            )
            part = BackfillPartOperator.partial(
                task_id=task_id_for(conn), pipelines_folder=file_folder, pool=task_pool(conn)
            ).expand(window=windows.output)
            windows >> part >> summary
    return dag


def build_reverse_dags(folder: str | Path) -> dict[str, DAG]:
    """One DAG per reverse pipeline file (``include/reverse/*.yaml``), keyed by DAG id.

    A file that fails its checks yields an unscheduled DAG of the same id whose first task fails
    with the file, key and reason; the other files load as usual.
    """
    from cht_bridge.reverse.loader import load_reverse_pipeline

    dags: dict[str, DAG] = {}
    for path in sorted(Path(folder).glob("*.y*ml")):
        try:
            pipeline = load_reverse_pipeline(path)
            if pipeline.name in dags:
                raise ConfigError(str(path), [f"name: '{pipeline.name}' is already used by another pipeline file"])
        except ConfigError as exc:
            log.error("%s", exc)
            dag = _broken_dag(path, exc, "reverse pipeline")
        else:
            dag = _reverse_dag(pipeline, path)
        dags.setdefault(dag.dag_id, dag)
    return dags


def _reverse_dag(pipeline: ReversePipeline, path: Path) -> DAG:
    from airflow.sdk import TriggerRule

    from cht_bridge.operators.reverse import MatchReviewOperator, ReverseStepOperator

    source = pipeline.source
    origin = f"{source.type} `{source.resource or source.path or source.folder}`" + (
        f" on connection `{source.conn_id}`" if source.conn_id else ""
    )
    doc = (
        f"### {pipeline.name}\n{pipeline.description}\n\n"
        f"{origin} → CHT connection `{pipeline.target.conn_id}`, form `{pipeline.target.form}`.\n\n"
        "`receive` reads the list from its checkpoint, and puts back the rows a replay chooses (trigger "
        "with `replay`: `failed` once CHT's config, the place table or the data is fixed; `unplaced`; "
        "`both`; optionally only some `source_ids`; `dry_run` to list them first; `give_up` to close "
        "them); `match` decides link / review / new for each person (and places again the rows still "
        "waiting for a place); `write_decided` creates people and reports in CHT; `waiting_review` lists "
        "the rows a person must decide (this run's and any left from earlier runs); `review` asks a person about each "
        "uncertain match (Browse → Required Actions); `write_reviewed` writes what was decided. "
        f"Pipeline file: `{path.name}`."
    )
    file = str(path.resolve())
    with DAG(
        dag_id=pipeline.name,
        description=pipeline.description or f"{source.type} list → CHT {pipeline.target.form}",
        schedule=_timetable(pipeline.schedule),
        start_date=pipeline.start_date,
        catchup=False,
        max_active_runs=1,  # two runs would ask the same review questions and race for the ledger
        default_args=_task_args(pipeline),
        tags=["cht-bridge", "to-cht", f"from-{source.type}", *pipeline.tags],
        doc_md=doc,
        params=reverse_params(),
    ) as dag:
        # Pools (cht_bridge.pools): receive reads the source's Connection; match and the writes use CHT's.
        cht_pool = {"pool": task_pool(pipeline.target.conn_id)}
        source_pool = {"pool": task_pool(source.conn_id)} if source.conn_id else {}
        receive = ReverseStepOperator(task_id="receive", pipeline_file=file, step="receive", **source_pool)
        match = ReverseStepOperator(task_id="match", pipeline_file=file, step="match", **cht_pool)
        write = ReverseStepOperator(task_id="write_decided", pipeline_file=file, step="write", **cht_pool)
        waiting = ReverseStepOperator(task_id="waiting_review", pipeline_file=file, step="reviews")
        review = MatchReviewOperator.partial(
            task_id="review",
            pipeline_file=file,
            max_candidates=pipeline.review.max_candidates,
            response_timeout=timedelta(hours=pipeline.review.timeout_hours),
            # On Airflow 3.3 (pinned) the wait for a person is not execution: the task is parked in
            # AWAITING_INPUT with no process, bounded by response_timeout alone; execution_timeout
            # (from default_args) bounds each of its two short runs (ask, then record the answer).
            assigned_users=[{"id": a, "name": a} for a in pipeline.review.assignees] or None,
            retries=0,
        ).expand(review_key=waiting.output)
        reviewed = ReverseStepOperator(
            task_id="write_reviewed", pipeline_file=file, step="write", trigger_rule=TriggerRule.NONE_FAILED, **cht_pool
        )
        receive >> match >> write >> waiting >> review >> reviewed
    return dag


HOUSEKEEPING_DAG_ID = "cht_bridge_housekeeping"


def build_housekeeping_dag(reverse_folder: str | Path) -> DAG:
    """``cht_bridge_housekeeping``: daily, removes patient data past its retention (see its doc)."""
    from cht_bridge.operators.housekeeping import HousekeepingOperator, housekeeping_params

    with DAG(
        dag_id=HOUSEKEEPING_DAG_ID,
        description="Erase patient data past its retention: finished inbound records, dry-run and read CSV files",
        schedule="@daily",
        start_date=BROKEN_START,
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, "retries": 1},
        tags=["cht-bridge", "housekeeping"],
        params=housekeeping_params(),
        doc_md=(
            "### Housekeeping\n"
            "Once a day: erases the `record` (names, phones) of inbound rows `done` or `skipped` more than "
            "`retention_days` ago, deletes dry-run files older than `dry_run_days` and CSV drop files of the "
            "reverse pipelines that were read whole and are older than `csv_days`. Open and waiting rows keep "
            "their record. Trigger with `dry_run` to see the counts without removing anything. The log and "
            "the XCom carry counts per pipeline only."
        ),
    ) as dag:
        HousekeepingOperator(task_id="housekeeping", reverse_folder=str(Path(reverse_folder).resolve()))
    return dag


POOLS_DAG_ID = "cht_bridge_pools"


def build_pools_dag(pipelines_folder: str | Path, reverse_folder: str | Path) -> DAG:
    """``cht_bridge_pools``: every few minutes, creates the per-Connection pools the pipeline files need."""
    from cht_bridge.airflow_api import CONN_ID
    from cht_bridge.operators.pools import EnsurePoolsOperator

    with DAG(
        dag_id=POOLS_DAG_ID,
        description="Create the pool of each CHT and source Connection the pipeline files name, if missing",
        schedule="*/5 * * * *",
        start_date=BROKEN_START,
        catchup=False,
        max_active_runs=1,
        # Runs unpaused even where new DAGs start paused: until it runs, a new Connection's pipelines wait.
        is_paused_upon_creation=False,
        default_args={
            **DEFAULT_ARGS,
            "retries": 1,
            "retry_delay": timedelta(minutes=1),
            "execution_timeout": timedelta(minutes=5),
        },
        tags=["cht-bridge", "pools"],
        doc_md=(
            "### Pools per Connection\n"
            "Every 5 minutes (or triggered): reads the pipeline files, works out the pool each CHT and source "
            "Connection's tasks run in (`cht_bridge__<conn_id>`), and creates each missing one through the "
            f"api-server's REST API with the user of the Connection `{CONN_ID}`, sized by "
            "`CHT_BRIDGE_POOL_SLOTS__<CONN_ID>` / `CHT_BRIDGE_POOL_SLOTS` (default 4). Until then the tasks of "
            "a pipeline on a new Connection are not scheduled; the log names them. An existing pool is never "
            "resized."
        ),
    ) as dag:
        EnsurePoolsOperator(
            task_id="ensure_pools",
            pipelines_folder=str(Path(pipelines_folder).resolve()),
            reverse_folder=str(Path(reverse_folder).resolve()),
            conn_id=CONN_ID,
        )  # in default_pool: it must run while the pools it creates are missing
    return dag
