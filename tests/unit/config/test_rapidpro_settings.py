"""``destination.rapidpro:`` is checked when the pipeline file is read, every problem under its key."""

import pytest

from cht_bridge.config import parse_pipeline
from cht_bridge.config.kinds.rapidpro import DEFAULT_BUDGET, RapidProSettings
from cht_bridge.errors import ConfigError


def pipeline(**rapidpro):
    return {
        "name": "rp",
        "start_date": "2026-01-01",
        "cht": {"conn_id": "cht"},
        "relevant_to": "true",
        "mapping": {"flow": {"expr": "'f'"}, "phone": "doc.phone"},
        "destination": {
            "type": "rapidpro",
            "conn_id": "rapidpro",
            "auth": {"type": "header", "header": "Authorization", "prefix": "Token "},
            "rapidpro": rapidpro,
        },
    }


def test_the_block_becomes_the_settings_with_their_defaults_and_the_api_path():
    config = parse_pipeline(pipeline(action="flow_start", budget={"contacts": 100}), file="rp.yaml")
    settings = config.destination.settings
    assert isinstance(settings, RapidProSettings)
    assert settings.action == "flow_start" and settings.region == "KE"
    assert settings.per_hour("contacts") == 100 and settings.per_hour("flow_starts") == DEFAULT_BUDGET
    assert settings.restart_participants is False and settings.exclude_active is True
    assert config.destination.path == "/api/v2"
    assert config.destination.auth.prefix == "Token "


def test_every_problem_is_named_with_its_key():
    raw = pipeline(action="start", region="Kenya", budget={"contacts": 0, "runs": 5}, exclude_active="yes", x=1)
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(raw, file="rp.yaml")
    text = str(caught.value)
    for expected in (
        "destination.rapidpro.action: required: one of contact, flow_start",
        "destination.rapidpro.region: must be a two-letter country code",
        "destination.rapidpro.budget.contacts: must be a whole number of requests per hour",
        "destination.rapidpro.budget.runs: unknown endpoint group",
        "destination.rapidpro.exclude_active: must be true or false",
        "destination.rapidpro.x: unknown key",
    ):
        assert expected in text, text
    assert "rp.yaml" in text


def test_a_missing_block_is_missing_its_action():
    raw = pipeline()
    del raw["destination"]["rapidpro"]
    with pytest.raises(ConfigError, match="destination.rapidpro.action: required"):
        parse_pipeline(raw, file="rp.yaml")
