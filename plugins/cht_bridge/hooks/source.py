"""Build a reverse pipeline's source from its config and an Airflow Connection.

The Connection (type ``http``) holds the host with scheme and port, and the login and password
(HTTP Basic); its extras may name another way (``{"auth": "bearer"}``, a header, a login
cookie, OAuth2: ``cht_bridge.hooks.connection``). Credentials go only to the Connection's own
origin. A CSV source needs no Connection: its folder is named in the pipeline file.
"""

from __future__ import annotations

import requests

from cht_bridge.errors import ConfigError
from cht_bridge.hooks.connection import open_session
from cht_bridge.reverse.model import SourceConfig
from cht_bridge.reverse.sources.base import Source


def source_session(conn_id: str) -> tuple[requests.Session, str]:
    """A session with the Connection's credentials (for its origin only) and TLS setting, and its base URL."""
    session, base_url = open_session(conn_id, system="The source")
    session.headers["Accept"] = "application/fhir+json, application/json"
    return session, base_url


class LocalFolderRefused(ConfigError):
    """A CSV drop folder on one worker's disk under an executor that spreads tasks over machines."""

    def __init__(self, folder: str, executor: str) -> None:
        self.source, self.problems = "source.folder", [executor]
        Exception.__init__(
            self,
            f"the CSV drop folder '{folder}' is a path on this worker's disk, but Airflow runs the {executor}: "
            f"a file dropped on one worker is not seen by the others (lists read twice or never). Give "
            f"`source.folder` as a URL every worker reaches: s3://<conn_id>@bucket/lists/, gs://..., or "
            f"file:///shared/lists/ for a volume mounted at the same path on every worker; or keep a relative "
            f"folder and set CHT_BRIDGE_CSV_ROOT to such a URL (the base relative folders are read under).",
        )


def open_source(config: SourceConfig) -> Source:
    """The source a pipeline file describes, ready to page from a checkpoint.

    A CSV folder given as a plain path is refused under a distributed executor (``LocalFolderRefused``);
    a URL, ``file:///…`` included, is taken as storage every worker reaches (a deliberate shared volume),
    and so is a relative path when ``$CHT_BRIDGE_CSV_ROOT`` (a URL) says where relative folders live.
    """
    if config.type == "csv":
        from cht_bridge.hooks.state import distributed_executor
        from cht_bridge.reverse.places import from_repo
        from cht_bridge.reverse.sources.csv_folder import CsvFolderSource
        from cht_bridge.storage import shared_csv_folder

        shared = shared_csv_folder(config.folder)
        if shared is not None:
            return CsvFolderSource(shared, config.pattern, config.id_field)
        # A URL (s3://, gs://, file://…) is an ObjectStoragePath as it is; a path is relative to the repository.
        if "://" not in config.folder:
            executor = distributed_executor()
            if executor:
                raise LocalFolderRefused(config.folder, executor)
        folder = config.folder if "://" in config.folder else from_repo(config.folder)
        return CsvFolderSource(folder, config.pattern, config.id_field)
    session, base_url = source_session(config.conn_id)
    if config.type == "rapidpro":
        from cht_bridge.reverse.sources.rapidpro import RapidProRunsSource

        return RapidProRunsSource(
            session, base_url, list(config.flows), timeout=config.timeout, conn_id=config.conn_id,
            max_pages=config.max_pages, overlap_seconds=config.overlap_seconds,
        )  # fmt: skip
    if config.type == "fhir":
        from cht_bridge.reverse.sources.fhir import FhirSearchSource

        return FhirSearchSource(
            session, base_url, config.resource, dict(config.params), page_size=config.page_size,
            timeout=config.timeout, conn_id=config.conn_id, max_pages=config.max_pages,
            clock_skew_minutes=config.clock_skew_minutes,
        )  # fmt: skip
    from cht_bridge.reverse.sources.rest import JsonRestSource

    return JsonRestSource(
        session, base_url, config.path, items=config.items, id_field=config.id_field,
        version_field=config.version_field, paging=dict(config.paging), params=dict(config.params),
        timeout=config.timeout, conn_id=config.conn_id, max_pages=config.max_pages,
    )  # fmt: skip
