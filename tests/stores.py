"""Opening one state store from several tasks at once, as workers do after an upgrade."""

from __future__ import annotations

import threading

from cht_bridge.state.store import StateStore


def open_at_once(url: str, tasks: int = 6) -> list[Exception]:
    """Open ``url`` from ``tasks`` threads at the same moment; the errors a task would have failed with."""
    opened: list[StateStore] = []
    errors: list[Exception] = []

    def open_it() -> None:
        try:
            opened.append(StateStore(url))
        except Exception as exc:  # noqa: BLE001 - returned for the test to report
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for store in opened:
        store.close()
    if len(opened) + len(errors) < tasks:
        errors.append(TimeoutError("a task was still opening the store after 120 s"))
    return errors


#: The dead-letter view as the previous version made it: its WHERE without ``status <> 'delivered'``.
PREVIOUS_DEAD_LETTER_VIEW = (
    "CREATE VIEW cht_bridge_dead_letters AS SELECT pipeline, doc_id, doc_rev, operation, failures, attempts, "
    "response_status, last_error, first_attempt_at, last_attempt_at FROM cht_bridge_delivery WHERE status = 'dead'"
)


def as_the_previous_version_left_it(url: str) -> None:
    """Give the ledger at ``url`` the previous version's shape: freshness read from the rows through
    ``ix_cht_bridge_delivery_reported``, failures through ``ix_cht_bridge_delivery_recent`` (both
    over every row), no ``cht_bridge_freshness`` table, its dead-letter view (``status = 'dead'`` alone)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE cht_bridge_freshness"))
        conn.execute(text("DROP VIEW cht_bridge_dead_letters"))
        conn.execute(text(PREVIOUS_DEAD_LETTER_VIEW))
        conn.execute(text("DROP INDEX ix_cht_bridge_delivery_unsettled"))
        for name, column in (("recent", "last_attempt_at"), ("reported", "reported_at")):
            conn.execute(
                text(f"CREATE INDEX ix_cht_bridge_delivery_{name} ON cht_bridge_delivery (pipeline, status, {column})")
            )
    engine.dispose()
