"""The operator that runs one pipeline: its whole sync is one task.

Streaming every batch through one task keeps payloads out of XCom and lets each batch commit
its checkpoint as it goes; the task returns only the run's counts.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class ChtSyncOperator(BaseOperator):
    """Sync a CHT database to a pipeline's destination.

    The pipeline file is read again when the task runs, so a task always uses the file as it is
    then; an invalid file fails the task with the file, key and reason, without retries.

    What the run does comes from the DAG run: the Params ``start``/``end`` (or an Airflow
    backfill's data interval) make it a backfill of that window; ``dry_run`` writes the payloads
    to a file instead of sending them.

    :param pipeline_file: path of the pipeline YAML file.
    """

    ui_color = "#dff0d8"

    def __init__(self, *, pipeline_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_file = pipeline_file

    def execute(self, context: Any) -> dict[str, Any]:
        from cht_bridge.config import load_pipeline
        from cht_bridge.operators import metrics
        from cht_bridge.operators.params import backfill_window
        from cht_bridge.operators.resources import dry_run_for, failing_plainly, finish
        from cht_bridge.sync import run_pipeline
        from cht_bridge.sync.resources import opened

        params = context.get("params") or {}
        run_id = context["run_id"]
        with failing_plainly():
            pipeline = load_pipeline(self.pipeline_file)
            window = backfill_window(
                params,
                getattr(context.get("dag_run"), "run_type", None),
                (context.get("data_interval_start"), context.get("data_interval_end")),
            )
            dry_run = dry_run_for(params, pipeline.name, run_id)
            with opened(pipeline) as r:
                with metrics.breaker_recorded(r.store, pipeline.name, dry_run is not None):
                    summary = run_pipeline(
                        pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper,
                        window=window, dry_run=dry_run, key_salt=run_id, logger=self.log,
                    )  # fmt: skip
                metrics.sync_run(summary)
                selection = window.describe() if window else {"changes_since": summary.start_seq}
                return finish(self.log, r.store, pipeline.name, summary, dry_run, selection)


class ChtReplayOperator(BaseOperator):
    """Send a pipeline's failed or dead documents again, chosen by the DAG run's Params.

    The documents are read again from CHT and mapped with the pipeline file as it is now, so a
    fixed mapping or a fixed receiver is what the replay tests.

    :param pipelines_folder: where the pipeline files are; the ``pipeline`` Param names one.
    """

    ui_color = "#fcf8e3"

    def __init__(self, *, pipelines_folder: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipelines_folder = pipelines_folder

    def execute(self, context: Any) -> dict[str, Any]:
        from cht_bridge.config import find_pipeline
        from cht_bridge.operators import metrics
        from cht_bridge.operators.params import parse_time, string_list
        from cht_bridge.operators.resources import dry_run_for, failing_plainly, finish
        from cht_bridge.sync import replay_documents
        from cht_bridge.sync.resources import opened

        params = context.get("params") or {}
        with failing_plainly():
            pipeline = find_pipeline(self.pipelines_folder, params.get("pipeline") or "")
            status = params.get("status") or "dead"
            statuses = ("failed", "dead") if status == "both" else (status,)
            doc_ids = string_list(params.get("doc_ids"), "doc_ids") or None
            since, until = parse_time(params.get("start"), "start"), parse_time(params.get("end"), "end")
            dry_run = dry_run_for(params, pipeline.name, context["run_id"])
            with opened(pipeline) as r:
                rows = r.store.select(pipeline.name, statuses=statuses, doc_ids=doc_ids, since=since, until=until)
                self.log.info("pipeline %s: replaying %d documents (status %s)", pipeline.name, len(rows), status)
                with metrics.breaker_recorded(r.store, pipeline.name, dry_run is not None):
                    summary = replay_documents(
                        pipeline, rows, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper,
                        dry_run=dry_run, logger=self.log,
                    )  # fmt: skip
                metrics.sync_run(summary)
                selection = {"statuses": list(statuses), "doc_ids": list(doc_ids or []), "count": len(rows)}
                return finish(self.log, r.store, pipeline.name, summary, dry_run, selection)
