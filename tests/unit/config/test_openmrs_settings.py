"""``destination.openmrs:`` is checked at parse time, each problem under its key."""

import pytest

from cht_bridge.config import load_pipeline
from cht_bridge.config.kinds.openmrs import DEFAULT_PATH, PLACE_SYSTEM, OpenMrsSettings
from cht_bridge.errors import ConfigError

PIPELINE = """
name: openmrs_example
start_date: 2026-01-01
cht: {conn_id: cht_local}
relevant_to: "doc.type === 'person'"
mapping: {id: doc._id}
destination:
  type: openmrs
  conn_id: kenyaemr
  auth: {type: cookie, login_path: /openmrs/ws/rest/v1/session}
"""


def load(tmp_path, block: str):
    path = tmp_path / "openmrs_example.yaml"
    path.write_text(PIPELINE + block)
    return load_pipeline(path)


def test_the_block_becomes_settings_and_the_fhir2_base_is_the_default_path(tmp_path):
    pipeline = load(
        tmp_path,
        "  openmrs:\n"
        "    identifier_system: https://cht.example.org/id\n"
        "    identifier_types: {'https://cht.example.org/id': CHT Document ID}\n"
        "    locations: include/places/emr_locations.csv\n",
    )
    settings = pipeline.destination.settings
    assert settings == OpenMrsSettings(
        (("https://cht.example.org/id", "CHT Document ID"),),
        "include/places/emr_locations.csv",
        PLACE_SYSTEM,
        "https://cht.example.org/id",
    )
    assert settings.identifier_type == {"https://cht.example.org/id": "CHT Document ID"}
    assert pipeline.destination.path == DEFAULT_PATH


def test_bad_keys_are_named_with_the_file(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load(
            tmp_path,
            "  openmrs:\n"
            "    identifier_types: {'https://cht.example.org/id': ''}\n"
            "    locations: places.txt\n"
            "    identifier_system: not a uri\n"
            "    colour: blue\n",
        )
    text = str(raised.value)
    assert "openmrs_example.yaml" in text
    for key in (
        "destination.openmrs.identifier_types.https://cht.example.org/id",
        "destination.openmrs.locations",
        "destination.openmrs.identifier_system",
        "destination.openmrs.colour",
    ):
        assert key in text
