"""The contract every destination keeps: send a list of payloads, say what became of each.

Like ``requests``' ``BaseAdapter``, it is two methods, so the orchestration never knows which
system it talks to and a test can put any destination in its place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Delivery:
    """One payload to send: its JSON text exactly as mapped, and its idempotency key."""

    doc_id: str
    body: str
    key: str


@dataclass(frozen=True)
class Result:
    """What the destination answered for one payload."""

    doc_id: str
    ok: bool
    status: int | None = None
    destination_id: str | None = None
    error: str | None = None


class Destination(Protocol):
    """Sends payloads.

    ``send`` returns one ``Result`` per delivery, in order. It raises ``AuthError`` when the
    credentials are refused and ``TransportError`` when the destination cannot be reached;
    both mean nothing in the call may be counted as handled.
    """

    def send(self, deliveries: list[Delivery]) -> list[Result]: ...

    def close(self) -> None: ...
