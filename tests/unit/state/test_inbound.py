"""The inbound ledger: keys, list order, checkpoint in the same transaction, records forgotten."""

from __future__ import annotations

import pytest

from cht_bridge.state import StateStore
from cht_bridge.state.inbound import DONE, READY, RECEIVED, InboundLedger, InboundRow


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
