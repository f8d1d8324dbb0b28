"""CHT Bridge matching: train the patient matcher on this deployment's own people, monthly and
on demand (trigger the DAG), for reverse pipelines with ``match.model: learned``.

Reads ``CHT_BRIDGE_REVERSE_PIPELINES`` as ``cht_bridge_reverse.py`` does. Each state store keeps
its newest models with their metrics and reports; the reverse DAGs use the newest that passed its
checks, else the shipped model (README, "Matching that learns").
"""

import os
from pathlib import Path

from airflow.sdk import DAG

from cht_bridge.dag_factory import BROKEN_START, DEFAULT_ARGS
from cht_bridge.operators.matching_train import MatchingTrainOperator

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "include" / "reverse"
REVERSE = Path(os.environ.get("CHT_BRIDGE_REVERSE_PIPELINES", DEFAULT_FOLDER))

with DAG(
    dag_id="cht_bridge_matching_train",
    description="Train the patient matcher on the CHT persons, list rows and review answers of the reverse pipelines",
    schedule="@monthly",
    start_date=BROKEN_START,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    tags=["cht-bridge", "matching"],
    doc_md=(
        "### Matching that learns\n"
        "Monthly, or when triggered: for the reverse pipelines with `match.model: learned`, reads the CHT "
        "persons under their places, the list rows still in the ledger and the reviewers' answers, trains "
        "a model (Splink u sampling, EM, labels), chooses its thresholds and checks it. The newest model "
        "that passed is what the reverse DAGs use; the report is in the state store and in "
        "`$AIRFLOW_HOME/cht_bridge/models/`."
    ),
) as cht_bridge_matching_train:
    MatchingTrainOperator(task_id="train", reverse_folder=str(REVERSE.resolve()))
