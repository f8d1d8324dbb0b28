"""The sync run that ties source, mapping, destination and state together.

``run.py`` runs the phases (``phases.py``: retry-pending, changes, backfill, replay) through one
pipelined loop; ``plan.py`` turns a mapped page into what to send and how to record it;
``summary.py`` counts and logs; ``dry_run.py`` collects what a dry run would send.
"""

from cht_bridge.sync.dry_run import DryRun
from cht_bridge.sync.phases import Backfill, Changes, Phase, Replay, RetryPending, Window
from cht_bridge.sync.run import RunContext, replay_documents, run_pipeline
from cht_bridge.sync.summary import RunSummary

__all__ = [
    "Backfill",
    "Changes",
    "DryRun",
    "Phase",
    "Replay",
    "RetryPending",
    "RunContext",
    "RunSummary",
    "Window",
    "replay_documents",
    "run_pipeline",
]
