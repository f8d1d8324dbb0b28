"""The ledger's shape for a cheap row (state/store.py): a delivered row enters the primary key's index
alone; the rows not delivered have a partial index every question about them reads; freshness is one
row per pipeline, written with the batch's rows; an older ledger is brought to this shape with the
page's answers unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, inspect, text

from cht_bridge.state import DEAD, DELETE, DELIVERED, FAILED, Outcome, StateStore
from cht_bridge.state.store import REPORTED_INDEX, _migrate
from cht_bridge.ui import queries
from tests.stores import PREVIOUS_DEAD_LETTER_VIEW, as_the_previous_version_left_it

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def sent(doc_id: str, reported: datetime | None, rev: str = "1-a") -> Outcome:
    return Outcome(doc_id, rev, True, "h" * 64, 201, f"rcv-{doc_id}", reported_at=reported, key="k" * 32)


def refused(doc_id: str, reported: datetime | None = None, retryable: bool = True, error: str = "HTTP 503") -> Outcome:
    return Outcome(doc_id, "1-a", False, "h" * 64, 503, error=error, retryable=retryable, reported_at=reported)


def indexes(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cht_bridge_delivery'"
            ).all()
    finally:
        engine.dispose()
    return {name: sql for name, sql in rows}


# -- the indexes a row enters ------------------------------------------------------------------------


def test_a_delivered_row_enters_no_index_but_the_primary_key(db_url, store):
    found = indexes(db_url)
    assert set(found) == {
        "sqlite_autoindex_cht_bridge_delivery_1",  # the primary key
        "ix_cht_bridge_delivery_reference",  # partial: FHIR references only
        "ix_cht_bridge_delivery_unsettled",
    }
    assert found["ix_cht_bridge_delivery_unsettled"].endswith("WHERE status <> 'delivered'")
    store.record("p", [sent("a", T0), sent("b", T0), refused("c")])
    with store.engine.connect() as conn:
        in_partial = conn.exec_driver_sql(
            "SELECT count(*) FROM cht_bridge_delivery INDEXED BY ix_cht_bridge_delivery_unsettled "
            "WHERE pipeline = 'p' AND status <> 'delivered'"
        ).scalar()
    assert in_partial == 1


def _statements(store: StateStore, calls) -> list[tuple[str, tuple]]:
    """The SQL (with its parameters) ``calls`` send about ledger rows."""
    seen: list[tuple[str, tuple]] = []

    def keep(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "cht_bridge_delivery" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, tuple(parameters)))

    event.listen(store.engine, "before_cursor_execute", keep)
    try:
        calls()
    finally:
        event.remove(store.engine, "before_cursor_execute", keep)
    return seen


def _plan(store: StateStore, statement: str, parameters: tuple) -> str:
    with store.engine.connect() as conn:
        return " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))


def test_every_question_about_failures_reads_the_partial_index(store):
    store.record("p", [sent(f"d{i}", T0) for i in range(50)] + [refused("f1"), refused("x1", retryable=False)])
    since, until = datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)

    def failures_asked() -> None:
        assert [r["doc_id"] for r in store.pending("p")] == ["f1"]
        assert [r["doc_id"] for r in store.pending("p", after="f1")] == []
        assert [r["doc_id"] for r in store.select("p", statuses=[DEAD, FAILED], since=since, until=until)] == [
            "f1",
            "x1",
        ]
        assert [r["doc_id"] for r in store.failures("p")] == ["f1", "x1"]
        assert queries.failures(store, "p", reason="503")["total"] == 2
        assert queries.failures(store, "p", statuses=[DEAD])["total"] == 1

    asked = _statements(store, failures_asked)
    assert len(asked) == 10  # pending twice, select, failures, and the page's three per list
    plans = [_plan(store, statement, parameters) for statement, parameters in asked]
    for (statement, _), plan in zip(asked, plans, strict=True):
        assert "SCAN" not in plan, (statement, plan)  # a search in an index, never the whole table
    for plan in plans:  # the previous version walked the pipeline's part of the primary key for some
        assert "INDEX ix_cht_bridge_delivery_unsettled (pipeline=? AND status=?" in plan, plan
        assert "sqlite_autoindex" not in plan, plan
    # replay of both statuses: one part per status, each from the partial index, then one sort by id
    assert plans[2].count("ix_cht_bridge_delivery_unsettled") == 2, plans[2]


def test_replay_selects_the_same_rows_in_id_order_whatever_the_statuses(store):
    store.record("p", [refused("b"), refused("a", retryable=False), sent("c", T0), refused("d")])
    store.record("p", [refused("e", retryable=False), Outcome("f", None, False, error="gone", closed=True)])
    ids = lambda rows: [r["doc_id"] for r in rows]  # noqa: E731
    assert ids(store.select("p", statuses=[DEAD, FAILED])) == ["a", "b", "d", "e"]
    assert ids(store.select("p", statuses=[FAILED, DEAD, FAILED], doc_ids=["e", "d", "c"])) == ["d", "e"]
    assert ids(store.select("p", statuses=[DEAD])) == ["a", "e"]
    assert ids(store.select("p", statuses=[DELIVERED, "closed"])) == ["c", "f"]
    assert ids(store.select("p", statuses=[])) == []
    later = datetime.now(UTC) + timedelta(hours=1)
    assert ids(store.select("p", statuses=[DEAD, FAILED], since=later)) == []
    assert ids(store.select("p", statuses=[DEAD, FAILED], until=later)) == ["a", "b", "d", "e"]


def test_the_page_overview_reads_the_primary_key_the_partial_index_and_the_freshness(store):
    store.record("p", [sent(f"d{i}", T0) for i in range(50)] + [refused("f1")])
    asked = _statements(store, lambda: queries.forward_overview(store, ["p", "q"], now=NOW))
    plans = [_plan(store, statement, parameters) for statement, parameters in asked]
    assert len(plans) == 2, plans  # every row per pipeline and the rows not delivered (one statement), the 24 hours
    assert "COVERING INDEX sqlite_autoindex_cht_bridge_delivery_1 (pipeline=?)" in plans[0]
    assert all("COVERING INDEX ix_cht_bridge_delivery_unsettled (pipeline=?" in p for p in plans), plans


def test_counts_per_status_are_the_same_as_counting_every_row(store):
    store.record("p", [sent("a", T0), sent("b", T0), refused("c"), refused("d", retryable=False)])
    store.record("p", [Outcome("a", "2-d", True, operation=DELETE), Outcome("e", None, False, error="x", closed=True)])
    store.record("q", [refused("z")])
    with store.engine.connect() as conn:
        every = conn.exec_driver_sql(
            "SELECT pipeline, status, count(*) FROM cht_bridge_delivery GROUP BY pipeline, status"
        ).all()
    expected: dict[str, dict[str, int]] = {"p": {}, "q": {}, "r": {}}
    for pipeline, status, n in every:
        expected[pipeline][status] = n
    assert expected["p"] == {"closed": 1, "dead": 1, "deleted": 1, "delivered": 1, "failed": 1}
    overview = queries.forward_overview(store, ["p", "q", "r"], now=NOW)
    for name in ("p", "q", "r"):
        assert overview[name]["counts"] == expected[name]
        assert list(overview[name]["counts"]) == sorted(expected[name])  # in status order, as a GROUP BY gives
        assert store.counts(name) == expected[name]


# -- freshness ---------------------------------------------------------------------------------------


def test_freshness_is_the_newest_reported_date_ever_delivered(store):
    assert store.newest_delivered("p") is None
    store.record("p", [sent("a", T0 + timedelta(days=2)), refused("b", T0 + timedelta(days=9)), sent("c", T0)])
    assert store.newest_delivered("p") == T0 + timedelta(days=2)  # a failure does not count
    store.record("p", [sent("d", T0 - timedelta(days=30))])  # a backfill of old reports: no step back
    assert store.newest_delivered("p") == T0 + timedelta(days=2)
    # The destination did receive a report that fresh: a later failure or delete of it changes nothing
    # (the ledger's rows alone would now say T0; see ``freshness`` in state/store.py).
    store.record("p", [refused("a", T0 + timedelta(days=2))])
    store.record("p", [Outcome("a", "3-d", True, operation=DELETE)])
    assert store.newest_delivered("p") == T0 + timedelta(days=2)
    store.record("p", [sent("b", T0 + timedelta(days=9), rev="2-a")])
    assert store.newest_delivered("p") == T0 + timedelta(days=9)
    assert store.newest_delivered("other") is None


def test_a_delivered_document_without_a_reported_date_counts_the_one_its_row_kept(store):
    store.record("p", [refused("a", T0 + timedelta(days=5)), sent("b", T0)])
    store.record("p", [sent("a", None, rev="2-a")])  # the row keeps its reported_at (the upsert's COALESCE)
    assert store.ledger("p", "a")["reported_at"] == (T0 + timedelta(days=5)).replace(tzinfo=None)
    assert store.newest_delivered("p") == T0 + timedelta(days=5)


def test_a_batch_the_database_refuses_moves_neither_its_rows_nor_the_freshness(store):
    store.record("p", [sent("a", T0)], {"seq": 1})
    with pytest.raises(Exception):  # noqa: B017 - the database's own error: a row without an id
        store.record("p", [sent("b", T0 + timedelta(days=1)), sent(None, T0)], {"seq": 2})  # type: ignore[arg-type]
    assert store.checkpoint("p") == {"seq": 1} and store.ledger("p", "b") is None
    assert store.newest_delivered("p") == T0


KILLED = """
import os, signal, sys
from datetime import datetime, timedelta, UTC
from sqlalchemy import event
from cht_bridge.state import Outcome, StateStore

