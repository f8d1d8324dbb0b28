"""The operator of an aggregate pipeline (``destination.dhis2.kind: aggregate``): one task per run.

An aggregate run is not per-document delivery (``ChtSyncOperator``): it recomputes the DHIS2
periods its changed reports touch and posts them whole (``cht_bridge.aggregate.run``). The same
Params as any pipeline: ``start``/``end`` (or an Airflow backfill's interval) recompute the
periods of those calendar days instead of reading the changes feed; ``dry_run`` asks DHIS2 with
``dryRun=true`` (nothing is stored there, nothing in the ledger). ``forms``, ``places`` and
``mode`` choose documents to re-send, which an aggregate never does: they are refused if set.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class ChtAggregateOperator(BaseOperator):
    """Recompute and post a DHIS2 aggregate pipeline's changed periods (or a window's).

    :param pipeline_file: path of the pipeline YAML file (read again when the task runs).
    """

    ui_color = "#d9edf7"

    def __init__(self, *, pipeline_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_file = pipeline_file

    def execute(self, context: Any) -> dict[str, Any]:
        from cht_bridge.aggregate.run import opened, run_aggregate
        from cht_bridge.config import load_pipeline
        from cht_bridge.errors import ParamError
        from cht_bridge.operators.params import backfill_window
        from cht_bridge.operators.resources import failing_plainly, log_ledger

        params = context.get("params") or {}
        with failing_plainly():
            pipeline = load_pipeline(self.pipeline_file)
            if params.get("forms") or params.get("places") or (params.get("mode") or "missing") != "missing":
                raise ParamError(
                    "Params 'forms', 'places' and 'mode' choose reports to re-send; an aggregate pipeline recomputes "
                    "whole periods: set only 'start' and 'end'"
                )
            window = backfill_window(
                params,
                getattr(context.get("dag_run"), "run_type", None),
                (context.get("data_interval_start"), context.get("data_interval_end")),
            )
            with opened(pipeline) as (client, poster, store):
                if params.get("dry_run"):
                    poster.dry_run = True
                summary = run_aggregate(
                    pipeline, client=client, poster=poster, store=store,
                    window=(window.start, window.end) if window else None, logger=self.log,
                )  # fmt: skip
                log_ledger(self.log, store, pipeline.name)
                return summary.as_dict()
