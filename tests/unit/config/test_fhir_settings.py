"""``destination.fhir:`` is checked when the pipeline file is parsed (config/kinds/fhir.py)."""

import pytest

from cht_bridge.config import parse_pipeline
from cht_bridge.config.kinds.fhir import FhirSettings, WriteBack
from cht_bridge.errors import ConfigError


def pipeline(fhir):
    return {
        "name": "fhir_example",
        "start_date": "2026-01-01",
        "cht": {"conn_id": "cht_local"},
        "relevant_to": "doc.form === 'x'",
        "mapping": {"resources": {"expr": "[{resourceType: 'Patient', id: 'p-' + doc._id}]"}},
        "destination": {"type": "fhir", "conn_id": "emr_fhir", **({"fhir": fhir} if fhir is not None else {})},
    }


def test_the_block_becomes_the_settings_and_the_fhir_base_is_the_default_path():
    block = {
        "identifier_system": "https://cht.example.org/doc-id",
        "strategy": "put",
        "validate": False,
        "write_back": {"field": "emr_patient_id", "conn_id": "cht_api"},
    }
    destination = parse_pipeline(pipeline(block), file="f.yaml").destination
    assert destination.path == "/"
    assert destination.settings == FhirSettings(
        "https://cht.example.org/doc-id", "put", False, WriteBack("emr_patient_id", "cht_api")
    )
    defaults = parse_pipeline(pipeline({"identifier_system": "urn:oid:1.2.3"}), file="f.yaml").destination.settings
    assert (defaults.strategy, defaults.validate, defaults.write_back) == ("conditional", True, None)


@pytest.mark.parametrize(
    "block,message",
    [
        (None, "destination.fhir.identifier_system: required: an absolute URI"),
        ({"identifier_system": "cht ids"}, "destination.fhir.identifier_system: required"),
        ({"identifier_system": "https://x.org/a|b"}, "destination.fhir.identifier_system: required"),
        ({"identifier_system": "https://x.org/id", "strategy": "upsert"}, "destination.fhir.strategy: must be one of"),
        (
            {"identifier_system": "https://x.org/id", "validate": "yes"},
            "destination.fhir.validate: must be true or false",
        ),
        ({"identifier_system": "https://x.org/id", "colour": 1}, "destination.fhir.colour: unknown key"),
        (
            {"identifier_system": "https://x.org/id", "write_back": {"field": "name", "conn_id": "c"}},
            "destination.fhir.write_back.field: required",
        ),
        (
            {"identifier_system": "https://x.org/id", "write_back": {"field": "emr_id"}},
            "destination.fhir.write_back.conn_id: required",
        ),
    ],
)
def test_a_bad_block_names_the_file_and_the_key(block, message):
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(pipeline(block), file="f.yaml")
    assert message in str(caught.value) and "f.yaml" in str(caught.value)
