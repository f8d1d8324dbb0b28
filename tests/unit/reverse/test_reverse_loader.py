"""Reverse-pipeline files: every key checked, one error naming the file and each key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cht_bridge.errors import ConfigError
from cht_bridge.reverse.loader import load_reverse_pipeline, parse_reverse_pipeline
from cht_bridge.reverse.places import load_place_table

ROOT = Path(__file__).resolve().parents[3]

BASE = {
    "name": "ltfu",
    "start_date": "2026-01-01",
    "source": {"type": "fhir", "conn_id": "emr", "resource": "Patient"},
    "mapping": {"person.given_name": "doc.name.0.given.0", "place": "doc.managingOrganization.identifier.value"},
    "places": {"table": "include/places/facilities.csv", "key": "place"},
    "target": {"conn_id": "cht", "form": "LTFU_FOLLOWUP"},
}


def parse(**changes):
    return parse_reverse_pipeline({**BASE, **changes}, file="ltfu.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "include" / "reverse").glob("*.yaml")), ids=lambda p: p.name)
def test_example_files_load(path: Path) -> None:
    pipeline = load_reverse_pipeline(path)
    assert pipeline.name and pipeline.target.form.isupper()
    load_place_table(pipeline.places.table)  # the table the example names exists and is valid


def test_defaults() -> None:
    pipeline = parse()
    assert (pipeline.match.upper, pipeline.match.lower, pipeline.match.identifier_field) == (None, None, "external_id")
    assert pipeline.relevant_to == "true" and pipeline.target.people_api == "legacy"


def test_every_problem_is_named_with_the_file() -> None:
    with pytest.raises(ConfigError) as err:
        parse(
            source={"type": "fhir", "conn_id": "emr", "resource": "patient", "bogus": 1},
            mapping={"persn.phone": "doc.telecom.0.value", "person.nickname": "doc.x"},
            match={"upper": 0.4, "lower": 0.6, "region": "Kenya"},
            target={"conn_id": "cht", "form": "ltfu_followup", "people_api": "v9"},
        )
    text = str(err.value)
    assert "ltfu.yaml" in text
    for key in (
        "source.bogus",
        "source.resource",
        "mapping.persn.phone",
        "mapping.person.nickname",
        "match.lower",
        "match.region",
        "target.form",
        "target.people_api",
        "places.key",
    ):
        assert key in text, key


def test_rest_source_needs_a_path_and_a_cursor_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse(source={"type": "rest", "conn_id": "emr", "paging": {"type": "cursor", "param": "cursor"}})
    assert "source.path" in str(err.value) and "source.paging.next" in str(err.value)


def test_paging_bounds_and_task_timeout_have_defaults_and_are_read() -> None:
    pipeline = parse()
    assert (pipeline.source.max_pages, pipeline.source.clock_skew_minutes, pipeline.task_timeout_minutes) == (
        10_000,
        5,
        60,
    )
    fhir = {**BASE["source"], "max_pages": 50, "clock_skew_minutes": 0.5}
    pipeline = parse(source=fhir, task_timeout_minutes=240)
    assert (pipeline.source.max_pages, pipeline.source.clock_skew_minutes, pipeline.task_timeout_minutes) == (
        50,
        0.5,
        240,
    )
    rest = {"type": "rest", "conn_id": "emr", "path": "/l", "max_pages": 3}
    assert parse(source=rest).source.max_pages == 3


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"task_timeout_minutes": 0}, "task_timeout_minutes", "whole number from 1 to 1440"),
        ({"task_timeout_minutes": "1h"}, "task_timeout_minutes", "whole number from 1 to 1440"),
        ({"source": {**BASE["source"], "max_pages": 0}}, "source.max_pages", "whole number from 1 to 1000000"),
        ({"source": {**BASE["source"], "max_pages": 2.5}}, "source.max_pages", "whole number"),
        ({"source": {**BASE["source"], "clock_skew_minutes": -1}}, "source.clock_skew_minutes", "from 0 to 1440"),
        ({"source": {"type": "csv", "folder": "x", "max_pages": 5}}, "source.max_pages", "unknown key"),
        (
            {"source": {"type": "rest", "conn_id": "e", "path": "/l", "clock_skew_minutes": 5}},
            "source.clock_skew_minutes",
            "unknown key",
        ),
    ],
)
def test_bad_paging_bounds_and_task_timeout_are_named(changes, key, words) -> None:
    with pytest.raises(ConfigError) as err:
        parse(**changes)
    line = next(p for p in err.value.problems if p.startswith(f"{key}:"))
    assert words in line and str(err.value).startswith("ltfu.yaml")


def test_csv_source_needs_no_connection(tmp_path: Path) -> None:
    pipeline = parse(source={"type": "csv", "folder": str(tmp_path), "id_field": "contact_id"})
    assert pipeline.source.conn_id is None and pipeline.source.id_field == "contact_id"


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsource: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_reverse_pipeline(path)
    assert "broken.yaml" in str(err.value) and "line" in str(err.value)


def test_place_table_rejects_a_code_mapped_twice(tmp_path: Path) -> None:
    table = tmp_path / "places.csv"
    table.write_text("code,place_id\nA1,uuid-1\na1 ,uuid-2\n,uuid-3\n")
    with pytest.raises(ConfigError) as err:
        load_place_table(table)
    assert "line 3" in str(err.value) and "line 4" in str(err.value)


def test_place_table_lookup_ignores_case_and_spaces(tmp_path: Path) -> None:
    table = tmp_path / "places.csv"
    table.write_text("\ufeffcode,place_id,name\nKisumu  East,uuid-1,x\n")
    places = load_place_table(table)
    assert places.place_for(" kisumu east ") == "uuid-1" and places.place_for("Kisumu West") is None
    assert places.place_for(None) is None


def test_example_yaml_round_trips() -> None:
    raw = yaml.safe_load((ROOT / "include/reverse/ltfu_fhir.yaml").read_text())
    assert parse_reverse_pipeline(raw, file="x").source.resource == "Patient"


@pytest.mark.parametrize("folder", ["../../tmp/x", "include/../../etc", "lists/..", "s3://conn@bucket/lists/../../x"])
def test_a_csv_folder_that_climbs_with_dotdot_is_refused_naming_the_file_and_key(folder: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(source={"type": "csv", "folder": folder})
    line = next(p for p in err.value.problems if p.startswith("source.folder:"))
    assert "'..'" in line and str(err.value).startswith("ltfu.yaml")
    assert parse(source={"type": "csv", "folder": "include/lists/..contact"}).source.folder.endswith("..contact")
