"""CHT Bridge housekeeping: one daily Airflow DAG that removes patient data past its retention.

It reads the reverse pipeline files (``CHT_BRIDGE_REVERSE_PIPELINES``, as ``cht_bridge_reverse.py``
does) for their state stores and CSV folders. Defaults: ``CHT_BRIDGE_RETENTION_DAYS``,
``CHT_BRIDGE_DRY_RUN_DAYS``, ``CHT_BRIDGE_CSV_DAYS`` (README, "What is stored where").
"""

import os
from pathlib import Path

from cht_bridge.dag_factory import build_housekeeping_dag

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "include" / "reverse"
REVERSE = Path(os.environ.get("CHT_BRIDGE_REVERSE_PIPELINES", DEFAULT_FOLDER))

cht_bridge_housekeeping = build_housekeeping_dag(REVERSE)
