"""The real outbound configs of cht.md §1.11 (cht-interoperability's FHIR pushes among them) still
reach a REST endpoint unchanged through ``type: rest`` now that ``type: fhir`` exists: imported from
``app_settings`` as people import them, run by the run code from a CHT database, and received
exactly as CHT would have sent them (the payloads ``tests/unit/mapping/test_cht_examples.py`` pins
to CHT's own semantics).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from cht_bridge.mapping.preview import load_pipelines, preview
from tests.conftest import received
from tests.unit.mapping.test_cht_examples import APP_SETTINGS, DOCS

pytestmark = pytest.mark.integration


def test_the_cht_interoperability_outbound_configs_send_the_same_payloads_through_type_rest(cht, receiver, tmp_path):
    from cht_bridge.sync import run_pipeline
    from cht_bridge.sync.resources import Endpoint, opened

    docs = [{k: v for k, v in copy.deepcopy(d).items() if k != "_rev"} for d in DOCS]
    assert not [r for r in cht.put(*docs) if "error" in r]
    pipelines = load_pipelines(APP_SETTINGS)
    assert {p.destination.type for p in pipelines} == {"rest"}  # a FHIR-shaped payload is not a fhir kind's
    stored = [cht.get(d["_id"]) for d in docs]  # with the revisions CHT gave them (the `test` push sends `rev`)
    expected = {
        (line["pipeline"], line["id"]): line["payload"] for line in preview(pipelines, stored) if "payload" in line
    }
    assert len(expected) >= 8
    user, password = receiver.credentials["username"], receiver.credentials["password"]
    for pipeline in pipelines:
        pipeline = replace(pipeline, cht_db=cht.db)
        ends = {"cht": Endpoint(cht.url, cht.user), "destination": Endpoint(receiver.url, (user, password))}
        with opened(pipeline, state_url=f"sqlite:///{tmp_path / 'state.sqlite'}", **ends) as r:
            summary = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        assert summary.failed == 0 and summary.dead_lettered == 0, (pipeline.name, summary)
    got = sorted(((i["path"], i["payload"]) for i in received(receiver)), key=repr)
    want = sorted(
        ((p.destination.path, expected[(p.name, d)]) for p in pipelines for n, d in expected if n == p.name), key=repr
    )
    assert got == want
