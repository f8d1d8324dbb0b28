"""What the ledgers keep from outside: reasons as one line, and ids they can hold (or a short key)."""

from __future__ import annotations

import pytest

from cht_bridge.errors import one_line
from cht_bridge.state import Outcome
from cht_bridge.state.inbound import FAILED, RECEIVED, InboundLedger, InboundRow, ledger_key, refused_row
from cht_bridge.state.store import DOC_ID_CHARS, DOC_REV_CHARS, fits, refusal, short_id

FORGED = "HTTP 422: no such facility\n2026-12-04 20:00:00 INFO cht_bridge.sync: all good\r\x1b[2K\u2028\u202eevil\x00."


def test_one_line_keeps_the_words_and_drops_line_breaks_and_controls():
    text = one_line(FORGED)
    assert text == "HTTP 422: no such facility 2026-12-04 20:00:00 INFO cht_bridge.sync: all good [2K evil ."
    assert one_line(None) is None and one_line("plain reason") == "plain reason"


def test_a_destination_reason_is_stored_as_one_line(store):
    store.record("p", [Outcome("a", "1-a", False, "h", 422, error=FORGED, retryable=False)])
    stored = store.ledger("p", "a")["last_error"]
    assert stored.startswith("HTTP 422: no such facility 2026-12-04") and stored.isprintable()
    assert [f["last_error"] for f in store.failures("p")] == [stored]


def test_a_reason_in_the_inbound_ledger_is_stored_as_one_line(store):
    ledger = InboundLedger(store)
    ledger.receive("p", [InboundRow("p", "r1", "1", RECEIVED, record={"x": 1})], None, None)
    row = ledger.get("p", "r1", "1")
    row.status, row.reason = FAILED, "HTTP 400 on POST /api/v2/records: bad\nINFO forged"
    ledger.save(row)
    assert row.reason == "HTTP 400 on POST /api/v2/records: bad INFO forged"  # as the caller logs it next
    assert ledger.get("p", "r1", "1").reason == row.reason


@pytest.mark.parametrize(
    "value, ok",
    [("a" * 255, True), ("a" * 256, False), ("ab\x00", False), ("\ud800x", False), ("é" * 255, True), (None, True)],
)
def test_what_a_column_of_255_characters_holds(value, ok):
    assert fits(value, 255) is ok


def test_a_long_id_gets_a_short_key_that_is_stable_distinct_and_one_line():
    first, second = "x\n" * 200, "x\n" * 199 + "y\n"
    assert short_id(first) == short_id(first) != short_id(second)
    assert len(short_id(first)) < 80 and fits(short_id(first), DOC_ID_CHARS) and short_id(first).isprintable()
    assert short_id("fine") == "fine"


def test_a_document_the_ledger_cannot_hold_is_refused_as_a_dead_letter(store):
    long_id = "d" * 300
    assert refusal("ok", "1-a") is None
    dead = refusal(long_id, "1-a")
    assert (dead.doc_id, dead.doc_rev, dead.delivered, dead.retryable) == (short_id(long_id), "1-a", False, False)
    assert "cannot hold the document's id (300 characters; at most 255" in dead.error
    assert store.record("p", [dead]) == {"dead": 1}
    assert store.ledger("p", short_id(long_id))["last_error"] == dead.error
    bad_rev = refusal("ok", "9" * (DOC_REV_CHARS + 1))
    assert (bad_rev.doc_id, bad_rev.doc_rev) == ("ok", None) and "revision (101 characters" in bad_rev.error
    assert store.states("p", [long_id, "a\x00b"]) == {}  # never a row, and never a query PostgreSQL refuses


def test_a_destination_id_the_ledger_cannot_hold_is_not_kept_and_the_delivery_is(store):
    counts = store.record("p", [Outcome("a", "1-a", True, "h", 201, destination_id="E" * 300)], checkpoint=5)
    row = store.ledger("p", "a")
    assert counts == {"delivered": 1} and store.checkpoint("p") == 5
    assert (row["status"], row["delivered_hash"], row["destination_id"]) == ("delivered", "h", None)
    assert "answered an id of 300 characters" in row["last_error"]


def test_a_list_record_the_inbound_ledger_cannot_hold_is_refused_under_a_short_key(store):
    ledger = InboundLedger(store)
    assert refused_row("p", "r1", "1") is None
    row = refused_row("p", "r" * 300, "1")
    assert (row.source_id, row.source_version, row.status) == (short_id("r" * 300), "1", FAILED)
    assert "cannot hold the record's id (300 characters" in row.reason
    ledger.receive("p", [row], {"file.csv": "abc"}, None)
    assert ledger.seen("p", [("r" * 300, "1"), ("r" * 299, "1")]) == {("r" * 300, "1")}  # a re-read adds nothing
    assert ledger_key("r" * 300, "v" * 256) == (short_id("r" * 300), short_id("v" * 256))
