"""One run of an aggregate pipeline: find the periods that changed, recompute them whole, post them.

1. **Touched periods.** A scheduled run reads the ``_changes`` feed from its checkpoint through
   the same pages, hydration and mapping as a sync run (``source.iter_changes``, ``Hydrator``,
   ``Mapper``). A changed report touches its period now and the period it was counted in before
   (the ledger's ``~reports`` rows), so a report moved to another month, deleted, or no longer
   relevant, changes both. Touched periods are written as pending before the checkpoint moves
   past the page (``ledger.mark_pending``), so a crash loses none. A run with ``start``/``end``
   (Params, or an Airflow backfill's interval) recomputes every period of that window instead.
2. **Recompute.** Each period is counted again from all its reports, read with CHT's
   ``reports_by_date`` view (adjacent periods in one read), page by page into partial results
   (``compute.Accumulator``): never from a running total, so an edit or a delete changes the value
   instead of adding to it.
3. **Post whole periods** (``post.DataValuePoster``): every value of the period; a value the
   ledger says DHIS2 holds but CHT no longer gives is deleted there (``importStrategy=DELETE``) or
   posted as 0 (``absent: zero``). Each value's answer goes to the ledger under its natural key
   with DHIS2's message when refused; a period is done once none of its values is left unanswered.

With ``dry_run`` (the pipeline's ``dhis2.dry_run``) DHIS2 is asked with ``dryRun=true``: nothing is
stored there, so the run writes no state at all: no value, report or period row, and the checkpoint
stays where it was (the next real run reads the same changes and posts the same periods).

If DHIS2 fails ``delivery.breaker_after`` tries in a row (down, overloaded), the poster's circuit
breaker opens: the chunks left are not sent, their periods stay pending, the values not answered
are not recorded (an outage must not count against them), and the run fails with
``CircuitOpenError`` once what was answered is recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cht_bridge.aggregate import ledger
from cht_bridge.aggregate.compute import DATE, Accumulator, columns, number_text
from cht_bridge.aggregate.periods import first_day, local_periods, periods_between, windows
from cht_bridge.aggregate.post import DataValue, DataValuePoster, ValueResult, from_key
from cht_bridge.errors import CircuitOpenError
from cht_bridge.mapping import Mapper
from cht_bridge.source import Hydrator, iter_changes, iter_reports_by_date
from cht_bridge.state import DELETE, UPSERT, Outcome

log = logging.getLogger("cht_bridge.aggregate")
#: Report ids a run's summary (the task's XCom) names per problem; the ledger holds them all.
SUMMARY_IDS = 20


@dataclass
class AggregateSummary:
    """A run's counts (XCom-sized, no patient data: ids of reports, counts and periods only)."""

    pipeline: str
    kind: str = "changes"  # changes | window
    dry_run: bool = False
    read: int = 0  # changes read (a window run reads none)
    periods: list[str] = field(default_factory=list)
    reports: int = 0  # reports read to recompute the periods
    counted: int = 0  # of which counted in a cell
    unplaced: int = 0
    unplaced_ids: list[str] = field(default_factory=list)
    undated: int = 0
    unmapped: int = 0
    values: int = 0  # data values posted (deletes included)
    delivered: int = 0
    conflicted: int = 0
    failed: int = 0
    deleted: int = 0
    zeroed: int = 0
    import_counts: dict[str, int] = field(default_factory=dict)
    start_seq: Any = None
    last_seq: Any = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The counts, plus the columns every pipeline's summary has (``relevant``: reports read to
        recompute; ``sent``: values stored; ``dead_lettered``: values DHIS2 refused)."""
        return {
            **asdict(self), "relevant": self.reports, "sent": self.delivered, "unchanged": 0,
            "dead_lettered": self.conflicted,
        }  # fmt: skip


@dataclass
class Computed:
    """A set of periods recomputed from CHT: every cell's value and what could not be counted."""

    values: list[DataValue]
    accumulator: Accumulator