store = StateStore(sys.argv[1])
t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
store.record("p", [Outcome("a", "1-a", True, "h", reported_at=t0)], {"seq": 1})
written = []
event.listen(store.engine, "before_cursor_execute", lambda *a: written.append(a[2]) if "cht_bridge_delivery (" in a[2] else None)
# killed at the commit of the transaction that wrote ledger rows: whatever that transaction holds is lost
event.listen(store.engine, "commit", lambda conn: os.kill(os.getpid(), signal.SIGKILL) if written else None)
store.record("p", [Outcome("b", "1-b", True, "h", reported_at=t0 + timedelta(days=1))], {"seq": 2})
"""


def test_a_process_killed_before_the_batch_commits_leaves_the_freshness_with_its_rows(db_url):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"}
    done = subprocess.run([sys.executable, "-c", KILLED, db_url], env=env, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    store = StateStore(db_url)
    try:
        assert store.checkpoint("p") == {"seq": 1} and store.ledger("p", "b") is None
        assert store.newest_delivered("p") == T0  # not the lost batch's newer date
    finally:
        store.close()


# -- a ledger an older version made -----------------------------------------------------------------


def _previous_answers(url: str, names: list[str], now: datetime) -> dict:
    """What the previous version's queries answered (its SQL, on its indexes)."""
    engine = create_engine(url)
    out: dict = {n: {"counts": {}, "recent": {FAILED: 0, DEAD: 0}, "newest": None} for n in names}
    since = (now - timedelta(hours=24)).replace(tzinfo=None).isoformat(" ")
    with engine.connect() as conn:
        for pipeline, status, n in conn.exec_driver_sql(
            "SELECT pipeline, status, count(*) FROM cht_bridge_delivery GROUP BY pipeline, status"
        ):
            out[pipeline]["counts"][status] = n
        for pipeline, status, n in conn.exec_driver_sql(
            "SELECT pipeline, status, count(*) FROM cht_bridge_delivery WHERE status IN ('failed', 'dead') "
            "AND last_attempt_at >= ? GROUP BY pipeline, status",
            (since,),
        ):
            out[pipeline]["recent"][status] = n
        for name in names:
            newest = conn.exec_driver_sql(
                "SELECT max(reported_at) FROM cht_bridge_delivery WHERE pipeline = ? AND status = 'delivered'", (name,)
            ).scalar()
            out[name]["newest"] = None if newest is None else datetime.fromisoformat(newest).replace(tzinfo=UTC)
            out[name]["failures"] = [
                tuple(r)
                for r in conn.exec_driver_sql(
                    "SELECT doc_id, status, attempts, failures, response_status, last_error FROM cht_bridge_delivery "
                    "WHERE pipeline = ? AND status IN ('dead', 'failed') ORDER BY last_attempt_at DESC, doc_id",
                    (name,),
                )
            ]
    engine.dispose()
    return out


