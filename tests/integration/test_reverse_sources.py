"""The reverse-pipeline sources against real servers: a sekmet FHIR R4 server, the JSON list
server, and CSV files on disk. Retries are proved with injected answers and short backoffs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from cht_bridge.errors import AuthError, ConfigError, SourceError
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.reverse.sources import CsvFolderSource, FhirSearchSource, JsonRestSource, SourcePage
from cht_bridge.reverse.sources.fhir import later

pytestmark = pytest.mark.integration

FAST = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05)


def keys(pages: list[SourcePage]) -> list[tuple[str, str]]:
    return [(r.id, r.version) for page in pages for r in page.records]


# -- FHIR --------------------------------------------------------------------------------------


def patient(i: int, tag: dict[str, str], family: str = "Otieno") -> dict:
    return {
        "resourceType": "Patient",
        "id": f"ltfu-{tag['code']}-{i:02d}",
        "meta": {"tag": [{"system": tag["system"], "code": tag["code"]}]},
        "name": [{"family": family, "given": [f"Test{i}"]}],
        "gender": "female",
        "birthDate": "1990-04-01",
    }


def fhir_source(server, tag, *, auth=None, page_size=10, resource="Patient", params=None, **kw) -> FhirSearchSource:
    session = requests.Session()
    session.auth = auth or server.credentials
    return FhirSearchSource(
        session,
        server.url,
        resource,
        params={"_tag": tag["param"], **(params or {})},
        page_size=page_size,
        conn_id="fhir_emr",
        retry=FAST,
        **kw,
    )


def test_fhir_pages_follow_next_links_and_resume_from_last_updated(fhir_server, fhir_tag):
    fhir_server.transaction(patient(i, fhir_tag) for i in range(25))
    source = fhir_source(fhir_server, fhir_tag)

    pages = list(source.pages(None))

    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert len({r.id for p in pages for r in p.records}) == 25
    assert {r.version for p in pages for r in p.records} == {"1"}
    assert all(r.error is None for p in pages for r in p.records)
    assert source.reader.requests == 3
    stamps = [r.data["meta"]["lastUpdated"] for p in pages for r in p.records]
    assert pages[-1].checkpoint == max(stamps)
    assert [later(a.checkpoint, b.checkpoint) for a, b in zip(pages, pages[1:], strict=False)] == [
        p.checkpoint for p in pages[1:]
    ]

    # Resume after the first page, as a run that died there would: the rest comes, nothing is lost.
    rest = list(source.pages(pages[0].checkpoint))
    assert set(keys(pages)) == set(keys(pages[:1])) | set(keys(rest))

    # One patient changes, one is added: a read from the checkpoint brings both, plus at most the
    # records sharing the checkpoint's instant (ge), which the ledger already holds.
    time.sleep(0.01)
    changed = patient(3, fhir_tag, family="Kamau")
    fhir_server.put(changed)
    fhir_server.put(patient(25, fhir_tag))
    ledger = set(keys(pages))
    again = list(source.pages(pages[-1].checkpoint))
    new = [k for k in keys(again) if k not in ledger]
    assert sorted(new) == sorted([(changed["id"], "2"), (patient(25, fhir_tag)["id"], "1")])
    reread = [r for p in again for r in p.records if (r.id, r.version) in ledger]
    assert all(r.data["meta"]["lastUpdated"] == pages[-1].checkpoint for r in reread)
    updated = next(r for p in again for r in p.records if r.id == changed["id"])
    assert updated.data["name"][0]["family"] == "Kamau"
    assert again[-1].checkpoint == later(pages[-1].checkpoint, again[-1].checkpoint) != pages[-1].checkpoint


def test_fhir_wrong_password_is_an_auth_error_without_retry(fhir_server, fhir_tag):
    source = fhir_source(fhir_server, fhir_tag, auth=("cht", "wrong"))
    with pytest.raises(AuthError) as caught:
        list(source.pages(None))
    assert caught.value.conn_id == "fhir_emr"
    assert caught.value.status == 401
    assert "fhir_emr" in str(caught.value)
    assert source.reader.requests == 1


def test_fhir_unknown_search_parameter_fails_with_the_operation_outcome(fhir_server, fhir_tag):
    # Sent with Prefer: handling=strict, so an unsupported filter is refused, not silently dropped.
    source = fhir_source(fhir_server, fhir_tag, params={"lost-to-follow-up": "true"})
    with pytest.raises(SourceError) as caught:
        list(source.pages(None))
    assert caught.value.status == 400
    assert "error not-supported: Unknown search parameter 'lost-to-follow-up'" in str(caught.value)
    assert source.reader.requests == 1


def test_fhir_included_resources_are_skipped(fhir_server, fhir_tag):
    subject = patient(0, fhir_tag)
    observation = {
        "resourceType": "Observation",
        "id": f"obs-{fhir_tag['code']}",
        "meta": {"tag": [{"system": fhir_tag["system"], "code": fhir_tag["code"]}]},
        "status": "final",
        "code": {"text": "missed appointment"},
        "subject": {"reference": f"Patient/{subject['id']}"},
    }
    fhir_server.transaction([subject, observation])
    source = fhir_source(fhir_server, fhir_tag, resource="Observation", params={"_include": "Observation:subject"})

    pages = list(source.pages(None))

    assert [(r.id, r.version) for p in pages for r in p.records] == [(observation["id"], "1")]


def test_fhir_unreachable_server_is_retried_then_a_source_error(fhir_server, fhir_tag):
    from standins.couchdb import free_port

    session = requests.Session()
    source = FhirSearchSource(
        session, f"http://127.0.0.1:{free_port()}/fhir", "Patient", conn_id="fhir_down", retry=FAST, timeout=2
    )
    with pytest.raises(SourceError) as caught:
        list(source.pages(None))
    assert caught.value.status is None
    assert "fhir_down" in str(caught.value)
    assert source.reader.requests == FAST.retries + 1


def test_fhir_invalid_resource_is_yielded_with_a_value_free_error(fhir_server, fhir_tag):
    # sekmet refuses invalid resources, so the check is exercised on a record as a lax server sends it.
    source = fhir_source(fhir_server, fhir_tag)
    bad = {"resourceType": "Patient", "id": "x1", "birthDate": "01/04/1990", "nickname": "Wanjiru"}
    problem = source._problems(bad)
    assert problem is not None
    assert "birthDate" in problem and "nickname (extra_forbidden)" in problem
    assert "1990" not in problem and "Wanjiru" not in problem


def test_fhir_next_links_are_moved_onto_the_configured_base(fhir_server, fhir_tag):
    source = FhirSearchSource(
        requests.Session(), "https://openhim.example/fhir", "Patient", conn_id="via_openhim", validate=False
    )
    source._learn_server_base(
        {"link": [{"relation": "self", "url": "http://10.0.0.5:8080/openmrs/ws/fhir2/R4/Patient?_count=10"}]}
    )
    assert (
        source._rebase("http://10.0.0.5:8080/openmrs/ws/fhir2/R4?_getpages=ab&_getpagesoffset=10")
        == "https://openhim.example/fhir?_getpages=ab&_getpagesoffset=10"
    )
    assert source._rebase("https://openhim.example/fhir/Patient?_offset=10") == (
        "https://openhim.example/fhir/Patient?_offset=10"
    )
    assert source._rebase("Patient?_offset=10") == "https://openhim.example/fhir/Patient?_offset=10"
    with pytest.raises(ConfigError):
        FhirSearchSource(requests.Session(), "http://x/fhir", "Patient", params={"_count": "5"})


# -- JSON REST ---------------------------------------------------------------------------------


def rest_source(server, paging, *, auth=None, path="/cursor", items="data.results", **kw) -> JsonRestSource:
    session = requests.Session()
    session.auth = auth or server.credentials
    return JsonRestSource(
        session, server.url, path, items=items, id_field="id", paging=paging, conn_id="emr_list", retry=FAST, **kw
    )


CURSOR = {"type": "cursor", "param": "cursor", "next": "next_cursor"}
OFFSET = {"type": "offset", "param": "offset", "limit_param": "limit", "page_size": 10}


def test_rest_cursor_paging_and_resume(list_server):
    source = rest_source(list_server, CURSOR)

    pages = list(source.pages(None))

    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert [r.id for p in pages for r in p.records] == [item["id"] for item in list_server.items()]
    # Resume after page one: pages two and three only.
    assert keys(list(source.pages(pages[0].checkpoint))) == keys(pages[1:])
    # After the last page the checkpoint is the cursor that fetched it: the next run re-reads it
    # (the ledger skips those) and gets what was appended.
    list_server.append({"id": "ltfu-new", "patient": {"given": "New"}})
    after = list(source.pages(pages[-1].checkpoint))
    assert [r.id for p in after for r in p.records] == [r.id for r in pages[-1].records] + ["ltfu-new"]
    assert after[-1].checkpoint == pages[-1].checkpoint


def test_rest_offset_paging_resume_and_versions(list_server):
    source = rest_source(list_server, OFFSET, path="/offset", items="results", version_field="updated")

    pages = list(source.pages(None))

    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert [p.checkpoint for p in pages] == [10, 20, 25]
    assert pages[0].records[0].version == "2026-01-01T00:00:00Z"
    assert list(source.pages(25)) == [SourcePage([], 25)]
    item = list_server.items()[24]
    list_server.replace({**item, "updated": "2026-02-01T00:00:00Z"})
    list_server.append({"id": "ltfu-new", "updated": "2026-02-01T00:00:00Z"})
    again = list(source.pages(20))
    assert [k for k in keys(again) if k not in set(keys(pages))] == [
        (item["id"], "2026-02-01T00:00:00Z"),
        ("ltfu-new", "2026-02-01T00:00:00Z"),
    ]
    assert again[-1].checkpoint == 26


def test_rest_default_version_is_a_hash_of_the_item(list_server):
    source = rest_source(list_server, {"type": "none"}, path="/offset", items="results")
    (page,) = list(source.pages(None))
    assert page.checkpoint is None and len(page.records) == 10
    first = list_server.items()[0]
    list_server.replace({**first, "patient": {**first["patient"], "phone": "+254711111111"}})
    (again,) = list(source.pages(None))
    assert again.records[0].version != page.records[0].version
    assert [r.version for r in again.records[1:]] == [r.version for r in page.records[1:]]


def test_rest_500_and_429_are_retried(list_server):
    list_server.inject(500, 429, retry_after="0")
    source = rest_source(list_server, CURSOR)

    pages = list(source.pages(None))

    assert len(keys(pages)) == 25
    assert source.reader.retries == 2
    assert list_server.stats()["failed"] == 2


def test_rest_persistent_500_becomes_a_source_error(list_server):
    list_server.inject(*[500] * (FAST.retries + 1))
    source = rest_source(list_server, OFFSET, path="/offset", items="results")
    with pytest.raises(SourceError) as caught:
        next(iter(source.pages(None)))
    assert caught.value.status == 500
    assert "emr_list" in str(caught.value) and "offset=…" in str(caught.value)
    assert source.reader.requests == FAST.retries + 1


def test_rest_wrong_password_and_wrong_items_path(list_server):
    source = rest_source(list_server, CURSOR, auth=("emr", "wrong"))
    with pytest.raises(AuthError) as caught:
        list(source.pages(None))
    assert caught.value.conn_id == "emr_list" and source.reader.requests == 1
    assert list_server.stats()["unauthorized"] == 1

    with pytest.raises(SourceError, match="no list of objects at 'results'"):
        list(rest_source(list_server, CURSOR, items="results").pages(None))
    with pytest.raises(ConfigError):
        rest_source(list_server, {"type": "cursor"})


# -- CSV folder --------------------------------------------------------------------------------


def write(path: Path, text: str, encoding: str = "utf-8-sig") -> None:
    path.write_bytes(text.encode(encoding))


def test_csv_folder_pages_checkpoints_and_changed_files(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    write(folder / "2026-01-01.csv", "id,name,phone\r\nk1,Achieng,\r\nk2,Baraka,+254700000002\r\n,Chebet,\r\n")
    write(folder / "2026-01-02.csv", 'name,village\nDiana,"Upper\nHill"\nEsther,\n', encoding="utf-8")
    (folder / "notes.txt").write_text("not a list")
    source = CsvFolderSource(folder)

    pages = list(source.pages(None))

    assert len(pages) == 2
    first, second = pages
    assert [r.id for r in first.records] == ["k1", "k2", "2026-01-01.csv#4"]
    assert first.records[0].data == {"id": "k1", "name": "Achieng", "phone": None}  # BOM gone, empty → None
    assert [r.id for r in second.records] == ["2026-01-02.csv#2", "2026-01-02.csv#4"]  # no id column: by line
    assert second.records[0].data == {"name": "Diana", "village": "Upper\nHill"}
    assert set(first.checkpoint) == {"2026-01-01.csv"}
    assert set(second.checkpoint) == {"2026-01-01.csv", "2026-01-02.csv"}
    assert list(source.pages(second.checkpoint)) == []

    # A corrected export under the same name is read again; unchanged rows keep their version.
    write(folder / "2026-01-01.csv", "id,name,phone\r\nk1,Achieng,+254700000001\r\nk2,Baraka,+254700000002\r\n")
    (again,) = list(source.pages(second.checkpoint))
    assert [r.id for r in again.records] == ["k1", "k2"]
    assert again.records[0].version != first.records[0].version
    assert again.records[1].version == first.records[1].version
    assert again.checkpoint["2026-01-02.csv"] == second.checkpoint["2026-01-02.csv"]


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("id,name\nk1,Achieng\nk2,Baraka,extra\n", 3, "3 cells where the header has 2 columns"),
        ('id,name\nk1,Achieng\nk2,"Baraka\n', 3, "unexpected end of data"),
        ("id,name,id\nk1,a,b\n", 1, "the header repeats id"),
    ],
)
def test_csv_malformed_file_names_file_and_line(tmp_path, content, line, reason):
    write(tmp_path / "bad.csv", content)
    with pytest.raises(SourceError) as caught:
        list(CsvFolderSource(tmp_path).pages(None))
    assert f"bad.csv, line {line}" in str(caught.value)
    assert reason in str(caught.value)


def test_csv_bad_encoding_names_the_line(tmp_path):
    (tmp_path / "latin.csv").write_bytes("id,name\nk1,Achieng\nk2,Ren\xe9e\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"latin.csv, line 3: not valid utf-8-sig"):
        list(CsvFolderSource(tmp_path).pages(None))