class AggregateRun:
    """What one run needs: the pipeline, its CHT reader, its mapping, the poster and the store."""

    def __init__(
        self, pipeline: Any, client: Any, poster: DataValuePoster | None, store: Any, logger: logging.Logger = log
    ) -> None:
        from cht_bridge.destinations.dhis2.org_units import load_org_unit_table

        self.pipeline = pipeline
        self.name = pipeline.name
        self.settings = pipeline.destination.settings
        self.client = client
        self.poster = poster
        self.store = store
        self.log = logger
        self.dry = bool(poster is not None and poster.dry_run)  # a dry run writes no state (module docstring)
        rule = self.settings.org_unit
        self.table = load_org_unit_table(rule.table) if rule.table else None
        self.mapper = Mapper(
            pipeline.name,
            pipeline.relevant_to,
            {**pipeline.mapping, **columns(self.settings)},
            source=pipeline.file,
            timeout_ms=pipeline.script_timeout_ms,
        )
        self.hydrator = Hydrator(client, sandbox=self.mapper.sandbox)

    def close(self) -> None:
        self.mapper.close()

    def preflight(self) -> None:
        """Do the pipeline's data elements, option combos, data set and table org units exist at
        DHIS2, in the user's capture scope and writable, and may the user add data values?

        :raises PreflightError: naming each missing item (``destinations.dhis2.preflight``).
        """
        from cht_bridge.destinations.dhis2.preflight import Needs, verify

        assert self.poster is not None
        s, at = self.settings, "destination.dhis2"
        elements, combos = {}, {}
        for i, rule in enumerate(s.data_values):
            elements.setdefault(rule.data_element, f"{at}.data_values.{i}.data_element")
            for key in ("category_option_combo", "attribute_option_combo"):
                if getattr(rule, key):
                    combos.setdefault(getattr(rule, key), f"{at}.data_values.{i}.{key}")
        units = {ou: f"{at}.org_unit.table" for ou in self.table.org_units.values()} if self.table else {}
        needs = Needs(
            id_scheme=s.id_scheme, data_elements=elements, category_option_combos=combos, org_units=units,
            data_set=s.data_set, authority="F_DATAVALUE_ADD",
        )  # fmt: skip
        verify(
            self.poster.session, self.poster.api_url, needs, conn_id=self.poster.conn_id, timeout=self.poster.timeout
        )

    # -- 1. touched periods -------------------------------------------------------------------

    def touched_by_changes(self, summary: AggregateSummary) -> set[str]:
        """Read the feed from the checkpoint; each page's touched periods are pending before it moves."""
        since = self.store.checkpoint(self.name)
        summary.start_seq = summary.last_seq = since
        touched: set[str] = set()
        s = self.settings
        for page in iter_changes(
            self.client, since if since is not None else 0, self.pipeline.batch_size, self.hydrator.load_changes
        ):
            summary.read += page.read
            mapped = self.mapper.map_batch(self.hydrator.hydrated(page))
            self.mapper.sandbox.trim()
            relevant = [m for m in mapped if m.relevant and m.error is None]
            dates = [json.loads(m.body or "{}").get(DATE) for m in relevant]
            now = {p for p in local_periods(dates, s.period, s.time_zone) if isinstance(p, str)}
            deleted = {d[0]: d[1] for d in page.deleted}
            before = ledger.report_periods(self.store, self.name, [m.doc_id for m in mapped] + list(deleted))
            gone = {i: deleted.get(i) for i in before if i in deleted}
            gone.update({m.doc_id: None for m in mapped if not m.relevant and m.error is None and m.doc_id in before})
            page_touched = now | set(before.values())
            if not self.dry:
                ledger.mark_pending(self.store, self.name, page_touched - touched)
                ledger.forget_reports(self.store, self.name, gone)
                self.store.record(self.name, [], page.last_seq)
            summary.last_seq = page.last_seq
            touched |= page_touched
        return touched

    # -- 2. recompute -------------------------------------------------------------------------

    def compute(self, periods: list[str], *, remember: bool = True) -> Computed:
        """Every cell of ``periods`` from all their reports (``reports_by_date``), page by page."""
        s = self.settings
        wanted = set(periods)
        table = self.table
        acc = Accumulator(s, table.org_unit_for if table else None, wanted)
        for start_ms, end_ms in windows(periods, s.period, s.time_zone, s.date_lag_days):
            load = lambda text, after: self.hydrator.load_page(text, json.dumps({"after": after}) if after else None)  # noqa: E731
            for page in iter_reports_by_date(self.client, start_ms, end_ms, self.pipeline.batch_size, load):
                mapped = self.mapper.map_batch(self.hydrator.hydrated(page))
                self.mapper.sandbox.trim()
                rows = acc.add(mapped)
                if remember:
                    in_scope = [p in wanted for p in rows.periods]
                    ledger.record_reports(
                        self.store, self.name,
                        [i for i, k in zip(rows.ids, in_scope, strict=True) if k],
                        [p for p, k in zip(rows.periods, in_scope, strict=True) if k],
                        [o for o, k in zip(rows.org_units, in_scope, strict=True) if k],
                        self._unplaced_reason(),
                    )  # fmt: skip
        values = [
            DataValue(
                period,
                org_unit,
                rule.data_element,
                rule.category_option_combo,
                rule.attribute_option_combo,
                number_text(v),
            )
            for (period, org_unit, i), v in sorted(acc.cells().items())
            for rule in (s.data_values[i],)
        ]
        return Computed(values, acc)

    def _unplaced_reason(self) -> str:
        rule = self.settings.org_unit
        where = f"the table {rule.table}" if rule.table else f"its field '{rule.field}'"
        return (
            f"not counted: the {rule.lineage}'s place at level {rule.level!r} has no DHIS2 org unit in {where} "
            "(add it; the next run of this period counts the report)"
        )

    # -- 3. post ------------------------------------------------------------------------------

    def post(
        self, periods: list[str], computed: Computed, summary: AggregateSummary, also_absent: list[DataValue] = ()
    ) -> None:
        """Post the periods whole, delete (or zero) what left them, record every answer.

        What left them: values the ledger says DHIS2 holds that CHT no longer gives, and
        ``also_absent`` (values DHIS2 was found to hold: the reconciliation's re-post).
        """
        s = self.settings
        assert self.poster is not None
        held = ledger.delivered_values(self.store, self.name, periods)
        current = {v.key: v for v in computed.values}
        gone = [from_key(k) for k in {*held, *(v.key for v in also_absent)} if k not in current]
        upserts = list(computed.values)
        deletes: list[DataValue] = []
        if s.absent == "zero":
            upserts += [_with_value(v, "0") for v in gone]
            summary.zeroed += len(gone)
        else:
            deletes = gone
        results = self.poster.post(upserts) + (self.poster.post(deletes, delete=True) if deletes else [])
        summary.values += len(upserts) + len(deletes)
        delete_keys = {v.key for v in deletes}
        for r in results:
            if r.ok:
                summary.delivered += 1
                summary.deleted += r.value.key in delete_keys
            elif r.retryable:
                summary.failed += 1
            else:
                summary.conflicted += 1
        summary.import_counts = self.poster.counts.as_dict()
        if self.poster.dry_run:
            self.log.info(
                "pipeline %s: dry run (dryRun=true at DHIS2): nothing recorded, the periods stay pending", self.name
            )
            return
        # Once DHIS2 is taken as down, values it did not answer are left out (an outage must not count
        # against them, as in a sync run): their periods stay pending.
        down = self.poster.breaker.is_open
        outcomes = [
            self._outcome(r, r.value.key in delete_keys) for r in results if not (down and not r.ok and r.retryable)
        ]
        self.store.record(self.name, outcomes, dead_after=self.pipeline.delivery.dead_after)
        unanswered = {r.value.period for r in results if not r.ok and r.retryable}
        done = [p for p in periods if p not in unanswered]
        per_period: dict[str, int] = {}
        for v in upserts:
            per_period[v.period] = per_period.get(v.period, 0) + 1
        ledger.mark_posted(self.store, self.name, done, per_period)
        refused = [r for r in results if not r.ok]
        for r in refused[:SUMMARY_IDS]:  # all of them are in the ledger; the log names the first
            self.log.warning(
                "pipeline %s: value %s not stored (HTTP %s): %s", self.name, r.value.key, r.status, r.error
            )
        if len(refused) > SUMMARY_IDS:
            self.log.warning(
                "pipeline %s: ... and %d more values not stored (see the ledger)", self.name, len(refused) - SUMMARY_IDS
            )

    def _outcome(self, r: ValueResult, delete: bool) -> Outcome:
        s = self.settings
        return Outcome(
            r.value.key, None, r.ok, payload_hash=None if delete else ledger.value_hash(r.value.value),
            response_status=r.status, error=r.error, retryable=r.retryable, operation=DELETE if delete else UPSERT,
            reported_at=ledger.period_start(r.value.period, s.period, s.time_zone),
        )  # fmt: skip