def test_an_old_ledger_gets_its_freshness_from_its_rows_and_the_page_answers_as_before(db_url):
    store = StateStore(db_url)
    store.record("p", [sent("a", T0 + timedelta(days=3)), sent("b", T0), refused("c", T0 + timedelta(days=8))])
    store.record("p", [refused("a", T0 + timedelta(days=3)), refused("d", retryable=False, error="HTTP 422: no")])
    store.record("q", [sent("z", T0 - timedelta(days=1)), Outcome("y", "1", True, operation=DELETE)])
    store.record("r", [refused("w")])
    store.close()
    as_the_previous_version_left_it(db_url)
    names = ["p", "q", "r", "s"]
    now = datetime.now(UTC)
    before = _previous_answers(db_url, names, now)
    assert before["p"]["newest"] == T0 and before["q"]["newest"] == T0 - timedelta(days=1)

    store = StateStore(db_url)
    try:
        found = indexes(db_url)
        assert REPORTED_INDEX not in found and "ix_cht_bridge_delivery_recent" not in found
        assert "ix_cht_bridge_delivery_unsettled" in found
        assert "INDEX ix_cht_bridge_delivery_unsettled (pipeline=? AND status=?" in _view_plan(db_url)  # remade
        overview = queries.forward_overview(store, names, now=now)
        for name in names:
            assert overview[name]["counts"] == before[name]["counts"]
            assert overview[name]["recent"] == before[name]["recent"]
            newest = before[name]["newest"]
            assert store.newest_delivered(name) == newest
            assert overview[name]["lag_seconds"] == (
                None if newest is None else round((now - newest).total_seconds(), 1)
            )
            listed = queries.failures(store, name)["rows"]
            assert [
                (r["doc_id"], r["status"], r["attempts"], r["failed_runs"], r["response_status"], r["reason"])
                for r in listed
            ] == before[name]["failures"]
    finally:
        store.close()


