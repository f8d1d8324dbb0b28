"""What a run opens: CHT client, destination, state store and compiled mapping, in one place.

The Airflow task opens them from the pipeline's Connections; the benchmark worker and the crash
tests' worker process open the very same things from plain URLs and credentials (``Endpoint``),
so all three run the code a production task runs. CHT credentials are proven first (one request),
so wrong ones fail before anything is read or sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """A URL and login given directly, in place of an Airflow Connection (benchmark, tests)."""

    url: str
    auth: tuple[str, str] | None = None


@dataclass
class Resources:
    client: Any
    destination: Any
    store: Any
    mapper: Any

    def close(self) -> None:
        for part in (self.mapper, self.destination, self.store):
            if part is not None:
                part.close()


def open_resources(
    pipeline: Any, *, cht: Endpoint | None = None, destination: Endpoint | None = None, state_url: str | None = None
) -> Resources:
    """Open everything a run of ``pipeline`` needs; the caller closes it (``Resources.close``).

    Each of ``cht``, ``destination`` and ``state_url`` replaces the pipeline's Airflow Connection
    for that part; left out, the Connection is used (and Airflow must be importable).
    """
    from cht_bridge.mapping import Mapper

    opened = Resources(None, None, None, Mapper.for_pipeline(pipeline))
    try:
        opened.client = _client(pipeline, cht)
        opened.client.info()  # one request: wrong credentials fail here, before anything is read or sent
        opened.destination = _destination(pipeline, destination)
        opened.store = _store(pipeline, state_url)
        if hasattr(opened.destination, "use_ledger"):  # a kind that refers to what it delivered before
            opened.destination.use_ledger(opened.store.for_destination(pipeline.name, lambda: peers(pipeline)))
        if getattr(opened.destination, "cht_api_conn_id", None) and destination is None:
            opened.destination.use_cht_api(_cht_api(opened.destination.cht_api_conn_id))  # it writes back to CHT
        if destination is None:  # each send holds a send slot of the Connection (when limits are on)
            from cht_bridge.sync.gate import gated

            opened.destination = gated(opened.destination, opened.store, pipeline.destination.conn_id)
    except BaseException:
        opened.close()
        raise
    return opened


@contextmanager
def opened(pipeline: Any, **given: Any) -> Iterator[Resources]:
    """``open_resources`` as a ``with`` block, closed at its end."""
    resources = open_resources(pipeline, **given)
    try:
        yield resources
    finally:
        resources.close()


def peers(pipeline: Any) -> list[str]:
    """The other pipelines of ``pipeline``'s folder that deliver to the same Connection and kind.

    The ledger knows each row's pipeline, the pipeline files each pipeline's ``destination``: a
    record counts as at this destination only when one of these delivered it. A file that does not
    load is skipped (its own DAG reports it).
    """
    from pathlib import Path

    from cht_bridge.config import load_pipeline
    from cht_bridge.errors import ConfigError

    mine = (pipeline.destination.conn_id, pipeline.destination.type)
    found = []
    for path in sorted(Path(pipeline.file).parent.glob("*.y*ml")):
        try:
            other = load_pipeline(path)
        except (ConfigError, OSError):
            continue
        if other.name != pipeline.name and (other.destination.conn_id, other.destination.type) == mine:
            found.append(other.name)
    return found


def _client(pipeline: Any, cht: Endpoint | None) -> Any:
    if cht is None:
        from cht_bridge.hooks import ChtHook

        return ChtHook(pipeline.cht_conn_id).get_client(pipeline.cht_db)
    from cht_bridge.cht import CouchClient

    return CouchClient(cht.url, pipeline.cht_db, cht.auth, conn_id=pipeline.cht_conn_id)


def _destination(pipeline: Any, given: Endpoint | None) -> Any:
    if given is None:
        from cht_bridge.hooks import open_destination_from_connection

        return open_destination_from_connection(pipeline.destination, file=pipeline.file, delivery=pipeline.delivery)
    from cht_bridge.destinations import open_destination
    from cht_bridge.http.origin import scoped_session

    session = scoped_session(given.url, basic=given.auth)  # as a Connection's (``hooks.connection``)
    return open_destination(session, given.url, pipeline.destination, pipeline.delivery)


def _cht_api(conn_id: str) -> Any:
    """The CHT API client a destination writes back through, from its Airflow Connection."""
    from cht_bridge.hooks import ChtHook

    return ChtHook(conn_id).get_api_client()


def _store(pipeline: Any, state_url: str | None) -> Any:
    if state_url is None:
        from cht_bridge.hooks import open_state_store

        return open_state_store(pipeline.state_conn_id)
    from cht_bridge.state import StateStore

    return StateStore(state_url)
