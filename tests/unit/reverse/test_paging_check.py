"""A REST source's ``paging`` block is checked once: the pipeline file and the source refuse the same
blocks, with the same reasons, and the source runs with the defaults the file check filled in."""

from __future__ import annotations

import pytest
import requests

from cht_bridge.errors import ConfigError
from cht_bridge.reverse.loader import parse_reverse_pipeline
from cht_bridge.reverse.model import checked_paging
from cht_bridge.reverse.sources.rest import JsonRestSource

REST = {"type": "rest", "conn_id": "emr", "path": "/api/list", "items": "data"}
FILE = {
    "name": "list",
    "start_date": "2026-01-01",
    "mapping": {"person.given_name": "doc.name", "place": "doc.facility"},
    "places": {"table": "include/places/facilities.csv", "key": "place"},
    "target": {"conn_id": "cht", "form": "LTFU_FOLLOWUP"},
}


def file_problems(paging) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_reverse_pipeline({**FILE, "source": {**REST, "paging": paging}}, file="list.yaml")
    return str(caught.value)


def source_problems(paging) -> str:
    with pytest.raises(ConfigError) as caught:
        JsonRestSource(requests.Session(), "http://127.0.0.1:9", "/x", "data", "id", paging=paging, conn_id="emr")
    return str(caught.value)


@pytest.mark.parametrize(
    ("paging", "key", "reason"),
    [
        ({"type": "offset", "page_size": 0}, "page_size", "must be a positive integer, not 0"),
        ({"type": "cursor", "param": "c"}, "next", "required for cursor paging"),
        ({"type": "cursor", "next": "n", "nxt": "n"}, "nxt", "unknown key (allowed: next, param, type)"),
        ({"type": "pages"}, "", "must be a mapping with type cursor, offset or none"),
    ],
)
def test_the_file_and_the_source_refuse_the_same_blocks(paging, key, reason):
    where = f"paging.{key}" if key else "paging"
    assert f"source.{where}: {reason}" in file_problems(paging)
    assert f"{where}: {reason}" in source_problems(paging)


def test_defaults_are_filled_once():
    assert checked_paging({"type": "offset"}) == (
        {"type": "offset", "param": "offset", "limit_param": "limit", "page_size": 100},
        [],
    )
    pipeline = parse_reverse_pipeline({**FILE, "source": {**REST, "paging": {"type": "cursor", "next": "n"}}}, file="f")
    assert pipeline.source.paging == {"type": "cursor", "param": "cursor", "next": "n"}
