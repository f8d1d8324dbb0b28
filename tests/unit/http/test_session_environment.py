"""A Connection's session reads the environment's proxies and CA bundle once per host, and applies
them exactly as ``requests`` does (``ScopedSession.merge_environment_settings``)."""

from __future__ import annotations

import pytest
import requests

from cht_bridge.http.origin import ScopedSession
from tests.fixtures.proxies import clear_proxy_environment

URLS = [
    "http://emr.example.org/api/x?q=1",
    "https://emr.example.org/api",
    "http://emr.example.org:8080/api",
    "http://local.example/x",
    "http://sub.local.example/x",
    "http://127.0.0.1:5984/medic/_changes",
    "https://other.example/",
]


@pytest.fixture
def proxy_environment(monkeypatch):
    clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://tls-proxy.example:3129")
    monkeypatch.setenv("NO_PROXY", "local.example,127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/bundle.pem")
    return monkeypatch


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("verify", [None, True, False, "/my/ca.pem"])
def test_the_settings_are_those_requests_gives(proxy_environment, url, verify):
    ours, plain = ScopedSession(), requests.Session()
    for _ in range(2):  # the first request reads the environment, the second the remembered answer
        assert ours.merge_environment_settings(url, {}, None, verify, None) == plain.merge_environment_settings(
            url, {}, None, verify, None
        )


def test_a_request_s_own_proxies_and_a_session_s_own_settings_still_win(proxy_environment):
    ours, plain = ScopedSession(), requests.Session()
    for session in (ours, plain):
        session.proxies = {"https": "http://session-proxy.example:1"}
        session.verify = False
    for url, proxies in [
        ("http://emr.example.org/", {"http": "http://request-proxy.example:2"}),
        ("https://emr.example.org/", {}),
        ("http://emr.example.org/", {"no_proxy": "emr.example.org"}),
    ]:
        assert ours.merge_environment_settings(
            url, dict(proxies), True, None, None
        ) == plain.merge_environment_settings(url, dict(proxies), True, None, None)


def test_the_environment_is_read_once_per_host_of_a_session(proxy_environment):
    session = ScopedSession()
    before = session.merge_environment_settings("http://emr.example.org/a", {}, None, None, None)
    assert before["proxies"]["http"] == "http://proxy.example:3128"
    proxy_environment.setenv("HTTP_PROXY", "http://moved.example:1")
    # The same host: what was read when the session first went there (a run's environment does not change).
    assert session.merge_environment_settings("http://emr.example.org/b?x=1", {}, None, None, None) == before
    # Another host is read when first seen; a new session reads the environment afresh.
    assert session.merge_environment_settings("http://other.example/", {}, None, None, None)["proxies"]["http"] == (
        "http://moved.example:1"
    )
    assert ScopedSession().merge_environment_settings("http://emr.example.org/a", {}, None, None, None)["proxies"][
        "http"
    ] == ("http://moved.example:1")


def test_a_session_that_does_not_trust_the_environment_reads_none_of_it(proxy_environment):
    session = ScopedSession()
    session.trust_env = False
    settings = session.merge_environment_settings("http://emr.example.org/", {}, None, None, None)
    assert settings["proxies"] == {} and settings["verify"] is True
