"""Post data values to DHIS2 (``POST /api/dataValueSets``) in chunks, and read them back (``GET``).

Each request carries at most ``chunk_size`` values of one period and, where possible, one org
unit (destinations.md §1.3: "chunk by org unit/period"), with ``importStrategy``,
``dryRun``, ``idScheme`` and ``async=false`` as query parameters. Every value gets a
``ValueResult``: stored, or rejected with DHIS2's own message (``summaries.attribute``), or
unproven (no answer, a 5xx after retries, a conflict that names no value) and so tried again by
the next run. 401/403 stop everything at once (``AuthError``): repeating a refused login locks
accounts. Requests go through ``http.read.request_within`` (no redirects, deadline, size cap),
with retries and backoff from ``http.retry`` for 408, 429, 5xx and lost connections.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import requests

from cht_bridge.aggregate.summaries import UnreadableSummary, attribute, read_summary
from cht_bridge.errors import AnswerLimitError, AuthError, DestinationBusyError, SourceError
from cht_bridge.http.read import READ_LIMITS, AnswerLimits, Reader, request_within
from cht_bridge.http.reasons import answer_reason
from cht_bridge.http.retry import CircuitBreaker, RetryPolicy, backoff, classify, delivery_policy, retry_after

log = logging.getLogger("cht_bridge.aggregate")

#: A 409 with every rejected value listed can be long: read it whole, up to this.
SUMMARY_LIMITS = AnswerLimits(deadline_s=120.0, max_bytes=16 * 1024 * 1024)
#: Org units per ``GET dataValueSets`` (repeated ``orgUnit`` parameters): 11-character UIDs keep
#: the URL near 2 KB.
ORG_UNITS_PER_READ = 100


@dataclass(frozen=True)
class DataValue:
    """One DHIS2 data value: its natural key (period, org unit, data element, option combos) and value."""

    period: str
    org_unit: str
    data_element: str
    category_option_combo: str | None
    attribute_option_combo: str | None
    value: str

    @property
    def key(self) -> str:
        """The natural key as the ledger's ``doc_id`` (``value_key``)."""
        return value_key(
            self.period, self.org_unit, self.data_element, self.category_option_combo, self.attribute_option_combo
        )

    def as_json(self) -> dict[str, str]:
        out = {"dataElement": self.data_element, "period": self.period, "orgUnit": self.org_unit, "value": self.value}
        if self.category_option_combo:
            out["categoryOptionCombo"] = self.category_option_combo
        if self.attribute_option_combo:
            out["attributeOptionCombo"] = self.attribute_option_combo
        return out


def value_key(period: str, org_unit: str, element: str, coc: str | None, aoc: str | None) -> str:
    """A data value's natural key as the ledger's ``doc_id``: a compact JSON array
    ``["period","orgUnit","dataElement","coc","aoc"]`` (no combo: ``""``).

    JSON, not the parts joined by a separator: under ``id_scheme`` CODE or NAME any part may hold
    any character ("HIV/AIDS tests"), and ``from_key`` must give back exactly these five parts.
    The period comes first and needs no escaping, so ``period_prefix`` selects a period's keys.
    (The format is as new as the aggregate kind: no ledger holds keys of another form.)
    """
    return json.dumps([period, org_unit, element, coc or "", aoc or ""], ensure_ascii=False, separators=(",", ":"))


def from_key(key: str) -> DataValue:
    """The data value (without its value) a ledger key names: ``value_key`` read back."""
    period, org_unit, element, coc, aoc = json.loads(key)
    return DataValue(period, org_unit, element, coc or None, aoc or None, "")


def period_prefix(period: str) -> str:
    """What every ``value_key`` of ``period`` starts with."""
    return json.dumps([period], ensure_ascii=False)[:-1] + ","


@dataclass(frozen=True)
class ValueResult:
    """What DHIS2 did with one posted value."""

    value: DataValue
    ok: bool
    status: int | None = None
    error: str | None = None
    retryable: bool = False


