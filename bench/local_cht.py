"""The synthetic CHT stream in a SQLite file, answering the reads an aggregate run makes, in-process.

Why: pouchdb-server (the stand-in CouchDB) takes about 20 minutes to load a million documents and
about an hour to build ``reports_by_date`` on this machine (its map/reduce indexes 50 changes per
LevelDB round trip; a real CHT keeps its views built), so ``bench.dhis2 --in-process`` measures
the aggregate run at a million reports against this instead. It answers exactly what the run asks
CouchDB for, with CouchDB's shapes and semantics, as text the sandbox parses as it would a server's:

- ``_changes`` (``since``, ``limit``, ``include_docs``): the documents in load order, seq = rowid;
- ``medic-client/reports_by_date`` (``startkey``, ``startkey_docid``, ``endkey``,
  ``inclusive_end=false``, ``limit``, ``include_docs``): reports with a ``form``, keyed
  ``[reported_date]`` and ordered by key then id from a real index (the view's map function in
  ``standins/fixed_docs.py``), the ``startkey`` row included as CouchDB does;
- ``medic-client/contacts_by_reference`` by keys, and ``_all_docs?keys=`` with documents.

Memory is bounded: everything is on disk; a request reads one page. Only the one current revision of
each document is stored, as ``1-<md5 of the id>`` (no edits: ``standins/seed.py`` makes those for the
end-to-end mode); a document with ``"_deleted": true`` is stored as its tombstone; inline attachments
are answered as CouchDB's stubs. Not a server: no HTTP, so the run's HTTP reads of CHT are the one part this mode leaves out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cht_bridge.cht.couch import VIEW_KEYS_PER_REQUEST

#: A deleted document (``"_deleted": true`` in the stream) is stored as its tombstone,
#: ``{"_id", "_rev", "_deleted": true}`` in this order, which is how its answers are told apart.
_TOMBSTONE, _DELETED = '"_deleted":true}', '"deleted":true,'
CONTACT_TYPES = ("district_hospital", "health_center", "clinic", "person", "contact")
SCHEMA = """
CREATE TABLE docs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, rev TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE reports (date INTEGER NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (date, id))
  WITHOUT ROWID;
