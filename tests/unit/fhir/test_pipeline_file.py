"""A pipeline file's ``fhir:`` block is checked when the file is loaded: every fault named with
the file and its key, in one error, before anything runs."""

from __future__ import annotations

import pytest
import yaml

from cht_bridge.config.loader import load_pipeline
from cht_bridge.errors import ConfigError

HEAD = {
    "name": "refs",
    "start_date": "2026-01-01",
    "cht": {"conn_id": "c"},
    "relevant_to": "doc.form === 'referral'",
    "destination": {"conn_id": "d", "path": "/fhir"},
}


def load(tmp_path, **keys):
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({**HEAD, **keys}))
    return path, load_pipeline(path)


def faults(tmp_path, **keys):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, **keys)
    assert caught.value.source == str(tmp_path / "refs.yaml")
    assert str(caught.value).startswith(f"{tmp_path / 'refs.yaml'}: invalid pipeline configuration:")
    return caught.value.problems


def test_a_templated_pipeline_loads_and_its_fields_become_the_mapping(tmp_path):
    _, p = load(
        tmp_path,
        fhir={
            "identifier_system": "https://cht.example.org/id",
            "resources": [
                {"template": "patient", "from": "doc.patient"},
                {"template": "service_request", "fields": {"reason": {"path": "doc.fields.reason", "optional": True}}},
            ],
        },
    )
    assert p.fhir.identifier_system == "https://cht.example.org/id"
    assert [r.template for r in p.fhir.resources] == ["patient", "service_request"]
    assert p.mapping["resources.0.cht_id"] == "doc.patient._id"
    assert p.mapping["resources.0.sex"] == {"path": "doc.patient.sex", "optional": True}
    assert p.mapping["resources.1.subject"] == "doc.patient._id"
    assert p.mapping["resources.1.reason"] == {"path": "doc.fields.reason", "optional": True}


def test_every_fault_of_the_block_is_named_by_its_key(tmp_path):
    found = faults(
        tmp_path,
        fhir={
            "identifier_system": "cht",
            "colour": "red",
            "resources": [
                {"template": "patients"},
                {"template": "patient", "from": "patient", "fields": {}},
                {"template": "patient", "fields": {"nickname": "doc.nick", "sex": "sex"}},
                {"template": "observation", "fields": {"value": "doc.fields.t"}, "codes": {"code": {"system": "loinc"}}},
                {"template": "service_request", "options": {"status": "open", "intent": "order"}, "codes": {"colour": {"code": "x"}}},
                {"template": "task", "fields": {"priority": {"expr": "'urgent'", "optionl": True}}},
                {"template": "patient", "identifiers": [{"value": "doc.patient_id"}]},
            ],
        },
    )  # fmt: skip
    assert found == [
        "fhir.colour: unknown key (allowed: birth_date_extension, identifier_system, identifier_type, phone_region, resources)",
        "fhir.identifier_system: required: the URI of the system of the CHT ids (e.g. https://cht.example.org/id)",
        "fhir.resources.0.template: must be one of patient, practitioner, practitioner_role, organization, "
        "service_request, task, encounter, observation (got 'patients')",
        "fhir.resources.1.from: must be a 'doc.' path to the CHT document the resource is made from",
        "fhir.resources.2.fields.nickname: unknown field (allowed: cht_id, name, given_name, family_name, sex, "
        "date_of_birth, birth_date_estimated, phone, phone_alternate, place, organization)",
        "fhir.resources.2.fields.sex: source path 'sex' must start with 'doc.' (CHT resolves it against {doc})",
        "fhir.resources.3.key: required: a name that tells this observation apart from the report's others",
        "fhir.resources.3.codes.code: must be {system, code, display}, a list of them, or {text, coding: [...]}",
        "fhir.resources.4.codes.colour: unknown code slot (allowed: code, category, reason)",
        "fhir.resources.4.options.status: must be one of draft, active, on-hold, revoked, completed, "
        "entered-in-error, unknown (got 'open')",
        "fhir.resources.5.fields.priority.optionl: unknown key (allowed: expr, optional, path)",
        "fhir.resources.6.identifiers.0: needs a system (a URI) or a type (OpenMRS: the identifier type's name or uuid)",
        "fhir.resources.6: names the same resource as resources.2 (give one of them a distinct key)",
    ]


def test_mapping_and_fhir_are_exclusive_and_resources_are_required(tmp_path):
    found = faults(tmp_path, mapping={"id": "doc._id"}, fhir={"identifier_system": "https://x.example/id"})
    assert found == [
        "mapping: a pipeline with a fhir: block takes no mapping (its templates are the mapping)",
        "fhir.resources: required: a list of {template, from, fields, codes}",
    ]
    assert faults(tmp_path, fhir=["patient"]) == ["fhir: must be a mapping with identifier_system and resources"]


def test_a_javascript_error_in_a_template_field_names_the_file(tmp_path):
    from cht_bridge.errors import ScriptError
    from cht_bridge.mapping import Mapper

    _, p = load(
        tmp_path,
        fhir={
            "identifier_system": "https://x.example/id",
            "resources": [{"template": "patient", "fields": {"name": {"expr": "doc.name +"}}}],
        },
    )
    with pytest.raises(
        ScriptError,
        match=r"refs.yaml: JavaScript does not compile:\n  - fhir.resources.0.fields.name.expr: SyntaxError",
    ):
        Mapper.for_pipeline(p)
    from cht_bridge.fhir.templates import file_keys

    assert file_keys("mapping.resources.3.identifier_1.expr: x; mapping.resources.12.cht_id.expr") == (
        "fhir.resources.3.identifiers.1.value.expr: x; fhir.resources.12.fields.cht_id.expr"
    )


def test_checking_a_templated_file_imports_no_fhir_models_phones_or_v8(tmp_path):
    """DAG files parse pipeline files: the fhir: block is checked in pure Python."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    example = root / "include" / "examples" / "fhir" / "referral_templates.yaml"
    probe = (
        "import json, sys, yaml\n"
        "from cht_bridge.config.loader import parse_pipeline\n"
        f"raw = yaml.safe_load(open({str(example)!r}))\n"
        "raw['destination'] = {'conn_id': 'd', 'path': '/fhir'}\n"
        "p = parse_pipeline(raw, file='x')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('fhir', 'pydantic', 'phonenumbers', 'py_mini_racer'))\n"
        "print(json.dumps({'resources': len(p.fhir.resources), 'heavy': heavy}))\n"
    )
    env = {"PYTHONPATH": f"{root}:{root / 'plugins'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"resources": 3, "heavy": []}
