"""The synthetic CHT data follows the medic data model, is deterministic and streams."""

from __future__ import annotations

import inspect
import json
import re
import time
from collections import Counter
from itertools import islice

import pytest

from standins import generate as gen
from standins.generate import DEFAULT_ANCHOR_MS, check_digit, generate, kind_of

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return list(generate(2000, seed=42))


def _depth(lineage: dict | None) -> int:
    """Depth of a minified lineage; fails if a level carries anything but _id and parent."""
    depth = 0
    while lineage is not None:
        assert set(lineage) <= {"_id", "parent"}, lineage
        assert isinstance(lineage["_id"], str)
        depth += 1
        lineage = lineage.get("parent")
    return depth


def test_exact_size_mix_and_unique_ids(docs):
    assert len(docs) == 2000
    ids = [d["_id"] for d in docs]
    assert len(set(ids)) == len(ids)
    assert not any("_rev" in d for d in docs)
    kinds = Counter(kind_of(d) for d in docs)
    assert kinds["design"] == 1
    assert 0.13 <= kinds["contact"] / 2000 <= 0.17
    assert 0.77 <= kinds["report"] / 2000 <= 0.83
    assert docs[0]["_id"] == "_design/medic-client"
    by_id = {d["_id"]: d for d in docs}
    assert "settings" in by_id and by_id["form:pregnancy"]["type"] == "form"
    messages = [d for d in docs if d.get("type") == "data_record" and not d.get("form")]
    infos = [d for d in docs if d.get("type") == "info"]
    assert messages and infos
    for info in infos:
        assert info["_id"] == f"{info['doc_id']}-info"
        assert ids.index(info["doc_id"]) < ids.index(info["_id"])


def test_contacts_shapes(docs):
    expected_depth = {"district_hospital": 0, "health_center": 1, "clinic": 2}
    codes = []
    roles = Counter()
    for d in docs:
        if kind_of(d) != "contact":
            continue
        assert d["type"] in ("district_hospital", "health_center", "clinic", "person")
        assert isinstance(d["name"], str) and d["name"]
        assert isinstance(d["reported_date"], int) and d["reported_date"] < DEFAULT_ANCHOR_MS
        if d["type"] == "person":
            codes.append(d["patient_id"])
            roles[d["role"]] += 1
            assert d["sex"] in ("male", "female")
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", d["date_of_birth"])
            assert re.fullmatch(r"(\+2547\d{8})?", d["phone"])
            assert 1 <= _depth(d["parent"]) <= 3
            if d["role"] == "patient":
                assert _depth(d["parent"]) == 3
        else:
            codes.append(d["place_id"])
            assert _depth(d.get("parent")) == expected_depth[d["type"]]
            # primary contact: minified lineage of a person inside this place
            assert d["contact"]["parent"]["_id"] == d["_id"]
            assert _depth(d["contact"]) == expected_depth[d["type"]] + 2
    assert all(re.fullmatch(r"\d{5}", c) for c in codes)
    assert len(set(codes)) == len(codes)
    assert roles["patient"] > 100 and roles["chw"] >= 1
    assert any("short_name" in d for d in docs if d.get("type") == "person")
    assert any(d["phone"] == "" for d in docs if d.get("type") == "person")


def test_reports_shapes_and_references(docs):
    seen: dict[str, dict] = {}
    forms = Counter()
    low = DEFAULT_ANCHOR_MS - 365 * DAY_MS
    for d in docs:
        if kind_of(d) == "report":
            forms[d["form"]] += 1
            assert low <= d["reported_date"] < DEFAULT_ANCHOR_MS
            f = d["fields"]
            patient = seen[f["patient_uuid"]]  # the subject was inserted before the report
            assert patient["patient_id"] == f["patient_id"]
            chw = seen[d["contact"]["_id"]]
            assert chw["role"] == "chw" and d["from"] == chw["phone"]
            assert d["contact"]["parent"] == chw["parent"]  # minified CHW lineage
            if d["form"] == "pregnancy":
                assert f["lmp_date"] < f["edd"] and isinstance(f["anc_visits"], int)
            elif d["form"] == "assessment":
                assert f["referral"] in ("yes", "no") and isinstance(f["temperature"], float)
                assert (f["referral_facility"] != "") == (f["referral"] == "yes")
            else:
                assert isinstance(f["vaccines"], list) and f["vaccines"]
                assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", f["visit_date"])
        seen[d["_id"]] = d
    total = sum(forms.values())
    assert set(forms) == {"pregnancy", "assessment", "immunization_visit"}
    assert all(n / total > 0.1 for n in forms.values()), forms


def test_small_stream_has_every_form():
    forms = {d["form"] for d in generate(100) if kind_of(d) == "report"}
    assert forms == {"pregnancy", "assessment", "immunization_visit"}


def test_anchor_moves_report_dates():
    anchor = DEFAULT_ANCHOR_MS - 1000 * DAY_MS
    dates = [d["reported_date"] for d in generate(300, anchor_ms=anchor) if kind_of(d) == "report"]
    assert min(dates) >= anchor - 365 * DAY_MS and max(dates) < anchor


def test_deterministic_per_seed():
    first = list(islice(generate(1000, seed=7), 500))
    again = list(islice(generate(1000, seed=7), 500))
    other = list(islice(generate(1000, seed=8), 500))
    assert json.dumps(first) == json.dumps(again)
    assert first[5]["_id"] != other[5]["_id"]


def test_streams_a_million_lazily():
    started = time.monotonic()
    stream = generate(1_000_000)
    assert inspect.isgenerator(stream)
    head = list(islice(stream, 10))
    assert len(head) == 10 and time.monotonic() - started < 1.0


def test_size_bounds():
    with pytest.raises(ValueError):
        generate(99)
    with pytest.raises(ValueError):
        generate(1_250_001)
    assert inspect.isgenerator(generate(1_250_000))  # a million reports


def test_check_digit_matches_cht_examples():
    # examples from the CHT shortcode generator: 1234 -> 12348, 1324 -> 13249
    assert check_digit("1234") == "8" and check_digit("1324") == "9"


def test_jsonl_cli(tmp_path):
    out = tmp_path / "medic.jsonl"
    assert gen.main(["--docs", "100", "--seed", "3", "--jsonl", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(x) for x in lines] == list(generate(100, seed=3))


def test_the_committed_contact_list_is_the_generators_output():
    """The demo's reviewer answers from the generator's truth, so the CSV must be what it makes."""
    from standins.emr_lists import CONTACTS_CSV, contacts_csv

    assert CONTACTS_CSV.read_text(encoding="utf-8") == contacts_csv()
