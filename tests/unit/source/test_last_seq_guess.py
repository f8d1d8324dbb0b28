"""``last_seq_of``: where a full ``_changes`` answer says the next page starts, read from its tail.

Only a guess to read ahead with, so what matters is that it is right for the answers CouchDB and
pouchdb-server send, and None (no read ahead) for an answer that looks short or is not readable.
"""

from __future__ import annotations

import json

from cht_bridge.source.pages import last_seq_of


def answer(rows: int, last_seq, pending: int | None = None, indent: str = "") -> str:
    results = [{"seq": k, "id": f"d{k}", "changes": [{"rev": "1-a"}], "doc": {"_id": f"d{k}"}} for k in range(rows)]
    body = {"results": results, "last_seq": last_seq}
    if pending is not None:
        body["pending"] = pending
    return json.dumps(body, indent=indent or None)


def test_a_full_pouchdb_page_names_its_numeric_last_seq():
    assert last_seq_of(answer(4, 1234), 4) == 1234


def test_a_full_couchdb_page_names_its_opaque_last_seq_before_pending():
    seq = "4-g1AAAACbeJzLYWBgYMpgTmHgz8tPSTV0MDQy0TMw0TMw0dM1N9AzNjLTMzE3NE4wMIiF"
    assert last_seq_of(answer(4, seq, pending=10, indent="  "), 4) == seq


def test_a_short_page_is_not_read_past():
    assert last_seq_of(answer(3, 99), 4) is None


def test_an_answer_without_a_readable_last_seq_gives_no_guess():
    full = answer(4, 7)
    assert last_seq_of(full[: full.rindex('"last_seq"')] + '"last_seq": }', 4) is None
    assert last_seq_of(full.replace('"last_seq": 7', '"last_seq": {"a": 1}'), 4) is None
    assert last_seq_of(full.replace('"last_seq"', '"other"'), 4) is None
    assert last_seq_of(full.replace('"last_seq": 7', '"last_seq": true'), 4) is None
