"""Reading ``_changes`` from a real local CouchDB-protocol server: paging one page ahead, the opaque
seq, what a loaded page keeps and skips, and how auth, network and missing-database errors surface."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import requests

from cht_bridge.cht.couch import CouchClient
from cht_bridge.errors import AuthError, SourceError
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.source.hydration import Hydrator
from cht_bridge.source.pages import Page, iter_changes
from tests.recording import RecordingClient

pytestmark = pytest.mark.integration

LIMIT = 64
TIMEOUT = (3.0, 30.0)


class Loader:
    """``load`` for ``iter_changes``: the hydrator's own loader, keeping the raw text of each page."""

    def __init__(self, client: CouchClient) -> None:
        self.hydrator = Hydrator(client)
        self.bodies: list[dict] = []

    def __call__(self, text: str) -> Page:
        self.bodies.append(json.loads(text))
        return self.hydrator.load_page(text)


def user_client(cht, cls=CouchClient, **kwargs: Any) -> CouchClient:
    return cls(cht.url, cht.db, cht.user, conn_id="cht_test", timeout=TIMEOUT, **kwargs)


def read_all(client: CouchClient, since: Any = 0, limit: int = LIMIT) -> tuple[list[Page], Loader]:
    load = Loader(client)
    return list(iter_changes(client, since, limit, load)), load


def raw_changes(cht) -> dict:
    """The whole feed in one request, as the admin: the reference the pages are checked against."""
    r = requests.get(f"{cht.db_url}/_changes", params={"since": 0, "include_docs": "true"}, auth=cht.admin, timeout=60)
    r.raise_for_status()
    return r.json()


@pytest.fixture
def seeded(cht):
    counts = cht.seed(300)
    # make sure every kind a page sorts out is present, whatever the generator drew
    extra = cht.put(
        {"_id": "_design/extra", "views": {}},
        {"_id": "to-delete", "type": "person", "name": "Temp"},
        {"_id": "some-report-info", "type": "info", "doc_id": "some-report"},
    )
    requests.delete(
        f"{cht.db_url}/to-delete", params={"rev": extra[1]["rev"]}, auth=cht.admin, timeout=30
    ).raise_for_status()
    return cht, counts


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


# -- paging --------------------------------------------------------------------------------------------


def test_pages_cover_every_change_exactly_once_and_end_on_a_short_page(seeded):
    cht, _ = seeded
    reference = raw_changes(cht)
    expected_ids = [row["id"] for row in reference["results"]]
    assert len(expected_ids) > 4 * LIMIT and len(expected_ids) % LIMIT != 0

    client = user_client(cht, RecordingClient)
    pages, load = read_all(client)

    rows = [row for body in load.bodies for row in body["results"]]
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))  # no doc twice
    assert sorted(ids) == sorted(expected_ids)  # and none missing
    assert [p.read for p in pages] == [len(b["results"]) for b in load.bodies]
    assert [p.read for p in pages[:-1]] == [LIMIT] * (len(pages) - 1)
    assert 0 < pages[-1].read < LIMIT
    assert pages[-1].last_seq == reference["last_seq"]
    assert [p.last_seq for p in pages] == [b["last_seq"] for b in load.bodies]
    # one request per page: nothing is read ahead after the short page
    assert len(client.since_sent) == len(pages)


def test_each_request_sends_the_previous_pages_last_seq_verbatim(seeded):
    cht, _ = seeded
    client = user_client(cht, RecordingClient)
    pages, _ = read_all(client)
    assert client.since_sent == ["0"] + [str(p.last_seq) for p in pages[:-1]]


def test_paging_ends_on_an_empty_page_when_the_feed_is_a_multiple_of_the_limit(cht):
    cht.put(*({"_id": f"doc{i}", "type": "person"} for i in range(10)))
    client = user_client(cht, RecordingClient)
    pages, _ = read_all(client, limit=5)
    assert [p.read for p in pages] == [5, 5, 0]
    assert pages[-1].last_seq == cht.last_seq()
    assert len(client.since_sent) == 3


def test_resuming_from_a_checkpoint_reads_only_later_changes(cht):
    cht.put(*({"_id": f"old{i}", "type": "person"} for i in range(7)))
    client = user_client(cht)
    (first,), _ = read_all(client, limit=100)
    cht.put({"_id": "new1", "type": "person"}, {"_id": "new2", "type": "clinic"})
    (resumed,), _ = read_all(client, first.last_seq, limit=100)
    assert resumed.ids == ["new1", "new2"] and resumed.read == 2
    assert resumed.last_seq == cht.last_seq()


def test_an_opaque_couchdb3_seq_is_sent_as_is(cht):
    """pouchdb-server echoes a since it cannot use as last_seq: proof of what went on the wire."""
    cht.put({"_id": "a", "type": "person"})
    seq = "12-g1AAAAH5eJyF0EEKwjAQBdDfmvmH"
    client = user_client(cht, RecordingClient)
    (page,), _ = read_all(client, seq, limit=10)
    assert client.since_sent == [seq]
    assert page.last_seq == seq and page.read == 0 and page.ids == []


# -- what a page keeps ------------------------------------------------------------------------------------


