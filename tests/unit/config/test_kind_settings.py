"""A destination kind's own block (``destination.<kind>:``) is checked by its module in config/kinds."""

import sys
import types
from dataclasses import dataclass

import pytest

from cht_bridge.config import kinds as kind_settings
from cht_bridge.config import load_pipeline
from cht_bridge.destinations import registry
from cht_bridge.errors import ConfigError

PIPELINE = """
name: kind_example
start_date: 2026-01-01
cht: {conn_id: cht_local}
relevant_to: "doc.form === 'x'"
mapping: {id: doc._id}
destination:
  type: example
  conn_id: example_api
"""


@dataclass(frozen=True)
class ExampleSettings:
    system: str


def _parse(block, add):
    system = block.get("system")
    if not isinstance(system, str) or not system.startswith("https://"):
        add("system", "required: an https:// URI")
    for key in set(block) - {"system"}:
        add(key, "unknown key (allowed: system)")
    return ExampleSettings(system=system)


@pytest.fixture
def example_kind(monkeypatch):
    module = types.ModuleType("cht_bridge_test_example_settings")
    module.parse = _parse
    module.DEFAULT_PATH = "/example"
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(kind_settings.SETTINGS, "example", module.__name__)
    registry.register("example", object)
    yield
    registry.unregister("example")


def write(tmp_path, extra):
    path = tmp_path / "kind_example.yaml"
    path.write_text(PIPELINE + extra)
    return path


def test_the_kinds_block_becomes_its_settings_and_its_default_path(tmp_path, example_kind):
    pipeline = load_pipeline(write(tmp_path, "  example: {system: 'https://cht.example.org/id'}\n"))
    assert pipeline.destination.settings == ExampleSettings(system="https://cht.example.org/id")
    assert pipeline.destination.path == "/example"


def test_problems_in_the_block_are_named_under_destination_kind(tmp_path, example_kind):
    with pytest.raises(ConfigError) as caught:
        load_pipeline(write(tmp_path, "  example: {system: 'ftp://x', colour: red}\n"))
    text = str(caught.value)
    assert "destination.example.system: required: an https:// URI" in text
    assert "destination.example.colour: unknown key" in text
    assert "kind_example.yaml" in text


def test_a_missing_block_is_checked_as_an_empty_one(tmp_path, example_kind):
    with pytest.raises(ConfigError, match="destination.example.system: required"):
        load_pipeline(write(tmp_path, ""))


def test_a_kind_without_settings_refuses_a_block_of_that_name(tmp_path):
    text = PIPELINE.replace("type: example", "type: rest") + "  path: /x\n  rest: {a: 1}\n"
    path = tmp_path / "kind_example.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"destination\.rest: unknown key"):
        load_pipeline(path)
    assert kind_settings.parse_settings("rest", None, lambda key, message: None) is None
