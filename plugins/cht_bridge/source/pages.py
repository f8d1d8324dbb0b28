"""The three ways a run reads CHT, page by page, always one page ahead of the caller.

While the caller hydrates, maps and delivers one page, the next is already being read in a
background thread, so the CHT server and our worker work at the same time instead of taking
turns. A page is the server's answer as text; ``load`` (the hydrator's) turns it into a ``Page``.

- ``iter_changes``: the ``_changes`` feed from a checkpoint (what scheduled runs read);
- ``iter_reports_by_date``: reports whose ``reported_date`` is in a window, from CHT's
  ``medic-client/reports_by_date`` view (backfills; cht.md §3.8);
- ``iter_documents``: given document ids, with ``_all_docs`` (retries and replays).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cht_bridge.cht.couch import CouchClient
from cht_bridge.errors import SourceError

Load = Callable[[str], "Page"]


@dataclass(frozen=True)
class Page:
    """One loaded page: what it held, the documents to process, and where to resume after it.

    ``ids``, ``revs`` and ``times`` (``reported_date`` in ms) describe the documents to process,
    in order; ``deleted`` holds ``[id, rev]`` of tombstones and ``missing`` the ids a lookup did
    not find. ``last_seq`` resumes a changes feed, ``cursor`` (last ``[key, id]``) a view.
    """

    read: int
    design: int
    info: int
    tombstones: int
    ids: list[str]
    revs: list[str | None]
    last_seq: Any
    refs: list[Any]
    times: list[int | None] = field(default_factory=list)
    deleted: list[list[Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    filtered: int = 0
    cursor: list[Any] | None = None
    rows: int = 0  # rows in the server's answer, to tell a full page from the last one


#: Pages read ahead of the one the caller is on (each held as the server's text until loaded): the
#: server reads the next pages while the worker hydrates, maps and delivers, instead of waiting for
#: the caller to ask. Two keep CHT busy through a slow page of ours; each costs a page's text in memory.
AHEAD = 2

Guess = Callable[[Any, Any], Any]


class _Ahead:
    """The reads in flight, oldest first: ``(position, future)``; a future's answer is ``(answer, guess)``.

    A read whose answer names where the next page starts (``guess``) asks for it at once, up to
    ``AHEAD`` reads not yet handed on. A guess is only a hint: the caller checks it against where its
    loaded page really ends (``after``) and reads from there instead if they differ.
    """

    def __init__(self, pool: ThreadPoolExecutor, fetch: Callable[[Any], Any], guess: Guess | None) -> None:
        self._pool, self._fetch, self._guess = pool, fetch, guess
        self._lock = threading.Lock()
        self.reads: deque[tuple[Any, Future]] = deque()  # asked for, not yet handed on
        self._newest: Any = None  # the position asked for last: only its answer may guess further
        self._asked: set[str] = set()  # positions read in this stream: a guess never repeats one
        self.closed = False

    def start(self, position: Any) -> None:
        with self._lock:
            self._submit(position)

    def _submit(self, position: Any) -> None:
        self._asked.add(_seq_key(position))
        self._newest = position
        self.reads.append((position, self._pool.submit(self._read, position)))

    def _read(self, position: Any) -> tuple[Any, Any]:
        answer = self._fetch(position)
        try:  # only a hint: an answer it cannot read is the loaded page's to refuse, with its own reason
            guess = self._guess(position, answer) if self._guess is not None else None
        except Exception:
            guess = None
        with self._lock:
            self._extend(position, guess)
        return answer, guess

    def _extend(self, position: Any, guess: Any) -> None:
        """Read ahead from ``position``'s guess if it is the newest read and there is room (lock held)."""
        if self.closed or guess is None or position is not self._newest or len(self.reads) >= AHEAD:
            return
        if _seq_key(guess) not in self._asked:
            self._submit(guess)

    def next(self) -> tuple[Any, Future]:
        """The oldest read; as it leaves, the newest (if answered) may read one more ahead."""
        with self._lock:
            position, future = self.reads.popleft()
            if self.reads:  # the newest, answered while there was no room, may read ahead now
                newest, answered = self.reads[-1]
                if answered.done() and answered.exception() is None:
                    self._extend(newest, answered.result()[1])
            return position, future

    def follow(self, position: Any) -> None:
        """Go on from ``position``: keep the read already asked for it, or drop every guess and ask for it."""
        with self._lock:
            if self.reads and _seq_key(self.reads[0][0]) == _seq_key(position):
                return
            self._drop()
            self._asked.discard(_seq_key(position))
            self._submit(position)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._drop()

    def _drop(self) -> None:
        """Forget the reads ahead: those not started never are; a running one's answer is ignored."""
        for _, future in self.reads:
            future.cancel()
        self.reads.clear()


