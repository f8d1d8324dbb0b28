"""The auth builder against a real local stand-in: a login cookie and OAuth2 client credentials are
fetched once, reused, renewed on a 401 exactly once, and only ever sent where they belong."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from cht_bridge.errors import AuthError
from cht_bridge.http.auth import CredentialError, build_auth
from cht_bridge.http.origin import ScopedSession
from cht_bridge.http.read import Reader
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.http.settings import AuthSetting, read_auth
from tests.fixtures.auth_server import LOGIN_PATH, TOKEN_PATH, AuthServer

LOGIN = ("admin", "Admin123")
SECRET = LOGIN[1]
NO_RETRY = RetryPolicy(retries=0, backoff_s=0.01, max_backoff_s=0.01)


@pytest.fixture
def emr():
    server = AuthServer(login=LOGIN)
    yield server
    server.close()


@pytest.fixture
def issuer():
    server = AuthServer(login=LOGIN)
    yield server
    server.close()


@pytest.fixture
def elsewhere():
    server = AuthServer(login=LOGIN)
    yield server
    server.close()


def reader(base_url: str, setting: AuthSetting, login=LOGIN, **options) -> Reader:
    session = ScopedSession()
    session.auth = build_auth(base_url, setting, *login, conn_id="emr_conn", system="The EMR", timeout=5, **options)
    return Reader(session, conn_id="emr_conn", system="EMR", retry=NO_RETRY, sleep=lambda _: None)


def carries(request: dict, value: str) -> bool:
    """Whether a recorded request holds ``value`` anywhere: a header, its body, base64 in Basic auth."""
    text = " ".join(request["headers"].values()) + " " + request["body"]
    decoded = ""
    for header in request["headers"].values():
        if header.startswith("Basic "):
            decoded += base64.b64decode(header[6:]).decode(errors="replace")
    return value in text or value in decoded


COOKIE = AuthSetting("cookie", login_path=LOGIN_PATH)


def test_cookie_logs_in_once_and_reuses_the_session(emr):
    read = reader(emr.url, COOKIE)
    for _ in range(3):
        assert read.get_json(f"{emr.url}/openmrs/ws/fhir2/R4/Patient") == {"ok": True}
    (login,) = emr.requests_to(LOGIN_PATH)
    assert login["headers"]["authorization"] == "Basic " + base64.b64encode(b"admin:Admin123").decode()
    resources = emr.requests_to("/openmrs/ws/fhir2/R4/Patient")
    assert [r["headers"]["cookie"] for r in resources] == ["JSESSIONID=s1"] * 3
    assert not any(carries(r, SECRET) for r in resources)  # the password went only to the login


def test_cookie_logs_in_again_once_when_the_session_expired(emr):
    read = reader(emr.url, COOKIE)
    read.get_json(f"{emr.url}/data")
    emr.expire()
    assert read.get_json(f"{emr.url}/data") == {"ok": True}
    assert len(emr.requests_to(LOGIN_PATH)) == 2
    assert [r["headers"]["cookie"] for r in emr.requests_to("/data")] == [
        "JSESSIONID=s1",
        "JSESSIONID=s1",
        "JSESSIONID=s2",
    ]
    assert read.get_json(f"{emr.url}/data") == {"ok": True}  # and the new session is kept
    assert len(emr.requests_to(LOGIN_PATH)) == 2


def test_cookie_refused_after_a_new_login_fails_plainly(emr):
    emr.refuse_always = True
    read = reader(emr.url, COOKIE)
    with pytest.raises(AuthError, match="'emr_conn' \\(HTTP 401\\)"):
        read.get_json(f"{emr.url}/data")
    assert len(emr.requests_to(LOGIN_PATH)) == 2  # the first login, and one more after the 401
    assert len(emr.requests_to("/data")) == 2


def test_a_wrong_password_stops_at_the_login(emr):
    read = reader(emr.url, COOKIE, login=("admin", "wrong"))
    with pytest.raises(AuthError, match="emr_conn"):
        read.get_json(f"{emr.url}/data")
    assert len(emr.requests_to(LOGIN_PATH)) == 1  # 200 with authenticated: false is a refusal
    assert emr.requests_to("/data") == []


def test_the_cookie_never_goes_to_another_origin(emr, elsewhere):
    session = ScopedSession()
    session.auth = build_auth(emr.url, COOKIE, *LOGIN, conn_id="emr_conn", system="The EMR", timeout=5)
    session.get(f"{emr.url}/data", timeout=5)
    session.get(f"{elsewhere.url}/data", timeout=5)
    (request,) = elsewhere.seen
    assert "cookie" not in request["headers"] and not carries(request, SECRET) and not carries(request, "s1")


def oauth(issuer: AuthServer, **extra) -> AuthSetting:
    return AuthSetting("oauth2", token_url=f"{issuer.url}{TOKEN_PATH}", **extra)


def test_oauth2_token_is_fetched_once_and_cached(emr, issuer):
    emr.tokens = issuer.tokens  # the resource trusts the issuer's tokens
    read = reader(emr.url, oauth(issuer, scope="read:patients"))
    for _ in range(3):
        assert read.get_json(f"{emr.url}/data") == {"ok": True}
    (token_request,) = issuer.requests_to(TOKEN_PATH)
    assert "grant_type=client_credentials" in token_request["body"] and "scope=read%3Apatients" in token_request["body"]
    assert carries(token_request, SECRET)  # the client secret goes to the token URL...
    resources = emr.requests_to("/data")
    assert [r["headers"]["authorization"] for r in resources] == ["Bearer t1"] * 3
    assert not any(carries(r, SECRET) for r in resources)  # ...and never to the resource origin
    assert not any(carries(r, "t1") for r in issuer.seen)  # the token never goes to the token origin


def test_oauth2_token_refreshed_once_on_a_401(emr, issuer):
    emr.tokens = issuer.tokens
    read = reader(emr.url, oauth(issuer))
    read.get_json(f"{emr.url}/data")
    emr.refuse_next = 1  # e.g. the token was revoked
    assert read.get_json(f"{emr.url}/data") == {"ok": True}
    assert len(issuer.requests_to(TOKEN_PATH)) == 2
    assert [r["headers"]["authorization"] for r in emr.requests_to("/data")] == [
        "Bearer t1",
        "Bearer t1",
        "Bearer t2",
    ]


def test_oauth2_refused_after_a_refresh_fails_plainly(emr, issuer):
    emr.tokens = issuer.tokens
    emr.refuse_always = True
    read = reader(emr.url, oauth(issuer))
    with pytest.raises(AuthError, match="emr_conn"):
        read.get_json(f"{emr.url}/data")
    assert len(issuer.requests_to(TOKEN_PATH)) == 2 and len(emr.requests_to("/data")) == 2


def test_oauth2_token_renewed_before_it_expires(emr, issuer):
    emr.tokens = issuer.tokens
    issuer.expires_in = 300
    now = [1000.0]
    read = reader(emr.url, oauth(issuer), clock=lambda: now[0])
    read.get_json(f"{emr.url}/data")
    now[0] += 269  # inside the lifetime less its margin (30 s)
    read.get_json(f"{emr.url}/data")
    assert len(issuer.requests_to(TOKEN_PATH)) == 1
    now[0] += 2  # 271 s: within 30 s of expiry
    read.get_json(f"{emr.url}/data")
    assert len(issuer.requests_to(TOKEN_PATH)) == 2
    assert [r["headers"]["authorization"] for r in emr.requests_to("/data")] == ["Bearer t1", "Bearer t1", "Bearer t2"]


def test_oauth2_wrong_client_secret_is_an_auth_error_without_touching_the_resource(emr, issuer):
    read = reader(emr.url, oauth(issuer), login=("admin", "wrong"))
    with pytest.raises(AuthError, match="emr_conn"):
        read.get_json(f"{emr.url}/data")
    assert emr.seen == [] and len(issuer.requests_to(TOKEN_PATH)) == 1


def test_the_token_never_goes_to_another_origin(emr, issuer, elsewhere):
    emr.tokens = issuer.tokens
    session = ScopedSession()
    session.auth = build_auth(emr.url, oauth(issuer), *LOGIN, conn_id="emr_conn", system="The EMR", timeout=5)
    session.get(f"{emr.url}/data", timeout=5)
    session.get(f"{elsewhere.url}/data", timeout=5)
    (request,) = elsewhere.seen
    assert "authorization" not in request["headers"] and not carries(request, "t1") and not carries(request, SECRET)


@pytest.mark.parametrize(
    ("setting", "name", "value"),
    [
        (AuthSetting("basic"), "authorization", "Basic " + base64.b64encode(b"admin:Admin123").decode()),
        (AuthSetting("bearer"), "authorization", "Bearer Admin123"),
        (AuthSetting("header", header="x-api-key"), "x-api-key", "Admin123"),
        (AuthSetting("header", header="Authorization", prefix="ApiToken "), "authorization", "ApiToken Admin123"),
        (AuthSetting("header", header="Authorization", prefix="Token "), "authorization", "Token Admin123"),
    ],
)
def test_static_kinds_send_the_secret_as_configured_and_only_to_the_origin(emr, elsewhere, setting, name, value):
    session = ScopedSession()
    session.auth = build_auth(emr.url, setting, *LOGIN, conn_id="c", system="S")
    session.get(f"{emr.url}/x", timeout=5)
    session.get(f"{elsewhere.url}/x", timeout=5)
    assert emr.seen[-1]["headers"][name] == value
    assert not carries(elsewhere.seen[-1], SECRET)


def test_none_sends_nothing():
    assert build_auth("https://emr.example.org", AuthSetting("none"), *LOGIN, conn_id="c", system="S") is None


@pytest.mark.parametrize(
    ("setting", "login", "message"),
    [
        (AuthSetting("basic"), (None, "x"), "basic needs a login on connection 'c'"),
        (AuthSetting("cookie", login_path="/s"), (None, "x"), "cookie needs a login on connection 'c'"),
        (AuthSetting("bearer"), ("u", None), "bearer needs the secret as the password of connection 'c'"),
        (AuthSetting("oauth2", token_url="/t"), ("u", None), "oauth2 needs the client id as the login"),
    ],
)
def test_missing_credentials_are_named(setting, login, message):
    with pytest.raises(CredentialError, match=message):
        build_auth("https://emr.example.org", setting, *login, conn_id="c", system="S")


def test_credentials_need_an_http_origin():
    with pytest.raises(CredentialError, match="needs an http\\(s\\) host") as caught:
        build_auth("ftp://emr.example.org", AuthSetting("basic"), *LOGIN, conn_id="c", system="S")
    assert caught.value.key == "conn_id"


def test_read_auth_names_what_each_kind_needs():
    assert read_auth({"type": "Cookie", "login_path": "/s"}) == (AuthSetting("cookie", login_path="/s"), [])
    assert read_auth({"type": "cookie"})[1] == [
        ("login_path", "required for type cookie: the path of the login request, e.g. /openmrs/ws/rest/v1/session")
    ]
    assert read_auth({"type": "oauth2", "scope": 3})[1][0] == ("scope", "must be a string")
    assert read_auth({"type": "oauth"})[1][0][0] == "type"
    # a header name given to another kind was never used
    assert read_auth({"type": "basic", "header": "x"})[0] == AuthSetting("basic")


def test_a_busy_token_endpoint_is_retryable_not_an_auth_error(emr):
    """A 503 from the token URL is a ``requests.ConnectionError``: the read loop tries again."""
    session = ScopedSession()
    session.auth = build_auth(
        emr.url, AuthSetting("oauth2", token_url="/busy-token"), *LOGIN, conn_id="c", system="S", timeout=5
    )
    # /busy-token is a resource path on the stand-in: it answers 401, which is a refusal...
    with pytest.raises(AuthError):
        session.get(f"{emr.url}/data", timeout=5)
    # ...while no answer at all is retryable.
    session.auth = build_auth(
        emr.url, AuthSetting("oauth2", token_url="http://127.0.0.1:9/t"), *LOGIN, conn_id="c", system="S", timeout=2
    )
    with pytest.raises(requests.ConnectionError):
        session.get(f"{emr.url}/data", timeout=5)


def test_the_login_path_starts_at_the_host_root_even_under_a_deeper_fhir_base(emr):
    """OpenMRS documents the login as ``/openmrs/ws/rest/v1/session`` while a source Connection
    names the FHIR base (``…/openmrs/ws/fhir2/R4``): the login still goes to the host's root path."""
    read = reader(f"{emr.url}/openmrs/ws/fhir2/R4", COOKIE)
    assert read.get_json(f"{emr.url}/openmrs/ws/fhir2/R4/Patient") == {"ok": True}
    assert len(emr.requests_to(LOGIN_PATH)) == 1


