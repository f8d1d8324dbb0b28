"""The mapping engine follows CHT outbound's rules (cht.md §1.3–§1.4), one rule per test."""

import json

import pytest

from cht_bridge.errors import ScriptError
from cht_bridge.mapping import Mapper, payload_hash
from cht_bridge.v8 import Sandbox

REPORT = {
    "_id": "r1",
    "_rev": "3-abc",
    "type": "data_record",
    "form": "pregnancy",
    "reported_date": 1767225600000,
    "fields": {"patient_id": "12345", "lmp": None, "visits": 0, "flag": False, "note": ""},
    "contact": {"_id": "chw1", "name": "Achieng Otieno", "parent": {"_id": "hc1", "name": "Kisumu HC"}},
}


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def mapped(sandbox, mapping, doc=REPORT, relevant="doc.type === 'data_record'"):
    return Mapper("p", relevant, mapping, sandbox=sandbox).map([doc])[0]


def test_relevant_to_sees_the_hydrated_doc(sandbox):
    mapper = Mapper("p", "doc.contact.parent.name === 'Kisumu HC'", {"id": "doc._id"}, sandbox=sandbox)
    other = {**REPORT, "_id": "r2", "contact": {"_id": "chw2", "parent": {"_id": "hc2", "name": "Other"}}}
    results = mapper.map([REPORT, other])
    assert [(r.doc_id, r.relevant) for r in results] == [("r1", True), ("r2", False)]
    assert results[1].body is None and results[1].error is None


def test_dotted_destination_keys_nest_and_numeric_segments_make_arrays(sandbox):
    m = mapped(sandbox, {"a.b.c": "doc._id", "obs.0.code": {"expr": "'x'"}, "obs.1.code": {"expr": "'y'"}})
    assert m.payload == {"a": {"b": {"c": "r1"}}, "obs": [{"code": "x"}, {"code": "y"}]}


def test_string_sources_are_paths_resolved_against_doc(sandbox):
    m = mapped(sandbox, {"patient": "doc.fields.patient_id", "chw": "doc.contact.parent._id"})
    assert m.payload == {"patient": "12345", "chw": "hc1"}


def test_path_object_and_optional_missing_value_is_left_out(sandbox):
    m = mapped(sandbox, {"id": {"path": "doc._id"}, "gone": {"path": "doc.fields.nothing.deeper", "optional": True}})
    assert m.payload == {"id": "r1"}
    assert "gone" not in json.loads(m.body)


def test_expr_runs_javascript_over_doc(sandbox):
    m = mapped(sandbox, {"date": {"expr": "new Date(doc.reported_date).toISOString().slice(0, 10)"}})
    assert m.payload == {"date": "2026-01-01"}


def test_null_false_zero_and_empty_string_are_kept(sandbox):
    m = mapped(
        sandbox,
        {"lmp": "doc.fields.lmp", "visits": "doc.fields.visits", "flag": "doc.fields.flag", "note": "doc.fields.note"},
    )
    assert m.body == '{"lmp":null,"visits":0,"flag":false,"note":""}'


def test_undefined_expr_is_left_out_when_optional(sandbox):
    m = mapped(sandbox, {"x": {"expr": "undefined", "optional": True}, "id": "doc._id"})
    assert m.payload == {"id": "r1"}


def test_required_value_that_is_undefined_fails_that_document_only(sandbox):
    mapper = Mapper("p", "true", {"id": "doc._id", "lmp": "doc.fields.lmp_date"}, sandbox=sandbox)
    good = {**REPORT, "_id": "r2", "fields": {"lmp_date": "2026-01-01"}}
    bad, ok = mapper.map([REPORT, good])
    assert bad.body is None and bad.relevant
    assert (
        bad.error
        == "Mapping error for 'p/lmp' on source document 'r1': cannot find 'doc.fields.lmp_date' on source document"
    )
    assert ok.payload == {"id": "r2", "lmp": "2026-01-01"}


def test_required_expr_undefined_message(sandbox):
    m = mapped(sandbox, {"x": {"expr": "doc.nothing"}})
    assert m.error == "Mapping error for 'p/x' on source document 'r1': expr evaluated to undefined"


def test_expr_that_throws_fails_the_document_with_the_js_error(sandbox):
    m = mapped(sandbox, {"x": {"expr": "doc.fields.missing.deeper"}})
    assert m.error.startswith(
        "Mapping error for 'p/x' JS error on source document: 'r1': TypeError: Cannot read properties"
    )


def test_relevant_to_that_throws_is_a_failure_not_a_silent_skip(sandbox):
    m = Mapper("p", "doc.fields.patient_id.length > 0", {"id": "doc._id"}, sandbox=sandbox).map([{"_id": "c1"}])[0]
    assert not m.relevant
    assert m.error.startswith("relevant_to of 'p' threw on 'c1': TypeError")


def test_path_through_null_is_undefined_not_an_error(sandbox):
    m = mapped(sandbox, {"x": {"path": "doc.fields.lmp.year", "optional": True}, "id": "doc._id"})
    assert m.payload == {"id": "r1"}


