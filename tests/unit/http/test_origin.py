"""Origins compared parsed: what counts as the Connection's own host, port and scheme."""

from __future__ import annotations

import pytest
import requests

from cht_bridge.http.origin import OriginAuth, has_userinfo, origin


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://emr.example.org/fhir", ("https", "emr.example.org", 443)),
        ("https://EMR.Example.org:443/fhir", ("https", "emr.example.org", 443)),
        ("http://emr.example.org./x", ("http", "emr.example.org", 80)),
        ("HTTP://emr.example.org:8080", ("http", "emr.example.org", 8080)),
        ("https://emr.example.org@evil.example/", ("https", "evil.example", 443)),
        ("https://emr.example.org:99999/", None),
        ("https://emr.example.org:x/", None),
        ("ftp://emr.example.org/", None),
        ("/fhir/Patient", None),
        ("https://[::1/", None),
    ],
)
def test_origin(url, expected):
    assert origin(url) == expected


def test_user_info_is_seen_whatever_it_holds():
    assert has_userinfo("https://emr.example.org@evil.example/")
    assert has_userinfo("https://:@evil.example/")
    assert not has_userinfo("https://emr.example.org/a@b")


def test_origin_auth_adds_only_on_its_origin_and_removes_elsewhere():
    auth = OriginAuth("https://emr.example.org/api", basic=("bridge", "pw"), headers={"x-api-key": "Zk9"})
    home = requests.Request("GET", "https://emr.example.org:443/other").prepare()
    away = requests.Request("GET", "https://emr.example.org.evil.example/", headers={"x-api-key": "Zk9"}).prepare()
    assert auth(home).headers["x-api-key"] == "Zk9" and home.headers["Authorization"].startswith("Basic ")
    assert "x-api-key" not in auth(away).headers and "Authorization" not in away.headers
    assert "pw" not in repr(auth) and "Zk9" not in repr(auth)
    with pytest.raises(ValueError):
        OriginAuth("emr.example.org", basic=("bridge", "pw"))