@dataclass
class PostCounts:
    """The import counts DHIS2 reported, summed over requests."""

    requests: int = 0
    imported: int = 0
    updated: int = 0
    ignored: int = 0
    deleted: int = 0
    conflicts: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class DataValuePoster:
    """``dataValueSets`` of one DHIS2 instance, on a session that carries the Connection's auth."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        api_path: str = "/api",
        api_version: int | None = None,
        conn_id: str = "(no connection)",
        id_scheme: str = "UID",
        dry_run: bool = False,
        data_set: str | None = None,
        chunk_size: int = 500,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        root = base_url.rstrip("/") + "/" + api_path.strip("/")
        self.api_url = root + (f"/{api_version}" if api_version else "")
        self.url = self.api_url + "/dataValueSets"
        self.session = session
        self.session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
        self.conn_id = conn_id
        self.id_scheme = id_scheme
        self.dry_run = dry_run
        self.data_set = data_set
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        #: ``breaker_after`` failed tries in a row (no answer, 408/429/5xx) and DHIS2 is taken as down:
        #: the chunks left are not sent, their periods stay pending.
        self.breaker = CircuitBreaker(self.retry.breaker_after)
        self.counts = PostCounts()
        self.retries = 0
        #: What each chunk's request is sent inside: a send slot's hold (``sync.gate.send_slots``), or nothing.
        self.slot: Callable[[], AbstractContextManager[Any]] = nullcontext
        self._sleep = sleep
        self._rng = random.Random()

    @classmethod
    def configured(
        cls, session: requests.Session, base_url: str, destination: Any, delivery: Any = None
    ) -> DataValuePoster:
        """The poster a pipeline's ``destination`` (its ``dhis2`` settings) and ``delivery`` describe."""
        s = destination.settings
        retry = delivery_policy(delivery)
        return cls(
            session, base_url, api_path=destination.path, api_version=s.api_version, conn_id=destination.conn_id,
            id_scheme=s.id_scheme, dry_run=s.dry_run, data_set=s.data_set, chunk_size=s.chunk_size,
            timeout=destination.timeout, retry=retry,
        )  # fmt: skip

    def post(self, values: list[DataValue], *, delete: bool = False) -> list[ValueResult]:
        """Post (or, with ``delete``, delete) values; one result per value, in no particular order.

        :raises AuthError: the credentials were refused (nothing more is sent).
        :raises DestinationBusyError: no send slot came free for a chunk; its message says how many
            chunks before it were sent (their periods stay pending and are posted again).
        """
        results: list[ValueResult] = []
        parts = list(chunks(values, self.chunk_size))
        for number, chunk in enumerate(parts):
            if self.breaker.is_open:
                reason = f"not sent: DHIS2 looks down ({self.breaker.failures} failed tries in a row)"
                results.extend(ValueResult(v, False, None, reason, retryable=True) for v in chunk)
                continue
            try:
                with self.slot():  # one of the Connection's send slots, when limits are on (aggregate.run.opened)
                    results.extend(self._send(chunk, delete))
            except DestinationBusyError as busy:  # only the slot raises it: the chunks before are in DHIS2
                if not number:
                    raise
                raise DestinationBusyError(
                    busy.conn_id, busy.slots, busy.waited_s, chunks_sent=number, chunks=len(parts)
                ) from None
        return results

    def _params(self, delete: bool) -> dict[str, str]:
        params = {
            "importStrategy": "DELETE" if delete else "CREATE_AND_UPDATE",
            "dryRun": "true" if self.dry_run else "false",
            "async": "false",
        }
        if self.id_scheme != "UID":
            params["idScheme"] = self.id_scheme
        return params

    def _send(self, chunk: list[DataValue], delete: bool) -> list[ValueResult]:
        posted = [v.as_json() for v in chunk]
        body: dict[str, Any] = {"dataValues": posted}
        if self.data_set:
            body["dataSet"] = self.data_set
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        for attempt in range(self.retry.retries + 1):
            self.counts.requests += 1
            if attempt:
                self.retries += 1
            problem, status, wait = None, None, None
            try:
                response = request_within(
                    self.session, "POST", self.url, SUMMARY_LIMITS, whole=(409,),
                    params=self._params(delete), data=data, timeout=self.timeout,
                )  # fmt: skip
                status = response.status_code
                kind = classify(status)
                if kind == "auth":
                    raise AuthError(self.conn_id, status, "DHIS2")
                if status in (200, 201, 409) or (kind == "delivered"):
                    self.breaker.success()
                    return self._read(chunk, posted, response)
                if kind == "permanent":
                    self.breaker.success()
                    return [ValueResult(v, False, status, answer_reason(response).text) for v in chunk]
                problem, wait = f"HTTP {status}", retry_after(response.headers.get("Retry-After"))
            except requests.Timeout:
                problem = f"timeout after {self.timeout:g} s"
            except requests.RequestException as exc:  # no str(exc): it holds the URL and query
                problem = type(exc).__name__
            except AnswerLimitError as exc:
                return [ValueResult(v, False, exc.status, f"DHIS2's answer {exc}", not exc.too_large) for v in chunk]
            if self.breaker.failure(problem):
                break  # down: stop here, the next run posts these periods again
            if attempt < self.retry.retries:
                pause = max(backoff(attempt, self.retry, self._rng), wait or 0.0)
                if pause > self.retry.max_backoff_s:
                    break
                log.warning(
                    "DHIS2 connection '%s': %s; posting %d values again in %.1f s",
                    self.conn_id,
                    problem,
                    len(chunk),
                    pause,
                )
                self._sleep(pause)
        return [ValueResult(v, False, status, f"not stored: {problem}", retryable=True) for v in chunk]

    def _read(self, chunk: list[DataValue], posted: list[dict], response: requests.Response) -> list[ValueResult]:
        status = response.status_code
        try:
            summary = read_summary(json.loads(response.content or b"null"))
        except (ValueError, UnreadableSummary) as exc:
            reason = f"HTTP {status}: DHIS2's answer is not an import summary ({exc.__class__.__name__})"
            return [ValueResult(v, False, status, reason, retryable=status != 409) for v in chunk]
        counts = self.counts
        counts.imported += summary.imported
        counts.updated += summary.updated
        counts.ignored += summary.ignored
        counts.deleted += summary.deleted
        counts.conflicts += len(summary.conflicts)
        found = attribute(summary, posted)
        if summary.status == "ERROR" and not found.rejected:
            reason = "; ".join(found.unpinned) or summary.description or "the import failed (status ERROR)"
            return [ValueResult(v, False, status, reason) for v in chunk]
        if found.unpinned:
            # A conflict that names none of the values: which were stored cannot be told; the
            # values it could be about are tried again by the next run.
            reason = "DHIS2 reported a conflict naming no posted value: " + "; ".join(found.unpinned)
            return [
                ValueResult(v, False, status, found.rejected.get(i, reason), retryable=i not in found.rejected)
                for i, v in enumerate(chunk)
            ]
        return [ValueResult(v, i not in found.rejected, status, found.rejected.get(i)) for i, v in enumerate(chunk)]

    def read(self, periods: list[str], org_units: list[str], data_elements: list[str]) -> Iterator[dict[str, Any]]:
        """The values DHIS2 holds for these periods and org units (``GET /api/dataValueSets``), one request per period.

        With a ``data_set`` the server selects by it; without, by the data elements.
        """
        reader = Reader(self.session, conn_id=self.conn_id, system="DHIS2", timeout=self.timeout, limits=READ_LIMITS)
        units = sorted(set(org_units))
        for period in periods:
            for start in range(0, len(units), ORG_UNITS_PER_READ):  # the URL stays under proxy limits
                params: dict[str, Any] = {"period": period, "orgUnit": units[start : start + ORG_UNITS_PER_READ]}
                if self.data_set:
                    params["dataSet"] = self.data_set
                else:
                    params["dataElement"] = sorted(set(data_elements))
                if self.id_scheme != "UID":
                    params["idScheme"] = self.id_scheme
                answer = reader.get_json(self.url, params)
                values = answer.get("dataValues", []) if isinstance(answer, dict) else None
                if not isinstance(values, list):
                    raise SourceError(
                        f"DHIS2 connection '{self.conn_id}': GET dataValueSets answered no dataValues list"
                    )
                yield from (v for v in values if isinstance(v, dict))

    def close(self) -> None:
        self.session.close()


def chunks(values: list[DataValue], size: int) -> Iterator[list[DataValue]]:
    """Requests of at most ``size`` values, each of one period and (unless it holds many small ones) one org unit."""
    ordered = sorted(values, key=lambda v: (v.period, v.org_unit, v.data_element))
    chunk: list[DataValue] = []
    for v in ordered:
        if chunk and (len(chunk) >= size or v.period != chunk[-1].period):
            yield chunk
            chunk = []
        chunk.append(v)
    if chunk:
        yield chunk
