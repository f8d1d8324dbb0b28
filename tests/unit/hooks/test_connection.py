"""The hooks are the one place a Connection is read: its base URL as the HTTP provider builds it,
its auth from the pipeline file (destinations) or its extras (CHT, sources)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from cht_bridge.config.model import DestinationConfig
from cht_bridge.destinations import Delivery
from cht_bridge.errors import ConfigError
from cht_bridge.hooks import ChtHook, open_destination_from_connection
from cht_bridge.hooks.connection import connection_url, extras_auth, open_session
from cht_bridge.hooks.source import source_session
from cht_bridge.http.origin import OriginAuth
from cht_bridge.http.settings import AuthSetting
from tests.fixtures.auth_server import LOGIN_PATH, TOKEN_PATH, AuthServer

LOGIN = ("admin", "Admin123")


def conn(host, *, schema=None, port=None, login=None, extra=None):
    return SimpleNamespace(conn_id="c", host=host, schema=schema, port=port, login=login, extra_dejson=extra or {})


@pytest.mark.parametrize(
    ("host", "schema", "port", "url"),
    [
        ("https://emr.example.org/fhir/", None, None, "https://emr.example.org/fhir"),
        ("emr.example.org", "https", 8443, "https://emr.example.org:8443"),
        ("emr.example.org", None, None, "http://emr.example.org"),
        ("http://127.0.0.1:5984", None, 5984, "http://127.0.0.1:5984"),  # the port is not named twice
        ("http://127.0.0.1", None, 5984, "http://127.0.0.1:5984"),
    ],
)
def test_connection_url_as_the_http_provider_builds_it(host, schema, port, url):
    assert connection_url(conn(host, schema=schema, port=port)) == url


def test_extras_auth_keeps_the_documented_conventions():
    assert extras_auth(conn("h", login="u")) == AuthSetting("basic")
    assert extras_auth(conn("h")) == AuthSetting("none")
    assert extras_auth(conn("h", login="u", extra={"auth": "bearer", "verify": False})) == AuthSetting("bearer")
    cookie = {"auth": "cookie", "login_path": LOGIN_PATH, "cookie": "JSESSIONID"}
    assert extras_auth(conn("h", login="u", extra=cookie)) == AuthSetting("cookie", login_path=LOGIN_PATH)
    with pytest.raises(ConfigError, match="(?s)connection .c.*extra token_url: required for type oauth2"):
        extras_auth(conn("h", login="u", extra={"auth": "oauth2"}))


@pytest.fixture
def emr():
    server = AuthServer(login=LOGIN)
    yield server
    server.close()


def set_connection(monkeypatch, name, url, extra=None, login=LOGIN):
    value = {"conn_type": "http", "host": url, "login": login[0], "password": login[1]}
    if extra:
        value["extra"] = json.dumps(extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(value))


def test_a_source_connection_logs_in_with_a_cookie_from_its_extras(monkeypatch, emr):
    set_connection(monkeypatch, "emr_src", emr.url, {"auth": "cookie", "login_path": LOGIN_PATH})
    session, base_url = source_session("emr_src")
    assert base_url == emr.url
    for _ in range(2):
        assert session.get(f"{base_url}/data", timeout=5).json() == {"ok": True}
    assert len(emr.requests_to(LOGIN_PATH)) == 1


def test_a_source_connection_with_oauth2_in_its_extras(monkeypatch, emr):
    emr_tokens = AuthServer(login=LOGIN)
    try:
        emr.tokens = emr_tokens.tokens
        set_connection(monkeypatch, "emr_oauth", emr.url, {"auth": "oauth2", "token_url": emr_tokens.url + TOKEN_PATH})
        session, _ = open_session("emr_oauth", system="The source")
        assert session.get(f"{emr.url}/data", timeout=5).json() == {"ok": True}
        assert emr.seen[-1]["headers"]["authorization"] == "Bearer t1"
    finally:
        emr_tokens.close()


def test_a_bearer_source_without_a_password_is_a_config_error(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_EMR_NOPW",
        json.dumps({"conn_type": "http", "host": "http://127.0.0.1:9", "extra": '{"auth": "bearer"}'}),
    )
    with pytest.raises(ConfigError, match="(?s)connection .emr_nopw.*bearer needs the secret as the password"):
        source_session("emr_nopw")


def test_a_destination_auth_block_can_log_in_with_a_cookie(monkeypatch, emr):
    set_connection(monkeypatch, "emr_dest", emr.url)
    auth = AuthSetting("cookie", login_path=LOGIN_PATH)
    dest = open_destination_from_connection(
        DestinationConfig(conn_id="emr_dest", path="/in", auth=auth, concurrency=1), file="p.yaml"
    )
    try:
        results = dest.send([Delivery("d1", '{"a": 1}', "k1"), Delivery("d2", '{"a": 2}', "k2")])
    finally:
        dest.close()
    assert [r.ok for r in results] == [True, True]
    assert len(emr.requests_to(LOGIN_PATH)) == 1
    assert [r["headers"]["cookie"] for r in emr.requests_to("/in")] == ["JSESSIONID=s1"] * 2


def test_the_cht_hook_reads_its_connection_once_for_url_and_login(monkeypatch, emr):
    set_connection(monkeypatch, "cht_c", emr.url + "/")
    client = ChtHook("cht_c").get_client("medic")
    assert client.base_url == emr.url
    assert isinstance(client.session().auth, OriginAuth)


def test_the_compress_extra_overrides_the_loopback_rule(monkeypatch, emr):
    # A loopback port that is a tunnel to a remote CHT (kubectl port-forward, ssh -L): gzip asked.
    set_connection(monkeypatch, "cht_tunnel", emr.url, {"auth": "cookie", "login_path": LOGIN_PATH, "compress": True})
    client = ChtHook("cht_tunnel").get_client("medic")
    assert client.info() == {"ok": True}
    assert "gzip" in emr.requests_to("/medic")[-1]["headers"]["accept-encoding"]
    # A remote name that is this machine: read uncompressed.
    set_connection(monkeypatch, "cht_here", "https://cht.example.org", {"compress": False})
    assert ChtHook("cht_here").get_client("medic").session().headers["Accept-Encoding"] == "identity"
    # A Connection given as a URI has string extras.
    monkeypatch.setenv("AIRFLOW_CONN_CHT_URI", "http://u:p@127.0.0.1:9/?compress=true")
    assert "gzip" in ChtHook("cht_uri").get_client("medic").session().headers["Accept-Encoding"]
    # Without the extra, the loopback rule (``cht.couch.on_this_machine``).
    set_connection(monkeypatch, "cht_remote", "https://cht.example.org")
    assert "gzip" in ChtHook("cht_remote").get_client("medic").session().headers["Accept-Encoding"]


@pytest.mark.parametrize("value", ["yes", 1, 0, "", "gzip", ["true"]])
def test_a_bad_compress_extra_is_a_config_error_naming_the_connection_and_the_key(monkeypatch, value):
    set_connection(monkeypatch, "cht_bad", "https://cht.example.org", {"compress": value})
    with pytest.raises(ConfigError, match="(?s)connection .cht_bad.*extra compress: must be true or false"):
        ChtHook("cht_bad").get_client("medic")
