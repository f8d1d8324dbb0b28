"""A batch's documents share their hydrated lineages only when no snippet can change them or tell
them apart (``v8/purity.js``), and then map to the same bytes as with a copy per document; a
snippet that writes still gets copies, so what it changes is never seen by the next document."""

from __future__ import annotations

import json

import pytest

from cht_bridge import v8
from cht_bridge.mapping import Mapper, payload_hash
from cht_bridge.v8 import Sandbox
from standins.generate import generate
from tests.unit.fhir.hydrated import CONTACT_TYPES

READ_ONLY = [
    "doc.type === 'data_record' && !!doc.form",
    "new Date(doc.reported_date).toISOString()",
    "['pregnancy', 'assessment'].indexOf(doc.form) !== -1",
    "doc.fields.symptoms ? doc.fields.symptoms.split(' ').join(', ') : 'referred by the CHW'",
    "[{system: 'https://cht.example.org/uuid', value: doc._id}].concat(doc.phone ? [{value: doc.phone}] : [])",
    "(function (p) { while (p && p.type !== 'health_center') { p = p.parent; } return p && p._id; })(doc.contact)",
    "Object.keys(doc.fields).filter(k => k.startsWith('q_')).length",
    "try { doc.fields.a.b } catch (e) { 'none' } finally { 0 }",
    "doc.fields['patient_id'] || doc.fields[0] // a comment: doc.fields.list.sort()",
    "var n = 0; n++; n + 1",
    "({a: doc._id, b: [doc.form, {c: doc.type}]}).b[0]",
    "[doc.fields.a, [doc.fields.b]].concat({x: [1]})",
]

WRITES = [
    "doc.contact.parent.name = 'X'",
    "doc.contact.parent.name += 'X'",
    "doc.contact.parent.visits++",
    "++doc.contact.parent.visits",
    "delete doc.contact.parent.name",
    "doc.contact.parent.tags.sort()",
    "doc.contact.parent.tags.reverse()",
    "doc.contact.parent['tags'].push('X')",
    "doc.contact.parent['pu' + 'sh']",
    "doc.contact.parent.tags.forEach(doc.contact.parent.tags[doc.contact.parent.method], doc.contact.parent.tags)",
    "Object.assign(doc.contact.parent, {name: 'X'})",
    "doc.contact.parent.tags.map(String).forEach([].push, doc.contact.parent.tags)",
    "[doc.contact.parent].forEach(Object.freeze)",
    "(({['pu' + 'sh']: p}) => doc.contact.parent.tags.map(String).forEach(p, doc.contact.parent.tags))([])",
    "(({'push': p}) => doc.contact.parent.tags.map(String).forEach(p, doc.contact.parent.tags))([])",
    "(function ({[doc.contact.parent.method]: p}) { doc.contact.parent.tags.map(String).forEach(p, doc.contact.parent.tags) })([])",
    "Reflect.set(doc.contact.parent, 'name', 'X')",
    "doc.contact.parent.tags.\\u0073ort()",
    "`${doc.contact.parent.tags.sort()}`",
    "/x/.test('x') ? doc.contact.parent.tags.sort() : 0",
    "1..constructor.constructor('return this')",
    "(function () { return this })()",
    "for (doc.contact.parent.name of ['X']);",
    "[doc.contact.parent.name] = ['X']",
    "({name: doc.contact.parent.name} = {name: 'X'})",
    "(doc.contact.parent).name = 'X'",
    "doc.contact.parent\n++doc.contact.parent.visits",
    # not writes, but they tell one object from two equal ones, which only copies keep apart
    "doc.contact.parent === doc.patient.parent",
    "[doc.contact.parent].indexOf(doc.patient.parent)",
    "switch (doc.contact.parent) { case doc.patient.parent: 1 }",
    # V8 reads `<!--` anywhere and `-->` at a line's start as a line comment: the push is run
    "doc._id === 'r1' ? 1 : 0 <!-- /*\n; doc._id === 'r1' && doc.contact.parent.tags.push('Y')\n// */",
    "0\n--> /*\n; doc._id === 'r1' && doc.contact.parent.tags.sort()\n// */",
    # a built-in handed on as a value: Array.of does `new F()` and writes into what F returns
    "function F() { return doc.contact.parent.tags } ['X'].forEach(Array.of, F)",
    "function F() { return doc.contact.parent.tags } Array.from([1], Array.of, F)",
    "function F() { return doc.contact.parent.tags } ['X'].flatMap(Array.of, F)",
    "function F() { return doc.contact.parent.tags } new F().push('X')",
    "[doc.patient.parent].some([doc.contact.parent].includes, [doc.contact.parent])",
    "[doc.patient.parent].some([doc.contact.parent].indexOf, [doc.contact.parent])",
    "[doc.patient.parent].some([doc.contact.parent].lastIndexOf, [doc.contact.parent])",
    # a name it does not declare is a global, kept for the next document of the call
    "n = (typeof n === 'number' ? n : 0) + 1",
    "(function () { var n })(); n = 1",
    "if (doc) { let n = 0 } n++",
    "function f(a = g(1, n)) { n = 1 }",
    "var x = 0; x\n++n",
]