def test_array_index_paths_and_string_properties_follow_object_path(sandbox):
    doc = {**REPORT, "fields": {"vaccines": ["bcg", "opv0"]}}
    m = mapped(sandbox, {"first": "doc.fields.vaccines.1", "n": "doc.fields.vaccines.length"}, doc=doc)
    assert m.payload == {"first": "opv0", "n": 2}


def test_statements_give_their_completion_value_like_vm_run_in_new_context(sandbox):
    m = mapped(sandbox, {"x": {"expr": "var y = doc.fields.patient_id; y + '!'"}})
    assert m.payload == {"x": "12345!"}


def test_non_string_expr_is_coerced_like_node_vm(sandbox):
    m = mapped(sandbox, {"active": {"expr": True}, "n": {"expr": 7}})
    assert m.payload == {"active": True, "n": 7}


def test_payload_keeps_mapping_order_and_hash_is_chts(sandbox):
    m = mapped(sandbox, {"z": {"expr": "1"}, "a": {"expr": "'x'"}, "m.k": {"expr": "[1, {b: 2, a: 1}]"}})
    assert m.body == '{"z":1,"a":"x","m":{"k":[1,{"b":2,"a":1}]}}'
    # CHT's orderedStringify sorts object keys but writes arrays with plain JSON.stringify, so the
    # object inside the array keeps its own key order in the hash input.
    assert m.payload_hash == payload_hash('{"a":"x","m":{"k":[1,{"b":2,"a":1}]},"z":1}')


def test_hash_matches_the_value_node_computes_for_chts_algorithm(sandbox):
    mapping = {
        "id": "doc._id",
        "rev": "doc._rev",
        "obs.0.code": {"expr": "'abc'"},
        "n": {"expr": "null"},
        "f": {"expr": "false"},
        "z": {"expr": "0"},
        "e": {"expr": "''"},
        "active": {"expr": True},
    }
    doc = {"_id": "a", "_rev": "1-x", "type": "data_record"}
    # Pinned from Node: crypto sha256 of orderedStringify(JSON.parse(JSON.stringify(payload))).
    assert (
        mapped(sandbox, mapping, doc=doc).payload_hash
        == "52e2d637ba59d576d0ebb175edffc81527bcaa4d9cb729764c84e523d1abdeae"
    )


def test_dates_and_special_numbers_serialise_as_json_stringify(sandbox):
    m = mapped(sandbox, {"d": {"expr": "new Date(0)"}, "nan": {"expr": "NaN"}, "big": {"expr": "1e21"}})
    assert m.body == '{"d":"1970-01-01T00:00:00.000Z","nan":null,"big":1e+21}'


def test_sandbox_has_no_io(sandbox):
    m = mapped(sandbox, {"x": {"expr": "require('fs').readFileSync('/etc/passwd')"}})
    assert "ReferenceError: require is not defined" in m.error
    m = mapped(sandbox, {"x": {"expr": "fetch('http://127.0.0.1/')"}})
    assert "ReferenceError: fetch is not defined" in m.error


def test_a_document_that_runs_forever_times_out_alone(sandbox):
    mapper = Mapper(
        "slow",
        "true",
        {"x": {"expr": "doc.loop ? (function(){ while (true) {} })() : doc._id"}},
        timeout_ms=50,
        sandbox=sandbox,
    )
    results = mapper.map([{"_id": "a"}, {"_id": "b", "loop": True}, {"_id": "c"}])
    assert results[0].payload == {"x": "a"} and results[2].payload == {"x": "c"}
    assert results[1].error == "JavaScript of 'slow' ran past 50 ms on 'b'"


def test_compile_errors_name_every_bad_snippet(sandbox):
    with pytest.raises(ScriptError) as err:
        Mapper("p", "doc.type ===", {"ok": "doc._id", "bad": {"expr": "(("}}, source="x.yaml", sandbox=sandbox)
    text = str(err.value)
    assert text.startswith("x.yaml: JavaScript does not compile")
    assert "relevant_to: SyntaxError" in text and "mapping.bad.expr: SyntaxError" in text


def test_a_batch_is_one_sandbox_call(sandbox, monkeypatch):
    calls = []
    original = sandbox.map_docs

    def counting(*args, **kwargs):
        calls.append(args[2])
        return original(*args, **kwargs)

    monkeypatch.setattr(sandbox, "map_docs", counting)
    docs = [{**REPORT, "_id": f"r{i}"} for i in range(500)]
    results = Mapper("p", "true", {"id": "doc._id"}, sandbox=sandbox).map(docs)
    assert calls == [500]
    assert [r.payload["id"] for r in results] == [f"r{i}" for i in range(500)]


def test_documents_do_not_leak_into_each_other(sandbox):
    mapper = Mapper("p", "true", {"n": {"expr": "(doc.fields.count = (doc.fields.count || 0) + 1)"}}, sandbox=sandbox)
    results = mapper.map([{"_id": "a", "fields": {}}, {"_id": "b", "fields": {}}])
    assert [r.payload for r in results] == [{"n": 1}, {"n": 1}]
