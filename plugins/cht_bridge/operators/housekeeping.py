"""The housekeeping task: removes patient data past its retention, once a day.

Its settings are Params, so a manual run can try other values (or a dry run) from the Trigger
form; their defaults, which the daily run uses, come from environment variables
(``cht_bridge.housekeeping.SETTINGS``) read when the DAG file is parsed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, Param

from cht_bridge.housekeeping import SETTINGS, default_days

DESCRIPTIONS = {
    "retention_days": "Erase the record (names, phones) of inbound rows done or skipped this many days ago.",
    "dry_run_days": "Delete dry-run files (payloads) older than this many days.",
    "csv_days": "Delete CSV drop files already read whole and older than this many days.",
}


def housekeeping_params() -> dict[str, Param]:
    """Params of ``cht_bridge_housekeeping``; each default is its environment variable, else documented."""
    params = {
        name: Param(
            default_days(name), type=["null", "integer"], minimum=0,
            description=f"{DESCRIPTIONS[name]} Default: ${variable}, else {default}.",
        )
        for name, (variable, default) in SETTINGS.items()
    }  # fmt: skip
    params["dry_run"] = Param(
        False, type=["null", "boolean"], description="Count what would be removed; remove nothing. Default: off."
    )
    return params


class HousekeepingOperator(BaseOperator):
    """Erase finished inbound rows' records and delete old dry-run and read CSV files.

    :param reverse_folder: where the reverse pipeline files are (their state stores and CSV folders).
    """

    ui_color = "#f5f5f5"

    def __init__(self, *, reverse_folder: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reverse_folder = reverse_folder

    def execute(self, context: Any) -> dict[str, Any]:
        from pathlib import Path

        from cht_bridge.hooks import bridge_home
        from cht_bridge.housekeeping import housekeeping
        from cht_bridge.operators.resources import failing_plainly
        from cht_bridge.storage import artifacts_root

        params = context.get("params") or {}
        with failing_plainly():  # a bad setting fails at once, without retries
            settings = {n: default_days(n) if params.get(n) is None else int(params[n]) for n in SETTINGS}
            dry_run = bool(params.get("dry_run"))
            artifacts = artifacts_root(bridge_home())  # where dry runs write: local, or s3:// etc.
            report = housekeeping(Path(self.reverse_folder), artifacts, datetime.now(UTC), settings, dry_run)
        result = {**report.as_dict(), **settings}
        self.log.info(
            "housekeeping%s: %d inbound records erased %s, %d reviewers' answers' person fields erased, "
            "%d CSV drop files deleted %s, %d dry-run files deleted (retention_days=%d csv_days=%d dry_run_days=%d)",
            " (dry run: nothing removed, counts are what would be)" if dry_run else "",
            result["records_erased"], result["records_erased_by_pipeline"], result["label_people_erased"],
            result["csv_files_deleted"],
            result["csv_files_by_pipeline"], result["dry_run_files_deleted"], settings["retention_days"],
            settings["csv_days"], settings["dry_run_days"],
        )  # fmt: skip
        return result
