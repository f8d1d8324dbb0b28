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

#: Where reports go unless the ``folder`` Param or ``CHT_BRIDGE_RECONCILE_FOLDER`` (paths or URLs) says
#: otherwise: ``reconcile`` under the artifacts location (``$CHT_BRIDGE_ARTIFACTS``, else
#: ``$AIRFLOW_HOME/cht_bridge``; ``cht_bridge.storage.artifacts_folder``).
FOLDER_ENV = "CHT_BRIDGE_RECONCILE_FOLDER"


def reconciled_pipelines(folder: Path) -> list[Any]:
    """The DHIS2 aggregate and tracker pipelines of ``folder`` (valid files only: a broken one's own
    DAG shows its problem), by name: what the reconcile DAG lists and its scheduled run compares."""
    from cht_bridge.config import load_pipeline
    from cht_bridge.config.kinds.dhis2_aggregate import is_aggregate
    from cht_bridge.config.kinds.dhis2_tracker import is_tracker
    from cht_bridge.errors import ConfigError

    found = []
    for path in sorted(folder.glob("*.y*ml")):
        try:
            pipeline = load_pipeline(path)
        except ConfigError:
            continue
        if is_aggregate(pipeline) or is_tracker(pipeline):
            found.append(pipeline)
    return sorted(found, key=lambda p: p.name)


def reconcile_params(pipelines: list[str]) -> dict[str, Param]:
    """The trigger form: which aggregate pipeline, which calendar days, re-post or not, where to write."""
    return {
        "pipeline": Param(
            None,
            type=["null", "string"],
            **({"enum": [None, *pipelines]} if pipelines else {}),
            description="The DHIS2 aggregate or tracker pipeline to compare. Default: empty = every one of them "
            "(what the monthly scheduled run does)"
            + (f": {', '.join(pipelines)}." if pipelines else "; none is loaded."),
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
    """Reconcile the periods (chosen by the DAG run's Params) of one DHIS2 pipeline, or of every one.

    Without a ``pipeline`` Param (the scheduled run) every aggregate and tracker pipeline of the
    folder is compared, one after the other; one that fails does not stop the others, and the task
    fails at the end naming it. The XCom is ``{"pipelines": {name: totals}, "differences": n}``;
    with a ``pipeline`` Param it is that pipeline's totals.

    :param pipelines_folder: where the pipeline files are; the ``pipeline`` Param may name one.
    """

    ui_color = "#f2dede"

    def __init__(self, *, pipelines_folder: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipelines_folder = pipelines_folder

    def execute(self, context: Any) -> dict[str, Any]:
        from cht_bridge.config import find_pipeline
        from cht_bridge.config.kinds.dhis2_aggregate import is_aggregate
        from cht_bridge.config.kinds.dhis2_tracker import is_tracker
        from cht_bridge.errors import ParamError
        from cht_bridge.operators.resources import failing_plainly

        params = context.get("params") or {}
        with failing_plainly():
            if not params.get("pipeline"):
                return self._every_pipeline(params)
            pipeline = find_pipeline(self.pipelines_folder, params["pipeline"])
            if not is_aggregate(pipeline) and not is_tracker(pipeline):
                raise ParamError(f"Param 'pipeline': '{pipeline.name}' is not a DHIS2 aggregate or tracker pipeline")
            return self._one(pipeline, params)

    def _every_pipeline(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every aggregate and tracker pipeline of the folder, each on its own (one failing stops no other)."""
        from cht_bridge.errors import ChtBridgeError

        totals: dict[str, Any] = {}
        failed: list[str] = []
        for pipeline in reconciled_pipelines(Path(self.pipelines_folder)):
            try:
                totals[pipeline.name] = self._one(pipeline, params)
            except Exception as exc:  # noqa: BLE001 - logged, and named in the task's failure
                self.log.error("reconcile %s failed: %s", pipeline.name, exc)
                failed.append(pipeline.name)
        if failed:
            raise ChtBridgeError(f"reconcile failed for {len(failed)} pipeline(s): {', '.join(failed)} (see the log)")
        return {"pipelines": totals, "differences": sum(t.get("differences", 0) for t in totals.values())}

    def _one(self, pipeline: Any, params: dict[str, Any]) -> dict[str, Any]:
        """One pipeline's comparison over the Params' window (default: last month)."""
        from datetime import UTC, datetime

        from cht_bridge.aggregate.reconcile import reconcile
        from cht_bridge.aggregate.run import opened
        from cht_bridge.config.kinds.dhis2_tracker import is_tracker
        from cht_bridge.errors import ParamError
        from cht_bridge.hooks import bridge_home
        from cht_bridge.operators.params import parse_time
        from cht_bridge.storage import artifacts_folder

        tracker = is_tracker(pipeline)  # events per org unit and month: aggregate/reconcile_tracker.py
        start, end = parse_time(params.get("start"), "start"), parse_time(params.get("end"), "end")
        if start is None or end is None:
            if start is not None or end is not None:
                raise ParamError("Params 'start' and 'end' go together: set both, or neither (last month)")
            today = datetime.now(UTC)
            end = datetime(today.year, today.month, 1, tzinfo=UTC)
            start = datetime(end.year - (end.month == 1), (end.month - 2) % 12 + 1, 1, tzinfo=UTC)
        if end <= start:
            raise ParamError(f"the window is empty: end {end.isoformat()} is not after start")
        folder = artifacts_folder(bridge_home(), "reconcile", params.get("folder") or os.environ.get(FOLDER_ENV))
        if tracker:
            from cht_bridge.aggregate.reconcile_tracker import reconcile_tracker
            from cht_bridge.sync.resources import opened as opened_run

            with opened_run(pipeline) as r:
                result = reconcile_tracker(
                    pipeline, client=r.client, destination=r.destination, mapper=r.mapper, start=start, end=end,
                    folder=folder, repost=bool(params.get("repost")), store=r.store, logger=self.log,
                )  # fmt: skip
            return result.as_dict()
        with opened(pipeline) as (client, poster, store):
            result = reconcile(
                pipeline, client=client, poster=poster, store=store, start=start, end=end, folder=folder,
                repost=bool(params.get("repost")), logger=self.log,
            )  # fmt: skip
        return result.as_dict()
