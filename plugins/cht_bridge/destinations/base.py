"""The contract every destination keeps: send a list of payloads, say what became of each.

Like ``requests``' ``BaseAdapter``, it is two methods, so the orchestration never knows which
system it talks to and a test can put any destination in its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Delivery:
    """One payload to send: its JSON text exactly as mapped, and its idempotency key.

    ``body`` is ``None`` for a request without one (a DELETE). ``method`` and ``path`` replace the
    destination's for this delivery alone, e.g. to delete or void the record of a deleted CHT
    document; ``path`` starts with ``/`` and is joined to the connection's base URL.
    """

    doc_id: str
    body: str | None
    key: str
    method: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Result:
    """What the destination answered for one payload.

    When ``ok`` is False, ``retryable`` tells a later run to try again (the destination was down,
    busy or slow) rather than dead-lettering the payload (the destination refused it, and would
    again). ``attempts`` is how many requests carried the payload in this call.
    """

    doc_id: str
    ok: bool
    status: int | None = None
    destination_id: str | None = None
    error: str | None = None
    retryable: bool = False
    attempts: int = 1


class Destination(Protocol):
    """Sends payloads.

    ``send`` returns one ``Result`` per delivery, in order, retrying what may succeed later
    within the call. It raises ``AuthError`` when the credentials are refused (nothing in the call
    may be counted as handled) and ``CircuitOpenError`` when the destination failed too often in a
    row (its ``results`` are the deliveries that finished; the rest stay pending).
    """

    def send(self, deliveries: list[Delivery]) -> list[Result]: ...

    def close(self) -> None: ...
