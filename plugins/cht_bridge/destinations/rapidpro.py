"""RapidPro / TextIt (API v2): contacts upserted by URN, and flow starts, within a request budget.

``destination.rapidpro.action`` says what a pipeline does with each mapped document:

* ``contact``: ``POST /api/v2/contacts.json?urn=tel:+2547…`` with ``name``, ``language``,
  ``fields`` and ``groups`` from the mapping: RapidPro's upsert (201 created, 200 updated), so a
  repeat is harmless. The mapping gives ``phone`` (read into E.164 by ``matching.phones``, the
  matcher's own rules, under ``destination.rapidpro.region``) or a whole ``urn``.
* ``flow_start``: documents with the same ``flow`` and ``params`` share a ``POST
  /api/v2/flow_starts.json`` of up to 100 URNs and 100 contacts (the API's limits); ``urns``
  (``tel:`` numbers read like phones), ``phone`` or ``contacts`` say who; ``params`` (or CHT's
  older name ``extra``) reach the flow as ``@trigger.params``.

**A flow is started once per document and payload, through crashes.** The API has no idempotency
key: a start posted twice starts the flow twice. The delivery ledger skips a payload once it is
recorded as delivered, but a worker killed after RapidPro accepted a start and before the ledger
write would, on the next run, post it again. So each start is recorded in the state store *before*
it is posted (``state.rapidpro``), under a reference of ours that the start also carries in its
``params`` (``cht_bridge_start``), and the start's ``uuid`` is recorded as soon as RapidPro
answers. A document whose key has a recorded start is never posted again: with a ``uuid`` it is
delivered as is; without one (the answer was lost) the start is looked up by its reference in
``GET /api/v2/flow_starts.json`` (from just before it was intended) and posted only if RapidPro
has no such start. The reference in ``params``, rather than the start's contacts, is what is
looked up: a start by URN lists no URNs when read back, and the same contacts may rightly be in
other starts. A retried POST after no answer or a 5xx is looked up the same way first; after a
429 it is not (RapidPro made nothing).

**Rate limits.** A 429's ``Retry-After`` is honoured (up to ``delivery.max_backoff_seconds``;
longer, and the document is left to the next run). Before that, every request is taken from a
budget per endpoint group and hour (``destination.rapidpro.budget``), counted in the state store
so it spans runs, tasks and pipelines on the same Connection: a backlog is sent over as many runs
as the budget needs instead of tripping the workspace's limit for CHT's own gateway. Documents
past the budget *wait*: the ledger keeps them pending without counting a failure, the next run
sends them first, and the run's summary says how many wait and how much budget is left.

Refusals are read as DRF field errors (``{"urns": {"0": ["…"]}}``) and kept as field names and
messages, with URNs and numbers masked: a reason is stored and logged, and must not hold a phone.
A start of several documents refused for one of them (an unknown contact) is split in halves until
the one at fault is found; refused for what they share (the flow, the params), it is not.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import requests

from cht_bridge.destinations.base import BaseDestination, Delivery, Result
from cht_bridge.errors import CircuitOpenError
from cht_bridge.http.origin import has_userinfo, origin
from cht_bridge.http.read import ANSWER_LIMITS, AnswerLimits, Unanswered, answer_or_reason
from cht_bridge.http.retry import CircuitBreaker, RetryPolicy, backoff, classify, delivery_policy, retry_after
from cht_bridge.http.urls import safe_url

log = logging.getLogger(__name__)

MAX_PER_START = 100  # urns, and contacts, per flow start
START_REF = "cht_bridge_start"  # the params key carrying our reference of a start
LOOKUP_MARGIN = timedelta(minutes=2)  # read starts modified from this long before one was intended
KEEP_STARTS = timedelta(days=30)  # started rows older than this are dropped (the delivery ledger has them)
CONTACT_KEYS = {"phone", "urn", "name", "language", "fields", "groups"}
START_KEYS = {"flow", "urns", "phone", "contacts", "params", "extra", "restart_participants", "exclude_active"}
GROUPS = {"contacts": "contacts", "flow_starts": "flow_starts"}  # budget group of each endpoint
NOT_A_CONTACT = (
    "HTTP {status} without the contact (no JSON with its uuid): is the Connection's host RapidPro's API "
    "(not a login page or a proxy)?"
)
NO_DELETES = "RapidPro pipelines send no deletes: set deletes: ignore (contacts and flow starts stay in RapidPro)"
_MASK = re.compile(r"(?:tel|whatsapp|mailto|telegram|ext):\S+|\+?\d[\d\s-]{5,}\d")


def waiting_reason(group: str, per_hour: int) -> str:
    return (
        f"waiting for the request budget of '{group}' ({per_hour}/hour, destination.rapidpro.budget): "
        "the next run sends it; not a failure"
    )


@dataclass
class _Reply:
    """One request's end: the JSON answer, or why not; ``wait`` is a Retry-After past our patience."""

    status: int | None
    body: Any = None
    error: str | None = None
    retryable: bool = False
    waiting: bool = False  # the budget is spent: this request was not sent
    sent_nothing: bool = False  # no request of this call was sent (the budget was spent before the first)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.waiting


