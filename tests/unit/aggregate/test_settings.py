"""``destination.dhis2`` with ``kind: aggregate`` is checked at parse time, every problem under its key."""

from pathlib import Path

import pytest

from cht_bridge.config import load_pipeline
from cht_bridge.config.kinds.dhis2_aggregate import AggregateSettings
from cht_bridge.destinations import registry
from cht_bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "include/pipelines/dhis2_monthly_aggregates.yaml"


@pytest.fixture(autouse=True)
def dhis2_kind():
    """``dhis2`` as a destination type, whether or not its destination module is merged here yet."""
    added = "dhis2" not in registry.kinds()
    if added:
        registry.register("dhis2", object)
    yield
    if added:
        registry.unregister("dhis2")


def test_the_demo_pipeline_parses_into_aggregate_settings():
    p = load_pipeline(DEMO)
    s = p.destination.settings
    assert isinstance(s, AggregateSettings)
    assert (s.kind, s.period, s.time_zone, s.org_unit.level, s.absent) == (
        "aggregate",
        "monthly",
        "Africa/Nairobi",
        "health_center",
        "delete",
    )
    assert [v.aggregate for v in s.data_values] == ["count", "distinct_patients", "count", "count", "sum"]
    assert p.destination.path == "/api"


def test_every_bad_key_is_named(tmp_path):
    text = (
        DEMO.read_text()
        .replace("period: monthly", "period: fortnightly")
        .replace("time_zone: Africa/Nairobi", "time_zone: Mars/Olympus")
        .replace("level: health_center", "level: 0\n      field: ou")
        .replace("aggregate: sum", "aggregate: median")
        .replace("data_element: CHTassessm1", "data_element: CHTpregReg1")
        .replace("kind: aggregate", "kind: aggregate\n    bogus: 1")
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    message = str(err.value)
    for key in (
        "destination.dhis2.period",
        "destination.dhis2.time_zone",
        "destination.dhis2.org_unit.level",
        "destination.dhis2.org_unit: needs exactly one",
        "destination.dhis2.data_values.4.aggregate",
        "destination.dhis2.data_values.2: another data value",
        "destination.dhis2.bogus",
    ):
        assert key in message, key


def test_a_sum_needs_its_field(tmp_path):
    path = tmp_path / "sum.yaml"
    path.write_text(DEMO.read_text().replace("        field: doc.fields.anc_visits\n", ""))
    with pytest.raises(ConfigError, match="data_values.4.field: required with aggregate sum"):
        load_pipeline(path)


def test_the_attribute_id_scheme_is_refused_for_aggregates_too(tmp_path):
    text = DEMO.read_text()
    assert "id_scheme: UID" in text
    path = tmp_path / "attr.yaml"
    path.write_text(text.replace("id_scheme: UID", "id_scheme: ATTRIBUTE", 1))
    with pytest.raises(ConfigError) as refused:
        load_pipeline(path)
    assert "destination.dhis2.id_scheme: ATTRIBUTE needs the attribute's UID" in str(refused.value)


def test_codes_and_names_may_hold_a_slash(tmp_path):
    path = tmp_path / "names.yaml"
    text = DEMO.read_text().replace("id_scheme: UID", "id_scheme: NAME", 1)
    path.write_text(text.replace("data_element: ", "data_element: HIV/AIDS ", 1))
    s = load_pipeline(path).destination.settings
    assert s.id_scheme == "NAME" and s.data_values[0].data_element.startswith("HIV/AIDS ")
