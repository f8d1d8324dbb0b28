"""Reading ``_changes`` ahead of the caller (``source/pages.py``): how far, from what, and that a
guess or a failed read ahead never changes the pages handed on. A scripted CouchDB-like server on
127.0.0.1 answers each ``since`` with a page that names it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cht_bridge.cht.couch import CouchClient
from cht_bridge.errors import SourceError
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.source.hydration import Hydrator
from cht_bridge.source.pages import AHEAD, iter_changes
from standins.http_server import BackgroundHttpServer, StandInHandler, send_json

pytestmark = pytest.mark.integration

LIMIT = 4
PAGES = 6  # full pages from since=0, then a short one
FAST = RetryPolicy(retries=0, backoff_s=0.01, max_backoff_s=0.02)


class Feed(BackgroundHttpServer):
    """``since=k`` answers ``LIMIT`` documents ``doc-k-i`` and ``last_seq`` k + 1 (short after ``PAGES``).

    ``answer`` may change the body; ``failing`` names a ``since`` answered with 500.
    """

    thread_name = "feed"

    def __init__(self, answer: Callable[[int, dict], dict] = lambda since, body: body) -> None:
        super().__init__()
        self.answer = answer
        self.failing: str | None = None
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(StandInHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                with server.lock:
                    server.asked.append(query["since"])
                if query["since"] == server.failing:
                    send_json(self, 500, {"error": "internal_server_error"})
                    return
                since = int(query["since"]) if query["since"].isdigit() else -1
                n = LIMIT if 0 <= since < PAGES else 1
                docs = [{"_id": f"doc-{since}-{i}", "_rev": "1-a", "type": "person"} for i in range(n)]
                results = [{"seq": since + 1, "id": d["_id"], "changes": [{"rev": "1-a"}], "doc": d} for d in docs]
                send_json(self, 200, server.answer(since, {"results": results, "last_seq": since + 1}))

        return Handler

    def requests_seen(self) -> list[str]:
        with self.lock:
            return list(self.asked)


def pages_of(feed: Feed) -> Any:
    client = CouchClient(feed.url, "medic", conn_id="cht_test", retry=FAST, timeout=(3.0, 10.0))
    return iter_changes(client, 0, LIMIT, Hydrator(client).load_page)


def wait_for(feed: Feed, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(feed.requests_seen()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # and nothing more comes
    return feed.requests_seen()


def test_the_next_pages_are_read_while_the_caller_is_on_the_first_and_no_further():
    with Feed() as feed:
        pages = pages_of(feed)
        first = next(pages)
        asked = wait_for(feed, 1 + AHEAD)
        rest = list(pages)

    assert AHEAD == 2 and asked == ["0", "1", "2"]  # two ahead of the page in hand, not three
    assert [p.last_seq for p in [first, *rest]] == list(range(1, PAGES + 2))
    assert feed.requests_seen() == [str(k) for k in range(PAGES + 1)]  # each once; none after the short page


def test_a_wrong_guess_costs_a_read_never_a_page():
    """The top-level ``last_seq`` comes first and the last document holds a ``last_seq`` of its own:
    the guess from the answer's tail is wrong, and the pages handed on still follow the real one."""

    def misleading(since: int, body: dict) -> dict:
        body["results"][-1]["doc"]["last_seq"] = f"fake-{since}"
        return {"last_seq": body["last_seq"], "results": body["results"]}

    with Feed(misleading) as feed:
        pages = list(pages_of(feed))

    assert [p.ids[0] for p in pages] == [f"doc-{k}-0" for k in range(PAGES + 1)]
    assert [p.last_seq for p in pages] == list(range(1, PAGES + 2))
    asked = feed.requests_seen()
    assert "fake-0" in asked  # the guess was read ahead...
    assert [s for s in asked if not s.startswith("fake")] == [str(k) for k in range(PAGES + 1)]  # ...and not used


def test_a_read_ahead_that_fails_is_raised_when_its_page_is_due_after_the_pages_before_it():
    with Feed() as feed:
        feed.failing = "3"
        pages = pages_of(feed)
        handed: list[Any] = [next(pages)]
        wait_for(feed, 1 + AHEAD)
        with pytest.raises(SourceError) as caught:
            handed.extend(pages)

    assert [p.last_seq for p in handed] == [1, 2, 3]  # the pages before the failed read, then its error
    assert "cht_test" in str(caught.value)
