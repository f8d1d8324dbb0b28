"""Why an upstream refused a request, in one short line: the one parser of an error answer.

Every reason here is stored (ledger rows, dead letters) or logged, so it is kept short and
value-free: a redirect names its target without user-info or query values, a JSON error names
its message, and only a destination's (or CHT's) own words fall back to the start of the body.
What differs between upstreams is said in a ``ReasonStyle``, not in another parser:

* ``READ``: a read's error (CHT's CouchDB, a JSON list): a JSON ``error``/``message``/``detail``,
  else the status phrase (a read's error page is never quoted: it may echo the query);
* ``FHIR``: ``READ``, but an ``OperationOutcome`` answer gives its issues (``fhir_outcome``);
* ``DESTINATION``: a REST destination's refusal: a JSON ``error``/``message``/``reason``/``detail``,
  else the start of the body, which is the receiver's own explanation;
* ``CHT``: a CHT API write: ``DESTINATION``'s rule over CHT's keys, but a ``details`` message (a
  ``PublicError``, CHT's own validation) comes first and says the request itself is wrong
  (``final``), whatever the status: CHT answers those as 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from cht_bridge.errors import one_line
from cht_bridge.http.urls import safe_url


@dataclass(frozen=True)
class Reason:
    """An error answer's reason. ``final``: the answer blames the request itself, so sending the
    same request again cannot help even if the status says otherwise (CHT's ``PublicError``)."""

    text: str
    final: bool = False


#: A system's own error document (a FHIR OperationOutcome, CHT's ``details``): its reason, or
#: None to fall back to the style's keys.
Shape = Callable[[dict[str, Any]], Reason | None]


@dataclass(frozen=True)
class ReasonStyle:
    """How one kind of upstream words its errors.

    ``keys``: JSON members holding the message, first string wins; ``limit``: characters kept;
    ``body_text``: with no such member, keep the start of the body (newlines folded) instead of the
    status phrase; ``shape``: a hook for a system's own error document, tried first.
    """

    keys: tuple[str, ...] = ("error", "message", "detail")
    limit: int = 200
    body_text: bool = False
    shape: Shape | None = None


def outcome_issues(outcome: dict[str, Any]) -> str:
    """The issues of a FHIR OperationOutcome, as ``severity code: diagnostics``, ``; ``-joined."""
    parts = []
    for issue in outcome.get("issue") or []:
        text = f"{issue.get('severity', '?')} {issue.get('code', '?')}"
        if issue.get("diagnostics"):
            text += f": {str(issue['diagnostics'])[:200]}"
        parts.append(text)
    return "; ".join(parts)


def fhir_outcome(body: dict[str, Any]) -> Reason | None:
    """A FHIR server's OperationOutcome: its issues (None when it lists none)."""
    if body.get("resourceType") != "OperationOutcome":
        return None
    issues = outcome_issues(body)
    return Reason(issues) if issues else None


def cht_details(body: dict[str, Any]) -> Reason | None:
    """CHT's ``PublicError``: a ``details`` message, which names fields and forms, not values."""
    return Reason(str(body["details"])[:300], final=True) if body.get("details") else None


READ = ReasonStyle()
FHIR = ReasonStyle(shape=fhir_outcome)
DESTINATION = ReasonStyle(keys=("error", "message", "reason", "detail"), limit=300, body_text=True)
CHT = ReasonStyle(keys=("error", "reason", "message"), limit=300, body_text=True, shape=cht_details)


def redirect_reason(response: requests.Response) -> str | None:
    """Why a redirect was not followed, naming its target without user-info or query values; None
    for any other answer. The bridge follows no redirect: a Connection names the URL to use."""
    if not response.is_redirect:
        return None
    return f"redirected to {safe_url(response.headers['Location'])}; fix the connection's URL"


def answer_reason(response: requests.Response, style: ReasonStyle = READ) -> Reason:
    """The reason of an error answer whose body was read (``read_body(..., reason_only=True)``).

    Always one line: it goes into retry warnings, breaker messages and task errors as well as the
    ledgers, and an upstream's newline there would forge a log line.
    """
    reason = _answer_reason(response, style)
    return Reason(one_line(reason.text) or "", reason.final)


def _answer_reason(response: requests.Response, style: ReasonStyle) -> Reason:
    redirected = redirect_reason(response)
    if redirected:
        return Reason(redirected)
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        shaped = style.shape(body) if style.shape else None
        if shaped is not None:
            return shaped
        for key in style.keys:
            if isinstance(body.get(key), str):
                return Reason(body[key][: style.limit])
    if style.body_text:
        return Reason(response.text.strip()[: style.limit])  # one line: see answer_reason
    return Reason(response.reason or f"HTTP {response.status_code}")
