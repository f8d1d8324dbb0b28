"""The sync run that ties source, mapping, destination and state together."""

from cht_bridge.sync.run import RunSummary, run_pipeline

__all__ = ["RunSummary", "run_pipeline"]
