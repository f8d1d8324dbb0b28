"""An existing CHT outbound config becomes pipeline files that run unchanged."""

import json

import pytest
import yaml

from cht_bridge.config import load_pipeline, pipelines_from_app_settings
from cht_bridge.config.__main__ import main
from cht_bridge.errors import ConfigError

SETTINGS = {
    "outbound": {
        "FHIR patient": {
            "relevant_to": "doc.type === 'person'",
            "destination": {
                "base_url": "https://openhim.example.org:5000/",
                "path": "mediator/patient",
                "auth": {"type": "Basic", "username": "interop-client", "password_key": "openhim1"},
            },
            "mapping": {"id": "doc._id"},
            "cron": "5 1 * * *",
        },
        "textit": {
            "relevant_to": "doc.form === 'x'",
            "destination": {
                "base_url": "https://textit.in",
                "path": "/api/v2/flow_starts.json",
                "auth": {"type": "header", "name": "Authorization", "value_key": "textit.in"},
            },
            "mapping": {"urns": {"expr": "['tel:' + doc.from]"}},
        },
    }
}


def test_each_push_becomes_a_pipeline_and_a_connection_without_secrets():
    first, second = pipelines_from_app_settings(SETTINGS, source="app_settings.json", cht_conn_id="cht_prod")
    assert first.push == "FHIR patient"
    assert first.pipeline["name"] == "fhir_patient"
    assert first.pipeline["schedule"] == "5 1 * * *"
    assert first.pipeline["relevant_to"] == "doc.type === 'person'"
    assert first.pipeline["mapping"] == {"id": "doc._id"}
    assert first.pipeline["cht"] == {"conn_id": "cht_prod"}
    assert first.pipeline["destination"]["path"] == "/mediator/patient"
    assert first.pipeline["destination"]["auth"] == {"type": "basic"}
    assert first.connection == {
        "conn_id": "outbound_fhir_patient",
        "conn_type": "http",
        "host": "https://openhim.example.org:5000",
        "login": "interop-client",
        "password_from_cht_credential": "openhim1",
    }
    assert second.pipeline["schedule"] == "*/5 * * * *"  # no cron: Sentinel's 5-minute cadence
    assert second.pipeline["destination"]["auth"] == {"type": "header", "header": "Authorization"}
    assert second.connection["password_from_cht_credential"] == "textit.in"


def test_configs_cht_would_reject_are_named():
    bad = {
        "outbound": {
            "a": {"destination": {"base_url": "http://x", "auth": {"type": "muso-sih"}}, "mapping": {}},
            "b": {"relevant_to": "true", "mapping": {}, "destination": {}},
        }
    }
    with pytest.raises(ConfigError) as err:
        pipelines_from_app_settings(bad, source="app_settings.json")
    assert err.value.problems == [
        "outbound.a.relevant_to: required (without it CHT never pushes this config)",
        "outbound.a.destination.auth.type: muso-sih login is not supported; use basic or header auth",
        "outbound.b.destination.base_url: required, e.g. https://host",
    ]


def test_the_command_writes_loadable_files(tmp_path, capsys):
    settings = tmp_path / "app_settings.json"
    settings.write_text(json.dumps(SETTINGS))
    assert main(["import-outbound", str(settings), "--out", str(tmp_path / "out"), "--start-date", "2026-01-01"]) == 0
    written = sorted((tmp_path / "out").glob("*.yaml"))
    assert [p.name for p in written] == ["fhir_patient.yaml", "textit.yaml"]
    assert load_pipeline(written[0]).destination.conn_id == "outbound_fhir_patient"
    assert yaml.safe_load(written[1].read_text())["mapping"] == {"urns": {"expr": "['tel:' + doc.from]"}}
    out = capsys.readouterr().out
    assert "airflow connections add outbound_fhir_patient --conn-type http" in out
    assert "openhim1" in out  # the name of the CHT credential, never its value
