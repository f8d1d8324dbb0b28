"""The generic REST destination: JSON over HTTP to any system with a REST API.

This is also how OpenHIM channels, NiFi ``ListenHTTP`` endpoints and custom EMRs are reached.
Two modes: one payload per request with a bounded number in flight on a keep-alive session, or a
JSON array of up to ``batch_size`` payloads per request for receivers that accept batches.
Every request carries an ``Idempotency-Key``; a batch also lists each item's key, in order, in
``Idempotency-Keys``, so the receiver can drop a repeat after a crash.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from cht_bridge.destinations.base import Delivery, Result
from cht_bridge.errors import AuthError, TransportError

REASON_CHARS = 300  # how much of a rejection body is kept as the reason


class RestDestination:
    """POST (or PUT) JSON payloads to ``base_url + path`` on a prepared session."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        path: str,
        *,
        conn_id: str,
        method: str = "POST",
        mode: str = "single",
        batch_size: int = 100,
        concurrency: int = 4,
        timeout: float = 30.0,
    ) -> None:
        self.url = base_url.rstrip("/") + "/" + path.lstrip("/")
        self.conn_id = conn_id
        self.method = method
        self.mode = mode
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.timeout = timeout
        self._session = session
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(concurrency, 1))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        self._pool = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rest") if mode == "single" else None
        )
        self._refused: AuthError | None = None  # once credentials are refused, send nothing more
        self._lock = threading.Lock()
        self.requests = 0  # requests sent so far, by every thread

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        if not deliveries:
            return []
        if self.mode == "batch":
            results: list[Result] = []
            for start in range(0, len(deliveries), self.batch_size):
                results.extend(self._send_batch(deliveries[start : start + self.batch_size]))
            return results
        return list(self._pool.map(self._send_one, deliveries))

    def _send_one(self, item: Delivery) -> Result:
        response = self._request(item.body, {"Idempotency-Key": item.key})
        if _accepted(response):
            return Result(item.doc_id, True, response.status_code, _destination_id(response, _json(response)))
        return Result(item.doc_id, False, response.status_code, error=_reason(response))

    def _send_batch(self, items: list[Delivery]) -> list[Result]:
        keys = [i.key for i in items]
        headers = {
            "Idempotency-Key": hashlib.sha256(",".join(keys).encode()).hexdigest()[:32],
            "Idempotency-Keys": ",".join(keys),
        }
        body = "[" + ",".join(i.body for i in items) + "]"
        response = self._request(body, headers)
        if not _accepted(response):
            reason = _reason(response)
            return [Result(i.doc_id, False, response.status_code, error=reason) for i in items]
        answer = _json(response)
        per_item = answer.get("results") if isinstance(answer, dict) else answer
        if not isinstance(per_item, list) or len(per_item) != len(items):
            per_item = [None] * len(items)
        return [_item_result(item, entry, response) for item, entry in zip(items, per_item, strict=True)]

    def _request(self, body: str, headers: dict[str, str]) -> requests.Response:
        if self._refused is not None:
            raise self._refused
        with self._lock:
            self.requests += 1
        try:
            # No redirects: requests would turn a redirected POST into a GET and report its 200.
            response = self._session.request(
                self.method,
                self.url,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TransportError(
                f"destination connection '{self.conn_id}' could not be reached: {type(exc).__name__}"
            ) from exc
        if response.status_code in (401, 403):
            self._refused = AuthError(self.conn_id, response.status_code, "The destination")
            raise self._refused
        return response

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._session.close()


def _accepted(response: requests.Response) -> bool:
    """Only a 2xx means the destination took the payload; a redirect means the URL is wrong."""
    return 200 <= response.status_code < 300


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _item_result(item: Delivery, entry: Any, response: requests.Response) -> Result:
    """One item of a 2xx batch answer: the receiver may still refuse that item alone."""
    status = entry.get("status") if isinstance(entry, dict) else None
    if isinstance(status, int) and status >= 400:
        reason = entry.get("error") or entry.get("message") or ""
        return Result(item.doc_id, False, status, error=f"HTTP {status}: {str(reason)[:REASON_CHARS]}".rstrip(": "))
    return Result(
        item.doc_id, True, status if isinstance(status, int) else response.status_code, _destination_id(None, entry)
    )


def _destination_id(response: requests.Response | None, answer: Any) -> str | None:
    """The id the destination gave the record: ``id`` in the JSON answer, else ``Location``."""
    if isinstance(answer, dict):
        for key in ("id", "uuid", "_id"):
            if isinstance(answer.get(key), (str, int)):
                return str(answer[key])
    if response is not None and response.headers.get("Location"):
        return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    return None


def _reason(response: requests.Response) -> str:
    if response.is_redirect:
        return (
            f"HTTP {response.status_code}: redirected to {response.headers.get('Location')}; fix the connection's URL"
        )
    text = response.text.strip().replace("\n", " ")
    answer = _json(response)
    if isinstance(answer, dict):
        for key in ("error", "message", "reason", "detail"):
            if isinstance(answer.get(key), str):
                text = answer[key]
                break
    return f"HTTP {response.status_code}: {text[:REASON_CHARS]}" if text else f"HTTP {response.status_code}"
