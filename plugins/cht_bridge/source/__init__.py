"""Extraction from CHT: the changes feed, the reports-by-date view and ``_all_docs``, paged one
ahead, and CHT-style hydration."""

from cht_bridge.source.hydration import Hydrator
from cht_bridge.source.pages import Page, iter_changes, iter_documents, iter_reports_by_date

__all__ = ["Hydrator", "Page", "iter_changes", "iter_documents", "iter_reports_by_date"]
