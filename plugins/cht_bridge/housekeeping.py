"""Housekeeping: patient data the bridge no longer needs is removed after a set time.

Three places can keep patient data after the work on it is done: the ``record`` (names, phones)
of inbound rows that are finished (``done``, ``skipped``), the dry-run files (payloads) under the
artifacts location's ``dry_runs`` (``$CHT_BRIDGE_ARTIFACTS``, e.g. s3://, else
``$AIRFLOW_HOME/cht_bridge/dry_runs``), and the CSV files dropped for the reverse pipelines once
they have been read whole. Each goes after its own number of days; the ledgers themselves (ids,
hashes, statuses, reasons) stay, since they answer "what became of record R".

Every step counts what it removes, per pipeline, and a dry run counts the same without removing:
counts only, never a name, a file's content or a row's values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cht_bridge.errors import ConfigError, ParamError

if TYPE_CHECKING:
    from cht_bridge.reverse.model import ReversePipeline

log = logging.getLogger(__name__)

#: Each setting: its Param name, the environment variable that sets its default, the default.
SETTINGS = {
    "retention_days": ("CHT_BRIDGE_RETENTION_DAYS", 30),  # the record of a done or skipped inbound row
    "dry_run_days": ("CHT_BRIDGE_DRY_RUN_DAYS", 7),  # a dry-run file
    "csv_days": ("CHT_BRIDGE_CSV_DAYS", 7),  # a CSV drop file already read whole
}


def default_days(name: str) -> int:
    """A setting's default: its environment variable if set, else the documented default."""
    variable, default = SETTINGS[name]
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ParamError(f"{variable} must be a whole number of days (0 or more), not {value!r}")
    return int(value)


@dataclass
class Report:
    """What one housekeeping run removed (or, in a dry run, would remove): counts only."""

    dry_run: bool
    records_erased: dict[str, int] = field(default_factory=dict)  # pipeline -> inbound rows
    csv_files: dict[str, int] = field(default_factory=dict)  # pipeline -> files
    label_people_erased: int = 0  # reviewers' answers whose list row's person fields were dropped
    dry_run_files: int = 0
    unreadable_pipelines: int = 0  # reverse pipeline files that failed their checks: skipped

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "records_erased": sum(self.records_erased.values()),
            "records_erased_by_pipeline": dict(sorted(self.records_erased.items())),
            "label_people_erased": self.label_people_erased,
            "csv_files_deleted": sum(self.csv_files.values()),
            "csv_files_by_pipeline": dict(sorted(self.csv_files.items())),
            "dry_run_files_deleted": self.dry_run_files,
            "unreadable_pipelines": self.unreadable_pipelines,
        }


def older(files: Iterable[Path], before: datetime) -> list[Path]:
    """The files last changed before ``before`` (a file dropped or rewritten later is younger)."""
    cutoff = before.timestamp()
    return [p for p in files if p.is_file() and p.stat().st_mtime < cutoff]


def remove(files: list[Path], dry_run: bool) -> int:
    """Delete ``files`` (none in a dry run); a file already gone counts as removed by someone else."""
    if dry_run:
        return len(files)
    removed = 0
    for path in files:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


#: Dry-run files one run deletes at most (the rest go the next day), and entries it looks at at most.
MAX_DRY_RUN_FILES = 10_000
MAX_DRY_RUN_ENTRIES = 100_000


