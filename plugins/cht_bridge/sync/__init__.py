"""The sync run that ties source, mapping, destination and state together."""

from cht_bridge.sync.dry_run import DryRun
from cht_bridge.sync.run import RunSummary, Window, replay_documents, run_pipeline

__all__ = ["DryRun", "RunSummary", "Window", "replay_documents", "run_pipeline"]
