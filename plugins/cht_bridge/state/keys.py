"""The delivery ledger's idempotency key: one per (pipeline, document, payload).

It lives with the ledger, which stores it and compares it (``last_delivered``), and is built by the
sync run from the payload's hash (``mapping.hashing`` re-exports it there).
"""

from __future__ import annotations

import hashlib


def idempotency_key(pipeline: str, doc_id: str, digest: str) -> str:
    """A stable key per (pipeline, document, payload): a retry of the same payload repeats it."""
    return hashlib.sha256(f"{pipeline}\n{doc_id}\n{digest}".encode()).hexdigest()[:32]
