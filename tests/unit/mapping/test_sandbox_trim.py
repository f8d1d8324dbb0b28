"""``Sandbox.trim`` asks V8 for its heap size only every ``TRIM_CHECK_BYTES`` of text handed in (each
ask costs ~0.6 ms of CPU), and still brings a heap grown past ``TRIM_HEAP_BYTES`` back down."""

from __future__ import annotations

import json

from cht_bridge import v8
from cht_bridge.mapping import Mapper


def _page(n: int, pad: int) -> str:
    rows = [{"id": f"r{i}", "changes": [{"rev": "1-a"}], "doc": {"_id": f"r{i}", "_rev": "1-a", "type": "data_record", "form": "f", "contact": {"_id": "c1"}, "fields": {"note": "x" * pad}}} for i in range(n)]  # fmt: skip
    return json.dumps({"results": rows, "last_seq": n})


class Asks:
    """Counts the heap-size questions put to the isolate (mini-racer's ``heap_stats``)."""

    def __init__(self, sandbox: v8.Sandbox) -> None:
        self.count = 0
        real = sandbox._ctx.heap_stats

        def heap_stats():
            self.count += 1
            return real()

        sandbox._ctx.heap_stats = heap_stats


def test_the_heap_is_looked_at_once_enough_text_went_in():
    mapper = Mapper("t", "true", {"id": "doc._id"})
    sandbox = mapper.sandbox
    asks = Asks(sandbox)
    small = _page(20, 10)  # a few KB a page
    pages = v8.TRIM_CHECK_BYTES // len(small) + 1
    for _ in range(pages - 1):
        sandbox.load_page(small)
        sandbox.trim()
    assert asks.count == 0
    sandbox.load_page(small)
    sandbox.trim()
    sandbox.trim()  # nothing went in since: no new question
    assert asks.count == 1
    mapper.close()


def test_a_heap_grown_past_the_limit_is_collected():
    mapper = Mapper("t", "true", {"id": "doc._id", "note": "doc.fields.note"})
    sandbox = mapper.sandbox
    page = _page(2000, 2000)  # ~4 MB of text, more in V8
    heap = lambda: sandbox._ctx.heap_stats()["used_heap_size"]  # noqa: E731
    peak = 0
    for _ in range(2 * v8.TRIM_CHECK_BYTES // len(page) + 4):
        sandbox.load_page(page)
        sandbox._call("runLoaded", mapper._handle, 0, 2000)  # the payloads, garbage once answered
        peak = max(peak, heap())
        sandbox.trim()
    assert peak > v8.TRIM_HEAP_BYTES  # the test grew the heap past the limit
    sandbox._given = v8.TRIM_CHECK_BYTES  # enough went in: the next trim looks
    sandbox.trim()
    assert heap() < v8.TRIM_HEAP_BYTES
    mapper.close()
