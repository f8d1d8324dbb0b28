"""Load the synthetic CHT stream into a CouchDB-protocol server, with edits and deletions.

Edits and deletions are decided per report as it is inserted (with their own Random), so a
million-document load keeps only the current batch in memory, and the changes feed shows them
interleaved with inserts, as a live CHT would.
"""

from __future__ import annotations

import random
from typing import Any

import requests

from standins.generate import DAY_MS, DEFAULT_ANCHOR_MS, generate, kind_of, ymd

HTTP_TIMEOUT = (10, 600)


def _bulk(session: requests.Session, db_url: str, docs: list[dict[str, Any]]) -> list[dict]:
    """``_bulk_docs``; the result rows in the order of ``docs``.

    pouchdb-server's LevelDB mode does not always answer in request order, so rows are matched
    back to the docs by id.
    """
    r = session.post(f"{db_url}/_bulk_docs", json={"docs": docs}, timeout=HTTP_TIMEOUT)
    if r.status_code not in (201, 202):
        raise RuntimeError(f"_bulk_docs failed: HTTP {r.status_code} {r.text[:300]}")
    by_id = {row.get("id"): row for row in r.json()}
    missing = [doc["_id"] for doc in docs if doc["_id"] not in by_id]
    if missing:
        raise RuntimeError(f"_bulk_docs returned no row for {len(missing)} docs, e.g. {missing[0]}")
    return [by_id[doc["_id"]] for doc in docs]


def _edit(doc: dict[str, Any], round_: int, ms: int) -> None:
    """One more revision of a report: a supervisor verifies it, then corrects a field."""
    if round_ == 1:
        doc["verified"] = True
        doc["verified_date"] = ms
    fields = doc["fields"]
    fields["edit_round"] = round_
    if doc["form"] == "assessment":
        fields["temperature"] = round(fields["temperature"] + 0.1, 1)
    elif doc["form"] == "pregnancy":
        fields["anc_visits"] += 1
    else:
        fields["visit_date"] = ymd(ms)


def seed(
    url: str,
    auth: tuple[str, str],
    n_docs: int,
    seed: int = 42,
    db: str = "medic",
    batch: int = 5000,
    edits: float = 0.05,
    deletes: float = 0.01,
    anchor_ms: int = DEFAULT_ANCHOR_MS,
) -> dict[str, int]:
    """Create ``db`` (412 = already there is fine) and load ``generate(n_docs, seed)`` into it.

    Per batch, after ``_bulk_docs``: ~``edits`` of the reports get 1-3 extra revisions and
    ~``deletes`` of them are deleted, using the revs from the bulk response. The choice is made per
    report at insertion time with a separate Random, so only the current batch is in memory.
    Docs that already exist (409 on a re-run) are counted in ``conflicts`` and left alone.
    """
    db_url = f"{url.rstrip('/')}/{db}"
    decide = random.Random(f"{seed}:edits")
    counts = {
        "docs": 0,
        "contacts": 0,
        "reports": 0,
        "edited": 0,
        "deleted": 0,
        "design": 0,
        "other": 0,
        "conflicts": 0,
    }
    with requests.Session() as session:
        session.auth = auth
        r = session.put(db_url, timeout=HTTP_TIMEOUT)
        if r.status_code not in (201, 202, 412):
            raise RuntimeError(f"creating {db!r} failed: HTTP {r.status_code} {r.text[:300]}")

        def flush(docs: list[dict[str, Any]]) -> None:
            to_edit: list[tuple[dict[str, Any], int]] = []
            to_delete: list[dict[str, Any]] = []
            for doc, row in zip(docs, _bulk(session, db_url, docs), strict=True):
                kind = kind_of(doc)
                extra = 0
                if kind == "report":  # decide for every report so the choice is deterministic
                    u = decide.random()
                    if u < deletes:
                        extra = -1
                    elif u < deletes + edits:
                        extra = decide.randint(1, 3)
                if "error" in row:
                    if row["error"] != "conflict":
                        raise RuntimeError(f"_bulk_docs error for {row.get('id')}: {row}")
                    counts["conflicts"] += 1
                    continue
                counts["docs"] += 1
                counts[{"contact": "contacts", "report": "reports"}.get(kind, kind)] += 1
                doc["_rev"] = row["rev"]
                if extra > 0:
                    to_edit.append((doc, extra))
                elif extra < 0:
                    to_delete.append({"_id": doc["_id"], "_rev": row["rev"], "_deleted": True})
            counts["edited"] += len(to_edit)
            for round_ in (1, 2, 3):
                pending = [doc for doc, extra in to_edit if extra >= round_]
                if not pending:
                    break
                for doc in pending:
                    _edit(doc, round_, min(anchor_ms - 1, doc["reported_date"] + round_ * DAY_MS))
                for doc, row in zip(pending, _bulk(session, db_url, pending), strict=True):
                    if "error" in row:
                        raise RuntimeError(f"editing {doc['_id']} failed: {row}")
                    doc["_rev"] = row["rev"]
            if to_delete:
                for row in _bulk(session, db_url, to_delete):
                    if "error" in row:
                        raise RuntimeError(f"deleting {row.get('id')} failed: {row}")
                counts["deleted"] += len(to_delete)

        docs: list[dict[str, Any]] = []
        for doc in generate(n_docs, seed, anchor_ms):
            docs.append(doc)
            if len(docs) >= batch:
                flush(docs)
                docs = []
        if docs:
            flush(docs)
    return counts
