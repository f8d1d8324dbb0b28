"""The payload hash is CHT's whichever way the sandbox writes its input (``mapping.js``).

A payload made only of the mapping's own keys and of strings, numbers, booleans and null has its
key-sorted text written from a tree sorted when the pipeline is compiled; any other is parsed back
and sorted (``ordered``). Both must give, byte for byte, what Node gives for CHT's algorithm
(``orderedStringify(JSON.parse(JSON.stringify(payload)))``), or every ledger would see every
document as changed. Node is CHT's own runtime: it is the reference here.
"""

import json
import shutil
import subprocess

import pytest

from cht_bridge.mapping import Mapper
from cht_bridge.v8 import Sandbox

NODE = shutil.which("node")

# CHT's orderedStringify (shared-libs/outbound), and the hash as CHT stores it.
REFERENCE = r"""
const crypto = require('crypto');
const ordered = (thing) => {
  if (Object.prototype.toString.call(thing) === '[object Object]') {
    return '{' + Object.keys(thing).sort().map((k) => '"' + k + '":' + ordered(thing[k])).join(',') + '}';
  }
  return JSON.stringify(thing);
};
const bodies = JSON.parse(require('fs').readFileSync(0, 'utf8'));
console.log(JSON.stringify(bodies.map((b) => crypto.createHash('sha256').update(ordered(JSON.parse(b))).digest('hex'))));
"""

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

# The first seven are written from the compiled tree (primitive values, no arrays, no key a prefix
# of another), the last three by parsing the body back (an object or Date value, arrays, a key
# that is a prefix of another): both ways are checked against Node.
CASES = [
    ({"z": "doc._id", "b.y": "doc.name", "b.x": "doc.lone", "a": "doc.n", "m.k.j": "doc.small", "m.a": "doc.sum"}),
    ({"big": "doc.big", "t": "doc.t", "f": "doc.f", "zz": "doc.z", "e": "doc.e"}),
    (
        {
            'q"k': {"expr": "1"},
            "\\": {"expr": "2"},
            "\t": {"expr": "3"},
            "\uff01": {"expr": "4"},
            "\U0001f600": {"expr": "5"},
            "é": {"expr": "6"},
        }
    ),
    (
        {
            "nan": {"expr": "NaN"},
            "inf": {"expr": "-Infinity"},
            "e21": {"expr": "1e21"},
            "neg": {"expr": "-0"},
            "d": {"expr": "new Date(0).toISOString()"},
        }
    ),
    (
        {
            "a.b": {"path": "doc.missing", "optional": True},
            "a.c": {"expr": "undefined", "optional": True},
            "c": "doc._id",
        }
    ),
    ({"a.b": {"path": "doc.missing", "optional": True}}),
    ({"toJSON": {"expr": "'x'"}, "-0": {"expr": "1"}, "01": {"expr": "2"}, "1e3": {"expr": "3"}}),
    ({"fields": "doc.fields", "id": "doc._id", "w": {"expr": "new Date(0)"}}),
    ({"obs.0.code": {"expr": "'abc'"}, "obs.1.b": "doc._id", "id": "doc._id"}),
    ({"a.b": "doc._id", "a": "doc.name"}),
]


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


@pytest.mark.skipif(NODE is None, reason="node (CHT's runtime, the reference) is not installed")
def test_the_hash_input_is_chts_byte_for_byte_both_ways(sandbox):
    mapped = []
    for i, mapping in enumerate(CASES):
        m = Mapper(f"p{i}", "true", mapping, sandbox=sandbox).map([DOC])[0]
        assert m.error is None, (mapping, m.error)
        mapped.append(m)
    node = subprocess.run(
        [NODE, "-e", REFERENCE], input=json.dumps([m.body for m in mapped]), capture_output=True, text=True, check=True
    )
    assert [m.payload_hash for m in mapped] == json.loads(node.stdout)
