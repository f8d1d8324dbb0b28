"""The payload hash is CHT's whichever way the sandbox writes its input (``mapping.js``).

A payload made only of the mapping's own keys and of strings, numbers, booleans and null has its
key-sorted text written from a tree sorted when the pipeline is compiled; any other is parsed back
and sorted (``ordered``). Both must give, byte for byte, what Node gives for CHT's algorithm
(``orderedStringify(JSON.parse(JSON.stringify(payload)))``), or every ledger would see every
document as changed. Node is CHT's own runtime: it is the reference here, and it is required
(pouchdb-server, the tests' CouchDB, runs on it too): without it these tests fail, not skip.

Each case says whether its pipeline is written from the compiled tree (``Mapper.shaped``), and a
differential check runs ``mapping.js`` itself in Node over random mappings, so a shape path that is
switched off, or a tree left unsorted, fails here instead of passing through the other path.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import cht_bridge.v8
from cht_bridge.mapping import Mapper
from cht_bridge.v8 import Sandbox

MAPPING_JS = Path(cht_bridge.v8.__file__).with_name("mapping.js")

# CHT's orderedStringify (shared-libs/outbound), and the hash as CHT stores it.
ORDERED = r"""
const ordered = (thing) => {
  if (Object.prototype.toString.call(thing) === '[object Object]') {
    return '{' + Object.keys(thing).sort().map((k) => '"' + k + '":' + ordered(thing[k])).join(',') + '}';
  }
  return JSON.stringify(thing);
};
"""
REFERENCE = (
    ORDERED
    + r"""
const crypto = require('crypto');
const bodies = JSON.parse(require('fs').readFileSync(0, 'utf8'));
console.log(JSON.stringify(bodies.map((b) => crypto.createHash('sha256').update(ordered(JSON.parse(b))).digest('hex'))));
"""
)

DOC = {
    "_id": "r1",
    "type": "data_record",
    "name": 'Achieng "A" \\ Otieno\n\u2028',
    "lone": "\ud800x",
    "n": -0.0,
    "small": 1e-7,
    "sum": 0.30000000000000004,
    "big": 123456789012345678901234567890,
    "t": True,
    "f": False,
    "z": None,
    "e": "",
    "fields": {"a": 1, "b": [1, {"y": 2, "x": 1}]},
}

# (mapping, shaped). A pipeline is shaped when no destination key has a numeric segment (an
# array) or is a prefix of another; a shaped pipeline's document still falls back to parsing the
# body back when a value is not a string, number, boolean or null (the eighth: an object, a Date).
CASES = [
    (
        {"z": "doc._id", "b.y": "doc.name", "b.x": "doc.lone", "a": "doc.n", "m.k.j": "doc.small", "m.a": "doc.sum"},
        True,
    ),
    ({"big": "doc.big", "t": "doc.t", "f": "doc.f", "zz": "doc.z", "e": "doc.e"}, True),
    (
        {
            'q"k': {"expr": "1"},
            "\\": {"expr": "2"},
            "\t": {"expr": "3"},
            "\uff01": {"expr": "4"},
            "\U0001f600": {"expr": "5"},
            "é": {"expr": "6"},
        },
        True,
    ),
    (
        {
            "nan": {"expr": "NaN"},
            "inf": {"expr": "-Infinity"},
            "e21": {"expr": "1e21"},
            "neg": {"expr": "-0"},
            "d": {"expr": "new Date(0).toISOString()"},
        },
        True,
    ),
    (
        {
            "a.b": {"path": "doc.missing", "optional": True},
            "a.c": {"expr": "undefined", "optional": True},
            "c": "doc._id",
        },
        True,
    ),
    ({"a.b": {"path": "doc.missing", "optional": True}}, True),
    ({"toJSON": {"expr": "'x'"}, "-0": {"expr": "1"}, "01": {"expr": "2"}, "1e3": {"expr": "3"}}, True),
    ({"fields": "doc.fields", "id": "doc._id", "w": {"expr": "new Date(0)"}}, True),
    ({"obs.0.code": {"expr": "'abc'"}, "obs.1.b": "doc._id", "id": "doc._id"}, False),
    ({"a.b": "doc._id", "a": "doc.name"}, False),
]

# Random mappings through mapping.js in Node (no sandbox lockdown is needed: no snippet here
# changes a built-in): each document's hash input against CHT's ordered(JSON.parse(body)). Which
# path wrote it is seen from outside: the shaped path parses no payload back, so a batch call
# makes one JSON.parse (its documents) plus one per document that fell back.
DIFFERENTIAL = (
    ORDERED
    + r"""