def run_aggregate(
    pipeline: Any,
    *,
    client: Any,
    poster: DataValuePoster,
    store: Any,
    window: tuple[datetime, datetime] | None = None,
    logger: logging.Logger = log,
) -> AggregateSummary:
    """One run: the changed periods (or a window's), recomputed and posted whole."""
    started = time.monotonic()
    s = pipeline.destination.settings
    summary = AggregateSummary(pipeline.name, "window" if window else "changes", poster.dry_run)
    run = AggregateRun(pipeline, client, poster, store, logger)
    try:
        run.preflight()  # once per run, before anything is read or sent: a run bound to fail does neither
        if window is not None:
            # The Params' dates (read as UTC) name calendar days: "2026-03-01" to "2026-04-01" is
            # March wherever the instance is, as is an Airflow backfill's monthly UTC interval.
            periods = set(periods_between(window[0], window[1], s.period, "UTC"))
            if not run.dry:
                ledger.mark_pending(store, pipeline.name, periods)
        else:
            periods = set(ledger.pending_periods(store, pipeline.name))
            periods |= run.touched_by_changes(summary)
        ordered = sorted(periods, key=lambda p: first_day(p, s.period))
        summary.periods = ordered
        if ordered:
            computed = run.compute(ordered, remember=not run.dry)
            _count(summary, computed.accumulator)
            run.post(ordered, computed, summary)
        summary.seconds = round(time.monotonic() - started, 3)
        _log(logger, summary, computed.accumulator if ordered else None)
        if poster.breaker.is_open:
            raise CircuitOpenError(poster.conn_id, poster.breaker.failures, poster.breaker.last_error, [])
        return summary
    finally:
        run.close()


