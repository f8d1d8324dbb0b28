"""Issue 9, items 1 and 3b: credentials go only to their Connection's origin, and every HTTP answer is
read within a deadline and a size cap. Against real servers on 127.0.0.1 (``hostile.Hostile``); the
"other host" is a second local server on another port, and each test asserts what reached it."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from cht_bridge.cht.api import ChtApiClient, WriteError
from cht_bridge.cht.couch import CouchClient
from cht_bridge.config.model import Auth, DestinationConfig
from cht_bridge.destinations import Delivery, RestDestination
from cht_bridge.errors import SourceError
from cht_bridge.hooks import open_destination_from_connection
from cht_bridge.hooks.cht import ChtHook
from cht_bridge.hooks.source import source_session
from cht_bridge.http.origin import scoped_session
from cht_bridge.http.read import AnswerLimits
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.reverse.sources import FhirSearchSource
from tests.integration.hostile import Hostile

pytestmark = pytest.mark.integration

NO_RETRY = RetryPolicy(retries=0, backoff_s=0.01, max_backoff_s=0.01)
FAST = RetryPolicy(retries=2, backoff_s=0.01, max_backoff_s=0.01)
TIGHT = AnswerLimits(deadline_s=0.5, max_bytes=1024 * 1024)
SECRET = "s3cret-Zq9"
BASIC = "Basic " + base64.b64encode(f"bridge:{SECRET}".encode()).decode()


@pytest.fixture
def ours():
    with Hostile() as server:
        yield server


@pytest.fixture
def other():
    with Hostile() as server:
        yield server


def carries_secret(headers: dict[str, str]) -> bool:
    return any(SECRET in value or value == BASIC for value in headers.values())


def connection(monkeypatch, conn_id: str, url: str, **fields) -> None:
    conn = {"conn_type": "http", "host": url, "login": "bridge", "password": SECRET, **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({k: v for k, v in conn.items() if v is not None}))


# -- 1a: FHIR next links ------------------------------------------------------------------------


def test_a_fhir_next_link_with_user_info_is_refused_and_the_other_host_gets_nothing(ours, other):
    # It starts with the base URL, but requests sends it to `other`: the part before the @ is a user name.
    ours.next_link = f"http://127.0.0.1:{ours.port}@127.0.0.1:{other.port}/Patient?_page=2&token=abc"
    session = requests.Session()
    session.auth = ("bridge", SECRET)
    source = FhirSearchSource(session, ours.url, "Patient", conn_id="emr_fhir", validate=False, retry=FAST)

    with pytest.raises(SourceError) as caught:
        list(source.pages(None))

    assert "emr_fhir" in str(caught.value) and "user-info" in str(caught.value)
    assert "abc" not in str(caught.value) and SECRET not in str(caught.value)
    assert other.seen == []
    assert len(ours.seen) == 1


def test_a_fhir_next_link_to_another_port_is_refused(ours, other):
    ours.next_link = f"{other.url}/fhir/Patient?_page=2"
    source = FhirSearchSource(
        requests.Session(), f"{ours.url}/fhir", "Patient", conn_id="emr_fhir", validate=False, retry=FAST
    )
    with pytest.raises(SourceError, match=f"to http://127.0.0.1:{other.port}, which is not the connection's origin"):
        list(source.pages(None))
    assert other.seen == []


@pytest.mark.parametrize(
    "link",
    [
        "https://emr.example.org@evil.example/fhir/Patient?_page=2",
        "https://emr.example.org:443@evil.example/fhir/Patient?_page=2",
        "https://emr.example.org.evil.example/fhir/Patient?_page=2",
        "https://emr.example.org:4443/fhir/Patient?_page=2",
        "http://emr.example.org/fhir/Patient?_page=2",
        "//evil.example/fhir/Patient?_page=2",
        "https://10.0.0.5:8080@evil.example/openmrs/ws/fhir2/R4?_getpages=ab",  # user-info that names the server
        "http://10.0.0.5:8080/other/R4/Patient?_page=2",  # the server's origin, outside its base path
        "http://10.0.0.5:8080/openmrs/ws/fhir2/R4x/Patient",  # a path that only starts like the base
        "ftp://emr.example.org/fhir/Patient",
    ],
)
def test_only_links_on_the_connection_or_the_servers_own_base_are_followed(link):
    source = FhirSearchSource(
        requests.Session(), "https://emr.example.org/fhir", "Patient", conn_id="emr_fhir", validate=False
    )
    source._learn_server_base(
        {"link": [{"relation": "self", "url": "http://10.0.0.5:8080/openmrs/ws/fhir2/R4/Patient?_count=10"}]}
    )
    with pytest.raises(SourceError) as caught:
        source._rebase(link)
    assert "_page" not in str(caught.value) and "_getpages" not in str(caught.value)


def test_links_on_the_connections_origin_are_followed_with_default_ports_normalised():
    source = FhirSearchSource(
        requests.Session(), "https://emr.example.org/fhir", "Patient", conn_id="emr_fhir", validate=False
    )
    assert source._rebase("https://EMR.example.org:443/fhir/Patient?_page=2") == (
        "https://EMR.example.org:443/fhir/Patient?_page=2"
    )
    assert source._rebase("/fhir/Patient?_page=3") == "https://emr.example.org/fhir/Patient?_page=3"


def test_a_self_link_with_user_info_teaches_no_server_base():
    source = FhirSearchSource(
        requests.Session(), "https://openhim.example/fhir", "Patient", conn_id="via_openhim", validate=False
    )
    source._learn_server_base({"link": [{"relation": "self", "url": "http://a@evil.example/R4/Patient?_count=10"}]})
    with pytest.raises(SourceError):
        source._rebase("http://evil.example/R4?_getpages=ab")


# -- 1b: credentials per request, for the Connection's origin only -------------------------------


def test_a_reverse_source_session_sends_its_credentials_only_to_its_origin(monkeypatch, ours, other):
    for extra, expected in ((None, BASIC), (json.dumps({"auth": "bearer"}), f"Bearer {SECRET}")):
        connection(monkeypatch, "emr_src", ours.url, extra=extra)
        session, base_url = source_session("emr_src")
        assert base_url == ours.url
        assert "authorization" not in {k.lower() for k in session.headers}

        session.get(f"{ours.url}/anything", timeout=5)
        session.get(f"{other.url}/anything", timeout=5)

        assert ours.seen[-1][2]["authorization"] == expected
        assert not carries_secret(other.seen[-1][2])


def test_the_cht_client_sends_its_login_only_to_its_origin(monkeypatch, ours, other):
    connection(monkeypatch, "cht_hard", ours.url)
    client = ChtHook("cht_hard").get_client("medic")
    client.session().get(f"{ours.url}/medic", timeout=5)
    client.session().get(f"{other.url}/medic", timeout=5)
    assert ours.seen[-1][2]["authorization"] == BASIC
    assert not carries_secret(other.seen[-1][2])


@pytest.mark.parametrize(
    ("auth", "header"),
    [(Auth("header", header="x-api-key"), "x-api-key"), (Auth("bearer"), "authorization"), (Auth("basic"), None)],
)
def test_a_destination_session_sends_its_secret_only_to_its_origin(monkeypatch, ours, other, auth, header):
    connection(monkeypatch, "dest_hard", ours.url)
    dest = open_destination_from_connection(
        DestinationConfig(conn_id="dest_hard", path="/in", auth=auth, concurrency=1), file="p.yaml"
    )
    try:
        (result,) = dest.send([Delivery("d1", '{"a": 1}', "key-1")])
        assert result.ok
        assert carries_secret(ours.seen[-1][2])
        assert not carries_secret({k.lower(): v for k, v in dest._session.headers.items()})
        # Anything else on that session (a redirect hop, a link an answer names) goes without it.
        dest._session.get(f"{other.url}/anything", timeout=5)
        assert not carries_secret(other.seen[-1][2])
        assert header is None or header not in other.seen[-1][2]
    finally:
        dest.close()


def test_a_redirect_hop_to_another_origin_loses_every_credential_and_one_home_keeps_it(ours, other):
    # requests itself strips only Authorization on a redirect to another host: a named header
    # such as x-api-key would go along. The scoped session strips both, and puts them back home.
    session = scoped_session(ours.url, basic=("bridge", SECRET), headers={"x-api-key": SECRET})
    ours.location = f"{other.url}/landing"
    assert session.get(f"{ours.url}/redirect", timeout=5).status_code == 201
    assert other.seen[-1][1] == "/landing"
    assert not carries_secret(other.seen[-1][2])

    ours.location = f"{ours.url}/home"
    session.get(f"{ours.url}/redirect", timeout=5)
    assert ours.seen[-1][1] == "/home"
    assert ours.seen[-1][2]["x-api-key"] == SECRET and ours.seen[-1][2]["authorization"] == BASIC


def test_a_read_is_not_redirected_anywhere(ours, other):
    ours.location = f"http://user:pw@127.0.0.1:{other.port}/medic?token=abc"
    client = CouchClient(ours.url, "redirect", ("bridge", SECRET), conn_id="cht_hard", retry=FAST)
    with pytest.raises(SourceError) as caught:
        client.info()
    assert f"HTTP 302: redirected to http://127.0.0.1:{other.port}/medic?token=…" in str(caught.value)
    assert "abc" not in str(caught.value) and "pw" not in str(caught.value)
    assert other.seen == []
    assert len(ours.seen) == 1  # a redirect is permanent: not repeated


def test_a_cht_write_is_not_redirected_anywhere(ours, other):
    ours.location = f"{other.url}/api/v2/records"
    api = ChtApiClient(ours.url, "medic", ("bridge", SECRET), conn_id="cht_hard")
    with pytest.raises(WriteError) as caught:
        api._write("/redirect", {"form": "LTFU"})
    assert caught.value.status == 302 and not caught.value.retryable
    assert f"redirected to {other.url}/api/v2/records" in str(caught.value)
    assert other.seen == []


# -- 1c: a redirect's Location without query values or user-info ---------------------------------


def test_a_destination_redirect_is_recorded_without_user_info_or_query_values(ours):
    ours.location = "https://bridge:pw@elsewhere.example/ingest?token=abc&site=1"
    dest = RestDestination(requests.Session(), ours.url, "/redirect", conn_id="emr", concurrency=1)
    (result,) = dest.send([Delivery("doc-1", '{"id": "doc-1"}', "k1")])
    dest.close()
    assert not result.ok and not result.retryable and result.status == 302
    assert (
        result.error
        == "HTTP 302: redirected to https://elsewhere.example/ingest?token=…&site=…; fix the connection's URL"
    )


def test_a_destination_id_from_location_leaves_its_query_out(ours):
    ours.location = "https://emr.example.org/records/r-123?token=abc"
    dest = RestDestination(requests.Session(), ours.url, "/created", conn_id="emr", concurrency=1)
    (result,) = dest.send([Delivery("doc-1", '{"id": "doc-1"}', "k1")])
    dest.close()
    assert result.ok and result.destination_id == "r-123"


# -- 3b: a deadline and a size cap on every answer ------------------------------------------------


def test_a_trickling_read_fails_at_its_deadline_without_repeats(ours):
    client = CouchClient(ours.url, "trickle", None, conn_id="cht_slow", retry=FAST, limits=TIGHT)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        client.info()
    assert time.monotonic() - started < 2.0  # the body takes 3.3 s, a byte every 0.1 s
    assert "cht_slow" in str(caught.value) and "answer not complete after 0.5 s" in str(caught.value)
    assert client.reader().requests == 1


def test_a_stalled_read_ends_at_its_deadline_not_at_the_socket_timeout(ours):
    client = CouchClient(ours.url, "stall", None, conn_id="cht_slow", retry=NO_RETRY, limits=TIGHT, timeout=(5, 30))
    started = time.monotonic()
    with pytest.raises(SourceError, match="answer not complete after 0.5 s"):
        client.info()
    assert time.monotonic() - started < 2.0  # not 3 s (the stall), nor 30 s (the socket timeout)


def test_a_huge_read_fails_at_its_cap_without_repeats(ours):
    client = CouchClient(ours.url, "huge", None, conn_id="cht_big", retry=FAST, limits=TIGHT)
    with pytest.raises(SourceError) as caught:
        client.info()
    assert "cht_big" in str(caught.value) and "answer larger than 1 MiB" in str(caught.value)
    assert client.reader().requests == 1


def test_a_huge_error_answer_is_read_only_for_its_reason(ours):
    client = CouchClient(ours.url, "huge-error", None, conn_id="cht_big", retry=NO_RETRY, limits=TIGHT)
    with pytest.raises(SourceError) as caught:
        client.info()
    assert caught.value.status == 500 and "HTTP 500" in str(caught.value)
    assert "xxxx" not in str(caught.value)  # the body's start is not JSON: the status phrase is the reason


def test_reads_within_their_limits_come_back_whole(ours):
    client = CouchClient(ours.url, "medic", None, conn_id="cht_ok", retry=NO_RETRY, limits=TIGHT)
    assert client.info() == {"id": "x1", "ok": True}
    assert client.info() == {"id": "x1", "ok": True}


def test_a_trickling_destination_answer_is_a_retryable_failure(ours):
    dest = RestDestination(
        requests.Session(), ours.url, "/trickle", conn_id="emr", concurrency=1, retry=NO_RETRY, limits=TIGHT
    )
    started = time.monotonic()
    (result,) = dest.send([Delivery("doc-1", '{"id": "doc-1"}', "k1")])
    dest.close()
    assert time.monotonic() - started < 2.0
    assert not result.ok and result.retryable and result.status == 200
    assert result.error == "HTTP 200: answer not complete after 0.5 s"


def test_a_huge_destination_answer_is_a_permanent_failure_of_every_item(ours):
    dest = RestDestination(
        requests.Session(), ours.url, "/huge", conn_id="emr", mode="batch", retry=NO_RETRY, limits=TIGHT
    )
    results = dest.send([Delivery(f"doc-{i}", '{"a": 1}', f"k{i}") for i in range(3)])
    dest.close()
    assert [(r.ok, r.retryable, r.error) for r in results] == [(False, False, "HTTP 200: answer larger than 1 MiB")] * 3
    assert dest.requests == 1


def test_a_huge_destination_error_answer_keeps_its_status_class(ours):
    dest = RestDestination(requests.Session(), ours.url, "/huge-error", conn_id="emr", retry=NO_RETRY, limits=TIGHT)
    (result,) = dest.send([Delivery("doc-1", '{"a": 1}', "k1")])
    dest.close()
    assert not result.ok and result.retryable and result.status == 500
    assert len(result.error) < 400


def test_a_cht_write_answer_too_slow_or_too_large(ours):
    api = ChtApiClient(ours.url, "medic", None, conn_id="cht_hard", write_limits=TIGHT)
    with pytest.raises(WriteError) as slow:
        api._write("/trickle", {"form": "LTFU"})
    assert slow.value.retryable and "answer not complete after 0.5 s" in str(slow.value)
    with pytest.raises(WriteError) as large:
        api._write("/huge", {"form": "LTFU"})
    assert not large.value.retryable and "answer larger than 1 MiB" in str(large.value)
