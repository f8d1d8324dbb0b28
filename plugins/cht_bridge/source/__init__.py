"""Extraction from CHT: the ``_changes`` feed, paged one ahead, and CHT-style hydration."""

from cht_bridge.source.changes import Page, iter_pages
from cht_bridge.source.couch import CouchClient
from cht_bridge.source.hydration import Hydrator

__all__ = ["CouchClient", "Hydrator", "Page", "iter_pages"]