def _count(summary: AggregateSummary, acc: Accumulator) -> None:
    summary.counted = acc.counted
    summary.unplaced = acc.unplaced.count
    summary.unplaced_ids = acc.unplaced.ids[:SUMMARY_IDS]
    summary.undated = acc.undated.count
    summary.unmapped = acc.unmapped.count
    summary.reports = acc.counted + acc.unplaced.count


def _log(logger: logging.Logger, s: AggregateSummary, acc: Accumulator | None) -> None:
    logger.info(
        "pipeline %s %s run: %d changes read, %d periods recomputed (%s), %d reports counted; %d values posted: "
        "%d stored, %d refused by DHIS2, %d left for the next run, %d deleted, %d zeroed; DHIS2 counts %s; %.1f s",
        s.pipeline, s.kind, s.read, len(s.periods), ",".join(s.periods[:24]) + ("…" if len(s.periods) > 24 else ""),
        s.counted, s.values, s.delivered, s.conflicted, s.failed, s.deleted, s.zeroed, s.import_counts, s.seconds,
    )  # fmt: skip
    if s.unplaced:
        places = sorted(acc.places_unplaced.items(), key=lambda kv: -kv[1])[:10] if acc else []
        logger.warning(
            "pipeline %s: %d reports not counted, their place has no DHIS2 org unit (ledger %s, status dead); "
            "places: %s; first reports: %s",
            s.pipeline, s.unplaced, ledger.reports_of(s.pipeline), ", ".join(f"{p} ({n})" for p, n in places),
            ", ".join(s.unplaced_ids),
        )  # fmt: skip
    if s.undated or s.unmapped:
        logger.warning(
            "pipeline %s: %d reports without a readable date and %d the mapping failed on were not counted",
            s.pipeline, s.undated, s.unmapped,
        )  # fmt: skip


def _with_value(v: DataValue, value: str) -> DataValue:
    return DataValue(v.period, v.org_unit, v.data_element, v.category_option_combo, v.attribute_option_combo, value)


@contextmanager
def opened(
    pipeline: Any, *, cht: Any = None, dhis2: Any = None, state_url: str | None = None
) -> Iterator[tuple[Any, DataValuePoster, Any]]:
    """CHT client (credentials proven by one request), DHIS2 poster and state store of a pipeline.

    Each of ``cht``, ``dhis2`` (``sync.resources.Endpoint``) and ``state_url`` replaces the
    pipeline's Airflow Connection for that part (tests, the benchmark).
    """
    from cht_bridge.sync.resources import _client, _store

    client = _client(pipeline, cht)
    client.info()
    poster = _poster(pipeline, dhis2)
    try:
        store = _store(pipeline, state_url)
        if dhis2 is None:  # each chunk posted holds a send slot of the Connection (when limits are on)
            from cht_bridge.sync.gate import send_slots

            slots = send_slots(store, pipeline.destination.conn_id)
            if slots is not None:
                poster.slot = slots.held
    except BaseException:
        poster.close()
        raise
    try:
        yield client, poster, store
    finally:
        poster.close()
        store.close()


def _poster(pipeline: Any, given: Any) -> DataValuePoster:
    d = pipeline.destination
    if given is None:
        from airflow.providers.http.hooks.http import HttpHook

        from cht_bridge.hooks.connection import open_session

        prepared = HttpHook(method="POST", http_conn_id=d.conn_id).get_conn()
        session, base_url = open_session(
            d.conn_id, d.auth, system="DHIS2", where=pipeline.file, prefix="destination.", session=prepared
        )
        return DataValuePoster.configured(session, base_url, d, pipeline.delivery)
    import requests

    from cht_bridge.http.origin import OriginAuth

    session = requests.Session()
    session.auth = OriginAuth(given.url, basic=given.auth) if given.auth else None
    return DataValuePoster.configured(session, given.url, d, pipeline.delivery)
