"""CHT Bridge reverse pipelines: one Airflow DAG per file in ``include/reverse``.

Each DAG reads a list from an EMR or registry (FHIR search, JSON REST or CSV files), matches the
people to CHT contacts and creates CHT reports that give health workers tasks. Set
``CHT_BRIDGE_REVERSE_PIPELINES`` to read the files from another folder.
"""

import os
from pathlib import Path

from cht_bridge.dag_factory import build_reverse_dags

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "include" / "reverse"
PIPELINES = Path(os.environ.get("CHT_BRIDGE_REVERSE_PIPELINES", DEFAULT_FOLDER))

globals().update(build_reverse_dags(PIPELINES))
