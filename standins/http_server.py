"""The life cycle every in-process stand-in shares (CHT API, receiver, list server).

A ``ThreadingHTTPServer`` on loopback, served from a daemon thread so a test or the demo can
start it, read its ``url`` and stop it; a client that goes away mid-answer (a killed worker's
keep-alive socket) is normal for these servers, not a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

log = logging.getLogger(__name__)


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: Any,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> bool:
    """Answer with a JSON body; False when the client was already gone (it gave up: expected)."""
    data = json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:
        handler.close_connection = True
        return False
    return True


class StandInHandler(BaseHTTPRequestHandler):
    """What every stand-in's handler shares; a subclass sets ``server_version`` and answers."""

    protocol_version = "HTTP/1.1"  # keep-alive, so clients can reuse connections
    # Headers and body go out as two writes; without TCP_NODELAY, Nagle's algorithm holds the
    # body until the client's delayed ACK (~40 ms), which would cap every keep-alive request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silenced: the default line goes to stderr and holds the query string (which may carry
        phone numbers); each stand-in logs its own line without query values."""


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            log.debug("client %s went away", client_address[0])
            return
        super().handle_error(request, client_address)


class BackgroundHttpServer:
    """Start/stop/``url`` for a stand-in; a subclass says which handler answers (``handler()``)."""

    #: the serving thread's name prefix, for thread dumps
    thread_name = "stand-in"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._server = QuietServer((self.host, self.port), self.handler())
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name=f"{self.thread_name}:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
