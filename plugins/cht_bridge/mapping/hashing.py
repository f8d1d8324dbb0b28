"""The payload hash, exactly as CHT records it for outbound pushes.

CHT stores SHA-256 of ``orderedStringify(JSON.parse(JSON.stringify(payload)))`` in the infodoc
and skips a push whose hash equals the last one. Our ledger uses the same value, so "already
sent" means the same thing in both systems. The key-sorted JSON text is produced in V8 (the
runtime's ``ordered``) so number and string formatting match Node to the byte.

Never change this function: every stored hash in every ledger would stop matching.
"""

from __future__ import annotations

import hashlib
import re

from cht_bridge.state.keys import idempotency_key

__all__ = ["idempotency_key", "payload_hash"]

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def payload_hash(canonical_json: str) -> str:
    """SHA-256 hex of CHT's canonical payload text, UTF-8 encoded as Node encodes strings."""
    try:
        data = canonical_json.encode("utf-8")
    except UnicodeEncodeError:
        # Node's Buffer.from(string) writes a lone surrogate as U+FFFD.
        data = _LONE_SURROGATE.sub("\ufffd", canonical_json).encode("utf-8")
    return hashlib.sha256(data).hexdigest()