def test_the_index_a_previous_version_brings_back_is_filled_from_and_dropped_again(db_url):
    store = StateStore(db_url)
    store.record("p", [sent("a", T0)])
    store.close()
    # A task of the previous version, still running during the upgrade, opens the ledger (and makes
    # its index again) and delivers a newer report without writing the freshness.
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE INDEX {REPORTED_INDEX} ON cht_bridge_delivery (pipeline, status, reported_at)"))
        conn.execute(
            text(
                "INSERT INTO cht_bridge_delivery (pipeline, doc_id, status, attempts, first_attempt_at, "
                "last_attempt_at, failures, operation, reported_at) VALUES ('p', 'b', 'delivered', 1, "
                "'2026-12-01 00:00:00', '2026-12-01 00:00:00', 0, 'upsert', '2026-11-30 10:00:00.000000')"
            )
        )
    engine.dispose()
    store = StateStore(db_url)
    try:
        assert store.newest_delivered("p") == datetime(2026, 11, 30, 10, tzinfo=UTC)
        assert REPORTED_INDEX not in indexes(db_url)
        store.record("p", [sent("c", T0)])  # older: the filled value stays
        assert store.newest_delivered("p") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    finally:
        store.close()


def test_a_ledger_with_the_table_and_without_the_old_index_is_not_filled_again(db_url, store):
    store.record("p", [sent("a", T0 + timedelta(days=1))])
    store.record("p", [refused("a", T0 + timedelta(days=1))])  # its row is no longer delivered
    store.close()
    seen: list[str] = []
    engine = create_engine(db_url)
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    try:
        _migrate(engine)
        assert not [s for s in seen if "INSERT INTO cht_bridge_freshness" in s]
    finally:
        engine.dispose()
    reopened = StateStore(db_url)
    try:
        assert reopened.newest_delivered("p") == T0 + timedelta(days=1)  # kept: not recomputed from the rows
        assert reopened.counts("p") == {FAILED: 1}
        assert inspect(reopened.engine).has_table("cht_bridge_freshness")
    finally:
        reopened.close()


