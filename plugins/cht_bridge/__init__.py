"""CHT Bridge: Airflow pipelines between a Community Health Toolkit instance and other systems.

Sub-packages, one per stage: ``config`` (pipeline files), ``source`` (CHT extraction and
hydration), ``mapping`` (CHT outbound semantics in a JS sandbox), ``destinations``, ``state``
(checkpoints and delivery ledger), ``sync`` (one run), and the Airflow ``hooks``/``operators``.
"""

from cht_bridge.errors import AuthError, ChtBridgeError, ConfigError, ScriptError, SourceError, TransportError

__all__ = ["AuthError", "ChtBridgeError", "ConfigError", "ScriptError", "SourceError", "TransportError"]
