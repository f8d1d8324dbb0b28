"""The Params of the pipeline DAGs, the reverse-pipeline DAGs and the replay DAG, and how a run reads them.

They are what an integration engineer fills in the Airflow UI's "Trigger DAG" form, so every
Param says in its description what it does and what its default is. The form marks a Param
required unless its schema ``type`` allows ``null`` (or it has no ``type``), so every Param a run
can do without allows ``null``, and a run reads ``null`` as the default. Reading them fails the task with a plain message
when they contradict each other, before anything is read or sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Param

from cht_bridge.errors import ParamError

DRY_RUN_SAMPLES = 20


def pipeline_params() -> dict[str, Param]:
    """Params of every pipeline DAG: a plain run, a backfill window, a dry run."""
    return {
        "start": Param(
            None,
            type=["null", "string"],
            description="Backfill: first reported date to re-sync (ISO date or date-time, UTC). Leave empty "
            "for a normal run of the changes feed. The checkpoint never moves in a backfill. Default: empty.",
        ),
        "end": Param(
            None, type=["null", "string"], description="Backfill: end of the window (exclusive). Default: empty."
        ),
        "forms": Param(
            [], type=["null", "array"], description="Backfill: only reports of these forms. Default: empty (all forms)."
        ),
        "places": Param(
            [],
            type=["null", "array"],
            description="Backfill: only reports submitted under these place uuids. Default: empty (all places).",
        ),
        "mode": Param(
            "missing",
            enum=["missing", "failed", "all"],
            description="Backfill: missing = never delivered; failed = failed or dead letters; all = every "
            "report in the window, even those the destination has. Default: missing.",
        ),
        "dry_run": Param(
            False,
            type=["null", "boolean"],
            description="Map and write the would-be payloads to a file under the Airflow home; send nothing, "
            "change no ledger row and no checkpoint. Default: off.",
        ),
        "dry_run_payloads": Param(
            DRY_RUN_SAMPLES,
            type=["null", "integer"],
            minimum=0,
            maximum=1000,
            description=f"Dry run: how many payloads the file shows. Default: {DRY_RUN_SAMPLES}.",
        ),
    }


def replay_params(pipelines: list[str]) -> dict[str, Param]:
    """Params of ``cht_bridge_replay``: which pipeline, and which of its ledger rows.

    ``pipeline`` is the one Param a person must choose; it still defaults to the first pipeline.
    """
    return {
        "pipeline": Param(
            pipelines[0] if pipelines else "",
            type="string",
            **({"enum": pipelines} if pipelines else {}),
            description="The pipeline whose documents are replayed. Default: "
            + (f"{pipelines[0]} (the first by name)." if pipelines else "none (no pipeline is loaded)."),
        ),
        "status": Param(
            "dead",
            enum=["dead", "failed", "both"],
            description="dead = dead letters; failed = still pending retries; both. Default: dead.",
        ),
        "doc_ids": Param(
            [],
            type=["null", "array"],
            description="Only these CHT document ids. Default: empty (every one with the status).",
        ),
        "start": Param(
            None,
            type=["null", "string"],
            description="Only documents whose last failure is at or after this. Default: empty (no lower bound).",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            description="Only documents whose last failure is before this. Default: empty (no upper bound).",
        ),
        "dry_run": Param(
            False,
            type=["null", "boolean"],
            description="Write what would be sent to a file; send nothing. Default: off.",
        ),
    }


def reverse_params() -> dict[str, Param]:
    """Params of every reverse-pipeline DAG: a plain run, or a replay of rows that waited."""
    return {
        "replay": Param(
            "none",
            enum=["none", "failed", "unplaced", "both"],
            description="Send rows again once their cause is fixed: failed = rows CHT refused (a form missing "
            "from app_settings, a place that does not exist, a validation error) or gave up on; unplaced = rows "
            "without a place (every run matches them again anyway); both. none = a plain run. Default: none.",
        ),
        "source_ids": Param(
            [],
            type=["null", "array"],
            description="Replay: only the rows of these source record ids. Default: empty (every row with the "
            "chosen status).",
        ),
        "give_up": Param(
            False,
            type=["null", "boolean"],
            description="Replay: close the chosen rows as skipped instead of sending them (their data is "
            "erased), for rows that will never go through. Default: off.",
        ),
        "dry_run": Param(
            False,
            type=["null", "boolean"],
            description="Replay: list the rows a replay would take (ids and reasons, in the receive task's "
            "log and XCom) and change nothing; the run reads, matches and writes nothing. Default: off.",
        ),
    }


def replay_choice(params: Mapping[str, Any]) -> Any:
    """A reverse run's ``ReplayChoice`` from its Params; ``None`` for a plain run."""
    from cht_bridge.reverse.run import REPLAY_STATUSES, ReplayChoice

    status = params.get("replay") or "none"
    if status != "none" and status not in REPLAY_STATUSES:
        raise ParamError(f"Param 'replay': '{status}' is not one of none, {', '.join(REPLAY_STATUSES)}")
    source_ids = string_list(params.get("source_ids"), "source_ids")
    flags = {name: bool(params.get(name)) for name in ("dry_run", "give_up")}
    if status == "none":
        if source_ids or any(flags.values()):
            raise ParamError("Params 'source_ids', 'give_up' and 'dry_run' choose what a replay does: set 'replay' too")
        return None
    return ReplayChoice(status, source_ids, **flags)


def parse_time(value: Any, name: str) -> datetime | None:
    """An ISO date or date-time Param as an aware UTC datetime (naive values are UTC)."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ParamError(f"Param '{name}': '{value}' is not an ISO date such as 2026-03-01") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def string_list(value: Any, name: str) -> tuple[str, ...]:
    """A list Param; a comma-separated string is accepted too (the CLI's ``--conf``)."""
    if value in (None, "", []):
        return ()
    if isinstance(value, str):
        value = [v for v in (part.strip() for part in value.split(",")) if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ParamError(f"Param '{name}': must be a list of strings")
    return tuple(value)


def backfill_window(params: Mapping[str, Any], run_type: Any, interval: tuple[Any, Any]) -> Any:
    """The run's ``Window``: from ``start``/``end``, or, in an Airflow backfill, the data interval.

    ``None`` means a normal run of the changes feed.
    """
    from cht_bridge.sync import Window

    start, end = parse_time(params.get("start"), "start"), parse_time(params.get("end"), "end")
    if (start is None) != (end is None):
        raise ParamError("Params 'start' and 'end' go together: set both for a backfill, or neither")
    if start is None and str(getattr(run_type, "value", run_type)) == "backfill":
        start, end = parse_time(interval[0], "data_interval_start"), parse_time(interval[1], "data_interval_end")
        if start is None or end is None or start >= end:
            raise ParamError(
                "this backfill run has no data interval to select reports by; the pipeline's schedule must "
                "be a cron expression (a backfill run covers one schedule interval)"
            )
    if start is None:
        return None
    return Window(
        start=start,
        end=end,
        forms=string_list(params.get("forms"), "forms"),
        places=string_list(params.get("places"), "places"),
        mode=params.get("mode") or "missing",
    )