CREATE TABLE codes (code TEXT NOT NULL, id TEXT NOT NULL);
CREATE TABLE tombstones (id TEXT PRIMARY KEY);
"""


def load(path: Path, docs: Iterator[dict[str, Any]], batch: int = 5000) -> dict[str, Any]:
    """Write ``docs`` (``standins.generate``'s stream) to a new SQLite file; return counts and the
    health centres (``_id``, ``name``), which the benchmark's org unit table is made from."""
    db = sqlite3.connect(path)
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
    counts = {"docs": 0, "reports": 0, "contacts": 0}
    centres: list[dict[str, str]] = []
    rows: list[tuple[str, str, str]] = []
    reports: list[tuple[int, str, int]] = []
    codes: list[tuple[str, str]] = []
    tombstones: list[tuple[str]] = []

    def flush() -> None:
        first = db.execute("SELECT coalesce(max(seq), 0) FROM docs").fetchone()[0] + 1
        db.executemany("INSERT INTO docs (id, rev, body) VALUES (?, ?, ?)", rows)
        db.executemany("INSERT INTO reports VALUES (?, ?, ?)", [(d, i, first + k) for d, i, k in reports])
        db.executemany("INSERT INTO codes VALUES (?, ?)", codes)
        db.executemany("INSERT INTO tombstones VALUES (?)", tombstones)
        rows.clear(), reports.clear(), codes.clear(), tombstones.clear()

    for doc in docs:
        doc["_rev"] = "1-" + hashlib.md5(doc["_id"].encode()).hexdigest()
        if doc.get("_deleted"):  # no view emits a tombstone
            doc = {"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True}
            tombstones.append((doc["_id"],))
        if doc.get("_attachments"):
            doc["_attachments"] = {name: _stub(a) for name, a in doc["_attachments"].items()}
        if doc.get("type") == "data_record" and doc.get("form"):  # the view's map function
            reports.append((doc["reported_date"], doc["_id"], len(rows)))
            counts["reports"] += 1
        elif doc.get("type") in CONTACT_TYPES:
            counts["contacts"] += 1
            code = doc.get("place_id") or doc.get("patient_id")
            if code:
                codes.append((str(code), doc["_id"]))
            if doc["type"] == "health_center":
                centres.append({"_id": doc["_id"], "name": doc["name"]})
        rows.append((doc["_id"], doc["_rev"], json.dumps(doc, separators=(",", ":"))))
        counts["docs"] += 1
        if len(rows) >= batch:
            flush()
    flush()
    db.execute("CREATE INDEX codes_code ON codes (code)")
    db.commit()
    db.close()
    return {**counts, "health_centres": centres}


def _stub(attachment: dict[str, Any]) -> dict[str, Any]:
    """An inline attachment as CouchDB answers it without ``attachments=true``: a stub."""
    data = base64.b64decode(attachment["data"])
    digest = base64.b64encode(hashlib.md5(data).digest()).decode()
    return {"content_type": attachment["content_type"], "digest": f"md5-{digest}", "length": len(data),
            "revpos": 1, "stub": True}  # fmt: skip


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


class LocalCht:
    """The reads of ``cht_bridge.cht.CouchClient`` a run makes, answered from a ``load``-ed file.

    One read-only connection per thread (the run reads the next page in a background thread).
    """

    conn_id = "bench_local_cht"

    def __init__(self, path: Path) -> None:
        self.uri = f"file:{path}?mode=ro"
        self._local = threading.local()
        self.requests: Counter[str] = Counter()  # per kind of read, printed by the benchmark

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.uri, uri=True)
        return db

    def info(self, db: str = "medic") -> dict:
        db_ = self._db()
        deleted = "(SELECT count(*) FROM tombstones)" if _has_table(db_, "tombstones") else "0"  # older files
        return {"db_name": db, "doc_count": db_.execute(f"SELECT count(*) - {deleted} FROM docs").fetchone()[0]}

    def changes_text(self, since: Any, limit: int) -> str:
        self.requests["_changes"] += 1
        rows = (
            self._db()
            .execute(
                "SELECT seq, id, rev, body FROM docs WHERE seq > ? ORDER BY seq LIMIT ?", (int(since or 0), int(limit))
            )
            .fetchall()
        )
        results = ",".join(
            f'{{"seq":{s},"id":{json.dumps(i)},"changes":[{{"rev":"{r}"}}],'
            f'{_DELETED if b.endswith(_TOMBSTONE) else ""}"doc":{b}}}'
            for s, i, r, b in rows
        )
        return f'{{"results":[{results}],"last_seq":{rows[-1][0] if rows else int(since or 0)}}}'

    def view_text(self, ddoc: str, view: str, params: dict[str, Any]) -> str:
        if (ddoc, view) != ("medic-client", "reports_by_date") or params.get("inclusive_end") != "false":
            raise NotImplementedError(f"{ddoc}/{view} {sorted(params)}: only what an aggregate run asks")
        self.requests[view] += 1
        (start,), (end,) = json.loads(params["startkey"]), json.loads(params["endkey"])
        after = (start, params.get("startkey_docid", ""))
        rows = (
            self._db()
            .execute(
                "SELECT r.date, r.id, d.body FROM reports r JOIN docs d ON d.seq = r.seq"
                " WHERE (r.date, r.id) >= (?, ?) AND r.date < ? ORDER BY r.date, r.id LIMIT ?",
                (*after, end, int(params["limit"])),
            )
            .fetchall()
        )
        return '{"rows":[' + ",".join(f'{{"id":"{i}","key":[{t}],"value":{t},"doc":{b}}}' for t, i, b in rows) + "]}"

    def view_texts(self, ddoc: str, view: str, keys: list[Any]) -> Iterator[tuple[list[Any], str]]:
        if (ddoc, view) != ("medic-client", "contacts_by_reference"):
            raise NotImplementedError(f"{ddoc}/{view} by keys: only what hydration asks")
        for start in range(0, len(keys), VIEW_KEYS_PER_REQUEST):
            chunk = keys[start : start + VIEW_KEYS_PER_REQUEST]
            self.requests[view] += 1
            codes = [k[1] for k in chunk if k[0] == "shortcode"]
            found: dict[str, list[dict[str, Any]]] = {}
            for c, i, value in self._db().execute(
                "SELECT c.code, c.id, json_extract(d.body, '$.reported_date') FROM codes c JOIN docs d ON d.id = c.id"
                f" WHERE c.code IN ({','.join('?' * len(codes))}) ORDER BY c.code, c.id",
                codes,
            ):
                found.setdefault(c, []).append({"id": i, "key": ["shortcode", c], "value": value})
            # CouchDB answers a keys query key by key, in the order asked (a repeated key again)
            yield chunk, json.dumps({"rows": [row for c in codes for row in found.get(c, [])]})

    def all_docs_text(self, ids: list[str]) -> str:
        self.requests["_all_docs"] += 1
        found = dict(
            (i, (r, b))
            for i, r, b in self._db().execute(
                f"SELECT id, rev, body FROM docs WHERE id IN ({','.join('?' * len(ids))})", ids
            )
        )
        rows = [
            f'{{"id":{json.dumps(i)},"key":{json.dumps(i)},"value":{{"rev":"{found[i][0]}"}},"doc":{found[i][1]}}}'
            if i in found and not found[i][1].endswith(_TOMBSTONE)
            else json.dumps({"id": i, "key": i, "value": {"rev": found[i][0], "deleted": True}, "doc": None})
            if i in found
            else json.dumps({"key": i, "error": "not_found"})
            for i in ids
        ]
        return '{"rows":[' + ",".join(rows) + "]}"
