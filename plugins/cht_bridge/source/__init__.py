"""Extraction from CHT: the ``_changes`` feed, what to skip, and CHT-style hydration."""

from cht_bridge.source.changes import Selection, iter_changes, select
from cht_bridge.source.couch import ChangesPage, CouchClient
from cht_bridge.source.hydration import Hydrator

__all__ = ["ChangesPage", "CouchClient", "Hydrator", "Selection", "iter_changes", "select"]