@pytest.fixture
def sandbox():
    box = Sandbox()
    yield box
    box.close()


@pytest.mark.parametrize("snippet", READ_ONLY)
def test_a_pipeline_of_read_only_snippets_shares_lineages(sandbox, snippet):
    assert sandbox.shares(sandbox.compile("p", "true", {"x": {"expr": snippet}}, "f"))
    assert Mapper("q", snippet, {"id": "doc._id"}, sandbox=sandbox).shares


@pytest.mark.parametrize("snippet", WRITES)
def test_a_snippet_that_writes_or_compares_objects_gets_copies(sandbox, snippet):
    assert not sandbox.shares(sandbox.compile("p", "true", {"x": {"expr": snippet, "optional": True}}, "f"))
    assert not sandbox.shares(sandbox.compile("q", snippet, {"id": "doc._id"}, "f"))


@pytest.mark.parametrize("mapping", [{"c": "doc.contact", "c.seen": "doc._id"}, {"__proto__.x": "doc._id"}])
def test_a_payload_written_into_a_document_value_gets_copies(sandbox, mapping):
    """``c.seen`` would be set on the contact ``c`` holds, which the next document would see."""
    assert not sandbox.shares(sandbox.compile("p", "true", mapping, "f"))


PLACE = {
    "_id": "hc", "type": "health_center", "name": "Kisumu HC", "tags": ["b", "a"], "visits": 1, "method": "push",
    "contact": {"_id": "nurse"},
}  # fmt: skip
CHW = {"_id": "chw", "type": "person", "name": "Wanjiru", "parent": {"_id": "hc"}}
NURSE = {"_id": "nurse", "type": "person", "name": "Otieno", "parent": {"_id": "hc"}}


def _loaded(sandbox: Sandbox, reports: list[dict], contacts: list[dict], gone: int = 0) -> list[str]:
    """``reports`` loaded, hydrated from ``contacts``; ``gone`` ids they name are not in CHT."""
    sandbox.learn(json.dumps(contacts))
    refs = sandbox.load_docs(json.dumps(reports))
    assert sandbox.resolve('{"rows": []}', refs) == ""
    for _ in range(3):
        missing = sandbox.missing()
        gone -= len(missing)
        assert sandbox.add_docs('{"rows": []}', missing) == ""  # as _all_docs answers ids it does not hold
    assert gone == 0
    return [r["_id"] for r in reports]


CHANGES = [s for s in WRITES if not any(w in s for w in ("doc.patient", "return this", "'pu' + 'sh'", "Object.freeze"))]


def _changer(sandbox: Sandbox, snippet: str) -> Mapper:
    """A pipeline whose first report ``r1`` runs ``snippet``; the others read its lineage."""
    return Mapper(
        "p", "true",
        {"x": {"expr": f"doc._id === 'r1' ? (function () {{ {snippet};\n return 1 }})() : 0", "optional": True},
         "place": "doc.contact.parent.name", "tags": "doc.contact.parent.tags",
         "visits": {"path": "doc.contact.parent.visits", "optional": True}},
        sandbox=sandbox,
    )  # fmt: skip


def _lineage_is_unchanged_for_the_next_documents(sandbox: Sandbox, mapper: Mapper) -> list[str]:
    """Map r1..r3 twice (the second time from the same cache); r2 and r3 see the lineage as loaded."""
    reports = [{"_id": f"r{i}", "type": "data_record", "form": "v", "contact": {"_id": "chw"}} for i in (1, 2, 3)]
    ids = _loaded(sandbox, reports, [PLACE, CHW, NURSE])
    for batch in (mapper.map_loaded(ids), mapper.map_loaded(ids)):  # and again from the same cache
        assert [m.error for m in batch[1:]] == [None, None]
        assert [json.loads(m.body) for m in batch[1:]] == [
            {"x": 0, "place": "Kisumu HC", "tags": ["b", "a"], "visits": 1}
        ] * 2
    return ids


@pytest.mark.parametrize("snippet", CHANGES)
def test_what_a_snippet_changes_in_its_lineage_is_not_seen_by_the_next_document(sandbox, snippet):
    _lineage_is_unchanged_for_the_next_documents(sandbox, _changer(sandbox, snippet))