@dataclass
class _Start:
    """The documents going into one flow start, and the request's body without our reference."""

    body: dict[str, Any]
    items: list[tuple[Delivery, list[str], list[str]]] = field(default_factory=list)  # (delivery, urns, contacts)

    def fits(self, urns: list[str], contacts: list[str]) -> bool:
        return (
            sum(len(u) for _, u, _ in self.items) + len(urns) <= MAX_PER_START
            and sum(len(c) for _, _, c in self.items) + len(contacts) <= MAX_PER_START
        )


class _Budget:
    """Requests of one endpoint group this destination may still send, reserved from the store."""

    def __init__(self, state: Any, key: str, per_hour: int) -> None:
        self.state, self.key, self.per_hour = state, key, per_hour
        self.reserved = 0
        self.spent_out = False  # the store had none left in this call: ask again in the next one
        self._taken: dict[datetime, int] = {}  # when each reservation was counted, to give back there

    def reserve(self, n: int) -> None:
        if n > self.reserved and not self.spent_out:
            now = datetime.now(UTC)
            granted = self.state.take(self.key, n - self.reserved, self.per_hour, now)
            self.reserved += granted
            self._taken[now] = granted
            self.spent_out = granted == 0

    def spend(self) -> bool:
        if self.reserved == 0:
            self.reserve(1)
        if self.reserved == 0:
            return False
        self.reserved -= 1
        return True

    def release(self) -> None:
        """Give back what was reserved and not sent (at the end of each ``send``), to the minutes it
        was counted in, latest first, so the sliding hour stays exact."""
        left = self.reserved
        for when in sorted(self._taken, reverse=True):
            back = min(left, self._taken[when])
            self.state.give_back(self.key, back, when)
            left -= back
        self.reserved, self._taken, self.spent_out = 0, {}, False

    def left(self) -> int:
        return max(0, self.per_hour - self.state.used(self.key))


class _BreakerOpen(Exception):
    pass


