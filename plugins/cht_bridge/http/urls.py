"""URLs as they may appear in a log line or a stored reason."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit


def safe_url(url: str, params: dict[str, Any] | None = None) -> str:
    """``url`` for a log line: no user-info, and query parameter names only (values may be patient data)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    names = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)] + list(params or {})
    query = "&".join(dict.fromkeys(f"{name}=…" for name in names))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))
