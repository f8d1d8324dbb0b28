"""``cht_bridge_backfill``: one long backfill split into windows that any worker can run.

A pipeline DAG's backfill (Params ``start``/``end``) is one task on one worker; twelve months of a
national CHT are hours of it. This DAG splits the window into parts (a calendar month by default:
``split_months``, or ``split_days``) and runs each as a mapped task instance. Every part is a plain
backfill of its own window: its own ledger rows (reports are in exactly one part by
``reported_date``), no checkpoint written (a backfill never moves it), so parts run in any order,
on any worker, at once, and a retried part repeats only itself. The ``summary`` task adds the
parts' counts up.

The mapped tasks run in the pool of their CHT Connection (``cht_bridge.pools``), so a split
backfill reads CHT no faster than the pool allows, however many workers there are. An Airflow
pool is fixed when the DAG is parsed, so there is one mapped task per CHT Connection of the
pipelines, ``backfill__<conn_id>``, each fed by its ``windows__<conn_id>`` (Airflow maps only over
a task's return value); the run's pipeline decides which one gets the parts (the others get none
and are skipped).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, Param

from cht_bridge.errors import ParamError

#: More parts than this is a mistake in the Params (a day per part over decades), not a backfill.
MAX_PARTS = 1000
SPLIT_MONTHS_ENV, SPLIT_DAYS_ENV = "CHT_BRIDGE_SPLIT_MONTHS", "CHT_BRIDGE_SPLIT_DAYS"
COUNTS = (
    "read", "skipped_design", "skipped_info", "tombstones", "filtered", "relevant", "mapped", "sent", "unchanged",
    "skipped", "retried", "request_retries", "failed", "dead_lettered", "closed", "deleted", "batches",
)  # fmt: skip


def task_id_for(conn_id: str) -> str:
    """The mapped task of the parts read from CHT Connection ``conn_id``."""
    return f"backfill__{conn_id}"


def windows_task_id_for(conn_id: str) -> str:
    """The task that cuts the window into parts for ``task_id_for(conn_id)``."""
    return f"windows__{conn_id}"


def _add_months(when: datetime, months: int) -> datetime:
    month = when.month - 1 + months
    year, month = when.year + month // 12, month % 12 + 1
    return when.replace(year=year, month=month, day=1)


def split_window(
    start: datetime, end: datetime, *, months: int = 1, days: int | None = None
) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive parts, each ``[a, b)``: at calendar month starts
    (every ``months`` months), or every ``days`` days when given. The parts cover the window
    exactly once: no gap, no overlap."""
    if end <= start:
        raise ParamError(f"the window is empty: end {end.isoformat()} is not after start {start.isoformat()}")
    if days is not None and days < 1 or months < 1:
        raise ParamError("split_days and split_months must be at least 1")
    parts: list[tuple[datetime, datetime]] = []
    a = start
    while a < end:
        if days is not None:
            b = a + timedelta(days=days)
        else:
            b = _add_months(a.replace(hour=0, minute=0, second=0, microsecond=0), months)
        b = min(b, end)
        parts.append((a, b))
        if len(parts) > MAX_PARTS:
            raise ParamError(f"the window makes more than {MAX_PARTS} parts: choose longer parts")
        a = b
    return parts


def add_up(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole backfill's counts from its parts' summaries (what the parts' XComs hold)."""
    total: dict[str, Any] = {name: sum(int(s.get(name) or 0) for s in summaries) for name in COUNTS}
    lags = [s["lag_seconds"] for s in summaries if s.get("lag_seconds") is not None]
    total.update(
        pipeline=summaries[0]["pipeline"] if summaries else None,
        kind="backfill",
        parts=len(summaries),
        task_seconds=round(sum(float(s.get("seconds") or 0) for s in summaries), 3),
        lag_seconds=min(lags) if lags else None,
    )
    return total


def backfill_params(pipelines: list[str]) -> dict[str, Param]:
    from cht_bridge.operators.params import pipeline_params

    inherited = pipeline_params()
    return {
        "pipeline": Param(
            pipelines[0] if pipelines else "",
            type="string",
            **({"enum": pipelines} if pipelines else {}),
            description="The pipeline whose reports are backfilled. Default: the first by name.",
        ),
        "start": Param(
            None,
            type=["null", "string"],
            description="First reported date of the backfill (ISO date, UTC). Required: the run fails "
            "plainly without it. Default: empty.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            description="End of the window (exclusive, ISO date, UTC). Required. Default: empty.",
        ),
        "split_months": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description=f"Calendar months per part. Default: ${SPLIT_MONTHS_ENV}, else 1.",
        ),
        "split_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description=f"Days per part instead of months. Default: ${SPLIT_DAYS_ENV}, else months.",
        ),
        **{name: inherited[name] for name in ("forms", "places", "mode")},
    }


