"""A destination whose every send holds one of its Connection's send slots.

With per-Connection limits on (``cht_bridge.pools``), the task opening a destination from its
Airflow Connection (``sync.resources``; the DHIS2 aggregate poster and a reverse pipeline's writes
to CHT do the same with ``send_slots``) wraps it here, so each ``send`` (one batch) waits for a
slot of the destination Connection in the state store (``state/send_slots.py``) and gives it back
when the answer is in. The destination itself never knows: every kind is limited alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

WAIT_ENV = "CHT_BRIDGE_SEND_WAIT_SECONDS"


def send_slots(store: Any, conn_id: str, environ: Mapping[str, str] = os.environ) -> Any:
    """``conn_id``'s send slots in ``store`` (``SendSlots``) when per-Connection limits are on, else None.

    As many slots as its pool would have (``pools.pool_slots``); a send waits for one at most
    ``CHT_BRIDGE_SEND_WAIT_SECONDS`` (default 300).
    """
    from cht_bridge import pools
    from cht_bridge.state.send_slots import WAIT_S, SendSlots

    if not pools.enabled(environ):
        return None
    raw = environ.get(WAIT_ENV, "").strip()
    try:
        wait_s = float(raw) if raw else WAIT_S
    except ValueError:
        wait_s = -1.0
    if not 0 < wait_s <= 86400:
        from cht_bridge.errors import SettingError

        raise SettingError(WAIT_ENV, f"'{raw}' is not a number of seconds between 0 and 86400")
    return SendSlots(store.engine, conn_id, pools.pool_slots(conn_id, environ), wait_s=wait_s)


class GatedDestination:
    """``destination`` with each non-empty ``send`` inside one of ``slots``' holds; the rest passes through."""

    def __init__(self, destination: Any, slots: Any) -> None:
        self.destination = destination
        self.slots = slots

    def send(self, deliveries: list[Any]) -> list[Any]:
        if not deliveries:
            return self.destination.send(deliveries)
        with self.slots.held():
            return self.destination.send(deliveries)

    def __getattr__(self, name: str) -> Any:  # check, deletion, retries, close, attach, budget_left…
        return getattr(self.destination, name)


def gated(destination: Any, store: Any, conn_id: str) -> Any:
    """``destination`` behind ``conn_id``'s send slots when per-Connection limits are on, else itself."""
    slots = send_slots(store, conn_id)
    return destination if slots is None else GatedDestination(destination, slots)
