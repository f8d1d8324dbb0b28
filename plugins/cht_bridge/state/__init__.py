"""The state store: per-pipeline checkpoints and the delivery ledger."""

from cht_bridge.state.store import DELIVERED, FAILED, Outcome, StateStore

__all__ = ["DELIVERED", "FAILED", "Outcome", "StateStore"]
