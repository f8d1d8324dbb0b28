"""Where a reverse pipeline reads its list from: a FHIR search, a JSON REST endpoint, a CSV folder,
RapidPro runs.

Every source yields pages of raw records plus the checkpoint to store once a page is processed,
so a run that dies half-way resumes at the last processed page and re-reads at most that page
(the caller's ledger, keyed by ``(id, version)``, makes a re-read harmless).
"""

from cht_bridge.reverse.sources.base import Source, SourcePage, SourceRecord
from cht_bridge.reverse.sources.csv_folder import CsvFolderSource
from cht_bridge.reverse.sources.fhir import FhirSearchSource
from cht_bridge.reverse.sources.rapidpro import RapidProRunsSource
from cht_bridge.reverse.sources.rest import JsonRestSource

__all__ = [
    "CsvFolderSource",
    "FhirSearchSource",
    "JsonRestSource",
    "RapidProRunsSource",
    "Source",
    "SourcePage",
    "SourceRecord",
]
