"""A document whose values make no resource is planned as a failure with its reason and kept in
a real SQLite ledger as a dead letter; the other documents of the page are sent as resources."""

from __future__ import annotations

import copy
import json

from cht_bridge.cht import CouchClient
from cht_bridge.config import parse_pipeline
from cht_bridge.destinations import BaseDestination, Delivery, Result
from cht_bridge.source import Page
from cht_bridge.state import StateStore
from cht_bridge.sync import Changes, RunContext, RunSummary
from cht_bridge.sync.plan import plan_page
from tests.unit.fhir.test_templates import REFERRAL


class Unused(BaseDestination):
    """Planning sends nothing; a send here would be a defect."""

    path = "/fhir"

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        raise AssertionError("planning must not send")


def test_a_template_failure_is_a_dead_letter_with_its_reason(tmp_path):
    config = {
        "name": "refs", "start_date": "2026-01-01", "cht": {"conn_id": "cht"}, "relevant_to": "true",
        "destination": {"conn_id": "emr", "path": "/fhir"},
        "fhir": {"identifier_system": "https://cht.example.org/id",
                 "resources": [{"template": "patient", "from": "doc.patient"}, {"template": "service_request"}]},
    }  # fmt: skip
    pipeline = parse_pipeline(config, file="refs.yaml")
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    ctx = RunContext(pipeline, CouchClient("http://127.0.0.1:9", "medic", None, conn_id="cht"), Unused(), store, None,
                     RunSummary("refs"))  # fmt: skip
    try:
        bad = copy.deepcopy(REFERRAL) | {"_id": "bad"}
        bad["patient"]["date_of_birth"] = "1990-02-30"
        good = copy.deepcopy(REFERRAL) | {"_id": "good"}
        mapped = ctx.mapper.map([bad, good])
        page = Page(2, 0, 0, 0, ["bad", "good"], ["1-a", "1-a"], "9-z", [], [1767225600000] * 2)
        batch = plan_page(ctx, Changes(0), page, mapped)
        (delivery,) = batch.deliveries
        assert delivery.doc_id == "good"
        assert [r["resourceType"] for r in json.loads(delivery.body)] == ["Patient", "ServiceRequest"]
        (failed,) = batch.outcomes
        store.record("refs", batch.outcomes, "9-z")
        row = store.ledger("refs", "bad")
        assert row["status"] == "dead" and failed.retryable is False
        assert row["last_error"] == (
            "FHIR template error for 'refs/resources.0.date_of_birth' on source document 'bad': is not a date (YYYY-MM-DD)"
        )
    finally:
        ctx.mapper.close()
        store.close()