def _prefetched(
    fetch: Callable[[Any], Any],
    first: Any,
    load: Callable[[Any], Page],
    after: Callable[[Page], Any],
    guess: Guess | None = None,
) -> Iterator[Page]:
    """Yield loaded pages, reading ahead of them.

    The next read starts as soon as the answer before it is in, from ``guess(position, answer)``
    (None: unknown), or else when the page is loaded, from ``after(page)`` (None at the end). A
    page is only handed on from the position ``after`` says, so a wrong guess costs a read, never
    a page; and a read that fails is raised when its page's turn comes, as if it had just been read.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pages") as pool:
        ahead = _Ahead(pool, fetch, guess)
        ahead.start(first)
        try:
            while True:
                _, future = ahead.next()
                page = load(future.result()[0])
                position = after(page)
                if position is None:
                    ahead.close()
                else:
                    ahead.follow(position)
                yield page
                if position is None:
                    return
        finally:
            ahead.close()


def iter_changes(client: CouchClient, since: Any, limit: int, load: Load) -> Iterator[Page]:
    """The changes after ``since`` until the feed is drained.

    pouchdb-server sends no ``pending``, so a short page is taken as the end. A full page whose
    ``last_seq`` was already read from (the feed did not move, or went back) would be asked for
    again for ever: the read stops there with a ``SourceError``, before that page, so the
    checkpoint stays at the last page that moved.
    """
    read_from = {_seq_key(since)}

    def after(page: Page) -> Any:
        if page.read < limit:
            return None
        key = _seq_key(page.last_seq)
        if key in read_from:
            raise SourceError(
                f"CHT connection '{client.conn_id}': a full page of {page.read} changes ended at a last_seq "
                "already read from, so the feed would never end; stopped (the pages before it are kept)"
            )
        read_from.add(key)
        return page.last_seq

    return _prefetched(
        lambda seq: client.changes_text(seq, limit), since, load, after, lambda _, text: last_seq_of(text, limit)
    )


def last_seq_of(text: str, limit: int) -> Any:
    """Where the next page of a full ``_changes`` answer starts, read from its text without parsing it.

    Only a guess to read ahead with (``_prefetched``), so it may be wrong, never harmful: the loaded
    page's own ``read`` and ``last_seq`` decide. None when unsure, or when the answer looks short (each
    row names its ``"changes"``; a document holding that key only makes a page look full), so the end
    of the feed costs no read.
    """
    if text.count('"changes"') < limit:
        return None
    at = text.rfind('"last_seq"', max(0, len(text) - 4096))
    colon = text.find(":", at + 10) if at >= 0 else -1
    if colon < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[colon + 1 :].lstrip())
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _seq_key(seq: Any) -> str:
    """A seq as a comparable text (CouchDB's are opaque strings, pouchdb's numbers)."""
    return json.dumps(seq, sort_keys=True)


def iter_reports_by_date(
    client: CouchClient, start_ms: int, end_ms: int, limit: int, load: Callable[[str, Any], Page]
) -> Iterator[Page]:
    """Reports with ``start_ms <= reported_date < end_ms``, in date order.

    A page starts at the previous page's last row (its key and doc id), which ``load`` is given
    to drop: ``skip=1`` would skip a different row if that one was deleted or edited meanwhile,
    and ``skip`` alone would make CouchDB walk the index from the start on every page.
    """
    base = {"endkey": json.dumps([end_ms]), "inclusive_end": "false", "include_docs": "true", "limit": limit}

    def fetch(cursor: list[Any] | None) -> tuple[str, list[Any] | None]:
        if cursor is None:
            params = {**base, "startkey": json.dumps([start_ms])}
        else:
            params = {**base, "startkey": json.dumps(cursor[0]), "startkey_docid": cursor[1]}
        return client.view_text("medic-client", "reports_by_date", params), cursor

    return _prefetched(fetch, None, lambda answer: load(*answer), lambda p: p.cursor if p.rows >= limit else None)


def iter_documents(client: CouchClient, ids: list[str], limit: int, load: Load) -> Iterator[Page]:
    """The current revisions of ``ids``, ``limit`` per ``_all_docs`` request."""
    if not ids:
        return iter(())
    starts = iter(range(limit, len(ids), limit))
    return _prefetched(
        lambda s: client.all_docs_text(ids[s : s + limit]),
        0,
        load,
        lambda _page: next(starts, None),
        lambda s, _: s + limit if s + limit < len(ids) else None,  # the next chunk: known in advance
    )
