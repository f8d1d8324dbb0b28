"""``cht_bridge_reconcile``: does DHIS2 still hold what CHT says? One DAG for every aggregate pipeline.

Triggered by hand (or on its own monthly schedule, for last month) with the Params ``pipeline``,
``start``/``end``, ``repost`` and ``folder``; it writes a CSV and an HTML report of every
difference and logs the totals (README, "DHIS2 aggregates and reconciliation"). It reads the
pipeline files of ``CHT_BRIDGE_PIPELINES`` (as ``cht_bridge_pipelines.py`` does), at parse time
only to list the aggregate pipelines' names.
"""

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG

from cht_bridge.config import load_pipeline
from cht_bridge.config.kinds.dhis2_aggregate import is_aggregate
from cht_bridge.config.kinds.dhis2_tracker import is_tracker
from cht_bridge.dag_factory import BROKEN_START, DEFAULT_ARGS
from cht_bridge.errors import ConfigError
from cht_bridge.operators.reconcile import ChtReconcileOperator, reconcile_params

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "include" / "pipelines"
PIPELINES = Path(os.environ.get("CHT_BRIDGE_PIPELINES", DEFAULT_FOLDER))


def _aggregate_pipelines(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.glob("*.y*ml")):
        try:
            pipeline = load_pipeline(path)
        except ConfigError:
            continue  # its own DAG shows the problem
        if is_aggregate(pipeline) or is_tracker(pipeline):  # tracker: events per org unit and month
            names.append(pipeline.name)
    return sorted(names)


with DAG(
    dag_id="cht_bridge_reconcile",
    description="Compare DHIS2 aggregate values with what CHT's reports give; report (and re-post) differences",
    schedule="0 6 2 * *",  # the 2nd of each month: last month, once late reports are in
    start_date=BROKEN_START,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["cht-bridge", "dhis2", "reconcile"],
    params=reconcile_params(_aggregate_pipelines(PIPELINES)),
    doc_md=(
        "### Reconcile DHIS2 aggregates with CHT\n"
        "For an aggregate pipeline and the periods of `start`..`end` (calendar days; default last month), "
        "recomputes every data value from CHT and reads what DHIS2 holds (`GET /api/dataValueSets`). Writes a "
        "CSV and an HTML report of every difference (missing in DHIS2, not in CHT, different) to `folder` and "
        "logs the totals. With `repost`, the periods that differ are posted again from CHT."
    ),
) as cht_bridge_reconcile:
    ChtReconcileOperator(task_id="reconcile", pipelines_folder=str(PIPELINES.resolve()))
