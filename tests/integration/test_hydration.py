"""CHT-style hydration (``shared-libs/lineage`` ``hydrateDocs``) against a real local CouchDB-protocol
server: subjects by shortcode or uuid, submitter lineage, primary contacts, linked docs, missing
parents, and how few requests a batch costs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import requests

from cht_bridge.source.hydration import Hydrator
from standins.fixed_docs import DESIGN_DOC
from standins.generate import lineage
from tests.recording import RecordingClient

pytestmark = pytest.mark.integration


DH = {"_id": "dh1", "type": "district_hospital", "name": "District One", "contact": lineage("sup1", "dh1")}
SUP = {"_id": "sup1", "type": "person", "name": "Supervisor Sue", "parent": lineage("dh1"), "patient_id": "10101"}
HC = {
    "_id": "hc1",
    "type": "health_center",
    "name": "Health Center One",
    "parent": lineage("dh1"),
    "contact": lineage("chw1", "hc1", "dh1"),
    "place_id": "20202",
}
CHW = {"_id": "chw1", "type": "person", "name": "CHW Carol", "role": "chw", "parent": lineage("hc1", "dh1")}
CLINIC = {
    "_id": "clinic1",
    "type": "clinic",
    "name": "Household One",
    "parent": lineage("hc1", "dh1"),
    "contact": lineage("head1", "clinic1", "hc1", "dh1"),
    "place_id": "30303",
}
HEAD = {
    "_id": "head1",
    "type": "person",
    "name": "Head Harry",
    "parent": lineage("clinic1", "hc1", "dh1"),
    "patient_id": "40404",
}
PATIENT = {
    "_id": "pat1",
    "type": "person",
    "name": "Patient Pam",
    "parent": lineage("clinic1", "hc1", "dh1"),
    "patient_id": "50505",
    # linked_docs values may be an id or an object with _id (CHT's getId)
    "linked_docs": {"caregiver": "head1", "chw": {"_id": "chw1"}, "gone": "no-such-contact"},
}
# A person whose lineage passes through a place that does not exist (deleted or never synced).
ORPHAN = {"_id": "orphan1", "type": "person", "name": "Orphan Olga", "parent": lineage("gone-clinic", "hc1", "dh1")}

CONTACTS = [DH, SUP, HC, CHW, CLINIC, HEAD, PATIENT, ORPHAN]


def report(doc_id: str, *, fields: dict | None = None, contact: Any = None, **extra: Any) -> dict:
    doc = {"_id": doc_id, "type": "data_record", "form": "visit", "reported_date": 1700000000000}
    doc["fields"] = fields or {}
    if contact is not None:
        doc["contact"] = contact
    doc.update(extra)
    return doc


CHW_LINEAGE = lineage("chw1", "hc1", "dh1")


def client_for(cht) -> RecordingClient:
    return RecordingClient(cht.url, cht.db, cht.user, conn_id="cht_test", timeout=(5, 30))


@pytest.fixture
def world(cht):
    """The hand-built hierarchy plus the medic-client design doc, read back with their revs."""
    rows = cht.put(DESIGN_DOC, *CONTACTS)
    assert all("error" not in r for r in rows), rows
    stored = {d["_id"]: cht.get(d["_id"]) for d in CONTACTS}
    return cht, stored


def store(cht, *docs: dict) -> list[dict]:
    rows = cht.put(*docs)
    assert all("error" not in r for r in rows), rows
    return [cht.get(d["_id"]) for d in docs]


def full(stored: dict, doc_id: str, **replace: Any) -> dict:
    """The stored doc with some keys replaced (the expected hydrated shape)."""
    return {**stored[doc_id], **replace}


def expected_hc(s: dict) -> dict:
    return full(s, "hc1", contact=s["chw1"], parent=full(s, "dh1", contact=s["sup1"]))


def expected_clinic(s: dict) -> dict:
    return full(s, "clinic1", contact=s["head1"], parent=expected_hc(s))


# -- reports: subjects and submitter -----------------------------------------------------------------


def test_patient_by_shortcode_gets_full_patient_with_full_parents_and_their_primary_contacts(world):
    cht, s = world
    (doc,) = store(cht, report("r-shortcode", fields={"patient_id": "50505"}, contact=CHW_LINEAGE))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])

    patient = out["patient"]
    assert patient["_id"] == "pat1" and patient["name"] == "Patient Pam" and patient["_rev"] == s["pat1"]["_rev"]
    assert patient["parent"] == expected_clinic(s)
    # each parent's `contact` is the full primary contact doc
    assert patient["parent"]["contact"]["name"] == "Head Harry"
    assert patient["parent"]["parent"]["contact"]["name"] == "CHW Carol"
    assert patient["parent"]["parent"]["parent"]["contact"]["name"] == "Supervisor Sue"
    assert "place" not in out  # no place reference on this report
    assert out["fields"] == {"patient_id": "50505"}  # the report itself is otherwise unchanged


def test_patient_by_uuid(world):
    cht, s = world
    (doc,) = store(cht, report("r-uuid", fields={"patient_uuid": "pat1"}, contact=CHW_LINEAGE))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert out["patient"]["_id"] == "pat1"
    assert out["patient"]["parent"] == expected_clinic(s)


def test_patient_id_at_top_level_and_fields_take_precedence(world):
    cht, _ = world
    top, both = store(
        cht,
        report("r-top", patient_id="50505"),
        # fields.patient_id wins over the top-level patient_id (CHT's getPatientId)
        report("r-both", fields={"patient_id": "40404"}, patient_id="50505"),
    )
    out_top, out_both = Hydrator(client_for(cht)).hydrate([top, both])
    assert out_top["patient"]["_id"] == "pat1"
    assert out_both["patient"]["_id"] == "head1"


def test_place_by_shortcode(world):
    cht, s = world
    (doc,) = store(cht, report("r-place", fields={"place_id": "30303"}, contact=CHW_LINEAGE))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert out["place"] == expected_clinic(s)
    assert "patient" not in out


def test_patient_and_place_together(world):
    cht, s = world
    (doc,) = store(cht, report("r-both-subjects", fields={"patient_id": "40404", "place_id": "20202"}))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert out["patient"] == full(s, "head1", parent=expected_clinic(s))
    assert out["place"] == expected_hc(s)


def test_submitter_minified_lineage_becomes_full_contact_with_full_parents(world):
    cht, s = world
    (doc,) = store(cht, report("r-submitter", fields={}, contact=CHW_LINEAGE))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert out["contact"] == full(s, "chw1", parent=expected_hc(s))
    assert "patient" not in out and "place" not in out


def test_submitter_given_as_a_bare_id_string(world):
    cht, s = world
    (doc,) = store(cht, report("r-submitter-str", contact="chw1"))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert out["contact"] == full(s, "chw1", parent=expected_hc(s))


# -- missing things -----------------------------------------------------------------------------------


def test_missing_parent_stays_an_id_and_hydration_continues_above_it(world):
    cht, s = world
    (doc,) = store(cht, report("r-orphan", fields={"patient_uuid": "orphan1"}))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    parent = out["patient"]["parent"]
    assert set(parent) == {"_id", "parent"} and parent["_id"] == "gone-clinic"
    assert parent["parent"] == expected_hc(s)


def test_missing_submitter_keeps_its_id_and_gets_the_parents_that_exist(world):
    cht, s = world
    (doc,) = store(cht, report("r-ghost", contact=lineage("ghost", "hc1", "dh1")))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert out["contact"] == {"_id": "ghost", "parent": expected_hc(s)}


def test_missing_top_parent_stays_an_id(world):
    cht, s = world
    (doc,) = store(cht, {"_id": "p-top", "type": "person", "parent": lineage("clinic1", "hc1", "dh-gone")})
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert out["parent"]["_id"] == "clinic1" and out["parent"]["contact"] == s["head1"]
    assert out["parent"]["parent"]["_id"] == "hc1"
    assert out["parent"]["parent"]["parent"] == {"_id": "dh-gone"}


def test_report_without_contact_and_unknown_subjects_is_returned_without_subject_keys(world):
    cht, _ = world
    docs = store(
        cht,
        report("r-none"),
        report("r-unknown-code", fields={"patient_id": "99999", "place_id": "88888"}),
        report("r-unknown-uuid", fields={"patient_uuid": "no-such-uuid"}),
        report("r-empty", fields={"patient_id": "", "place_id": None}),
    )
    outs = Hydrator(client_for(cht)).hydrate(docs)
    assert [o["_id"] for o in outs] == [d["_id"] for d in docs]
    for doc, out in zip(docs, outs, strict=True):
        assert "patient" not in out and "place" not in out
        assert "contact" not in out
        assert out == doc


def test_numeric_patient_id_in_a_batch_does_not_crash_it(world):
    cht, s = world
    docs = store(
        cht,
        report("r-numeric", fields={"patient_id": 50505}, contact=CHW_LINEAGE),
        report("r-normal", fields={"patient_uuid": "pat1"}, contact=CHW_LINEAGE),
    )
    numeric, normal = Hydrator(client_for(cht)).hydrate(docs)
    assert normal["patient"]["_id"] == "pat1"
    assert numeric["contact"] == full(s, "chw1", parent=expected_hc(s))
    assert "patient" not in numeric  # CHT's view emits String(code): a number does not match


# -- contacts (non-reports) ---------------------------------------------------------------------------


def test_person_gets_its_parent_chain_and_linked_docs(world):
    cht, s = world
    (out,) = Hydrator(client_for(cht)).hydrate([s["pat1"]])
    assert out["parent"] == expected_clinic(s)
    linked = out["linked_docs"]
    assert linked["caregiver"] == s["head1"]
    assert linked["chw"] == s["chw1"]
    assert linked["gone"] == "no-such-contact"  # not found: left as it was
    assert "patient" not in out and "contact" not in out


def test_place_gets_its_primary_contact_and_parents(world):
    cht, s = world
    hc, clinic = Hydrator(client_for(cht)).hydrate([s["hc1"], s["clinic1"]])
    assert hc == expected_hc(s)
    assert clinic == expected_clinic(s)


def test_linked_docs_on_a_report_are_not_touched(world):
    cht, _ = world
    (doc,) = store(cht, report("r-linked", linked_docs={"x": "chw1"}))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert out["linked_docs"] == {"x": "chw1"}  # only contacts have linked_docs (CHT's validLinkedDocs)


def test_docs_in_the_batch_are_used_as_parents_without_fetching(world):
    cht, s = world
    client = client_for(cht)
    outs = Hydrator(client).hydrate([s[i] for i in ("dh1", "sup1", "hc1", "chw1", "clinic1", "head1")])
    assert outs[4] == expected_clinic(s)
    assert client.all_docs_calls == []


def test_hydrated_documents_keep_their_key_order_with_contact_and_parent_in_place(world):
    # Hydration fills ``contact`` and ``parent`` where the stored document has them (CHT assigns
    # to the existing keys), so a snippet that walks the keys or stringifies sees the stored order.
    cht, s = world
    (doc,) = store(cht, report("r-order", fields={"patient_id": "50505"}, contact=CHW_LINEAGE))
    (out,) = Hydrator(client_for(cht)).hydrate([doc])
    assert list(out) == list(doc) + ["patient"]
    chain = [(out["contact"], "chw1"), (out["contact"]["parent"], "hc1"), (out["contact"]["parent"]["parent"], "dh1")]
    chain += [
        (out["patient"], "pat1"),
        (out["patient"]["parent"], "clinic1"),
        (out["patient"]["parent"]["contact"], "head1"),
    ]
    for hydrated, doc_id in chain:
        assert list(hydrated) == list(s[doc_id]), doc_id
    assert out["contact"]["parent"]["contact"] == s["chw1"]  # filled, not left null
    assert out["patient"]["parent"]["parent"]["parent"] == full(s, "dh1", contact=s["sup1"])


# -- purity ---------------------------------------------------------------------------------------------


def test_inputs_and_cache_are_not_mutated(world):
    cht, s = world
    docs = store(
        cht,
        report("r-p1", fields={"patient_id": "50505", "place_id": "30303"}, contact=CHW_LINEAGE),
        report("r-p2", fields={"patient_uuid": "head1"}, contact=lineage("ghost", "hc1", "dh1")),
    )
    docs += [s["pat1"], s["hc1"]]
    before = copy.deepcopy(docs)
    hydrator = Hydrator(client_for(cht))

    first = hydrator.hydrate(docs)
    assert docs == before
    snapshot = copy.deepcopy(first)
    second = hydrator.hydrate(docs)
    assert docs == before
    assert second == snapshot and first == snapshot

    # what the cache holds after those two runs is what the server stores: a fresh hydrator,
    # whose cache is empty, builds exactly the same documents for a new batch
    later = [s["clinic1"], *store(cht, report("r-p3", fields={"patient_id": "40404"}, contact=CHW_LINEAGE))]
    assert hydrator.hydrate(later) == Hydrator(client_for(cht)).hydrate(later)
    assert hydrator.hydrate(later)[0] == expected_clinic(s)


# -- efficiency -----------------------------------------------------------------------------------------


@pytest.fixture
def batch50(world):
    """50 patients under the household, with shortcodes, and 50 reports about them by the CHW."""
    cht, s = world
    patients = [
        {
            "_id": f"bp{i:02d}",
            "type": "person",
            "name": f"Batch patient {i}",
            "parent": lineage("clinic1", "hc1", "dh1"),
            "patient_id": f"7{i:04d}",
        }
        for i in range(50)
    ]
    reports = [report(f"br{i:02d}", fields={"patient_id": f"7{i:04d}"}, contact=CHW_LINEAGE) for i in range(50)]
    store(cht, *patients)
    return cht, s, patients, store(cht, *reports)


def test_a_batch_of_50_reports_costs_at_most_4_requests_and_the_same_batch_again_none(batch50):
    cht, s, patients, reports = batch50
    client = client_for(cht)
    hydrator = Hydrator(client)

    outs = hydrator.hydrate(reports)
    assert len(client.view_calls) == 1 and len(client.all_docs_calls) <= 3
    assert hydrator.requests <= 4
    assert client.http == hydrator.requests  # the counter counts real HTTP requests
    for i, out in enumerate(outs):
        assert out["patient"]["_id"] == f"bp{i:02d}"
        assert out["patient"]["parent"] == expected_clinic(s)
        assert out["contact"] == full(s, "chw1", parent=expected_hc(s))
    # every id is fetched once at most
    fetched = [i for call in client.all_docs_calls for i in call]
    assert len(fetched) == len(set(fetched))

    http_before = client.http
    again = hydrator.hydrate(reports)
    assert hydrator.requests == client.http == http_before  # per-run cache: no request at all
    assert again == outs


def test_remembered_contacts_are_not_fetched(batch50):
    cht, s, patients, reports = batch50
    client = client_for(cht)
    hydrator = Hydrator(client)
    feed_contacts = [cht.get(p["_id"]) for p in patients] + [s["chw1"]]
    hydrator.remember(feed_contacts + reports)  # reports are not contacts: ignored

    outs = hydrator.hydrate(reports)
    fetched = {i for call in client.all_docs_calls for i in call}
    assert not fetched & {d["_id"] for d in feed_contacts}
    assert client.view_calls == []  # the remembered patients' shortcodes resolve from the cache
    assert fetched == {"hc1", "dh1", "clinic1", "head1", "sup1"}
    assert all(o["patient"]["parent"] == expected_clinic(s) for o in outs)

    # with the whole hierarchy remembered, a batch needs no request at all
    warm_client = client_for(cht)
    warm = Hydrator(warm_client)
    warm.remember(list(s.values()) + feed_contacts)
    outs_warm = warm.hydrate(reports)
    assert warm.requests == 0 and warm_client.http == 0
    assert outs_warm == outs


def test_small_cache_still_hydrates_a_batch_with_more_refs_than_it_holds(batch50):
    cht, s, _, reports = batch50
    outs = Hydrator(client_for(cht), cache_size=10).hydrate(reports[:20])
    assert [o["patient"]["_id"] for o in outs] == [f"bp{i:02d}" for i in range(20)]


def test_request_counter_matches_http_requests_with_more_than_100_refs(batch50):
    cht, _, _, _ = batch50
    docs = [report(f"many{i:03d}", fields={"patient_id": f"9{i:04d}"}) for i in range(120)]
    client = client_for(cht)
    hydrator = Hydrator(client)
    hydrator.hydrate(docs)
    assert hydrator.requests == client.http


# -- not a CHT database -----------------------------------------------------------------------------------


def test_without_the_medic_client_design_doc_uuids_still_hydrate(cht):
    rows = cht.put(*CONTACTS)
    assert all("error" not in r for r in rows)
    s = {d["_id"]: cht.get(d["_id"]) for d in CONTACTS}
    docs = store(
        cht,
        report("n-uuid", fields={"patient_uuid": "pat1"}, contact=CHW_LINEAGE),
        report("n-code", fields={"patient_id": "50505", "place_id": "clinic1"}),
    )
    view = f"{cht.db_url}/_design/medic-client/_view/contacts_by_reference"
    assert requests.get(view, params={"keys": '[["shortcode","50505"]]'}, auth=cht.user, timeout=30).status_code == 404

    client = client_for(cht)
    hydrator = Hydrator(client)
    by_uuid, by_code = hydrator.hydrate(docs)
    assert by_uuid["patient"]["_id"] == "pat1" and by_uuid["patient"]["parent"] == expected_clinic(s)
    assert by_uuid["contact"] == full(s, "chw1", parent=expected_hc(s))
    assert "patient" not in by_code  # a shortcode cannot be resolved without the view
    assert by_code["place"] == expected_clinic(s)  # but a uuid in place_id can
    assert len(client.view_calls) == 1

    (later,) = hydrator.hydrate([report("n-later", fields={"patient_id": "40404"})])
    assert "patient" not in later
    assert len(client.view_calls) == 1  # the 404 is remembered: the view is not asked again
