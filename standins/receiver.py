"""Demo receiving endpoint: what a custom EMR API, an OpenHIM channel or NiFi ListenHTTP would be.

It accepts POST/PUT of JSON on any path, one object (single mode) or an array of objects (batch
mode), deduplicates by idempotency key, and appends every accepted item to
``<dir>/received.jsonl`` (fsync'd before answering 2xx), so tests can check exactly-once delivery.

Protocol:

* auth (when credentials are configured): HTTP Basic or ``Authorization: Bearer <token>``;
  otherwise 401 ``{"error": "unauthorized"}``.
* single: header ``Idempotency-Key``; 201 ``{"id": ...}``, or 200 with the same id for a key seen
  before. Items with a truthy ``reject_field`` get ``reject_status`` (default 422)
  ``{"error": "rejected: <value>"}``.
* batch: headers ``Idempotency-Key`` (batch) and ``Idempotency-Keys`` (comma-separated, one per
  item, in array order; without it the item keys are ``<batch key>#<index>``); 200
  ``{"results": [{"id": ..., "status": 201|200}, ...]}``; a rejected item gets
  ``{"status": <reject_status>, "error": "rejected: ..."}`` in its slot. With ``reject_batch``
  (a strict receiver, like DHIS2 ``atomicMode=ALL``) one rejected item fails the whole request:
  ``reject_status`` ``{"error": "rejected: <first bad value>; items [i, j]"}``, nothing stored.
* DELETE on any path (a delete or void of a record): stored as an item with ``"payload": null``,
  deduplicated by ``Idempotency-Key``; 200 ``{"id": ..., "deleted": true}``.
* 400 ``{"error": "invalid JSON"}``, 415 on a non-JSON content type, 404 on unknown GET paths.
* ``GET /_stats`` → ``{"requests", "items", "duplicates", "rejected", "failed", "hung",
  "unauthorized", "by_path": {path: {"requests", "items", "duplicates"}}, "max_in_flight",
  "max_paths_in_flight"}`` (counts since start, no payloads; ``rejected`` counts bad items,
  ``failed`` injected error answers, ``hung`` injected timeouts; the two maxima are the most write
  requests, and the most distinct paths, handled at the same moment).
* failure injection: with probability ``fail_rate`` (0..1, deterministic ``Random(seed)``, which
  also picks the kind) a request gets one of ``fail_kinds`` (default all): ``500``, ``503`` or
  ``429`` (with ``Retry-After: 1``) answered before looking at the body, or ``timeout``: the
  handler sleeps ``hang_seconds`` (default 2) and then handles the request normally, so a client
  with a shorter timeout gives up on a request that *was* stored and its retry with the same key
  is a duplicate (200).
* ``delay`` (seconds, default 0): every write request sleeps this long first, so a run takes a
  predictable time (e.g. to kill a worker in the middle of it).
* ``Receiver.configure(...)`` changes ``fail_rate``, ``fail_kinds``, ``reject_field``,
  ``reject_status``, ``reject_batch``, ``delay`` and ``hang_seconds`` while it runs ("fix the
  receiver", then replay); each request uses the settings current when it arrived.

Item ids are derived from the idempotency key (sha256), so only a set of keys is kept in memory and
a duplicate still gets its original id. Keys are reloaded from ``received.jsonl`` on start, so the
dedup survives a restart. Payloads are never logged (patient data): logs hold method, path,
status and counts only.

CLI::

    python -m standins.receiver --port 8099 --dir out/receiver \\
        [--credentials-file creds.json] [--fail-rate 0.1 --seed 1 --fail-kinds 500,503,429,timeout]
        [--hang-seconds 2] [--delay 0.05] [--reject-field reject --reject-status 400 --reject-batch]

``creds.json`` is ``{"username": "...", "password": "..."}`` and/or ``{"token": "..."}``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from standins.http_server import BackgroundHttpServer, StandInHandler, send_json

log = logging.getLogger("standins.receiver")

RECEIVED_FILE = "received.jsonl"
MAX_BODY_BYTES = 64 * 1024 * 1024
FAIL_KINDS = ("500", "503", "429", "timeout")


def item_id(key: str | None) -> str:
    """The id answered for an item: stable per idempotency key, random without one."""
    if key is None:
        return uuid.uuid4().hex
    return "rcv-" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Settings:
    """The behaviour a test may change while the server runs (``Receiver.configure``).

    Frozen and swapped whole under the lock, so each request reads one consistent set once and a
    change never lands half-way through a request.
    """

    fail_rate: float = 0.0
    fail_kinds: tuple[str, ...] = FAIL_KINDS
    reject_field: str | None = None
    reject_status: int = 422
    reject_batch: bool = False
    delay: float = 0.0
    hang_seconds: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fail_kinds", tuple(self.fail_kinds))  # accept a list too
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        unknown = [k for k in self.fail_kinds if k not in FAIL_KINDS]
        if unknown or not self.fail_kinds:
            raise ValueError(f"fail_kinds must be a non-empty choice of {FAIL_KINDS}, got {self.fail_kinds}")
        if not 400 <= self.reject_status <= 599:
            raise ValueError("reject_status must be a 4xx or 5xx status")
        if self.delay < 0 or self.hang_seconds < 0:
            raise ValueError("delay and hang_seconds must not be negative")


SETTING_NAMES = frozenset(f.name for f in fields(Settings))


class _State:
    """Everything shared by the handler threads; one lock guards the file, keys, counters and settings."""

    def __init__(self, directory: Path, credentials: dict[str, str] | None, seed: int, settings: Settings) -> None:
        self.directory = directory
        self.credentials = credentials or {}
        self.settings = settings
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.keys: set[str] = set()
        self.stats: dict[str, Any] = {
            "requests": 0,
            "items": 0,
            "duplicates": 0,
            "rejected": 0,
            "failed": 0,
            "hung": 0,
            "unauthorized": 0,
            "by_path": {},
            # Writes being handled at once, at most: requests, and paths (a path is one pipeline's:
            # how many senders wrote at the same time, e.g. under a destination's send slots).
            "max_in_flight": 0,
            "max_paths_in_flight": 0,
        }
        self.in_flight: dict[str, int] = {}
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / RECEIVED_FILE
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        key = json.loads(line).get("key")
                    except ValueError:
                        continue  # a torn last line after a crash
                    if key is not None:
                        self.keys.add(key)
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        with self.lock:
            self.file.close()

    def authorized(self, header: str | None) -> bool:
        if not self.credentials:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        token = self.credentials.get("token")
        if scheme.lower() == "bearer" and token:
            return hmac.compare_digest(value.encode(), token.encode())
        user, password = self.credentials.get("username"), self.credentials.get("password")
        if scheme.lower() == "basic" and user is not None and password is not None:
            try:
                given = base64.b64decode(value, validate=True)
            except ValueError:
                return False
            return hmac.compare_digest(given, f"{user}:{password}".encode())
        return False

    def configure(self, **changes: Any) -> Settings:
        """Replace some settings; an unknown name is a TypeError, a bad value a ValueError (no change)."""
        unknown = sorted(set(changes) - SETTING_NAMES)
        if unknown:
            raise TypeError(f"unknown receiver settings: {', '.join(unknown)}")
        with self.lock:
            self.settings = replace(self.settings, **changes)
            return self.settings

    def injected_failure(self, settings: Settings) -> str | None:
        """The fault kind for this request, or None; both draws come from the one seeded RNG."""
        if settings.fail_rate <= 0:
            return None
        with self.lock:
            if self.rng.random() >= settings.fail_rate:
                return None
            kind = self.rng.choice(settings.fail_kinds)
            self.stats["hung" if kind == "timeout" else "failed"] += 1
            return kind

    @contextmanager
    def writing(self, path: str) -> Iterator[None]:
        """Count a write to ``path`` as in flight while it is handled (``max_in_flight``, ``max_paths_in_flight``)."""
        with self.lock:
            self.in_flight[path] = self.in_flight.get(path, 0) + 1
            self.stats["max_in_flight"] = max(self.stats["max_in_flight"], sum(self.in_flight.values()))
            self.stats["max_paths_in_flight"] = max(self.stats["max_paths_in_flight"], len(self.in_flight))
        try:
            yield
        finally:
            with self.lock:
                self.in_flight[path] -= 1
                if not self.in_flight[path]:
                    del self.in_flight[path]

    def count(self, name: str, path: str | None = None, n: int = 1) -> None:
        with self.lock:
            self.stats[name] += n
            if path is not None:
                by_path = self.stats["by_path"].setdefault(path, {"requests": 0, "items": 0, "duplicates": 0})
                if name in by_path:
                    by_path[name] += n

    def accept(
        self, method: str, path: str, items: list[tuple[str | None, dict[str, Any] | None]]
    ) -> list[tuple[str, int]]:
        """Store the items not seen before; return (id, 201|200) per item, durably written."""
        results: list[tuple[str, int]] = []
        now = datetime.now(UTC).isoformat()
        with self.lock:
            by_path = self.stats["by_path"].setdefault(path, {"requests": 0, "items": 0, "duplicates": 0})
            lines = []
            for key, payload in items:
                new_id = item_id(key)
                if key is not None and key in self.keys:
                    results.append((new_id, 200))
                    self.stats["duplicates"] += 1
                    by_path["duplicates"] += 1
                    continue
                if key is not None:
                    self.keys.add(key)
                lines.append(
                    json.dumps(
                        {
                            "received_at": now,
                            "path": path,
                            "method": method,
                            "key": key,
                            "id": new_id,
                            "payload": payload,
                        },
                        separators=(",", ":"),
                    )
                )
                results.append((new_id, 201))
            if lines:
                self.file.write("\n".join(lines) + "\n")
                self.file.flush()
                os.fsync(self.file.fileno())
                self.stats["items"] += len(lines)
                by_path["items"] += len(lines)
        return results

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self.stats))


class _Handler(StandInHandler):
    server_version = "cht-bridge-receiver/1"
    state: _State  # set on a per-server subclass

    # -- plumbing ------------------------------------------------------------------------------
    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None, note: str = "") -> None:
        # Logged before the answer leaves, so whoever reads the answer can already see the line.
        log.info("%s %s -> %d %s", self.command, urlsplit(self.path).path, status, note)
        if not send_json(self, status, body, headers):  # the client gave up (e.g. timed out during a hang)
            log.info("%s %s: the client was gone before the answer", self.command, urlsplit(self.path).path)

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _check_auth(self) -> bool:
        if self.state.authorized(self.headers.get("Authorization")):
            return True
        self.state.count("unauthorized")
        headers = {"WWW-Authenticate": 'Basic realm="receiver"'} if "username" in self.state.credentials else {}
        self._send(401, {"error": "unauthorized"}, headers)
        return False

    # -- verbs -----------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if not self._check_auth():
            return
        if urlsplit(self.path).path == "/_stats":
            self._send(200, self.state.snapshot())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._write()

    def do_PUT(self) -> None:  # noqa: N802 - stdlib naming
        self._write()

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib naming
        self._write()

    def _write(self) -> None:
        path = urlsplit(self.path).path
        body = self._read_body()  # read first so keep-alive stays in sync whatever we answer
        if body is None:
            self._send(413, {"error": "body too large"})
            return
        with self.state.writing(path):
            self._handle_write(path, body)

    def _handle_write(self, path: str, body: bytes) -> None:
        state = self.state
        settings = state.settings  # one consistent set for this request, whatever configure() does
        if settings.delay:
            time.sleep(settings.delay)
        if not self._check_auth():
            return
        state.count("requests", path)
        failure = state.injected_failure(settings)
        if failure == "timeout":
            # Then carry on normally: the answer comes after a client with a shorter timeout has
            # given up on a request that was processed, so its retry must be seen as a duplicate.
            log.info("%s %s hanging %.1fs (injected timeout)", self.command, path, settings.hang_seconds)
            time.sleep(settings.hang_seconds)
        elif failure is not None:
            status = int(failure)
            headers = {"Retry-After": "1"} if status == 429 else {}
            self._send(status, {"error": HTTPStatus(status).phrase}, headers, "(injected)")
            return
        if self.command == "DELETE":
            # A delete (or void) of a record: stored as an item with no payload, deduplicated by key.
            key = self.headers.get("Idempotency-Key") or None
            ((item, status),) = state.accept("DELETE", path, [(key, None)])
            self._send(200, {"id": item, "deleted": True}, note="duplicate" if status == 200 else "deleted")
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json" and not ctype.endswith("+json"):
            self._send(415, {"error": "Content-Type must be application/json"})
            return
        try:
            data = json.loads(body)
        except ValueError:
            self._send(400, {"error": "invalid JSON"})
            return
        if isinstance(data, dict):
            self._single(path, data, settings)
        elif isinstance(data, list) and all(isinstance(x, dict) for x in data):
            self._batch(path, data, settings)
        else:
            self._send(400, {"error": "body must be a JSON object or an array of objects"})

    @staticmethod
    def _rejection(payload: dict[str, Any], settings: Settings) -> str | None:
        field = settings.reject_field
        if field and payload.get(field):
            return f"rejected: {payload[field]}"
        return None

    def _single(self, path: str, payload: dict[str, Any], settings: Settings) -> None:
        reason = self._rejection(payload, settings)
        if reason is not None:
            self.state.count("rejected")
            self._send(settings.reject_status, {"error": reason})
            return
        key = self.headers.get("Idempotency-Key") or None
        ((new_id, status),) = self.state.accept(self.command, path, [(key, payload)])
        self._send(status, {"id": new_id}, note="duplicate" if status == 200 else "items=1")

    def _batch(self, path: str, payloads: list[dict[str, Any]], settings: Settings) -> None:
        batch_key = self.headers.get("Idempotency-Key") or None
        keys_header = self.headers.get("Idempotency-Keys")
        if keys_header is not None:
            keys: list[str | None] = [k.strip() or None for k in keys_header.split(",")]
            if keys_header.strip() == "" and not payloads:
                keys = []
            if len(keys) != len(payloads):
                self._send(400, {"error": f"Idempotency-Keys has {len(keys)} keys for {len(payloads)} items"})
                return
        elif batch_key is not None:
            keys = [f"{batch_key}#{i}" for i in range(len(payloads))]
        else:
            keys = [None] * len(payloads)

        reasons = [self._rejection(payload, settings) for payload in payloads]
        bad = [i for i, reason in enumerate(reasons) if reason is not None]
        if bad:
            self.state.count("rejected", n=len(bad))
        if bad and settings.reject_batch:  # all or nothing: the good items are not stored either
            self._send(
                settings.reject_status, {"error": f"{reasons[bad[0]]}; items {bad}"}, note=f"items={len(payloads)}"
            )
            return

        results: list[dict[str, Any] | None] = [None] * len(payloads)
        accepted: list[tuple[str | None, dict[str, Any]]] = []
        slots: list[int] = []
        for i, (key, payload, reason) in enumerate(zip(keys, payloads, reasons, strict=True)):
            if reason is not None:
                results[i] = {"status": settings.reject_status, "error": reason}
            else:
                accepted.append((key, payload))
                slots.append(i)
        for i, (new_id, status) in zip(slots, self.state.accept(self.command, path, accepted), strict=True):
            results[i] = {"id": new_id, "status": status}
        new = sum(1 for r in results if r and r["status"] == 201)
        self._send(200, {"results": results}, note=f"items={len(payloads)} new={new}")


class Receiver(BackgroundHttpServer):
    """The receiver in a background thread (tests) — also usable as a context manager."""

    def __init__(
        self,
        directory: Path,
        port: int = 0,
        credentials: dict[str, str] | None = None,
        fail_rate: float = 0.0,
        seed: int = 0,
        reject_field: str | None = None,
        host: str = "127.0.0.1",
        *,
        fail_kinds: tuple[str, ...] = FAIL_KINDS,
        reject_status: int = 422,
        reject_batch: bool = False,
        delay: float = 0.0,
        hang_seconds: float = 2.0,
    ) -> None:
        super().__init__(host, port)
        self.directory = Path(directory)
        settings = Settings(
            fail_rate=fail_rate,
            fail_kinds=fail_kinds,
            reject_field=reject_field,
            reject_status=reject_status,
            reject_batch=reject_batch,
            delay=delay,
            hang_seconds=hang_seconds,
        )
        self.state = _State(self.directory, credentials, seed, settings)

    @property
    def received_path(self) -> Path:
        return self.state.path

    @property
    def settings(self) -> Settings:
        return self.state.settings

    def stats(self) -> dict[str, Any]:
        return self.state.snapshot()

    def configure(self, **changes: Any) -> Settings:
        """Change settings while running, e.g. ``configure(reject_field=None, fail_rate=0)`` to "fix"
        the receiver before a replay. Names: see ``Settings``; an unknown one raises TypeError."""
        return self.state.configure(**changes)

    thread_name = "receiver"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"state": self.state})

    def stop(self) -> None:
        super().stop()
        self.state.close()


def _fail_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds or any(k not in FAIL_KINDS for k in kinds):
        raise argparse.ArgumentTypeError(f"a comma-separated choice of {','.join(FAIL_KINDS)}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Demo JSON receiving endpoint for CHT Bridge.")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dir", type=Path, required=True, help="where received.jsonl goes")
    parser.add_argument(
        "--credentials-file", type=Path, help='JSON {"username","password"} and/or {"token"}; no auth if omitted'
    )
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-kinds", type=_fail_kinds, default=FAIL_KINDS, help="e.g. 500,503,429,timeout (all)")
    parser.add_argument("--hang-seconds", type=float, default=2.0, help="how long an injected timeout hangs")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every write request waits first")
    parser.add_argument("--reject-field")
    parser.add_argument("--reject-status", type=int, default=422)
    parser.add_argument("--reject-batch", action="store_true", help="one rejected item fails the whole batch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    credentials = None
    if args.credentials_file:
        credentials = json.loads(args.credentials_file.read_text())
    receiver = Receiver(
        args.dir,
        port=args.port,
        credentials=credentials,
        fail_rate=args.fail_rate,
        seed=args.seed,
        reject_field=args.reject_field,
        host=args.host,
        fail_kinds=args.fail_kinds,
        reject_status=args.reject_status,
        reject_batch=args.reject_batch,
        delay=args.delay,
        hang_seconds=args.hang_seconds,
    )
    receiver.start()
    print(f"receiver listening on {receiver.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
