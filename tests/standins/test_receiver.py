"""The demo receiving endpoint: auth, single and batch mode, idempotency, failures, stats."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from standins.receiver import Receiver

AUTH = ("bridge", "pw-for-tests")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver(tmp_path):
    creds = {"username": AUTH[0], "password": AUTH[1]}
    with Receiver(tmp_path, credentials=creds, reject_field="reject") as r:
        yield r


def lines(receiver: Receiver) -> list[dict]:
    return [json.loads(x) for x in receiver.received_path.read_text().splitlines()]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_single_then_duplicate(receiver):
    url = receiver.url + "/fhir/Patient"
    body = {"name": "Akinyi Ndungu", "patient_id": "12348"}
    first = requests.post(url, json=body, auth=AUTH, headers={"Idempotency-Key": "k1"}, timeout=5)
    assert first.status_code == 201
    again = requests.put(url, json=body, auth=AUTH, headers={"Idempotency-Key": "k1"}, timeout=5)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    stored = lines(receiver)
    assert len(stored) == 1
    assert stored[0]["key"] == "k1" and stored[0]["payload"] == body
    assert stored[0]["path"] == "/fhir/Patient" and stored[0]["method"] == "POST"
    assert stored[0]["id"] == first.json()["id"] and stored[0]["received_at"]


def test_batch_with_item_keys_and_duplicates(receiver):
    requests.post(receiver.url + "/x", json={"a": 0}, auth=AUTH, headers={"Idempotency-Key": "k0"}, timeout=5)
    r = requests.post(
        receiver.url + "/batch",
        json=[{"a": 1}, {"a": 2}, {"a": 0}, {"a": 1}],
        auth=AUTH,
        timeout=5,
        headers={"Idempotency-Key": "b1", "Idempotency-Keys": "k1, k2,k0,k1"},
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 201, 200, 200]
    assert results[0]["id"] == results[3]["id"]
    assert [x["payload"]["a"] for x in lines(receiver)] == [0, 1, 2]
    stats = requests.get(receiver.url + "/_stats", auth=AUTH, timeout=5).json()
    assert stats["requests"] == 2 and stats["items"] == 3 and stats["duplicates"] == 2
    assert stats["by_path"]["/batch"] == {"requests": 1, "items": 2, "duplicates": 2}


def test_batch_key_count_mismatch_is_400(receiver):
    r = requests.post(
        receiver.url + "/b",
        json=[{"a": 1}, {"a": 2}],
        auth=AUTH,
        timeout=5,
        headers={"Idempotency-Key": "b", "Idempotency-Keys": "only-one"},
    )
    assert r.status_code == 400


def test_batch_without_item_keys_derives_them_from_batch_key(receiver):
    for expected in (201, 200):
        r = requests.post(
            receiver.url + "/b", json=[{"a": 1}, {"a": 2}], auth=AUTH, timeout=5, headers={"Idempotency-Key": "batch-7"}
        )
        assert [x["status"] for x in r.json()["results"]] == [expected, expected]
    assert [x["key"] for x in lines(receiver)] == ["batch-7#0", "batch-7#1"]


def test_auth_required(receiver):
    r = requests.post(receiver.url + "/x", json={"a": 1}, timeout=5)
    assert r.status_code == 401 and r.json() == {"error": "unauthorized"}
    r = requests.post(receiver.url + "/x", json={"a": 1}, auth=("bridge", "nope"), timeout=5)
    assert r.status_code == 401
    assert requests.get(receiver.url + "/_stats", timeout=5).status_code == 401
    assert not receiver.received_path.read_text()


def test_bearer_token(tmp_path):
    with Receiver(tmp_path, credentials={"token": "tok-123"}) as r:
        ok = requests.post(r.url + "/x", json={"a": 1}, timeout=5, headers={"Authorization": "Bearer tok-123"})
        bad = requests.post(r.url + "/x", json={"a": 1}, timeout=5, headers={"Authorization": "Bearer tok-999"})
        assert (ok.status_code, bad.status_code) == (201, 401)


def test_bad_json_and_content_type(receiver):
    r = requests.post(
        receiver.url + "/x", data=b"{not json", auth=AUTH, timeout=5, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json() == {"error": "invalid JSON"}
    r = requests.post(
        receiver.url + "/x",
        data=b"a=1",
        auth=AUTH,
        timeout=5,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    r = requests.post(receiver.url + "/x", json=[1, 2], auth=AUTH, timeout=5)
    assert r.status_code == 400


def test_reject_field(receiver):
    r = requests.post(
        receiver.url + "/x",
        json={"a": 1, "reject": "bad phone"},
        auth=AUTH,
        headers={"Idempotency-Key": "r1"},
        timeout=5,
    )
    assert r.status_code == 422 and r.json() == {"error": "rejected: bad phone"}
    r = requests.post(
        receiver.url + "/b",
        json=[{"a": 1, "reject": "no"}, {"a": 2, "reject": False}],
        auth=AUTH,
        headers={"Idempotency-Key": "b", "Idempotency-Keys": "r2,r3"},
        timeout=5,
    )
    assert r.json()["results"][0] == {"status": 422, "error": "rejected: no"}
    assert r.json()["results"][1]["status"] == 201
    assert [x["key"] for x in lines(receiver)] == ["r3"]
    assert receiver.stats()["rejected"] == 2


def test_injected_failures_are_deterministic(tmp_path):
    def run(directory: Path) -> tuple[list[int], dict]:
        with Receiver(directory, fail_rate=0.5, seed=3, hang_seconds=0.01) as r, requests.Session() as session:
            out = []  # one keep-alive connection, error answers included
            for i in range(30):
                resp = session.post(r.url + "/x", json={"i": i}, timeout=5, headers={"Idempotency-Key": f"k{i}"})
                if resp.status_code == 429:
                    assert resp.headers["Retry-After"] == "1"
                out.append(resp.status_code)
            return out, r.stats()

    first, stats = run(tmp_path / "a")
    assert (first, stats) == run(tmp_path / "b")
    assert set(first) <= {201, 500, 503, 429} and 201 in first and len(set(first)) > 2
    # all four kinds by default: a hung request is still stored, so it answers 201 (late)
    assert stats["failed"] == sum(s != 201 for s in first) > 0
    assert stats["hung"] > 0 and stats["items"] == first.count(201)


def test_injected_timeout_stores_the_item_and_the_retry_is_a_duplicate(tmp_path):
    with Receiver(tmp_path, fail_rate=1.0, fail_kinds=("timeout",), hang_seconds=0.3) as r:
        url, headers = r.url + "/fhir/Patient", {"Idempotency-Key": "k1"}
        with pytest.raises(requests.Timeout):
            requests.post(url, json={"a": 1}, headers=headers, timeout=0.1)
        assert r.stats()["items"] == 0  # the client gave up before the server got to it ...
        wait_for(lambda: r.stats()["items"] == 1)  # ... which then stored it anyway
        (stored,) = lines(r)
        assert stored["key"] == "k1" and stored["payload"] == {"a": 1}

        started = time.monotonic()  # the retry hangs too, but this client waits long enough
        again = requests.post(url, json={"a": 1}, headers=headers, timeout=5)
        assert time.monotonic() - started >= 0.3
        assert again.status_code == 200 and again.json()["id"] == stored["id"]
        stats = requests.get(r.url + "/_stats", timeout=5).json()
        assert (stats["hung"], stats["failed"], stats["items"], stats["duplicates"]) == (2, 0, 1, 1)
        assert len(lines(r)) == 1


def test_fail_kinds_restricts_the_injected_kinds(tmp_path):
    with Receiver(tmp_path, fail_rate=0.5, seed=1, fail_kinds=("429",)) as r, requests.Session() as session:
        answers = [session.post(r.url + "/x", json={"i": i}, timeout=5) for i in range(20)]
        statuses = [a.status_code for a in answers]
        assert set(statuses) == {201, 429}
        assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 429)
        assert r.stats()["failed"] == statuses.count(429) and r.stats()["hung"] == 0
    with pytest.raises(ValueError, match="fail_kinds"):
        Receiver(tmp_path, fail_kinds=("418",))


def test_reject_status_and_reject_batch(tmp_path):
    with Receiver(tmp_path, reject_field="reject", reject_status=400) as r:
        single = requests.post(r.url + "/x", json={"reject": "bad phone"}, timeout=5)
        assert single.status_code == 400 and single.json() == {"error": "rejected: bad phone"}

        batch = [{"a": 0}, {"a": 1, "reject": "bad phone"}, {"a": 2}, {"a": 3, "reject": "no name"}]
        headers = {"Idempotency-Key": "b1"}
        per_item = requests.post(r.url + "/b", json=batch, headers=headers, timeout=5)
        assert per_item.status_code == 200  # without reject_batch: per-item results
        assert [x["status"] for x in per_item.json()["results"]] == [201, 400, 201, 400]
        assert [x["key"] for x in lines(r)] == ["b1#0", "b1#2"]

        r.configure(reject_batch=True)
        strict = requests.post(r.url + "/b", json=batch, headers={"Idempotency-Key": "b2"}, timeout=5)
        assert strict.status_code == 400
        assert strict.json() == {"error": "rejected: bad phone; items [1, 3]"}
        assert [x["key"] for x in lines(r)] == ["b1#0", "b1#2"]  # nothing of b2 stored
        stats = r.stats()
        assert (stats["rejected"], stats["items"], stats["duplicates"]) == (5, 2, 0)


def test_configure_fixes_the_receiver_at_runtime(tmp_path):
    with Receiver(tmp_path, reject_field="reject", reject_batch=True) as r:
        batch, headers = [{"a": 1}, {"a": 2, "reject": "bad"}], {"Idempotency-Key": "b"}
        assert requests.post(r.url + "/b", json=batch, headers=headers, timeout=5).status_code == 422

        r.configure(fail_rate=1.0, fail_kinds=["503"])
        assert requests.post(r.url + "/b", json=batch, headers=headers, timeout=5).status_code == 503

        settings = r.configure(fail_rate=0.0, reject_field=None)
        assert settings.reject_field is None and r.settings == settings
        replay = requests.post(r.url + "/b", json=batch, headers=headers, timeout=5)
        assert replay.status_code == 200
        assert [x["status"] for x in replay.json()["results"]] == [201, 201]
        assert [x["payload"] for x in lines(r)] == batch

        with pytest.raises(TypeError, match="bogus"):
            r.configure(bogus=1)
        with pytest.raises(ValueError):
            r.configure(fail_rate=2.0, reject_field="reject")
        assert r.settings == settings  # a bad change changes nothing


def test_delay_slows_every_write(tmp_path):
    with Receiver(tmp_path, delay=0.3) as r, requests.Session() as session:
        started = time.monotonic()
        assert session.post(r.url + "/x", json={"a": 1}, timeout=5).status_code == 201
        assert time.monotonic() - started >= 0.3
        r.configure(delay=0.0)
        started = time.monotonic()
        assert session.post(r.url + "/x", json={"a": 2}, timeout=5).status_code == 201
        assert time.monotonic() - started < 0.3


def test_dedup_survives_restart(tmp_path):
    with Receiver(tmp_path) as r:
        first = requests.post(r.url + "/x", json={"a": 1}, headers={"Idempotency-Key": "k"}, timeout=5).json()["id"]
    with Receiver(tmp_path) as r:
        again = requests.post(r.url + "/x", json={"a": 1}, headers={"Idempotency-Key": "k"}, timeout=5)
        assert again.status_code == 200 and again.json()["id"] == first
    assert len(lines(r)) == 1


def test_payloads_never_logged(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    requests.post(receiver.url + "/x", json={"name": "Secret Patient"}, auth=AUTH, timeout=5)
    requests.post(receiver.url + "/x", json={"reject": "Secret Patient"}, auth=AUTH, timeout=5)
    receiver.configure(reject_batch=True)
    requests.post(receiver.url + "/b", json=[{"a": 1}, {"reject": "Secret Patient"}], auth=AUTH, timeout=5)
    assert "POST /x -> 201" in caplog.text and "POST /b -> 422" in caplog.text
    assert "Secret" not in caplog.text


def test_cli_process(tmp_path):
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"username": AUTH[0], "password": AUTH[1]}))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "standins.receiver",
            "--port",
            "0",
            "--dir",
            str(tmp_path / "out"),
            "--credentials-file",
            str(creds),
            "--reject-field",
            "reject",
            "--reject-status",
            "400",
            "--reject-batch",
            "--delay",
            "0.05",
            "--fail-kinds",
            "429,timeout",
            "--hang-seconds",
            "0.5",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("receiver listening on http://127.0.0.1:")
        url = line.split()[-1]
        r = requests.post(url + "/x", json={"a": 1}, auth=AUTH, timeout=5)
        assert r.status_code == 201
        assert requests.post(url + "/x", json={"a": 1}, timeout=5).status_code == 401
        strict = requests.post(url + "/b", json=[{"a": 2}, {"reject": "x"}], auth=AUTH, timeout=5)
        assert strict.status_code == 400 and strict.json() == {"error": "rejected: x; items [1]"}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert (tmp_path / "out" / "received.jsonl").read_text().count("\n") == 1


def test_a_delete_is_stored_without_a_payload_and_deduplicated_by_key(tmp_path):
    with Receiver(tmp_path / "rx") as rx:
        url = f"{rx.url}/fhir/Patient/p-1"
        first = requests.delete(url, headers={"Idempotency-Key": "del-1"}, timeout=5)
        again = requests.delete(url, headers={"Idempotency-Key": "del-1"}, timeout=5)
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json() == {"id": first.json()["id"], "deleted": True}
        items = [json.loads(line) for line in rx.received_path.read_text().splitlines()]
        assert [(i["method"], i["path"], i["payload"]) for i in items] == [("DELETE", "/fhir/Patient/p-1", None)]
        assert rx.stats()["duplicates"] == 1