@pytest.fixture
def always_sharing(monkeypatch):
    """A sandbox whose purity.js passes every snippet: what freezing alone keeps apart."""
    script = v8._script

    def passing(name: str) -> str:
        text = script(name)
        if name == "purity.js":
            text = text.replace("return { readOnly: readOnly };", "return { readOnly: function () { return true; } };")
            assert "return true; }" in text
        return text

    monkeypatch.setattr(v8, "_script", passing)
    box = Sandbox()
    yield box
    box.close()


@pytest.mark.parametrize("snippet", CHANGES)
def test_a_write_purity_js_missed_fails_only_its_own_document(always_sharing, snippet):
    """What is shared comes deep-frozen: a write fails (strict) or does nothing (sloppy), the
    document that tried it may fail, and the next documents and calls see the lineage unchanged."""
    sandbox = always_sharing
    mapper = _changer(sandbox, snippet)
    assert mapper.shares
    ids = _lineage_is_unchanged_for_the_next_documents(sandbox, mapper)
    copied = Mapper("c", "true || doc.x.sort()", {"tags": "doc.contact.parent.tags"}, sandbox=sandbox)
    assert [json.loads(m.body) for m in copied.map_loaded(ids)] == [{"tags": ["b", "a"]}] * 3


def test_shared_lineages_map_to_the_same_bytes_and_hashes_as_copies(sandbox):
    """The whole hydrated document as the payload: shared (a read-only pipeline) and copied (the same
    pipeline, but its relevant_to names `sort`, which it never runs) give the same text per document."""
    docs = list(generate(1500, seed=5))
    contacts = [d for d in docs if d.get("type") in CONTACT_TYPES]
    ids = _loaded(sandbox, docs, contacts)
    mapping = {"doc": "doc", "form": {"path": "doc.form", "optional": True}}
    shared = Mapper("shared", "!!doc._id", mapping, sandbox=sandbox)
    copied = Mapper("copied", "!!doc._id || doc.x.sort()", mapping, sandbox=sandbox)
    assert shared.shares and not copied.shares
    one, other = shared.map_loaded(ids), copied.map_loaded(ids)
    assert [(m.body, m.payload_hash) for m in one] == [(m.body, m.payload_hash) for m in other]
    assert [json.loads(m.body)["doc"] for m in one] == sandbox.hydrated()
    assert sum(1 for m in one if "parent" in json.loads(m.body)["doc"].get("contact", {})) > 500


@pytest.mark.parametrize("key", ["x\ny", "x\x1fy", "x\x1ey", "\u2028"])
def test_a_payload_key_with_a_line_break_or_separator_maps_and_hashes_like_any_other(sandbox, key):
    """The hash input holds the payload's keys as they are; a newline in one broke the whole batch."""
    mapper = Mapper("p", "true", {"f": "doc.fields"}, sandbox=sandbox)
    results = mapper.map([{"_id": "a", "fields": {key: 1, "b": [2]}}, {"_id": "b", "fields": {"z": 2}}])
    assert [r.error for r in results] == [None, None]
    assert results[0].payload == {"f": {key: 1, "b": [2]}} and results[1].payload == {"f": {"z": 2}}
    # CHT's hash input writes keys as they are (orderedStringify), values as JSON.stringify does
    fields = ",".join(f'"{k}":{json.dumps(v)}' for k, v in sorted({key: 1, "b": [2]}.items()))
    assert results[0].payload_hash == payload_hash('{"f":{' + fields + "}}")


def test_odd_submitters_map_the_same_shared_or_copied(sandbox):
    """Submitters the cache does not hold: a list, a bare id, a lineage whose parents are unknown."""
    contacts = [
        {"_id": "hc", "type": "health_center", "name": "HC", "contact": {"_id": "gone"}, "parent": {"_id": "x"}}
    ]
    odd = [[1, {"a": 2}], "unknown-id", {"_id": "stray", "parent": {"_id": "hc", "parent": {"_id": "nowhere"}}}, None]
    reports = [{"_id": f"r{i}", "type": "data_record", "form": "v", "contact": c} for i, c in enumerate(odd)]
    ids = _loaded(sandbox, reports, contacts, gone=5)
    shared = Mapper("shared", "!!doc._id", {"doc": "doc"}, sandbox=sandbox)
    copied = Mapper("copied", "!!doc._id || doc.x.sort()", {"doc": "doc"}, sandbox=sandbox)
    one, other = shared.map_loaded(ids), copied.map_loaded(ids)
    assert [m.body for m in one] == [m.body for m in other]
    assert json.loads(one[0].body)["doc"]["contact"] == [1, {"a": 2}]
    assert json.loads(one[2].body)["doc"]["contact"]["parent"]["name"] == "HC"
