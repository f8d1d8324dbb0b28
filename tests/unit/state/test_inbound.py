"""The inbound ledger: keys, list order, checkpoint in the same transaction, records forgotten or kept."""

from __future__ import annotations

import pytest

from cht_bridge.state import StateStore
from cht_bridge.state.inbound import (
    DONE,
    FAILED,
    FINISHED,
    READY,
    RECEIVED,
    REVIEW,
    SKIPPED,
    UNPLACED,
    WAITING,
    InboundLedger,
    InboundRow,
)


@pytest.fixture
def ledger(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield InboundLedger(store)
    store.close()


def rows(*ids: str) -> list[InboundRow]:
    return [InboundRow("p", i, "1", RECEIVED, record={"person": {"given_name": "x"}}) for i in ids]


def test_receive_moves_the_checkpoint_and_keeps_list_order(ledger) -> None:
    ledger.receive("p", rows("z", "a", "m"), {"since": "2026-01-01"}, "run1")
    assert ledger.checkpoint("p") == {"since": "2026-01-01"}
    assert [r.source_id for r in ledger.rows("p", [RECEIVED])] == ["z", "a", "m"]


def test_a_reread_page_adds_nothing(ledger) -> None:
    ledger.receive("p", rows("a", "b"), 1, None)
    assert ledger.seen("p", [("a", "1"), ("b", "2"), ("c", "1")]) == {("a", "1")}
    ledger.receive("p", rows("a"), 2, None)  # same key again: ignored
    assert ledger.counts("p") == {RECEIVED: 2} and ledger.checkpoint("p") == 2


def test_a_closed_row_forgets_its_record(ledger) -> None:
    ledger.receive("p", rows("a"), 1, None)
    row = ledger.get("p", "a", "1")
    row.status, row.person_id = READY, "person-1"
    ledger.save(row)
    assert ledger.get("p", "a", "1").record is not None
    row.status, row.report_id = DONE, "report-1"
    ledger.save(row)
    done = ledger.get("p", "a", "1")
    assert done.record is None and (done.person_id, done.report_id) == ("person-1", "report-1")
    assert done.source_ref == "p:a:1"


def test_a_waiting_row_keeps_its_record(ledger) -> None:
    ledger.receive("p", rows("a", "b"), 1, None)
    for source_id, status in (("a", UNPLACED), ("b", FAILED)):
        row = ledger.get("p", source_id, "1")
        row.status, row.reason = status, "why"
        ledger.save(row, "run-1")
        kept = ledger.get("p", source_id, "1")
        assert (kept.status, kept.record, kept.run_id) == (status, {"person": {"given_name": "x"}}, "run-1")
    assert set(WAITING) == {UNPLACED, FAILED} and not set(WAITING) & set(FINISHED)


def test_a_new_version_replaces_the_waiting_older_ones_only(ledger) -> None:
    ledger.receive("p", rows("unplaced", "failed", "done", "review"), 1, None)
    for source_id, status in (("unplaced", UNPLACED), ("failed", FAILED), ("done", DONE), ("review", REVIEW)):
        row = ledger.get("p", source_id, "1")
        row.status = status
        ledger.save(row)
    newer = [InboundRow("p", i, "2", RECEIVED, record={"person": {"given_name": "y"}}) for i in ("unplaced", "failed")]
    newer += [InboundRow("p", i, "2", RECEIVED, record={}) for i in ("done", "review")]
    superseded: list[tuple[str, str]] = []
    ledger.receive("p", newer, 2, "run-2", superseded)
    assert sorted(superseded) == [("failed", "1"), ("unplaced", "1")]
    for source_id in ("unplaced", "failed"):
        old = ledger.get("p", source_id, "1")
        assert (old.status, old.record, old.run_id) == (SKIPPED, None, "run-2")
        assert old.reason == "replaced by a newer version of the record (2)"
    assert ledger.get("p", "done", "1").status == DONE and ledger.get("p", "review", "1").status == REVIEW
    assert ledger.counts("p") == {RECEIVED: 4, SKIPPED: 2, DONE: 1, REVIEW: 1}
    ledger.receive("p", newer[:1], 3, None, superseded)  # the same version again: nothing replaced
    assert len(superseded) == 2


def test_a_newer_version_that_cannot_be_sent_keeps_the_waiting_one(ledger) -> None:
    """A new version whose mapping failed (no record) must not erase the data of the one that waits."""
    ledger.receive("p", rows("a"), 1, None)
    row = ledger.get("p", "a", "1")
    row.status, row.reason = UNPLACED, "no place for facility 'X'"
    ledger.save(row)
    unmappable = InboundRow("p", "a", "2", FAILED, reason="mapping: person.name: TypeError")
    superseded: list[tuple[str, str]] = []
    ledger.receive("p", [unmappable], 2, None, superseded)
    assert superseded == []
    waiting = ledger.get("p", "a", "1")
    assert (waiting.status, waiting.record) == (UNPLACED, {"person": {"given_name": "x"}})


def test_settled_names_ids_with_a_row_that_is_not_waiting_in_any_version(ledger) -> None:
    ledger.receive("p", rows("open", "done", "unplaced", "failed", "skipped"), None, "run1")
    for source_id, status in (("done", DONE), ("unplaced", UNPLACED), ("failed", FAILED), ("skipped", SKIPPED)):
        row = ledger.get("p", source_id, "1")
        row.status = status
        ledger.save(row)
    asked = ["open", "done", "unplaced", "failed", "skipped", "never", "x" * 400]
    assert ledger.settled("p", asked) == {"open", "done", "skipped"}
    assert ledger.settled("other", asked) == set()
