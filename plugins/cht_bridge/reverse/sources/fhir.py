"""Read a list from a FHIR R4 server: one search by ``_lastUpdated``, followed through its next links.

The search is ``<base>/<Type>?_lastUpdated=ge<checkpoint>&_sort=_lastUpdated&_count=N`` plus the
pipeline's own parameters, sent with ``Prefer: handling=strict`` so that a server which does not
know a filter refuses the search instead of silently dropping the filter (an ignored
``status=active`` would turn a lost-to-follow-up list into every patient on the server).

Why ``ge`` and not ``gt``: ``_lastUpdated`` has the server's precision (seconds on OpenMRS,
milliseconds on HAPI and sekmet), so several records can share the checkpoint's instant — a page
can end in the middle of such a group, and a record can be written in the same tick right after
the read. ``gt`` would lose those for good; ``ge`` reads the boundary records again on the next
run, and the caller's ledger, keyed by ``(id, version)``, skips the ones it already processed.
The cost is a few repeated records per run, never a missed one.

Paging follows ``Bundle.link[relation=next]`` when it points to the Connection's own origin
(scheme, host and port, compared parsed). Servers behind a proxy (OpenMRS behind OpenHIM) put their
own view of the base in the link: a link on the base the first page's self link named is moved
onto the configured base. A next link anywhere else, or with user-info, is refused with a
``SourceError``, so the credentials never follow it. A next link that expired (404/410: OpenMRS keeps
only the last 100 searches in memory) restarts the search from the current checkpoint.

Caveat for servers whose next links are plain ``_offset`` re-queries (sekmet) rather than a cached
result list (HAPI, OpenMRS): a record updated *during* the read moves to the end of the
``_lastUpdated`` order, shifting the later pages by one, so the record right after the current
page boundary can be skipped in that run and its ``_lastUpdated`` is then below the checkpoint.
Keep page sizes large enough for a run to read a day's changes in a few pages against such servers.

A ``meta.lastUpdated`` later than now plus ``clock_skew_minutes`` does not move the checkpoint:
the record is processed, and read again by each run (the ledger skips it) until its time comes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from cht_bridge.errors import ConfigError, SourceError
from cht_bridge.http.origin import Origin, has_userinfo, origin
from cht_bridge.http.read import READ_RETRY, Reader
from cht_bridge.http.reasons import FHIR, outcome_issues
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.reverse.model import DEFAULT_CLOCK_SKEW_MINUTES, DEFAULT_MAX_PAGES
from cht_bridge.reverse.sources.base import SourcePage, SourceRecord, content_hash
from cht_bridge.reverse.sources.paging import PageGuard

log = logging.getLogger(__name__)

#: How often an expired next link may restart the search in one read before giving up.
MAX_RESTARTS = 3
SKIPPED_MODES = ("include", "outcome")


def _instant(value: str) -> datetime | None:
    """A FHIR instant/dateTime as an aware datetime (UTC if it has no zone); None if unreadable."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def later(a: str | None, b: str | None) -> str | None:
    """The later of two ``lastUpdated`` values, compared as instants and returned as sent."""
    if a is None or _instant(a) is None:
        return b if b is not None and _instant(b) is not None else a
    if b is None or _instant(b) is None:
        return a
    return b if _instant(b) > _instant(a) else a


def after(value: str, latest: datetime) -> bool:
    """Whether a ``lastUpdated`` lies after ``latest`` (now plus the allowed clock skew).

    Such a value must not become the checkpoint: a server stamping a record in the future (a
    clock years ahead, a bad import) would otherwise make the search skip every real change
    until that date.
    """
    when = _instant(value)
    return when is not None and when > latest


