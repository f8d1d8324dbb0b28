"""The ledger every state test opens: a fresh SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cht_bridge.state.store import StateStore


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[StateStore]:
    s = StateStore(db_url)
    yield s
    s.close()