# -- review of the above (REVIEW_idx) ----------------------------------------------------------------


def test_a_report_dated_ahead_of_the_clock_counts_as_delivered_at_the_batch_time(store):
    """A phone whose clock is years ahead must not pin the freshness (and silence the lag alert)."""
    store.record("p", [sent("a", T0), sent("bad", datetime(2031, 6, 1, tzinfo=UTC))])
    newest = store.newest_delivered("p")
    assert newest is not None and newest <= datetime.now(UTC) + timedelta(minutes=5)  # FUTURE_SLACK
    assert newest >= datetime.now(UTC) - timedelta(minutes=5)  # the batch's time: it was delivered now
    ahead = datetime.now(UTC) + timedelta(minutes=2)  # a clock a little fast keeps its own date
    store.record("q", [sent("a", ahead)])
    assert store.newest_delivered("q") == ahead


def test_an_old_ledger_fills_a_report_dated_ahead_with_its_delivery_time(db_url):
    store = StateStore(db_url)
    store.record("p", [sent("a", T0), sent("bad", datetime(2031, 6, 1, tzinfo=UTC))])
    delivered_at = store.ledger("p", "bad")["delivered_at"].replace(tzinfo=UTC)
    store.close()
    as_the_previous_version_left_it(db_url)
    store = StateStore(db_url)
    try:
        assert store.newest_delivered("p") == delivered_at
    finally:
        store.close()


def test_a_deleted_freshness_row_is_filled_again_from_the_rows_by_the_next_batch(db_url, store):
    """The documented refill: delete the pipeline's ``cht_bridge_freshness`` row (a value pinned by an
    earlier version, rows a previous-version task wrote without it, a ledger cleared by hand)."""
    store.record("p", [sent("a", T0 + timedelta(days=5)), sent("b", T0), refused("c", T0 + timedelta(days=9))])
    with store.engine.begin() as conn:  # a previous-version task's delivered row: no freshness written
        conn.execute(
            text(
                "INSERT INTO cht_bridge_delivery (pipeline, doc_id, status, attempts, first_attempt_at, "
                "last_attempt_at, failures, operation, reported_at) VALUES ('p', 'old', 'delivered', 1, "
                "'2026-12-01 00:00:00', '2026-12-01 00:00:00', 0, 'upsert', '2026-11-30 10:00:00.000000')"
            )
        )
        conn.execute(text("UPDATE cht_bridge_freshness SET newest_reported_at = '2031-06-01 00:00:00'"))
        conn.execute(text("DELETE FROM cht_bridge_freshness WHERE pipeline = 'p'"))
    assert store.newest_delivered("p") is None
    store.record("p", [sent("d", T0)])
    assert store.newest_delivered("p") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    store.record("p", [sent("e", T0 + timedelta(days=1))])  # filled once: the next batch only compares
    assert store.newest_delivered("p") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    # A ledger cleared by hand, with its freshness row: nothing left to say how fresh it is.
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM cht_bridge_delivery WHERE pipeline = 'p'"))
        conn.execute(text("DELETE FROM cht_bridge_freshness WHERE pipeline = 'p'"))
    assert queries.forward_overview(store, ["p"], now=NOW)["p"]["lag_seconds"] is None
    store.record("p", [sent("f", T0)])
    assert store.newest_delivered("p") == T0