class FhirSearchSource:
    """Pages of one resource type from a FHIR R4 search; the checkpoint is the highest
    ``meta.lastUpdated`` processed so far (a string, as the server wrote it).

    ``validate`` parses each resource with ``fhir.resources`` (R4B models, which match R4 for
    the resources used here); a resource that fails is still yielded, with ``error`` naming the
    fields at fault (never their values), so the caller records it as failed and goes on.
    """

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        resource_type: str,
        params: dict[str, Any] | None = None,
        page_size: int = 100,
        timeout: float = 30,
        conn_id: str = "(no connection)",
        *,
        validate: bool = True,
        retry: RetryPolicy = READ_RETRY,
        max_pages: int = DEFAULT_MAX_PAGES,
        clock_skew_minutes: float = DEFAULT_CLOCK_SKEW_MINUTES,
    ) -> None:
        self.max_pages = max_pages
        self.clock_skew = timedelta(minutes=clock_skew_minutes)
        self.base_url = base_url.rstrip("/")
        self.resource_type = resource_type
        self.params = dict(params or {})
        self.page_size = page_size
        self.conn_id = conn_id
        reserved = sorted({"_lastUpdated", "_sort", "_count"} & set(self.params))
        if reserved:
            raise ConfigError(f"FHIR source '{conn_id}'", [f"params: {', '.join(reserved)} are set by the source"])
        self._model = _model_class(resource_type, conn_id) if validate else None
        self.reader = Reader(
            session,
            conn_id=conn_id,
            system="FHIR server",
            timeout=timeout,
            retry=retry,
            reason=FHIR,
            headers={"Accept": "application/fhir+json", "Prefer": "handling=strict"},
        )
        self._server_base: tuple[Origin, str] | None = None  # origin and path of the server's own base

    def pages(self, checkpoint: Any | None) -> Iterator[SourcePage]:
        """Search from ``checkpoint`` (``None``: everything) and yield every page of matches.

        :raises SourceError: on a next link that repeats an earlier one, a page that repeats the
            page before it, or after ``max_pages`` pages (``reverse.sources.paging``); the pages
            yielded before it carry good checkpoints.
        """
        mark: str | None = checkpoint
        restarts = 0
        url, params = self._search(mark)
        first = True
        guard = PageGuard(f"FHIR connection '{self.conn_id}'", self.max_pages)
        while True:
            guard.before_read()
            try:
                bundle = self.reader.get_json(url, params)
            except SourceError as exc:
                if first or exc.status not in (404, 410) or restarts >= MAX_RESTARTS:
                    raise
                restarts += 1
                log.warning(
                    "FHIR connection '%s': next link expired (HTTP %s); searching again from %s",
                    self.conn_id,
                    exc.status,
                    mark,
                )
                url, params, first = *self._search(mark), True
                guard.restart()  # a new search hands out new links, and may begin with the last records
                continue
            self._check_bundle(bundle)
            if first:
                self._learn_server_base(bundle)
            records, mark = self._records(bundle, mark)
            guard.after_read(records)
            log.info(
                "FHIR connection '%s': %s page with %d record(s), checkpoint %s",
                self.conn_id,
                self.resource_type,
                len(records),
                mark,
            )
            if records or mark != checkpoint:
                yield SourcePage(records, mark)
            next_url = _link(bundle, "next")
            if not next_url:
                return
            url, params, first = self._rebase(next_url), None, False
            guard.follow(url, "next link")

    # -- requests --------------------------------------------------------------------------------
    def _search(self, mark: str | None) -> tuple[str, dict[str, Any]]:
        params = dict(self.params)
        if mark is not None:
            params["_lastUpdated"] = f"ge{mark}"
        params["_sort"] = "_lastUpdated"
        params["_count"] = str(self.page_size)
        return f"{self.base_url}/{self.resource_type}", params

    def _learn_server_base(self, bundle: dict[str, Any]) -> None:
        """The server's own view of its base, from the first page's self link (for ``_rebase``).

        Kept only from an absolute self link without user-info whose path ends with the searched
        type. It is never a place a request goes: ``_rebase`` moves a link on it onto the base.
        """
        link = _link(bundle, "self") or ""
        where = origin(link)
        self._server_base = None
        if where is None or has_userinfo(link):
            return
        path = urlsplit(link).path.rstrip("/")
        suffix = f"/{self.resource_type}"
        if path.endswith(suffix):
            self._server_base = (where, path[: -len(suffix)])

    def _rebase(self, link: str) -> str:
        """The URL a next link asks for, on the configured base; a SourceError for any other origin.

        A link on the Connection's own origin (scheme, host and port, parsed) is followed as it is,
        a relative one relative to the base, as FHIR references are. A link on the origin the self
        link showed, under its path (a server behind a proxy naming its own address), is moved
        onto the configured base. Anything else, and any link with user-info, is refused: the
        session's credentials must not go where the Connection does not point.
        """
        refused = f"FHIR connection '{self.conn_id}': refused a next link"
        try:
            if has_userinfo(link):
                raise SourceError(f"{refused} with user-info in its host (name@host)")
            target = urljoin(self.base_url + "/", link)
            parts = urlsplit(target)
        except ValueError:
            raise SourceError(f"{refused} that is not a URL") from None
        where = origin(target)
        if where is not None and where == origin(self.base_url):
            return target
        if self._server_base and where == self._server_base[0]:
            prefix = self._server_base[1]
            if parts.path == prefix or parts.path.startswith(prefix + "/"):
                query = f"?{parts.query}" if parts.query else ""
                return self.base_url + parts.path[len(prefix) :] + query
        shown = f"{where[0]}://{where[1]}:{where[2]}" if where else "no http(s) origin"
        raise SourceError(f"{refused} to {shown}, which is not the connection's origin nor the server's own base")

    # -- answers ---------------------------------------------------------------------------------
    def _check_bundle(self, bundle: Any) -> None:
        if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle":
            return
        if isinstance(bundle, dict) and bundle.get("resourceType") == "OperationOutcome":
            detail = outcome_issues(bundle)
        else:
            detail = f"a {type(bundle).__name__} that is not a Bundle"
        raise SourceError(f"FHIR connection '{self.conn_id}': the {self.resource_type} search answered {detail}")

    def _records(self, bundle: dict[str, Any], mark: str | None) -> tuple[list[SourceRecord], str | None]:
        records: list[SourceRecord] = []
        latest, ahead = datetime.now(UTC) + self.clock_skew, 0
        for entry in bundle.get("entry") or []:
            mode = (entry.get("search") or {}).get("mode", "match")
            resource = entry.get("resource")
            if mode in SKIPPED_MODES:
                if mode == "outcome" and isinstance(resource, dict):
                    log.warning("FHIR connection '%s': the server noted: %s", self.conn_id, outcome_issues(resource))
                continue
            if not isinstance(resource, dict) or resource.get("resourceType") != self.resource_type:
                log.warning("FHIR connection '%s': skipped an entry that is not a %s", self.conn_id, self.resource_type)
                continue
            if not resource.get("id"):
                log.warning("FHIR connection '%s': skipped a %s without id", self.conn_id, self.resource_type)
                continue
            meta = resource.get("meta") or {}
            updated = meta.get("lastUpdated")
            version = meta.get("versionId") or updated or content_hash(resource)
            records.append(SourceRecord(str(resource["id"]), str(version), resource, self._problems(resource)))
            if isinstance(updated, str):
                if after(updated, latest):
                    ahead += 1  # still processed; read again by each run until its time has come
                else:
                    mark = later(mark, updated)
        if ahead:
            log.warning(
                "FHIR connection '%s': %d record(s) updated after now + %s by their meta.lastUpdated; they are "
                "processed, but the checkpoint does not move to them (the next run reads them again)",
                self.conn_id,
                ahead,
                self.clock_skew,
            )
        return records, mark

    def _problems(self, resource: dict[str, Any]) -> str | None:
        """Why ``resource`` is not valid FHIR R4, naming fields and error kinds only; None if valid."""
        if self._model is None:
            return None
        from pydantic import ValidationError

        try:
            self._model.model_validate(resource)
        except ValidationError as exc:
            where = [
                f"{'.'.join(str(p) for p in error['loc']) or '(resource)'} ({error['type']})"
                for error in exc.errors(include_input=False, include_url=False)
            ]
            shown = "; ".join(where[:10]) + (f"; and {len(where) - 10} more" if len(where) > 10 else "")
            return f"invalid FHIR R4 {self.resource_type}: {shown}"
        return None


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == relation and link.get("url"):
            return str(link["url"])
    return None


def _model_class(resource_type: str, conn_id: str) -> Any:
    """The ``fhir.resources`` R4B model for ``resource_type`` (R5, the default package, is not R4)."""
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:
        raise ConfigError(
            f"FHIR source '{conn_id}'",
            ["validate=True needs the fhir.resources package (pip install fhir.resources==8.3.0)"],
        ) from None
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        raise ConfigError(f"FHIR source '{conn_id}'", [f"'{resource_type}' is not a FHIR R4 resource type"]) from None
