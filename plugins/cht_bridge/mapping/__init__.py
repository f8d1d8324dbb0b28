"""The mapping engine: CHT outbound ``relevant_to`` + ``mapping`` semantics, in a JS sandbox."""

from cht_bridge.mapping.engine import Mapped, Mapper
from cht_bridge.mapping.hashing import idempotency_key, payload_hash

__all__ = ["Mapped", "Mapper", "idempotency_key", "payload_hash"]