def test_a_login_path_on_another_origin_is_refused():
    setting = AuthSetting("cookie", login_path="https://elsewhere.example/openmrs/ws/rest/v1/session")
    with pytest.raises(CredentialError, match="own host") as caught:
        build_auth("https://emr.example.org", setting, *LOGIN, conn_id="c", system="S")
    assert caught.value.key == "login_path"


def jwt_reader(base_url: str, login=LOGIN) -> Reader:
    from tests.fixtures.auth_server import JWT_LOGIN_PATH

    session = ScopedSession()
    setting = AuthSetting("jwt", login_path=JWT_LOGIN_PATH)
    session.auth = build_auth(base_url, setting, *login, conn_id="api", system="Airflow", timeout=5)
    return Reader(session, conn_id="api", system="Airflow", retry=NO_RETRY, sleep=lambda _: None)


def test_a_json_login_token_is_fetched_once_renewed_once_on_a_401_and_only_sent_to_its_origin(emr, elsewhere):
    from tests.fixtures.auth_server import JWT_LOGIN_PATH

    read = jwt_reader(emr.url)
    for _ in range(2):
        assert read.get_json(f"{emr.url}/api/v2/pools/p") == {"ok": True}
    (login,) = emr.requests_to(JWT_LOGIN_PATH)
    assert login["headers"]["content-type"] == "application/json" and "authorization" not in login["headers"]
    assert json.loads(login["body"]) == {"username": LOGIN[0], "password": SECRET}
    emr.refuse_next = 1  # the token expired
    assert read.get_json(f"{emr.url}/api/v2/pools/p") == {"ok": True}
    assert [r["headers"]["authorization"] for r in emr.requests_to("/api/v2/pools/p")] == ["Bearer t1"] * 3 + [
        "Bearer t2"
    ]
    with pytest.raises(AuthError):  # another origin gets no token, so it refuses
        read.get_json(f"{elsewhere.url}/api/v2/pools/p")
    assert elsewhere.seen and not any(carries(r, "t2") or carries(r, SECRET) for r in elsewhere.seen)


def test_a_refused_json_login_is_an_auth_error_without_touching_the_resource(emr):
    with pytest.raises(AuthError, match="connection 'api'"):
        jwt_reader(emr.url, ("admin", "wrong")).get_json(f"{emr.url}/api/v2/pools/p")
    assert emr.requests_to("/api/v2/pools/p") == []