class RapidProDestination(BaseDestination):
    """Contacts or flow starts on a RapidPro workspace; ``attach`` gives it the state store first."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        settings: Any,
        *,
        conn_id: str,
        path: str = "/api/v2",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limits: AnswerLimits = ANSWER_LIMITS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.api = self.base_url + "/" + path.strip("/") + "/"
        self.settings = settings
        self.conn_id = conn_id
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.limits = limits
        self._sleep = sleep
        self._rng = random.Random()
        self._session = session
        session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        self._breaker = CircuitBreaker(self.retry.breaker_after)
        self._state: Any = None
        self._pipeline = ""
        self._budgets: dict[str, _Budget] = {}
        self.requests = 0
        self.retries = 0

    @classmethod
    def configured(cls, session: requests.Session, base_url: str, destination: Any, delivery: Any = None) -> Self:
        retry = delivery_policy(delivery)
        return cls(
            session, base_url, destination.settings, conn_id=destination.conn_id, path=destination.path,
            timeout=destination.timeout, retry=retry,
        )  # fmt: skip

    # -- the run's state ------------------------------------------------------------------------

    def attach(self, store: Any, pipeline: str) -> None:
        """The state store of the run (budget and recorded starts) and the pipeline's name."""
        from cht_bridge.state.rapidpro import RapidProState

        self._state = RapidProState(store)
        self._pipeline = pipeline
        self._budgets = {
            group: _Budget(self._state, f"{self.conn_id}:{group}", self.settings.per_hour(group))
            for group in GROUPS.values()
        }
        self._state.prune(pipeline, KEEP_STARTS)

    @property
    def budget_left(self) -> dict[str, int] | None:
        """Requests per endpoint group the next run may send now (the hour slides: more free up)."""
        if self._state is None:
            return None
        try:
            return {group: budget.left() for group, budget in self._budgets.items()}
        except Exception:  # noqa: BLE001 - a summary detail must not hide the run's own error
            return None

    # -- sending --------------------------------------------------------------------------------

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        """One ``Result`` per delivery, in order; past the budget a result is ``deferred``."""
        if not deliveries:
            return []
        if self._state is None:
            raise RuntimeError("RapidProDestination.attach(store, pipeline) must be called before send")
        results: dict[int, Result] = {}
        for i, item in enumerate(deliveries):
            if item.method is not None or item.path is not None:  # a delete: RapidPro has nothing to delete
                results[i] = Result(item.doc_id, False, None, error=NO_DELETES, retryable=False, attempts=0)
        chosen = [d for i, d in enumerate(deliveries) if i not in results]
        positions = [i for i in range(len(deliveries)) if i not in results]
        found: dict[int, Result] = {}
        try:
            if self.settings.action == "contact":
                self._send_contacts(chosen, found)
            else:
                self._send_starts(chosen, found)
        except _BreakerOpen:
            results.update({positions[i]: r for i, r in found.items()})
            finished = [results[i] for i in sorted(results)]
            raise CircuitOpenError(self.conn_id, self._breaker.failures, self._breaker.last_error, finished) from None
        finally:
            for budget in self._budgets.values():
                budget.release()
        results.update({positions[i]: r for i, r in found.items()})
        return [results[i] for i in range(len(deliveries))]

    def _send_contacts(self, deliveries: list[Delivery], results: dict[int, Result]) -> None:
        budget = self._budgets["contacts"]
        budget.reserve(len(deliveries))
        for i, item in enumerate(deliveries):
            payload, problem = _payload(item, CONTACT_KEYS)
            urn = None
            if problem is None:
                urn, problem = self._contact_urn(payload)
            if problem is not None:
                results[i] = Result(item.doc_id, False, None, error=problem, retryable=False, attempts=0)
                continue
            body = {k: payload[k] for k in ("name", "language", "fields", "groups") if k in payload}
            reply = self._call("contacts", "POST", "contacts.json", params={"urn": urn}, body=body)
            if reply.ok and not (isinstance(reply.body, dict) and isinstance(reply.body.get("uuid"), str)):
                # A 2xx without the contact is not RapidPro's API answering (a proxy's login page, the
                # browsable docs of a wrong path): not delivered, and not worth repeating, since the
                # same request gets the same page until a person fixes the Connection's host.
                reply = _Reply(reply.status, error=NOT_A_CONTACT.format(status=reply.status), retryable=False)
            results[i] = self._result(item, reply, lambda b: b.get("uuid") if isinstance(b, dict) else None)

    def _contact_urn(self, payload: dict[str, Any]) -> tuple[str | None, str | None]:
        if payload.get("urn"):
            return self._urn(payload["urn"])
        if payload.get("phone"):
            return self._urn(f"tel:{payload['phone']}")
        return None, "the mapping gives neither phone nor urn: RapidPro contacts are upserted by URN"

    def _urn(self, value: Any) -> tuple[str | None, str | None]:
        """A URN as RapidPro wants it: ``tel:`` numbers in E.164, read as the matcher reads phones."""
        from cht_bridge.matching.phones import normalise_phone

        if not isinstance(value, str) or ":" not in value:
            return None, "a URN must be a string such as tel:+254712345678"
        scheme, _, path = value.partition(":")
        if scheme != "tel":
            return (value, None) if path.strip() else (None, f"an empty {scheme} URN")
        phone = normalise_phone(path, self.settings.region)
        if phone is None:
            return None, f"not a valid phone number (region {self.settings.region}, matching.phones rules)"
        return f"tel:{phone}", None

    # -- flow starts ----------------------------------------------------------------------------

    def _send_starts(self, deliveries: list[Delivery], results: dict[int, Result]) -> None:
        index = {id(d): i for i, d in enumerate(deliveries)}
        known = self._state.intended(self._pipeline, [d.key for d in deliveries])
        pending: list[tuple[Delivery, dict[str, Any], list[str], list[str]]] = []
        lost: dict[str, list[Delivery]] = {}  # start ref -> its documents, answer never recorded
        for item in deliveries:
            payload, problem = _payload(item, START_KEYS)
            urns: list[str] = []
            contacts: list[str] = []
            if problem is None:
                urns, contacts, problem = self._who(payload)
            if problem is None and not isinstance(payload.get("flow"), str):
                problem = "the mapping gives no flow (the flow's UUID)"
            if problem is not None:
                results[index[id(item)]] = Result(item.doc_id, False, None, error=problem, retryable=False, attempts=0)
            elif item.key in known and known[item.key][1]:
                start_uuid = known[item.key][1]
                results[index[id(item)]] = Result(item.doc_id, True, 201, destination_id=start_uuid, attempts=0)
            elif item.key in known:
                lost.setdefault(known[item.key][0], []).append(item)
                pending.append((item, payload, urns, contacts))
            else:
                pending.append((item, payload, urns, contacts))
        for ref, items in lost.items():
            intended_at = known[items[0].key][2]
            found = self._look_up(ref, intended_at)
            if found is None:  # not found: RapidPro made no such start
                self._state.forget(self._pipeline, ref)
                continue
            if found.ok:
                self._state.started(self._pipeline, ref, found.body["uuid"])
                log.info("destination '%s': start %s was made before; its uuid is recorded now", self.conn_id, ref)
            for item in items:
                results[index[id(item)]] = self._result(item, found, lambda b: b.get("uuid"))
        starts: list[_Start] = []
        open_starts: dict[str, _Start] = {}
        for item, payload, urns, contacts in pending:
            if index[id(item)] in results:
                continue
            body = self._start_body(payload)
            shared = json.dumps(body, sort_keys=True)
            start = open_starts.get(shared)
            if start is None or not start.fits(urns, contacts):
                start = open_starts[shared] = _Start(body)
                starts.append(start)
            start.items.append((item, urns, contacts))
        self._budgets["flow_starts"].reserve(len(starts))
        for start in starts:
            for item, result in self._start(start):
                results[index[id(item)]] = result

    def _who(self, payload: dict[str, Any]) -> tuple[list[str], list[str], str | None]:
        urns_given = payload.get("urns", [])
        if isinstance(urns_given, str):
            urns_given = [urns_given]
        if not isinstance(urns_given, list):
            return [], [], "urns must be a list of URNs"
        if payload.get("phone"):
            urns_given = [*urns_given, f"tel:{payload['phone']}"]
        urns = []
        for value in urns_given:
            urn, problem = self._urn(value)
            if problem is not None:
                return [], [], f"urns: {problem}"
            urns.append(urn)
        contacts = payload.get("contacts", [])
        if not isinstance(contacts, list) or not all(isinstance(c, str) and c for c in contacts):
            return [], [], "contacts must be a list of contact UUIDs"
        urns, contacts = list(dict.fromkeys(urns)), list(dict.fromkeys(contacts))
        if not urns and not contacts:
            return [], [], "the mapping gives no urns, phone or contacts: nobody to start the flow for"
        if len(urns) > MAX_PER_START or len(contacts) > MAX_PER_START:
            return [], [], f"more than {MAX_PER_START} urns or contacts in one document"
        return urns, contacts, None

    def _start_body(self, payload: dict[str, Any]) -> dict[str, Any]:
        params = payload.get("params", payload.get("extra")) or {}
        flags = {
            key: payload[key] if isinstance(payload.get(key), bool) else getattr(self.settings, key)
            for key in ("restart_participants", "exclude_active")
        }
        return {"flow": payload["flow"], "params": params, **flags}

    def _start(self, start: _Start) -> list[tuple[Delivery, Result]]:
        """Post one start (recorded first); a refusal that names a document's URN or contact is
        split in halves to find it."""
        ref = uuid.uuid4().hex
        intended_at = datetime.now(UTC)
        urns = [u for _, us, _ in start.items for u in us]
        contacts = [c for _, _, cs in start.items for c in cs]
        body = {**start.body, "params": {**(start.body["params"] or {}), START_REF: ref}}
        if urns:
            body["urns"] = list(dict.fromkeys(urns))
        if contacts:
            body["contacts"] = list(dict.fromkeys(contacts))
        if not isinstance(start.body["params"], dict):
            reply = _Reply(None, error="params must be a JSON object")
        else:
            self._state.intend(self._pipeline, ref, [(item.key, item.doc_id) for item, _, _ in start.items])
            reply = self._call(
                "flow_starts", "POST", "flow_starts.json", body=body,
                uncertain=lambda: self._look_up(ref, intended_at),
            )  # fmt: skip
        if reply.ok:
            start_uuid = reply.body.get("uuid") if isinstance(reply.body, dict) else None
            if not isinstance(start_uuid, str):
                reply = _Reply(reply.status, error="RapidPro answered a start without its uuid", retryable=False)
            else:
                self._state.started(self._pipeline, ref, start_uuid)
                return [(item, self._result(item, reply, lambda b: start_uuid)) for item, _, _ in start.items]
        if reply.sent_nothing or (reply.status is not None and 400 <= reply.status < 500):
            # Not posted, or refused (4xx): nothing was started, so the next try is a new start.
            # After no answer or a 5xx the record stays: the next run looks the start up first.
            self._state.forget(self._pipeline, ref)
        if (
            not reply.ok
            and not reply.retryable
            and reply.status == 400
            and len(start.items) > 1
            and _names_a_member(reply.body)
        ):
            half = len(start.items) // 2
            parts = [_Start(start.body, start.items[:half]), _Start(start.body, start.items[half:])]
            return [pair for part in parts for pair in self._start(part)]
        return [(item, self._result(item, reply, lambda b: None)) for item, _, _ in start.items]

    def _look_up(self, ref: str, intended_at: datetime) -> _Reply | None:
        """RapidPro's start carrying ``ref``: a reply whose ``body`` is ``{"uuid": …}``; ``None`` when RapidPro
        has none; a failed reply when the lookup could not finish (then nothing may be posted).

        The read is bounded like a source's (``reverse.sources.paging``): at most ``lookup_pages``
        pages, and a ``next`` URL handed out twice, or on another origin, stops it.
        """
        after = (intended_at - LOOKUP_MARGIN).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        url: str | None = self.api + "flow_starts.json"
        params: dict[str, Any] | None = {"after": after}
        followed: set[str] = set()
        for _ in range(self.settings.lookup_pages):
            reply = self._call("flow_starts", "GET", url, params=params)
            if not reply.ok:
                note = "; the start may exist, so it is not posted again until it is found"
                return _Reply(reply.status, error=f"{reply.error}{note}", retryable=True, waiting=reply.waiting)
            page = reply.body if isinstance(reply.body, dict) else {}
            for found in page.get("results") or []:
                if isinstance(found, dict) and (found.get("params") or {}).get(START_REF) == ref:
                    return _Reply(reply.status, body={"uuid": found.get("uuid")})
            url, params = page.get("next"), None
            if not url:
                return None
            if has_userinfo(url) or origin(url) != origin(self.base_url) or url in followed:
                return _Reply(None, error="RapidPro's flow start pages repeat or leave its origin", retryable=True)
            followed.add(url)
        return _Reply(None, error=f"no answer in {self.settings.lookup_pages} pages of flow starts", retryable=True)

    # -- one request ----------------------------------------------------------------------------

    def _call(
        self,
        group: str,
        method: str,
        endpoint: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        uncertain: Callable[[], _Reply | None] | None = None,
    ) -> _Reply:
        """Send one request, repeating what may pass later; each try is taken from ``group``'s budget.

        ``uncertain`` runs before a repeat after no answer or a 5xx (RapidPro may have acted): a
        reply it gives ends the call.
        """
        url = endpoint if endpoint.startswith("http") else self.api + endpoint
        reply = _Reply(None, error="not sent")
        for attempt in range(self.retry.retries + 1):
            if self._breaker.is_open:
                raise _BreakerOpen
            if attempt and uncertain is not None and (reply.status is None or reply.status >= 500):
                decided = uncertain()
                if decided is None:
                    pass  # RapidPro made nothing: post again
                else:
                    return decided
            if not self._budgets[group].spend():
                reason = waiting_reason(group, self._budgets[group].per_hour)
                return _Reply(None, error=reason, waiting=True, sent_nothing=attempt == 0)
            self.requests += 1
            self.retries += 1 if attempt else 0
            reply, wait = self._once(method, url, params, body)
            if reply.ok or not reply.retryable:
                self._breaker.success()
                return reply
            if self._breaker.failure(reply.error):
                raise _BreakerOpen
            if wait is not None and wait > self.retry.max_backoff_s:
                reply.error = f"{reply.error}; RapidPro asked to wait {wait:.0f} s: the next run sends it"
                return reply
            if attempt < self.retry.retries:
                pause = max(backoff(attempt, self.retry, self._rng), wait or 0.0)
                log.warning(
                    "destination connection '%s': %s on %s %s; again in %.1f s (repeat %d of %d)",
                    self.conn_id, reply.error, method, safe_url(url), pause, attempt + 1, self.retry.retries,
                )  # fmt: skip
                self._sleep(pause)
        return reply

    def _once(self, method: str, url: str, params: Any, body: Any) -> tuple[_Reply, float | None]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        # the URL's query may hold a URN (a phone number): reasons never quote it
        response = answer_or_reason(
            self._session, method, url, self.limits, conn_id=self.conn_id, system="RapidPro",
            params=params, data=data, timeout=self.timeout,
        )  # fmt: skip
        if isinstance(response, Unanswered):
            return _Reply(response.status, error=response.reason, retryable=response.retryable), None
        status = response.status_code
        kind = classify(status)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if kind == "delivered":
            return _Reply(status, answer), None
        reply = _Reply(status, answer, error=f"HTTP {status}: {drf_reason(answer, response)}")
        reply.retryable = kind == "retryable"
        return reply, retry_after(response.headers.get("Retry-After"))

    def _result(self, item: Delivery, reply: _Reply, destination_id: Callable[[Any], Any]) -> Result:
        if reply.ok:
            found = destination_id(reply.body)
            return Result(item.doc_id, True, reply.status, str(found) if found else None)
        return Result(
            item.doc_id, False, reply.status, error=reply.error, retryable=reply.retryable or reply.waiting,
            deferred=reply.waiting,
        )  # fmt: skip

    def close(self) -> None:
        self._session.close()


