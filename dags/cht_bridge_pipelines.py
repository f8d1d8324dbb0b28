"""CHT Bridge: one Airflow DAG per pipeline file in ``include/pipelines``.

Set ``CHT_BRIDGE_PIPELINES`` to read pipeline files from another folder. (Airflow's safe mode
only parses files that mention both "airflow" and "dag", as this docstring does.)
"""

import os
from pathlib import Path

from cht_bridge.dag_factory import build_dags

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "include" / "pipelines"
PIPELINES = Path(os.environ.get("CHT_BRIDGE_PIPELINES", DEFAULT_FOLDER))

globals().update(build_dags(PIPELINES))
