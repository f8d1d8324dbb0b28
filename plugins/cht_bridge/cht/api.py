"""CHT itself as the destination of a reverse pipeline: its people, places and records APIs.

Reads (views, contacts-by-phone) go through ``CouchClient``'s retried reads. Writes are never
repeated here: CHT's write APIs have no idempotency key (cht.md §2.2), so a POST that timed out
may still have created its document. The caller marks a write in its ledger before sending it and,
after a failure, looks the document up by its ``source_ref`` before posting again. A write follows
no redirect (it would turn the POST into a GET, or send the record to another host), and its
answer is read within ``write_limits``: a too-large answer fails the write for good, a too-slow
one like a timeout.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import requests

from cht_bridge.cht.couch import CouchClient
from cht_bridge.errors import AnswerLimitError, AuthError, ChtBridgeError, SourceError
from cht_bridge.http.read import ANSWER_LIMITS, AnswerLimits, request_within
from cht_bridge.http.reasons import CHT, answer_reason
from cht_bridge.http.retry import classify

log = logging.getLogger(__name__)

#: Rows per view page while reading the persons of an area.
VIEW_PAGE = 1000
#: Person types of CHT's hard-coded hierarchy; configurable ones are ``type: contact``.
PERSON_TYPE = "person"


class WriteError(ChtBridgeError):
    """CHT did not create a document. ``retryable`` False: sending it again cannot help."""

    def __init__(self, message: str, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class ChtApiClient(CouchClient):
    """The CHT API of one instance: ``/api/...`` endpoints plus the ``medic`` database reads."""

    def __init__(self, *args: Any, write_limits: AnswerLimits = ANSWER_LIMITS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_limits = write_limits

    # -- reads ---------------------------------------------------------------------------------

    def persons_under(self, place_id: str) -> list[dict[str, Any]]:
        """Every person whose lineage contains ``place_id`` (view ``contacts_by_place``), paged."""
        persons: list[dict[str, Any]] = []
        params: dict[str, Any] = {"key": json.dumps([place_id]), "include_docs": "true", "limit": VIEW_PAGE + 1}
        while True:
            rows = json.loads(self.view_text("medic-client", "contacts_by_place", params))["rows"]
            persons.extend(row["doc"] for row in rows[:VIEW_PAGE] if is_person(row.get("doc")))
            if len(rows) <= VIEW_PAGE:
                return persons
            last = rows[VIEW_PAGE]
            params = {**params, "startkey": json.dumps(last["key"]), "startkey_docid": last["id"]}
            params.pop("key", None)
            params["endkey"] = json.dumps([place_id])

    def contacts_by_phone(self, phone: str) -> list[dict[str, Any]]:
        """CHT's own phone lookup (normalised with the instance's country code); [] when none."""
        try:
            text = self.request_text("GET", f"{self.base_url}/api/v1/contacts-by-phone", params={"phone": phone})
        except SourceError as exc:
            if exc.status in (400, 404):  # 404: nobody has it; 400: CHT could not read the number either
                return []
            raise
        return [doc for doc in json.loads(text).get("docs", []) if is_person(doc)]

    def docs(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Documents by id (missing ones left out), for a reviewer's side-by-side view."""
        if not ids:
            return {}
        rows = json.loads(self.all_docs_text(ids))["rows"]
        return {row["id"]: row["doc"] for row in rows if row.get("doc")}

    def find_person(self, place_id: str, source_ref: str) -> str | None:
        """The person an earlier, interrupted write created for ``source_ref``, if it exists."""
        for doc in self.persons_under(place_id):
            if doc.get("source_ref") == source_ref:
                return doc["_id"]
        return None

    def find_report(self, person_id: str, source_ref: str) -> str | None:
        """The report an earlier, interrupted write created for ``source_ref``, if it exists."""
        text = self.view_text(
            "medic-client", "reports_by_subject", {"key": json.dumps(person_id), "include_docs": "true"}
        )
        for row in json.loads(text)["rows"]:
            doc = row.get("doc") or {}
            if (doc.get("fields") or {}).get("source_ref") == source_ref:
                return doc["_id"]
        return None

    def person(self, person_id: str) -> dict[str, Any] | None:
        """``GET /api/v1/person/{uuid}`` (CHT 4.9+): the person's document, None when CHT has no such person."""
        try:
            text = self.request_text("GET", f"{self.base_url}/api/v1/person/{quote(person_id, safe='')}")
        except SourceError as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(text)

    # -- writes --------------------------------------------------------------------------------

    def update_person(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``PUT /api/v1/person/{uuid}`` (CHT 5.2+): ``doc`` whole, with its ``_rev`` (a property left
        out is deleted); the updated document."""
        return self._write(f"/api/v1/person/{quote(doc['_id'], safe='')}", doc, method="PUT")

    def create_person(self, body: dict[str, Any], api: str = "legacy") -> str:
        """Create a person; its id. ``legacy`` is ``POST /api/v1/people``, ``v1_person`` the 5.2 API."""
        if api == "v1_person":
            answer = self._write("/api/v1/person", body)
            return answer["_id"]
        legacy = {k: v for k, v in body.items() if k != "parent"}
        legacy["place"] = body["parent"]
        return self._write("/api/v1/people", legacy)["id"]

    def create_report(self, body: dict[str, Any]) -> str:
        """Create a report through ``POST /api/v2/records``; its id."""
        answer = self._write("/api/v2/records", body)
        if not answer.get("success") or not answer.get("id"):
            raise WriteError("POST /api/v2/records did not answer success", 200, False)
        return answer["id"]

    def _write(self, path: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
        where = f"{method} {path}"
        try:
            response = request_within(
                self.session(), method, f"{self.base_url}{path}", self.write_limits, json=body, timeout=self.timeout
            )
        except requests.RequestException as exc:
            # It may have been created all the same: the caller looks it up before trying again.
            raise WriteError(f"{type(exc).__name__} on {where}", None, True) from exc
        except AnswerLimitError as exc:
            # Created or not, a longer wait cannot help a too-large answer; a slow one is a timeout.
            raise WriteError(f"HTTP {exc.status}: {exc} on {where}", exc.status, not exc.too_large) from None
        self._check(response, where)
        return response.json()

    def _check(self, response: requests.Response, where: str) -> None:
        kind = classify(response.status_code)
        if kind == "delivered":
            return
        if kind == "auth":
            raise AuthError(self.conn_id, response.status_code, "CHT")
        reason = answer_reason(response, CHT)
        # CHT answers its own validation errors (PublicError) as 500 with details: not retryable.
        retryable = kind == "retryable" and not (response.status_code == 500 and reason.final)
        raise WriteError(
            f"HTTP {response.status_code} on {where}: {reason.text or 'no details'}", response.status_code, retryable
        )


def is_person(doc: dict[str, Any] | None) -> bool:
    """True for a person contact, in the hard-coded or the configurable hierarchy."""
    if not doc or doc.get("_deleted"):
        return False
    if doc.get("type") == PERSON_TYPE:
        return True
    return doc.get("type") == "contact" and bool(doc.get("contact_type")) and _person_like(doc)


def _person_like(doc: dict[str, Any]) -> bool:
    # A configurable contact is a person when CHT's config says so; without the config at hand,
    # the fields that only persons carry decide.
    return any(key in doc for key in ("date_of_birth", "sex", "patient_id"))
