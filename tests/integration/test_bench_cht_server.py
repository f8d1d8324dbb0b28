"""``bench.local_cht_server`` gives the answers pouchdb-server gives to every read CHT Bridge makes in a
backfill and a changes run, so the million-document numbers of ``make bench-cluster --server sqlite``
measure the same reads: the same generated documents (and one tombstone) are loaded into both, each
request of ``cht.couch.CouchClient`` is made to both and the parsed answers compared, and a real
backfill DAG run against each delivers the same reports."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from bench.local_cht import load
from bench.local_cht_server import LocalChtServer
from cht_bridge.cht.couch import CouchClient
from cht_bridge.errors import AuthError, SourceError
from cht_bridge.source.pages import iter_changes, iter_reports_by_date
from standins.generate import generate
from tests.conftest import received, receiver_connection
from tests.integration.dagrun import new_pipeline, run_dag

pytestmark = pytest.mark.integration

TIMEOUT = (3.0, 30.0)
TOMBSTONE = "deleted-person"
#: What a run's summary counts, compared between the two servers.
COUNTS = (
    "kind",
    "read",
    "tombstones",
    "skipped_design",
    "relevant",
    "mapped",
    "sent",
    "failed",
    "dead_lettered",
    "batches",
)


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


class LocalDb:
    """The bench server as a test database: what ``new_pipeline`` needs of ``cht``."""

    def __init__(self, server: LocalChtServer, db: str, login: tuple[str, str]) -> None:
        self.url, self.db, self.user = server.url, db, login

    def connection(self) -> str:
        return json.dumps({"conn_type": "http", "host": self.url, "login": self.user[0], "password": self.user[1]})


@pytest.fixture
def pair(cht, tmp_path):
    """The same 400 generated documents plus a tombstone, with the same revs, in pouchdb-server and
    in the bench server (the latter serving the database under the same name)."""
    docs = list(generate(400, seed=11))
    docs.append({"_id": TOMBSTONE, "_deleted": True})
    path = tmp_path / "cht.sqlite"
    load(path, iter(copy.deepcopy(docs)))
    for doc in docs:  # the revs bench.local_cht gives, so that documents compare whole
        doc["_rev"] = "1-" + hashlib.md5(doc["_id"].encode()).hexdigest()
    with requests.Session() as session:  # one at a time: a bulk of new_edits=false is not sequenced in order
        for doc in docs:
            r = session.post(f"{cht.db_url}/_bulk_docs", json={"docs": [doc], "new_edits": False}, auth=cht.admin)
            r.raise_for_status()
    login = ("bench", uuid.uuid4().hex)
    server = LocalChtServer(path, login, db=cht.db).start()
    try:
        couch = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test", timeout=TIMEOUT)
        local = CouchClient(server.url, cht.db, login, conn_id="bench_cht", timeout=TIMEOUT)
        yield docs, couch, local, cht, LocalDb(server, cht.db, login)
    finally:
        server.stop()


def _rows(text: str) -> list[dict]:
    return json.loads(text)["rows"]


def _reports(docs: list[dict]) -> list[tuple[int, str]]:
    return sorted((d["reported_date"], d["_id"]) for d in docs if d.get("type") == "data_record" and d.get("form"))


def test_info_and_error_statuses_are_couchdbs(pair):
    docs, couch, local, cht, _ = pair
    a, b = couch.info(), local.info()
    assert (a["db_name"], a["doc_count"]) == (b["db_name"], b["doc_count"]) == (cht.db, len(docs) - 1)
    for client in (couch, local):
        with pytest.raises(SourceError, match="404"):
            CouchClient(client.base_url, "no_such_db", client._auth, timeout=TIMEOUT).info()
        with pytest.raises(AuthError, match="401"):
            CouchClient(client.base_url, cht.db, ("nobody", "wrong"), timeout=TIMEOUT).info()


def test_changes_pages_are_equal_page_by_page(pair):
    docs, couch, local, _, _ = pair
    pages: dict[str, list[dict]] = {}
    for name, client in (("couch", couch), ("local", local)):
        bodies: list[dict] = []

        def keep(text: str, bodies=bodies) -> Any:
            body = json.loads(text)
            bodies.append(body)
            return type("P", (), {"read": len(body["results"]), "last_seq": body["last_seq"]})

        list(iter_changes(client, 0, 64, keep))
        pages[name] = bodies
    assert len(pages["couch"]) == len(pages["local"]) > 5
    for a, b in zip(pages["couch"], pages["local"], strict=True):
        assert a["last_seq"] == b["last_seq"]
        assert a["results"] == b["results"]  # seq, id, changes, deleted, doc
    ids = [r["id"] for p in pages["local"] for r in p["results"]]
    assert ids == [d["_id"] for d in docs]
    assert [r for p in pages["local"] for r in p["results"] if r["id"] == TOMBSTONE][0]["deleted"] is True


def test_reports_by_date_pages_and_edges_are_equal(pair):
    docs, couch, local, _, _ = pair
    reports = _reports(docs)
    start, end = reports[5][0], reports[-5][0]  # a report on the end date: excluded by inclusive_end=false
    pages: dict[str, list[list[dict]]] = {}
    for name, client in (("couch", couch), ("local", local)):
        got: list[list[dict]] = []

        def keep(text: str, cursor: Any, got=got) -> Any:
            rows = _rows(text)
            got.append(rows)
            last = [rows[-1]["key"], rows[-1]["id"]] if rows else None
            return type("P", (), {"rows": len(rows), "cursor": last})

        list(iter_reports_by_date(client, start, end, 17, keep))
        pages[name] = got
    assert len(pages["couch"]) == len(pages["local"]) > 3
    for a, b in zip(pages["couch"], pages["local"], strict=True):
        assert a == b  # id, key, value, doc, in order; each page starts at the cursor row
    ids = [r["id"] for p in pages["local"] for r in p]
    assert sorted(set(ids)) == sorted(i for t, i in reports if start <= t < end)
    # one-off queries the reader could make: an empty range, a limit of 0, a date with no report
    for params in (
        {"startkey": json.dumps([end]), "endkey": json.dumps([end]), "inclusive_end": "false", "limit": 5},
        {"startkey": json.dumps([start]), "endkey": json.dumps([end]), "inclusive_end": "false", "limit": 0},
        {"startkey": json.dumps([start + 1]), "endkey": json.dumps([end]), "inclusive_end": "false", "limit": 3,
         "include_docs": "true", "startkey_docid": "zzz"},
    ):  # fmt: skip
        a = _rows(couch.view_text("medic-client", "reports_by_date", params))
        b = _rows(local.view_text("medic-client", "reports_by_date", params))
        assert a == b, params


def test_contacts_by_reference_and_all_docs_lookups_are_equal(pair):
    docs, couch, local, _, _ = pair
    codes = [str(d.get("place_id") or d.get("patient_id")) for d in docs if d.get("place_id") or d.get("patient_id")]
    assert len(codes) > 50
    keys = [["shortcode", c] for c in [*codes[::-1], *codes, "no-such-code", codes[0]]]  # >100: two requests
    a = [(k, _rows(t)) for k, t in couch.view_texts("medic-client", "contacts_by_reference", keys)]
    b = [(k, _rows(t)) for k, t in local.view_texts("medic-client", "contacts_by_reference", keys)]
    assert len(a) == 2 and a == b  # rows in the order of the keys asked, with the view's values
    ids = [docs[3]["_id"], "no-such-id", TOMBSTONE, "_design/medic-client", docs[-2]["_id"], docs[3]["_id"]]
    assert _rows(couch.all_docs_text(ids)) == _rows(local.all_docs_text(ids))


@pytest.mark.parametrize("kind", ["backfill", "changes"])
def test_a_dag_run_delivers_the_same_reports_from_either_server(
    kind, pair, receiver, monkeypatch, airflow_db, tmp_path
):
    """A backfill (``reports_by_date`` pages, 7 a page) and a changes run (``_changes`` from 0), each
    through the pipeline's own reader, hydration and delivery, once per server."""
    docs, _, _, cht, local_db = pair
    reports = [d for d in docs if d.get("form") == "pregnancy"]
    dates = sorted(d["reported_date"] for d in reports)
    window = {
        "start": datetime.fromtimestamp(dates[len(dates) // 4] / 1000, UTC).date().isoformat(),
        "end": datetime.fromtimestamp(dates[-len(dates) // 4] / 1000, UTC).date().isoformat(),
    }
    if kind == "backfill":
        want = {d["_id"] for d in reports if _ms(window["start"]) <= d["reported_date"] < _ms(window["end"])}
    else:
        want = {d["_id"] for d in reports}
    assert 5 < len(want) <= len(reports)
    delivered: dict[str, list[dict]] = {}
    summaries: dict[str, dict] = {}
    for name, db in (("couch", cht), ("local", local_db)):
        before = len(received(receiver))
        folder, dag_id = new_pipeline(
            monkeypatch, tmp_path / name, db, receiver_connection(receiver), "bench_eq", batch_size=7
        )
        state, summary = run_dag(monkeypatch, folder, dag_id, conf=window if kind == "backfill" else None)
        assert state == "success" and summary["kind"] == kind, summary
        summaries[name] = {k: v for k, v in summary.items() if k in COUNTS}
        delivered[name] = [item["payload"] for item in received(receiver)[before:]]
    assert summaries["couch"] == summaries["local"] and summaries["couch"]["sent"] == len(want)
    assert summaries["couch"]["batches"] > 5
    assert summaries["couch"].get("tombstones") == (1 if kind == "changes" else 0)
    assert {p["report_id"] for p in delivered["couch"]} == want
    key = lambda p: p["report_id"]  # noqa: E731
    assert sorted(delivered["couch"], key=key) == sorted(delivered["local"], key=key)  # hydrated alike
