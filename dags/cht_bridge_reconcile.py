"""``cht_bridge_reconcile``: does DHIS2 still hold what CHT says? One DAG for every aggregate and tracker pipeline.

Its monthly scheduled run compares every one of them for last month (the ``pipeline`` Param left
empty); triggered by hand, the Params ``pipeline`` (one, or empty for all),
``start``/``end``, ``repost`` and ``folder``; it writes a CSV and an HTML report of every
difference and logs the totals (README, "DHIS2 aggregates and reconciliation"). It reads the
pipeline files of ``CHT_BRIDGE_PIPELINES`` (as ``cht_bridge_pipelines.py`` does), at parse time
only to list the aggregate and tracker pipelines' names.
"""

import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG

from cht_bridge.dag_factory import BROKEN_START, DEFAULT_ARGS
from cht_bridge.operators.reconcile import ChtReconcileOperator, reconcile_params, reconciled_pipelines

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "include" / "pipelines"
PIPELINES = Path(os.environ.get("CHT_BRIDGE_PIPELINES", DEFAULT_FOLDER))


with DAG(
    dag_id="cht_bridge_reconcile",
    description="Compare DHIS2 aggregate values with what CHT's reports give; report (and re-post) differences",
    schedule="0 6 2 * *",  # the 2nd of each month: last month, once late reports are in
    start_date=BROKEN_START,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["cht-bridge", "dhis2", "reconcile"],
    params=reconcile_params([p.name for p in reconciled_pipelines(PIPELINES)]),
    doc_md=(
        "### Reconcile DHIS2 aggregates with CHT\n"
        "For every aggregate and tracker pipeline (or the one the `pipeline` Param names) and the periods of "
        "`start`..`end` (calendar days; default last month), "
        "recomputes every data value from CHT and reads what DHIS2 holds (`GET /api/dataValueSets`). Writes a "
        "CSV and an HTML report of every difference (missing in DHIS2, not in CHT, different) to `folder` and "
        "logs the totals. With `repost`, the periods that differ are posted again from CHT."
    ),
) as cht_bridge_reconcile:
    ChtReconcileOperator(task_id="reconcile", pipelines_folder=str(PIPELINES.resolve()))