def _payload(item: Delivery, allowed: set[str]) -> tuple[dict[str, Any], str | None]:
    try:
        payload = json.loads(item.body or "null")
    except ValueError:
        return {}, "the mapped payload is not JSON"
    if not isinstance(payload, dict):
        return {}, "the mapped payload must be an object"
    unknown = sorted(set(payload) - allowed)
    if unknown:
        return payload, f"unknown key(s) {', '.join(unknown)} in the mapping (allowed: {', '.join(sorted(allowed))})"
    return payload, None


def drf_reason(answer: Any, response: requests.Response | None = None) -> str:
    """A DRF error answer in one line of field names and messages, URNs and numbers masked."""
    parts: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for inner in value:
                walk(prefix, inner)
        elif value is not None:
            parts.append(f"{prefix}: {value}" if prefix and prefix != "detail" else str(value))

    if isinstance(answer, (dict, list)):
        walk("", answer)
    text = "; ".join(parts) or (response.reason if response is not None and response.reason else "no reason given")
    return _MASK.sub("…", " ".join(text.split()))[:300]


def _names_a_member(answer: Any) -> bool:
    """A start's refusal that names its URNs, contacts or groups (one document's), not its flow or params."""
    return isinstance(answer, dict) and any(key in answer for key in ("urns", "contacts", "groups"))


DESTINATION = RapidProDestination  # what ``destination.type: rapidpro`` opens (see ``registry``)