class BackfillWindowsOperator(BaseOperator):
    """Check the Params and return the parts (small dicts of ISO dates) when the run's pipeline
    reads CHT Connection ``cht_conn_id``; none otherwise (its mapped task is then skipped)."""

    ui_color = "#d9edf7"

    def __init__(self, *, pipelines_folder: str, cht_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipelines_folder = pipelines_folder
        self.cht_conn_id = cht_conn_id

    def execute(self, context: Any) -> list[dict[str, str]]:
        from cht_bridge.config import find_pipeline
        from cht_bridge.env_settings import positive_whole_number
        from cht_bridge.operators.params import parse_time
        from cht_bridge.operators.resources import failing_plainly

        params = context.get("params") or {}
        with failing_plainly():
            pipeline = find_pipeline(self.pipelines_folder, params.get("pipeline") or "")
            start, end = parse_time(params.get("start"), "start"), parse_time(params.get("end"), "end")
            if start is None or end is None:
                raise ParamError("Params 'start' and 'end' are required: the window to backfill")
            days = params.get("split_days") or positive_whole_number(SPLIT_DAYS_ENV)
            months = params.get("split_months") or positive_whole_number(SPLIT_MONTHS_ENV) or 1
            parts = split_window(start, end, months=int(months), days=int(days) if days else None)
        if pipeline.cht_conn_id != self.cht_conn_id:
            return []
        self.log.info("pipeline %s: backfill %s to %s in %d parts", pipeline.name, start, end, len(parts))
        return [{"pipeline": pipeline.name, "start": a.isoformat(), "end": b.isoformat()} for a, b in parts]


class BackfillPartOperator(BaseOperator):
    """One part of a split backfill: a plain backfill of its window (mapped over ``window``)."""

    ui_color = "#dff0d8"
    template_fields = ("window",)

    def __init__(self, *, pipelines_folder: str, window: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipelines_folder = pipelines_folder
        self.window = window

    def execute(self, context: Any) -> dict[str, Any]:
        from cht_bridge.config import find_pipeline
        from cht_bridge.operators.params import backfill_window
        from cht_bridge.operators.resources import failing_plainly, finish
        from cht_bridge.sync import run_pipeline
        from cht_bridge.sync.resources import opened

        params = context.get("params") or {}
        with failing_plainly():
            pipeline = find_pipeline(self.pipelines_folder, self.window["pipeline"])
            part = {**params, "start": self.window["start"], "end": self.window["end"]}
            window = backfill_window(part, None, (None, None))
            with opened(pipeline) as r:
                summary = run_pipeline(
                    pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper,
                    window=window, key_salt=context["run_id"], logger=self.log,
                )  # fmt: skip
                return finish(self.log, r.store, pipeline.name, summary, None, window.describe())


class BackfillSummaryOperator(BaseOperator):
    """Add the parts up: the XCom and the log line of the whole backfill."""

    ui_color = "#fcf8e3"

    def __init__(self, *, part_task_ids: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.part_task_ids = part_task_ids

    def execute(self, context: Any) -> dict[str, Any]:
        summaries: list[dict[str, Any]] = []
        for task_id in self.part_task_ids:
            pulled = context["ti"].xcom_pull(task_ids=task_id, key="return_value")
            if isinstance(pulled, dict):
                pulled = [pulled]
            summaries.extend(s for s in pulled or [] if isinstance(s, dict))
        total = add_up(summaries)
        self.log.info(
            "pipeline %s split backfill done: parts=%d read=%d relevant=%d sent=%d unchanged=%d skipped=%d "
            "failed=%d dead_lettered=%d",
            total["pipeline"], total["parts"], total["read"], total["relevant"], total["sent"], total["unchanged"],
            total["skipped"], total["failed"], total["dead_lettered"],
        )  # fmt: skip
        return total
