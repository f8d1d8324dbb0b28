"""CHT Bridge pools: an Airflow DAG that creates the per-Connection pools the pipeline files need.

Only when per-Connection pools are on (``CHT_BRIDGE_CONNECTION_POOLS``, ``cht_bridge.pools``): a
pipeline file on a new Connection then gets its pool within minutes, without a restart. It reads
``CHT_BRIDGE_PIPELINES`` and ``CHT_BRIDGE_REVERSE_PIPELINES`` as the pipeline DAG files do.
"""

import os
from pathlib import Path

from cht_bridge.dag_factory import build_pools_dag
from cht_bridge.pools import enabled

INCLUDE = Path(__file__).resolve().parent.parent / "include"
PIPELINES = Path(os.environ.get("CHT_BRIDGE_PIPELINES", INCLUDE / "pipelines"))
REVERSE = Path(os.environ.get("CHT_BRIDGE_REVERSE_PIPELINES", INCLUDE / "reverse"))

if enabled():
    cht_bridge_pools = build_pools_dag(PIPELINES, REVERSE)
