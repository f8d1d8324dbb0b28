"""A real pouchdb-server, seeded with synthetic CHT data (edits and deletes included)."""

from __future__ import annotations

import json

import pytest
import requests

from standins import generate as gen
from standins.couchdb import LocalCouch, create_user, ensure_installed, set_security
from standins.generate import generate, kind_of
from standins.seed import seed

pytestmark = pytest.mark.integration
N_DOCS = 300


@pytest.fixture(scope="module")
def couch(tmp_path_factory):
    with LocalCouch(tmp_path_factory.mktemp("couch")) as server:
        yield server


@pytest.fixture(scope="module")
def seeded(couch):
    counts = seed(couch.url, couch.admin_auth, N_DOCS, seed=42, batch=100, edits=0.1, deletes=0.03)
    return counts


def test_install_and_start(couch):
    assert ensure_installed().exists()
    assert couch.url.startswith("http://127.0.0.1:")
    user, password = couch.admin_auth
    assert user == "admin" and len(password) >= 20
    assert "express-pouchdb" in requests.get(couch.url + "/", timeout=5).json()


def test_seed_counts(seeded):
    assert seeded["docs"] == N_DOCS and seeded["conflicts"] == 0
    assert seeded["design"] == 1
    assert seeded["contacts"] + seeded["reports"] + seeded["design"] + seeded["other"] == N_DOCS
    assert seeded["edited"] >= 5 and seeded["deleted"] >= 2


def test_changes_reflect_edits_and_deletes(couch, seeded):
    r = requests.get(
        f"{couch.url}/medic/_changes", params={"since": 0, "limit": 1000}, auth=couch.admin_auth, timeout=30
    )
    r.raise_for_status()
    rows = r.json()["results"]
    assert len(rows) == N_DOCS  # each doc once, at its newest seq
    assert {row["id"] for row in rows} == {d["_id"] for d in generate(N_DOCS, seed=42)}
    revs = [row["changes"][0]["rev"] for row in rows]
    deleted = [row for row in rows if row.get("deleted")]
    assert len(deleted) == seeded["deleted"]
    edited = [rev for row, rev in zip(rows, revs, strict=True) if not row.get("deleted") and not rev.startswith("1-")]
    assert len(edited) == seeded["edited"]
    assert all(rev.split("-")[0] in ("2", "3", "4") for rev in edited)
    assert "_design/medic-client" in {row["id"] for row in rows}


def test_edited_report_content(couch, seeded):
    r = requests.get(
        f"{couch.url}/medic/_changes",
        params={"since": 0, "limit": 1000, "include_docs": "true"},
        auth=couch.admin_auth,
        timeout=30,
    )
    docs = [row["doc"] for row in r.json()["results"] if not row.get("deleted")]
    edited = [d for d in docs if not d["_rev"].startswith("1-")]
    assert edited and all(kind_of(d) == "report" and d["verified"] is True for d in edited)
    assert all(d["fields"]["edit_round"] == int(d["_rev"].split("-")[0]) - 1 for d in edited)


def test_views_from_design_doc(couch, seeded):
    patient = next(d for d in generate(N_DOCS, seed=42) if d.get("role") == "patient")
    view = f"{couch.url}/medic/_design/medic-client/_view"
    r = requests.get(
        f"{view}/contacts_by_reference",
        params={"keys": json.dumps([["shortcode", patient["patient_id"]]])},
        auth=couch.admin_auth,
        timeout=60,
    )
    r.raise_for_status()
    assert [row["id"] for row in r.json()["rows"]] == [patient["_id"]]

    r = requests.get(
        f"{view}/reports_by_date",
        params={"startkey": json.dumps([0]), "endkey": json.dumps([gen.DEFAULT_ANCHOR_MS])},
        auth=couch.admin_auth,
        timeout=60,
    )
    assert len(r.json()["rows"]) == seeded["reports"] - seeded["deleted"]


def test_wrong_password_is_401(couch, seeded):
    r = requests.get(f"{couch.url}/medic", auth=("admin", "wrong"), timeout=10)
    assert r.status_code == 401
    assert requests.get(f"{couch.url}/medic", auth=couch.admin_auth, timeout=10).status_code == 200


def test_user_and_security(couch):
    auth = couch.admin_auth
    assert requests.put(f"{couch.url}/secured", auth=auth, timeout=10).status_code == 201
    create_user(couch.url, auth, "bridge", "s3cret-test", ["cht_bridge"])
    create_user(couch.url, auth, "bridge", "s3cret-test2", ["cht_bridge"])  # overwrite works
    set_security(couch.url, auth, "secured", member_roles=["cht_bridge"])
    assert requests.get(f"{couch.url}/secured", timeout=10).status_code == 401
    assert requests.get(f"{couch.url}/secured", auth=("bridge", "s3cret-test2"), timeout=10).status_code == 200


def test_seed_cli_with_admin_json(couch, tmp_path, capsys):
    user, password = couch.admin_auth
    creds = tmp_path / "admin.json"
    creds.write_text(json.dumps({"username": user, "password": password}))
    assert (
        gen.main(
            ["--url", couch.url, "--user", user, "--password-file", str(creds), "--docs", "100", "--db", "cli_medic"]
        )
        == 0
    )
    counts = json.loads(capsys.readouterr().out)
    assert counts["docs"] == 100
    info = requests.get(f"{couch.url}/cli_medic", auth=couch.admin_auth, timeout=10).json()
    assert info["doc_count"] == 100 - counts["deleted"]


def test_restart_keeps_data_and_admin_on_disk(tmp_path):
    with LocalCouch(tmp_path, in_memory=False) as server:
        port, auth = server.port, server.admin_auth
        assert requests.put(f"{server.url}/medic", auth=auth, timeout=10).status_code == 201
        r = requests.put(f"{server.url}/medic/doc1", json={"a": 1}, auth=auth, timeout=10)
        assert r.status_code == 201
        server.restart()
        assert server.port == port
        got = requests.get(f"{server.url}/medic/doc1", auth=auth, timeout=10)
        assert got.status_code == 200 and got.json()["a"] == 1
    assert not server.running
    assert password_hashed(tmp_path / "config.json")


def password_hashed(path) -> bool:
    """pouchdb-server replaced the seeded plaintext admin password by a pbkdf2 hash."""
    return json.loads(path.read_text())["admins"]["admin"].startswith("-pbkdf2-")
