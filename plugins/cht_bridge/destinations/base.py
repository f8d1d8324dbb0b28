"""The contract every destination kind keeps, so the sync run never knows which system it talks to.

A kind turns mapped payloads into its own requests (one payload a request, a JSON array, or a
kind-specific bulk document such as a DHIS2 ``dataValueSets`` or a FHIR transaction Bundle),
sends them, and answers with one ``Result`` per document: delivered (with the destination's id
for it), retryable, or refused (with the destination's reason), read out of a bulk answer's
per-record entries (DHIS2's import summary, a Bundle's ``entry.response``) where it has them.
``check`` is the pre-flight run once per run before anything is sent (DHIS2: do the data
elements and org units exist?); ``deletion`` is the request for a document deleted in CHT.

Like ``requests``' ``BaseAdapter``, it is a few methods, so a test can put any destination in
the run's place. ``BaseDestination`` gives the defaults a kind may keep.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import quote

DELIVERED, RETRYABLE, REFUSED = "delivered", "retryable", "refused"


@dataclass(slots=True)
class Delivery:
    """One payload to send: its JSON text exactly as mapped, and its idempotency key.

    ``body`` is ``None`` for a request without one (a DELETE). ``method`` and ``path`` replace the
    destination's for this delivery alone, e.g. to delete or void the record of a deleted CHT
    document; ``path`` starts with ``/`` and is joined to the connection's base URL.

    A value (``dataclasses.replace`` makes a changed copy), like ``Result``; neither is declared
    frozen, because one of each is made per document sent, and a frozen dataclass's ``__init__``
    costs two to three times as much.
    """

    doc_id: str
    body: str | None
    key: str
    method: str | None = None
    path: str | None = None


@dataclass(slots=True)
class Result:
    """What the destination answered for one payload.

    When ``ok`` is False, ``retryable`` tells a later run to try again (the destination was down,
    busy or slow) rather than dead-lettering the payload (the destination refused it, and would
    again). ``attempts`` is how many requests carried the payload in this call. ``deferred``: not
    sent because the destination's request budget is spent (RapidPro); the ledger keeps it pending
    without counting a failure, and the next run sends it.
    """

    doc_id: str
    ok: bool
    status: int | None = None
    destination_id: str | None = None
    error: str | None = None
    retryable: bool = False
    attempts: int = 1
    deferred: bool = False

    @property
    def outcome(self) -> Literal["delivered", "retryable", "refused"]:
        """The three answers the ledger knows: delivered, worth trying again later, or refused for good."""
        if self.ok:
            return DELIVERED
        return RETRYABLE if self.retryable else REFUSED


class Destination(Protocol):
    """Sends payloads.

    ``check`` raises ``PreflightError`` (with the destination's reason) when the run cannot
    succeed, before anything is sent; ``AuthError`` when the credentials are refused.
    ``send`` returns one ``Result`` per delivery, in order, retrying what may succeed later
    within the call. It raises ``AuthError`` when the credentials are refused (nothing in the call
    may be counted as handled) and ``CircuitOpenError`` when the destination failed too often in a
    row (its ``results`` are the deliveries that finished; the rest stay pending). ``retries``
    counts requests repeated so far, for the run's summary.
    """

    retries: int

    def check(self) -> None: ...

    def send(self, deliveries: list[Delivery]) -> list[Result]: ...

    def deletion(self, doc_id: str, destination_id: str | None, key: str, rules: Any) -> Delivery: ...

    def close(self) -> None: ...


class Ledger(Protocol):
    """What a destination may ask the run's delivery ledger (``StateStore.for_destination`` answers it):
    the records delivered to the same Connection, and what this pipeline last delivered of a document."""

    def delivered_destination_ids(self, destination_ids: Iterable[str]) -> set[str]: ...

    def last_delivered(self, doc_ids: Iterable[str]) -> dict[str, str]: ...


class BaseDestination:
    """Defaults for a destination kind: no pre-flight, deletes as the pipeline's ``deletes`` block says.

    ``path`` is the kind's default path (a deleted document's request defaults to ``path/{doc_id}``).
    ``ledger`` is the run's delivery ledger once ``use_ledger`` gave it (``sync.resources`` does),
    for a kind whose payloads refer to records delivered before (a FHIR reference to a Patient
    another pipeline sent); None when the destination was opened without one.

    ``reads_ledger_while_sending``: does ``send`` read the ledger or the state store (a ledger, an
    ``attach``ed store)? Then the run sends a page only once the page before it is recorded. A kind
    that reads neither says False, and the run sends a page while the one before it is recorded
    (``sync/run.py`` ``_process``). True by default, so a new kind is safe until it says otherwise.
    """

    path: str = "/"
    retries: int = 0
    ledger: Ledger | None = None
    reads_ledger_while_sending: bool = True

    def use_ledger(self, ledger: Ledger) -> None:
        """Let the destination ask the delivery ledger what was delivered before."""
        self.ledger = ledger

    def check(self) -> None:
        """Nothing to check before sending; a kind that can prove a run will fail says so here."""

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        raise NotImplementedError

    def deletion(self, doc_id: str, destination_id: str | None, key: str, rules: Any) -> Delivery:
        """The request for a document deleted in CHT: ``rules`` is the pipeline's ``deletes`` block."""
        fill = {"doc_id": doc_id, "destination_id": destination_id or doc_id}
        in_path = {name: quote(value, safe="") for name, value in fill.items()}  # an id may hold '/' or '?'
        path = fill_template(rules.path or self.path.rstrip("/") + "/{doc_id}", in_path)
        body = None if rules.body is None else json.dumps(fill_template(rules.body, fill))
        return Delivery(doc_id, body, key, method=rules.method, path=path)

    def close(self) -> None:
        """Nothing held open."""


def keep_alive(session: Any, connections: int, content_type: str) -> None:
    """Give ``session`` a pool of ``connections`` keep-alive connections and a JSON content type."""
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(connections, 1))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Content-Type": content_type, "Accept": content_type})


def fill_template(template: Any, values: dict[str, str]) -> Any:
    """``{doc_id}`` and ``{destination_id}`` replaced in every string of a JSON template."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, list):
        return [fill_template(v, values) for v in template]
    if isinstance(template, dict):
        return {k: fill_template(v, values) for k, v in template.items()}
    return template