def test_a_page_counts_design_info_and_tombstones_and_keeps_the_rest(seeded):
    cht, _ = seeded
    reference = raw_changes(cht)["results"]
    design = [r for r in reference if r["id"].startswith("_design/")]
    info = [r for r in reference if r["id"].endswith("-info")]
    deleted = [r for r in reference if r.get("deleted") and r not in design and r not in info]
    kept = [r["doc"] for r in reference if r not in design and r not in info and r not in deleted]
    assert len(design) == 2 and len(info) >= 2 and len(deleted) >= 1 and len(kept) > 200

    pages, _ = read_all(user_client(cht))
    assert sum(p.design for p in pages) == len(design)
    assert sum(p.info for p in pages) == len(info)
    assert sum(p.tombstones for p in pages) == len(deleted)
    assert sum(p.read for p in pages) == len(reference)
    got = {i: rev for p in pages for i, rev in zip(p.ids, p.revs, strict=True)}
    assert sum(len(p.ids) for p in pages) == len(got)  # each kept doc once
    assert got == {d["_id"]: d["_rev"] for d in kept}
    assert "to-delete" not in got
    assert {"settings", "form:pregnancy"} <= set(got)  # only what Sentinel skips is skipped


def test_page_order_of_precedence_and_rows_without_docs():
    body = {
        "results": [
            {"id": "_design/x", "deleted": True, "doc": {"_id": "_design/x", "_deleted": True}},
            {"id": "r1-info", "deleted": True, "doc": {"_id": "r1-info", "_deleted": True}},
            {"id": "gone", "changes": [{"rev": "2-a"}], "doc": {"_id": "gone", "_rev": "2-a", "_deleted": True}},
            {"id": "nodoc", "changes": [{"rev": "1-a"}]},
            {"id": "p-info-x", "doc": {"_id": "p-info-x", "_rev": "1-b", "type": "person"}},
            {"id": "p", "doc": {"_id": "p", "_rev": "3-c", "type": "person"}},
        ],
        "last_seq": "6-opaque",
    }
    hydrator = Hydrator(CouchClient("http://127.0.0.1:9", "unused"))  # no request is made
    page = hydrator.load_page(json.dumps(body))
    assert (page.read, page.design, page.info, page.tombstones) == (6, 1, 1, 2)
    assert page.ids == ["p-info-x", "p"] and page.revs == ["1-b", "3-c"]
    assert page.last_seq == "6-opaque"
    assert hydrator.requests == 0


# -- errors ---------------------------------------------------------------------------------------------


def test_wrong_password_is_an_auth_error_naming_the_connection_not_the_password(cht):
    cht.put({"_id": "a", "type": "person"})
    secret = "Wr0ng-Pa55word-7f3a"
    client = CouchClient(cht.url, cht.db, (cht.user[0], secret), conn_id="cht_prod", timeout=TIMEOUT)
    with pytest.raises(AuthError) as err:
        read_all(client, limit=10)
    assert err.value.conn_id == "cht_prod" and err.value.status == 401
    assert "cht_prod" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value.args)
    with pytest.raises(AuthError):  # every request, not only _changes
        Hydrator(client).hydrate([{"_id": "r", "type": "data_record", "contact": {"_id": "a"}}])


def test_no_credentials_on_a_members_only_db_is_an_auth_error(cht):
    with pytest.raises(AuthError):
        CouchClient(cht.url, cht.db, None, conn_id="anon", timeout=TIMEOUT).info()


def test_unreachable_server_is_a_source_error_without_status_after_a_few_tries(cht, caplog):
    port = free_closed_port()
    quick = RetryPolicy(retries=2, backoff_s=0.01, max_backoff_s=0.02)
    client = CouchClient(
        f"http://127.0.0.1:{port}", "medic", ("u", "s3cr3t-xyz"), conn_id="cht_down", timeout=TIMEOUT, retry=quick
    )
    with pytest.raises(SourceError) as err:
        read_all(client, limit=10)
    assert not isinstance(err.value, AuthError)
    assert err.value.status is None
    assert "cht_down" in str(err.value) and "s3cr3t-xyz" not in str(err.value)
    tries = [r for r in caplog.records if "trying again" in r.getMessage()]
    assert len(tries) == 2 and all("ConnectionError on GET" in r.getMessage() for r in tries)


def test_a_read_is_repeated_through_a_5xx_and_a_404_is_not(cht, monkeypatch):
    quick = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.02)
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test", timeout=TIMEOUT, retry=quick)
    real = requests.Session.request
    answers = iter([503, 502])
    calls = []

    def flaky(self, method, url, **kwargs):
        calls.append(url)
        status = next(answers, None)
        if status is None:
            return real(self, method, url, **kwargs)
        response = requests.Response()
        response.status_code, response._content = status, b'{"error": "restarting"}'
        return response

    monkeypatch.setattr(requests.Session, "request", flaky)
    assert client.info()["db_name"] == cht.db and len(calls) == 3
    calls.clear()
    with pytest.raises(SourceError):
        CouchClient(cht.url, "no_such_db", cht.user, conn_id="cht_test", retry=quick).info()
    assert len(calls) == 1


def test_missing_database_is_a_source_error_with_status_404(cht):
    client = CouchClient(cht.url, "no_such_db_here", cht.user, conn_id="cht_test", timeout=TIMEOUT)
    with pytest.raises(SourceError) as err:
        read_all(client, limit=10)
    assert not isinstance(err.value, AuthError)
    assert err.value.status == 404
    assert "cht_test" in str(err.value) and "404" in str(err.value)
