"""The state store: per-pipeline checkpoints and the delivery ledger."""

from cht_bridge.state.store import (
    CLOSED,
    DEAD,
    DELETE,
    DELETED,
    DELIVERED,
    FAILED,
    KEEP,
    UPSERT,
    LedgerState,
    Outcome,
    StateStore,
)

__all__ = [
    "CLOSED",
    "DEAD",
    "DELETE",
    "DELETED",
    "DELIVERED",
    "FAILED",
    "KEEP",
    "UPSERT",
    "LedgerState",
    "Outcome",
    "StateStore",
]