def clean_dry_runs(
    root: Any,
    now: datetime,
    days: int,
    dry_run: bool,
    limit: int = MAX_DRY_RUN_FILES,
    examine: int = MAX_DRY_RUN_ENTRIES,
) -> int:
    """Dry-run files older than ``days`` under ``root/dry_runs``, at most ``limit`` per run.

    ``root`` is where the dry runs write: ``storage.artifacts_root`` (a local path, or an
    ObjectStoragePath such as ``s3://`` every worker writes to), so the age is the object's
    modification time and a file is deleted through the same store. At most ``examine`` entries
    are looked at, so a huge bucket cannot hold the task. On the local disk the emptied pipeline
    folders go too (an object store has no empty folders).
    """
    from cht_bridge.storage import is_local, local_path

    folder = root / "dry_runs"
    if not folder.is_dir():
        return 0
    local = is_local(folder)

    def linked(entry: Any) -> bool:
        # A symlink someone put there is not ours: following it would delete files elsewhere.
        return local and local_path(entry).is_symlink()

    cutoff = (now - timedelta(days=days)).timestamp()
    old: list[Any] = []
    seen = 0
    for sub in folder.iterdir():
        if linked(sub) or not sub.is_dir():
            continue
        for path in sub.iterdir():
            seen += 1
            if len(old) >= limit or seen > examine:
                break
            mtime = path.stat().st_mtime if path.is_file() and not linked(path) else None
            if mtime is not None and mtime < cutoff:
                old.append(path)
        if len(old) >= limit or seen > examine:
            log.warning(
                "housekeeping: dry-run files past %d looked at or %d to delete are left to the next run", examine, limit
            )
            break
    removed = remove(old, dry_run)
    if not dry_run and local:
        for sub in local_path(folder).iterdir():
            if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
                sub.rmdir()
    return removed


def clean_reverse(pipelines: list[ReversePipeline], now: datetime, settings: dict[str, int], report: Report) -> None:
    """Erase finished rows' records and delete read CSV files, for each state store in use once."""
    from cht_bridge.hooks import open_state_store
    from cht_bridge.hooks.source import open_source
    from cht_bridge.hooks.state import STATE_CONN_ENV
    from cht_bridge.state.inbound import InboundLedger
    from cht_bridge.state.matching import MatchingStore

    by_store: dict[str | None, list[ReversePipeline]] = {}
    for pipeline in pipelines:
        by_store.setdefault(pipeline.state_conn_id or os.environ.get(STATE_CONN_ENV), []).append(pipeline)
    for conn_id, members in by_store.items():
        store = open_state_store(conn_id)
        try:
            ledger = InboundLedger(store)
            # every pipeline of this store, also those whose file is gone
            erased = ledger.erase_records(now - timedelta(days=settings["retention_days"]), dry_run=report.dry_run)
            for name, n in erased.items():
                report.records_erased[name] = report.records_erased.get(name, 0) + n
            # a reviewer's answer keeps the list row's person fields for training until the same retention
            report.label_people_erased += MatchingStore(store).erase_people(
                now - timedelta(days=settings["retention_days"]), dry_run=report.dry_run
            )
            for pipeline in (p for p in members if p.source.type == "csv"):
                try:
                    source = open_source(pipeline.source)
                except ConfigError as exc:  # a local folder under a distributed executor: its run says so
                    log.warning("housekeeping: %s: CSV folder left alone: %s", pipeline.name, exc)
                    continue
                read = source.processed(ledger.checkpoint(pipeline.name))
                old = older(read, now - timedelta(days=settings["csv_days"]))
                report.csv_files[pipeline.name] = remove(old, report.dry_run)
        finally:
            store.close()


def housekeeping(
    reverse_folder: Path, artifacts: Any, now: datetime, settings: dict[str, int], dry_run: bool
) -> Report:
    """One run over every reverse pipeline file in ``reverse_folder`` and the dry-run files under
    ``artifacts`` (``storage.artifacts_root``: where the dry runs write, local or an object store)."""
    from cht_bridge.reverse.loader import load_reverse_pipeline

    report = Report(dry_run=dry_run)
    pipelines: list[ReversePipeline] = []
    for path in sorted(Path(reverse_folder).glob("*.y*ml")):
        try:
            pipelines.append(load_reverse_pipeline(path))
        except ConfigError:
            report.unreadable_pipelines += 1
            log.warning("housekeeping: %s fails its checks; its CSV folder is left alone", path.name)
    clean_reverse(pipelines, now, settings, report)
    report.dry_run_files = clean_dry_runs(artifacts, now, settings["dry_run_days"], dry_run)
    return report