const [file, seedText, countText] = process.argv.slice(1);
const read = (name) => require('fs').readFileSync(require('path').join(require('path').dirname(file), name), 'utf8');
const m = new Function(read('purity.js') + '\n' + read('mapping.js') + '\nreturn __chtMapping;')(); // as the bridge loads them
let seed = Number(seedText) >>> 0;
const random = () => { // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (xs) => xs[Math.floor(random() * xs.length)];
const WORDS = ['a', 'b', 'B', 'ab', 'ba', '_', 'a b', '"q', '\\', '\t', '\u00e9', '\uff01', '\ud83d\ude00', 'toJSON',
  '01', '1e3', '-0', '', 'z'];
const segment = () => (random() < 0.03 ? pick(['0', '7', '__proto__']) : pick(WORDS));
const PRIMITIVES = ['x', '', 'Achieng "A" \\ Otieno\n\u2028', '\ud800x', 0, -1.5, 1e21, 1e-7, 0.1 + 0.2,
  123456789012345678901234567890, true, false, null];
const EXPRS = ['NaN', '-Infinity', '-0', '"\\ud800"', 'doc.f0', 'String(doc.f1)', 'undefined'];
const value = () => (random() < 0.04 ? pick([{ y: 2, x: [1, { b: 1, a: 2 }] }, []]) : pick(PRIMITIVES));
const isInteger = (text) => String(parseInt(text, 10)) === text;
let shaped = 0, plain = 0, docs = 0, errors = 0, fromTree = 0, fellBack = 0, fromLiterals = 0; // fellBack: of shaped pipelines
const problems = [];
for (let n = 0; n < Number(countText); n++) {
  const mapping = {};
  const size = 1 + Math.floor(random() * 8);
  for (let k = 0; k < size; k++) {
    const depth = 1 + Math.floor(random() * 3);
    const dest = Array.from({ length: depth }, segment).join('.');
    const r = random();
    mapping[dest] = r < 0.5 ? 'doc.f' + Math.floor(random() * 6)
      : r < 0.75 ? { path: 'doc.g' + Math.floor(random() * 3), optional: true }
        : { expr: pick(EXPRS), optional: true };
  }
  // Independently of mapping.js: no numeric segment, no __proto__, no key a prefix of another.
  const dests = Object.keys(mapping).map((d) => d.split('.'));
  const expected = dests.every((parts) => parts.every((s) => !isInteger(s) && s !== '__proto__')) &&
    !dests.some((a) => dests.some((b) => a !== b && a.length < b.length && a.every((s, i) => s === b[i])));
  const answer = JSON.parse(m.addPipeline('p' + n, 'true', JSON.stringify(mapping)));
  if (answer.shaped !== expected) {
    problems.push({ mapping, shaped: answer.shaped, expected });
  }
  expected ? shaped++ : plain++;
  const batch = Array.from({ length: 3 }, (_, i) => {
    const doc = { _id: 'd' + i };
    for (let f = 0; f < 6; f++) doc['f' + f] = value();
    for (let g = 0; g < 3; g++) if (random() < 0.5) doc['g' + g] = value();
    return doc;
  });
  const parse = JSON.parse;
  let parses = 0;
  JSON.parse = function () { parses++; return parse.apply(JSON, arguments); };
  let text;
  try {
    text = m.run(answer.id, JSON.stringify(batch));
  } finally {
    JSON.parse = parse;
  }
  let backs = 0;
  const fields = text.split('\x1f'); // three per document (mapping.js `encode`)
  batch.forEach((_, i) => {
    const [kind, body, h] = fields.slice(3 * i, 3 * i + 3);
    const line = kind + ' ' + body;
    docs++;
    if (kind !== '1') { // a key set under another's value (`a` and `a.b`): CHT fails it too
      errors++;
      if (expected) problems.push({ mapping, doc: batch[i], line });
      return;
    }
    const payload = JSON.parse(body);
    if (h !== ordered(payload)) {
      problems.push({ mapping, body, h, want: ordered(payload) });
    }
    // The body itself, key order included, against the payload built here as CHT builds it: each
    // value set in the mapping's order, an object made where its first value goes.
    if (expected) {
      const reference = {};
      let all = true;
      Object.keys(mapping).forEach((dest) => {
        const source = mapping[dest];
        const v = typeof source === 'string' ? batch[i][source.slice(4)]
          : source.path ? batch[i][source.path.slice(4)] : new Function('doc', 'return (' + source.expr + ');')(batch[i]);
        if (v === undefined) {
          all = false;
          return;
        }
        const parts = dest.split('.');
        let at = reference;
        parts.slice(0, -1).forEach((key) => {
          at = Object.prototype.hasOwnProperty.call(at, key) ? at[key] : (at[key] = {});
        });
        at[parts[parts.length - 1]] = v;
        all = all && (v === null || typeof v !== 'object');
      });
      if (body !== JSON.stringify(reference)) {
        problems.push({ mapping, body, want: JSON.stringify(reference) });
      }
      if (all && answer.literals) {
        fromLiterals++;
      }
    }
    // A document of a shaped pipeline falls back only for a value that is an object or an array.
    const leaf = (parts) => parts.reduce((o, k) => (o === undefined ? undefined : o[k]), payload);
    if (!expected || dests.some((parts) => leaf(parts) !== null && typeof leaf(parts) === 'object')) {
      backs++;
      if (expected) fellBack++;
    } else {
      fromTree++;
    }
  });
  if (parses !== 1 + backs) {
    problems.push({ mapping, parses, expectedParses: 1 + backs, shaped: expected });
  }
}
console.log(JSON.stringify({ shaped, plain, docs, errors, fromTree, fellBack, fromLiterals, problems: problems.slice(0, 5), count: problems.length }));
"""
)


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail(
            "node is not on PATH: Node.js is required (CHT's runtime is the reference of these tests, "
            "and pouchdb-server, the tests' CouchDB, runs on it); install Node 20",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def test_the_hash_input_is_chts_byte_for_byte_both_ways(sandbox, node):
    mapped = []
    for i, (mapping, shaped) in enumerate(CASES):
        mapper = Mapper(f"p{i}", "true", mapping, sandbox=sandbox)
        assert mapper.shaped is shaped, (i, mapping)
        m = mapper.map([DOC])[0]
        assert m.error is None, (mapping, m.error)
        mapped.append(m)
    answer = subprocess.run(
        [node, "-e", REFERENCE], input=json.dumps([m.body for m in mapped]), capture_output=True, text=True, check=True
    )
    assert [m.payload_hash for m in mapped] == json.loads(answer.stdout)


def test_random_mappings_hash_the_same_on_the_shaped_path_as_parsed_back(node):
    answer = subprocess.run(
        [node, "-e", DIFFERENTIAL, str(MAPPING_JS), "20261205", "2000"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    result = json.loads(answer.stdout)
    assert result["count"] == 0, result["problems"]
    # Both kinds of pipeline, and both ways a shaped one's document is written, were exercised.
    assert result["docs"] == 6000 and result["shaped"] > 1000 and result["plain"] > 500, result
    assert result["fromTree"] > 3000 and result["fellBack"] > 200, result
    # Documents with every value were written by the compiled object literals, the rest by pieces.
    assert 500 < result["fromLiterals"] < result["fromTree"], result
