"""``cht_bridge_reconcile``: compare an aggregate pipeline's periods between CHT and DHIS2.

The task recomputes each data value of the chosen periods from CHT and reads what DHIS2 holds,
writes a CSV and an HTML report of every difference (``cht_bridge.aggregate.reconcile``) and
returns the totals (XCom: counts and the report's paths, no values per facility). With
``repost`` it posts the differing periods again from CHT.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Param

#: Where reports go unless the ``folder`` Param or ``CHT_BRIDGE_RECONCILE_FOLDER`` says otherwise:
#: ``$AIRFLOW_HOME/cht_bridge/reconcile``.
FOLDER_ENV = "CHT_BRIDGE_RECONCILE_FOLDER"


def reconcile_params(pipelines: list[str]) -> dict[str, Param]:
    """The trigger form: which aggregate pipeline, which calendar days, re-post or not, where to write."""
    return {
        "pipeline": Param(
            pipelines[0] if pipelines else "",
            type="string",
            **({"enum": pipelines} if pipelines else {}),
            description="The DHIS2 aggregate pipeline to compare. Default: "
            + (f"{pipelines[0]} (the first by name)." if pipelines else "none (no aggregate pipeline is loaded)."),
        ),
        "start": Param(
            None,
            type=["null", "string"],
            description="First day (ISO date) of the periods to compare. Default: empty = the first day of the "
            "previous month.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            description="Day after the last (exclusive). Default: empty = the first day of this month.",
        ),
        "repost": Param(
            False,
            type=["null", "boolean"],
            description="Post the periods that differ again from CHT (and delete at DHIS2 the values CHT does not "
            "give). Default: off (report only).",
        ),
        "folder": Param(
            None,
            type=["null", "string"],
            description=f"Folder for the CSV and HTML reports. Default: ${FOLDER_ENV}, else "
            "$AIRFLOW_HOME/cht_bridge/reconcile.",
        ),
    }


class ChtReconcileOperator(BaseOperator):
    """Reconcile one aggregate pipeline's periods (chosen by the DAG run's Params).

    :param pipelines_folder: where the pipeline files are; the ``pipeline`` Param names one.
    """

    ui_color = "#f2dede"

    def __init__(self, *, pipelines_folder: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipelines_folder = pipelines_folder

    def execute(self, context: Any) -> dict[str, Any]:
        from datetime import UTC, datetime

        from cht_bridge.aggregate.reconcile import reconcile
        from cht_bridge.aggregate.run import opened
        from cht_bridge.config import find_pipeline
        from cht_bridge.config.kinds.dhis2_aggregate import is_aggregate
        from cht_bridge.config.kinds.dhis2_tracker import is_tracker
        from cht_bridge.errors import ParamError
        from cht_bridge.hooks import bridge_home
        from cht_bridge.operators.params import parse_time
        from cht_bridge.operators.resources import failing_plainly

        params = context.get("params") or {}
        with failing_plainly():
            pipeline = find_pipeline(self.pipelines_folder, params.get("pipeline") or "")
            tracker = is_tracker(pipeline)  # events per org unit and month: aggregate/reconcile_tracker.py
            if not is_aggregate(pipeline) and not tracker:
                raise ParamError(f"Param 'pipeline': '{pipeline.name}' is not a DHIS2 aggregate or tracker pipeline")
            start, end = parse_time(params.get("start"), "start"), parse_time(params.get("end"), "end")
            if start is None or end is None:
                if start is not None or end is not None:
                    raise ParamError("Params 'start' and 'end' go together: set both, or neither (last month)")
                today = datetime.now(UTC)
                end = datetime(today.year, today.month, 1, tzinfo=UTC)
                start = datetime(end.year - (end.month == 1), (end.month - 2) % 12 + 1, 1, tzinfo=UTC)
            if end <= start:
                raise ParamError(f"the window is empty: end {end.isoformat()} is not after start")
            folder = Path(params.get("folder") or os.environ.get(FOLDER_ENV) or bridge_home() / "reconcile")
            if tracker:
                from cht_bridge.aggregate.reconcile_tracker import reconcile_tracker
                from cht_bridge.sync.resources import opened as opened_run

                with opened_run(pipeline) as r:
                    result = reconcile_tracker(
                        pipeline, client=r.client, destination=r.destination, mapper=r.mapper, start=start, end=end,
                        folder=folder, repost=bool(params.get("repost")), logger=self.log,
                    )  # fmt: skip
                return result.as_dict()
            with opened(pipeline) as (client, poster, store):
                result = reconcile(
                    pipeline, client=client, poster=poster, store=store, start=start, end=end, folder=folder,
                    repost=bool(params.get("repost")), logger=self.log,
                )  # fmt: skip
            return result.as_dict()
