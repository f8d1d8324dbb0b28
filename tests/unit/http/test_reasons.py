"""One reason parser: what each kind of upstream's error answer becomes, stored and logged."""

from __future__ import annotations

import json

import pytest
import requests

from cht_bridge.http.reasons import CHT, DESTINATION, FHIR, READ, Reason, answer_reason


def answer(
    status: int, body: object = None, *, text: str | None = None, headers: dict | None = None
) -> requests.Response:
    """A received answer as ``read_body`` leaves it: status, phrase, headers and the body read."""
    response = requests.Response()
    response.status_code = status
    response.reason = {
        400: "Bad Request",
        404: "Not Found",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }.get(status, "")
    response.headers.update(headers or {})
    raw = text if text is not None else ("" if body is None else json.dumps(body))
    response._content = raw.encode()
    response.encoding = "utf-8"
    response.url = "https://emr.example.org/fhir/Patient"
    return response


def test_a_read_keeps_a_json_message_and_otherwise_only_the_status_phrase():
    assert answer_reason(answer(404, {"error": "not_found", "reason": "missing"}), READ) == Reason("not_found")
    assert answer_reason(answer(400, {"detail": "x" * 500}), READ).text == "x" * 200
    # An HTML error page may echo the query (patient identifiers): a read never quotes it.
    assert answer_reason(answer(503, text="<html>nhif=12345</html>"), READ).text == "Service Unavailable"
    assert answer_reason(answer(599, text="oops"), READ).text == "HTTP 599"
    assert answer_reason(answer(400, {"reason": "only reason"}), READ).text == "Bad Request"


def test_a_redirect_names_its_target_without_user_info_or_query_values():
    moved = answer(302, text="", headers={"Location": "https://user:pw@evil.example/x?nhif=1"})
    for style in (READ, FHIR, DESTINATION, CHT):
        assert answer_reason(moved, style).text == (
            "redirected to https://evil.example/x?nhif=…; fix the connection's URL"
        )


def test_fhir_gives_the_operation_outcome_issues():
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": "Unknown search parameter 'foo'"}],
    }
    assert answer_reason(answer(400, outcome), FHIR).text == "error processing: Unknown search parameter 'foo'"
    empty = {"resourceType": "OperationOutcome", "issue": [], "message": "bad"}
    assert answer_reason(answer(400, empty), FHIR).text == "bad"  # no issues: the plain rule
    assert answer_reason(answer(400, outcome), READ).text == "Bad Request"  # the hook belongs to FHIR only


def test_a_destination_keeps_its_own_words():
    assert answer_reason(answer(400, {"reason": "validation failed"}), DESTINATION).text == "validation failed"
    assert answer_reason(answer(404, text="no route\n here "), DESTINATION).text == "no route here"
    assert answer_reason(answer(400, text="y" * 1000), DESTINATION).text == "y" * 300
    assert answer_reason(answer(400, text=""), DESTINATION).text == ""


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            500,
            {"code": 500, "error": "Form not found", "details": "Form not found: NOPE"},
            Reason("Form not found: NOPE", True),
        ),
        (503, {"error": "service unavailable"}, Reason("service unavailable")),
        (400, {"reason": "bad phone"}, Reason("bad phone")),
    ],
)
def test_cht_details_come_first_and_say_the_request_itself_is_wrong(status, body, expected):
    assert answer_reason(answer(status, body), CHT) == expected


@pytest.mark.parametrize("style", [READ, DESTINATION, CHT, FHIR], ids=["read", "destination", "cht", "fhir"])
def test_a_reason_is_one_line_whatever_the_upstream_put_in_it(style):
    """Reasons go into retry warnings, breaker messages and task errors, not only the ledgers."""
    forged = "busy\nINFO - forged line\r\x1b[2K"
    bodies = [
        {"error": forged},
        {"details": forged},
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x", "diagnostics": forged}]},
    ]
    for body in bodies:
        text = answer_reason(answer(503, body), style).text
        assert "\n" not in text and "\r" not in text and "\x1b" not in text, (body, text)