def counts_while_a_batch_commits(url: str, pipeline: str) -> tuple[dict, dict]:
    """``counts`` read while another task commits 5 failed rows between the reader's statements
    (or right after its first one): (what it read, what the rows say after)."""
    store, writer = StateStore(url), StateStore(url)
    try:
        store.record(pipeline, [refused(f"d{i}") for i in range(10)])
        fired: list[int] = []

        def between(_conn, _cursor, statement, *_args) -> None:
            if "count(" in statement and not fired:
                fired.append(1)
                writer.record(pipeline, [refused(f"n{i}") for i in range(5)])

        event.listen(store.engine, "after_cursor_execute", between)
        read = store.counts(pipeline)
        event.remove(store.engine, "after_cursor_execute", between)
        assert fired
        return read, store.counts(pipeline)
    finally:
        store.close()
        writer.close()


def test_counts_are_one_snapshot_while_another_task_commits(db_url):
    read, after = counts_while_a_batch_commits(db_url, "p")
    assert after == {FAILED: 15}
    assert read in ({FAILED: 10}, {FAILED: 15})  # before or after the batch, never a mix (delivered -5)


def test_replay_of_both_statuses_with_many_ids_is_one_in_list_on_the_primary_key(store):
    store.record("p", [refused("d1"), refused("d2", retryable=False), sent("d3", T0)])
    ids = [f"x{i}" for i in range(2000)] + ["d1", "d2", "d3"]
    asked = _statements(store, lambda: store.select("p", statuses=[FAILED, DEAD], doc_ids=ids))
    assert [len(parameters) for _, parameters in asked] == [len(ids) + 3]  # once, not once per status
    assert "sqlite_autoindex_cht_bridge_delivery_1 (pipeline=? AND doc_id=?)" in _plan(store, *asked[0])
    assert [r["doc_id"] for r in store.select("p", statuses=[FAILED, DEAD], doc_ids=ids)] == ["d1", "d2"]


def _view_plan(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN SELECT * FROM cht_bridge_dead_letters WHERE pipeline = 'p'")
            return " ".join(str(r[-1]) for r in rows)
    finally:
        engine.dispose()


def test_the_dead_letter_view_reads_the_partial_index_also_on_a_ledger_with_the_old_view(db_url, store):
    store.record("p", [sent(f"d{i}", T0) for i in range(20)] + [refused("x", retryable=False)])
    assert "INDEX ix_cht_bridge_delivery_unsettled (pipeline=? AND status=?" in _view_plan(db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:  # the view an earlier version made
        conn.execute(text("DROP VIEW cht_bridge_dead_letters"))
        conn.execute(text(PREVIOUS_DEAD_LETTER_VIEW))
    engine.dispose()
    assert "ix_cht_bridge_delivery_unsettled" not in _view_plan(db_url)
    StateStore(db_url).close()
    assert "INDEX ix_cht_bridge_delivery_unsettled (pipeline=? AND status=?" in _view_plan(db_url)
    with store.engine.connect() as conn:
        assert [r[1] for r in conn.exec_driver_sql("SELECT * FROM cht_bridge_dead_letters")] == ["x"]


def test_an_aggregates_bookkeeping_rows_never_look_up_a_kept_reported_date(store):
    """``<name>~reports`` and ``~periods`` rows never carry a date: no lookup for one per batch."""
    asked = _statements(
        store,
        lambda: store.record("agg~reports", [Outcome(f"r{i}", None, True, destination_id="202611") for i in range(50)]),
    )
    assert asked == []
    assert store.newest_delivered("agg~reports") is None
    asked = _statements(store, lambda: store.record("p", [sent("a", None)]))  # a forward row may have kept one
    assert len(asked) == 1
