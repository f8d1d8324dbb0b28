"""The hydrated page passes from the Hydrator to the Mapper as a handle: a stale one, or one from
another sandbox, is refused instead of mapping whatever the sandbox holds now."""

from __future__ import annotations

import json

import pytest

from cht_bridge.cht import CouchClient
from cht_bridge.mapping import Mapper
from cht_bridge.source import Hydrator


def changes(*ids: str) -> str:
    rows = [{"id": i, "doc": {"_id": i, "_rev": "1-a", "type": "data_record", "form": "v"}} for i in ids]
    return json.dumps({"results": rows, "last_seq": "9-z"})


@pytest.fixture
def mapper():
    m = Mapper("visits", "doc.type === 'data_record'", {"id": "doc._id"})
    yield m
    m.close()


def test_the_mapper_maps_the_batch_its_handle_names(mapper):
    hydrator = Hydrator(CouchClient("http://127.0.0.1:9", "unused"), sandbox=mapper.sandbox)  # no request is made
    first = hydrator.hydrated(hydrator.load_page(changes("a", "b")))
    assert [m.payload for m in mapper.map_batch(first)] == [{"id": "a"}, {"id": "b"}]
    second = hydrator.hydrated(hydrator.load_page(changes("c")))
    with pytest.raises(ValueError, match="another page replaced it"):
        mapper.map_batch(first)  # its documents are no longer in the sandbox
    assert [m.payload for m in mapper.map_batch(second)] == [{"id": "c"}]


def test_a_batch_hydrated_in_another_sandbox_is_refused(mapper):
    other = Mapper("other", "true", {"id": "doc._id"})
    try:
        hydrator = Hydrator(CouchClient("http://127.0.0.1:9", "unused"), sandbox=other.sandbox)
        batch = hydrator.hydrated(hydrator.load_page(changes("a")))
        with pytest.raises(ValueError):
            mapper.map_batch(batch)
    finally:
        other.close()
