"""The CHT Bridge page's queries and the breaker's record on PostgreSQL: the same tests as on
SQLite (``tests/unit/ui/test_queries.py``), each on a fresh database of a real server."""

from __future__ import annotations

import uuid

import pytest

from cht_bridge.hooks.state import sqlalchemy_url
from cht_bridge.state import StateStore
from tests.unit.ui.test_queries import (  # noqa: F401 - collected here with the PostgreSQL store below
    test_a_store_without_the_reverse_ledger_has_no_rows_waiting,
    test_failures_are_newest_first_with_their_reasons_and_filter_by_words_of_the_reason,
    test_forward_overview_counts_recent_failures_lag_and_breaker,
    test_the_pages_escape_what_they_show,
    test_waiting_rows_give_ids_and_reasons_never_the_record,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url):
    import psycopg

    name = f"ui_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    s = StateStore(sqlalchemy_url(f"{postgres_url.rsplit('/', 1)[0]}/{name}"))
    yield s
    s.close()
