"""``bench.local_cht`` answers an aggregate run's CHT reads as CouchDB does, so the million-report
benchmark (``bench.dhis2 --in-process``) measures a run that counts right: a run through it stores
at the DHIS2 stand-in exactly the values counted here from the generated documents, over many
pages, and its ``reports_by_date`` pages are ordered and resume as CouchDB's do."""

from __future__ import annotations

import copy
import json

import pytest

from bench.local_cht import LocalCht, load
from cht_bridge.aggregate.periods import period_of
from cht_bridge.aggregate.run import _poster, run_aggregate
from cht_bridge.state import StateStore
from cht_bridge.sync.resources import Endpoint
from standins.generate import generate
from tests.integration.aggregate_setup import (
    CREDENTIALS,
    expected,
    facilities,
    held,
    org_uid,
    pipeline_file,
    stand_in,
    write_table,
)
from tests.integration.aggregate_setup import load as load_pipeline
from tests.integration.test_dhis2_aggregate import dhis2_kind  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """3,000 generated documents, as generated, and loaded into a SQLite file."""
    docs = list(generate(3000, seed=7))
    path = tmp_path_factory.mktemp("local_cht") / "cht.sqlite"
    counts = load(path, iter(copy.deepcopy(docs)))
    return docs, path, counts


def test_a_run_through_it_stores_the_values_counted_independently(stream, tmp_path):
    docs, path, counts = stream
    places = facilities(docs)
    assert [p["_id"] for p in counts["health_centres"]] == [p["_id"] for p in places]
    dhis2 = stand_in(places)
    client = LocalCht(path)
    pipeline = load_pipeline(
        pipeline_file(tmp_path, write_table(tmp_path / "ou.csv", places), "monthly", top={"batch_size": 97})
    )
    poster = _poster(pipeline, Endpoint(dhis2.url, (CREDENTIALS["username"], CREDENTIALS["password"])))
    store = StateStore(f"sqlite:///{tmp_path}/state.db")
    try:
        summary = run_aggregate(pipeline, client=client, poster=poster, store=store)
        want = expected(docs, lambda day: period_of(day, "monthly"), {p["_id"]: org_uid(p["_id"]) for p in places})
        assert held(dhis2) == want
        assert summary.delivered == len(want) and summary.unplaced == 0
        assert summary.read == len(docs)
        assert client.requests["_changes"] > 30 and client.requests["reports_by_date"] > 20  # many pages
    finally:
        poster.close()
        store.close()
        dhis2.stop()


def test_reports_by_date_pages_are_ordered_and_resume_at_the_cursor_row_as_couchdbs_do(stream):
    docs, path, _ = stream
    client = LocalCht(path)
    reports = sorted((d["reported_date"], d["_id"]) for d in docs if d.get("type") == "data_record" and d.get("form"))
    start, end = reports[10][0], reports[60][0]

    def page(startkey, limit, docid=None):
        params = {"startkey": json.dumps([startkey]), "endkey": json.dumps([end]), "inclusive_end": "false",
                  "include_docs": "true", "limit": limit, **({"startkey_docid": docid} if docid else {})}  # fmt: skip
        return [
            (r["key"][0], r["id"])
            for r in json.loads(client.view_text("medic-client", "reports_by_date", params))["rows"]
        ]

    first = page(start, 30)
    assert first == reports[10:40]
    second = page(first[-1][0], 30, first[-1][1])
    assert second[0] == first[-1] and second == reports[39:60]  # the cursor row again; endkey excluded
    row = json.loads(client.all_docs_text([reports[10][1], "no-such-id"]))["rows"]
    assert row[0]["doc"]["_id"] == reports[10][1] and row[1] == {"key": "no-such-id", "error": "not_found"}
