"""A destination kind defined here, registered under its own ``type``, runs through ``run_pipeline``
with nothing in ``sync/`` knowing it: what the FHIR, OpenMRS, DHIS2 and RapidPro kinds will do.

The kind builds one kind-specific bulk document per call (``{"records": [...]}``, like a DHIS2
``dataValueSets`` or a FHIR batch Bundle), keeps it in a list, and answers per record from rules
the test sets: delivered with its own id, retryable, or refused with a reason.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest

from cht_bridge.config import parse_pipeline
from cht_bridge.destinations import BaseDestination, Delivery, Result, register
from cht_bridge.destinations.registry import unregister
from cht_bridge.errors import ConfigError, PreflightError
from cht_bridge.sync import DryRun, replay_documents, run_pipeline
from cht_bridge.sync.resources import Endpoint, opened

pytestmark = pytest.mark.integration

KIND = "recording"


class RecordingDestination(BaseDestination):
    """A whole destination kind: pre-flight, one bulk document per call, a result per record."""

    refuse_preflight: str | None = None
    refused: dict[str, str] = {}  # doc id -> the destination's reason
    later: set[str] = set()  # doc ids answered "try again later"
    checks: list[str] = []  # one entry per pre-flight check
    sent: list[dict] = []  # the bulk documents, as the destination received them

    def __init__(self, base_url: str, path: str, conn_id: str) -> None:
        self.base_url, self.path, self.conn_id = base_url, path, conn_id

    @classmethod
    def configured(cls, session: Any, base_url: str, destination: Any, delivery: Any = None) -> RecordingDestination:
        session.close()  # this kind records to a list: it needs no HTTP session
        return cls(base_url, destination.path, destination.conn_id)

    def check(self) -> None:
        type(self).checks.append(self.conn_id)
        if self.refuse_preflight:
            raise PreflightError(self.conn_id, self.refuse_preflight)

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        bulk = {"records": [{"key": d.key, **json.loads(d.body or "null")} for d in deliveries]}
        type(self).sent.append(bulk)
        return [self._answer(d.doc_id) for d in deliveries]

    def _answer(self, doc_id: str) -> Result:
        if doc_id in self.refused:
            return Result(doc_id, False, 409, error=self.refused[doc_id])
        if doc_id in self.later:
            return Result(doc_id, False, 503, error="busy", retryable=True)
        return Result(doc_id, True, 200, destination_id=f"rec-{doc_id}")


@pytest.fixture
def kind():
    RecordingDestination.refuse_preflight = None
    RecordingDestination.refused, RecordingDestination.later = {}, set()
    RecordingDestination.checks, RecordingDestination.sent = [], []
    register(KIND, RecordingDestination)
    yield RecordingDestination
    unregister(KIND)


def reports(cht, n: int) -> list[str]:
    now = int(time.time() * 1000)
    docs = [{"_id": f"r{i:02d}", "type": "data_record", "form": "visit", "reported_date": now} for i in range(n)]
    cht.put(*docs)
    return [d["_id"] for d in docs]


def recording_pipeline(cht) -> Any:
    config = {
        "name": f"rec_{uuid.uuid4().hex[:8]}", "start_date": "2026-01-01", "cht": {"conn_id": "cht_rec", "db": cht.db},
        "relevant_to": "doc.type === 'data_record'", "mapping": {"id": "doc._id", "form": "doc.form"},
        "destination": {"type": KIND, "conn_id": "rec", "path": "/records"}, "batch_size": 4,
    }  # fmt: skip
    return parse_pipeline(config, file="rec.yaml")


def test_a_kind_defined_outside_sync_runs_through_run_pipeline_with_a_result_per_record(cht, kind, tmp_path):
    ids = reports(cht, 10)
    kind.refused = {"r03": "E7641: org unit not in the data set's hierarchy"}
    kind.later = {"r05"}
    pipeline = recording_pipeline(cht)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    given = {"cht": Endpoint(cht.url, cht.user), "destination": Endpoint("http://127.0.0.1:9"), "state_url": state}
    with opened(pipeline, **given) as r:
        assert isinstance(r.destination, RecordingDestination)  # opened by its type, through the registry
        first = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        assert kind.checks == ["rec"]  # the pre-flight, once for the whole run (3 batches)
        assert first.batches == 3 and first.sent == 8 and first.failed == 1 and first.dead_lettered == 1
        records = [rec for bulk in kind.sent for rec in bulk["records"]]
        assert sorted(rec["id"] for rec in records) == ids and all(len(rec["key"]) >= 16 for rec in records)
        assert r.store.ledger(pipeline.name, "r00")["destination_id"] == "rec-r00"
        refused = r.store.ledger(pipeline.name, "r03")
        assert refused["status"] == "dead" and refused["last_error"] == kind.refused["r03"]
        assert r.store.ledger(pipeline.name, "r05")["status"] == "failed"

        kind.later = set()
        second = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        assert kind.checks == ["rec", "rec"]  # once more: once per run
        assert second.retried == 1 and second.sent == 1 and second.failed == 0
        assert r.store.ledger(pipeline.name, "r05")["destination_id"] == "rec-r05"
        assert [rec["id"] for bulk in kind.sent[-2:] for rec in bulk["records"]] == ["r05"]  # retry, then no change

        # A replay and a dry run go through the same contract: pre-flight once each.
        kind.refused = {}
        dead = r.store.select(pipeline.name, statuses=("dead",))
        replayed = replay_documents(
            pipeline, dead, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper
        )
        assert kind.checks == ["rec"] * 3 and replayed.sent == 1
        assert r.store.ledger(pipeline.name, "r03")["destination_id"] == "rec-r03"
        sent_before, dry = len(kind.sent), DryRun(tmp_path / "dry.json")
        everything = r.store.select(pipeline.name, statuses=("delivered",))
        rehearsal = replay_documents(
            pipeline, everything, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper,
            dry_run=dry,
        )  # fmt: skip
        assert kind.checks == ["rec"] * 4 and len(kind.sent) == sent_before  # checked, nothing sent
        assert rehearsal.dry_run and dry.would_send == 10


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_refused_preflight_fails_the_run_plainly_before_anything_is_sent(cht, kind, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from cht_bridge.operators.resources import failing_plainly

    reports(cht, 6)
    kind.refuse_preflight = "data element 'cht_visits' does not exist"
    pipeline = recording_pipeline(cht)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    given = {"cht": Endpoint(cht.url, cht.user), "destination": Endpoint("http://127.0.0.1:9"), "state_url": state}
    logger, lines = logging.Logger("contract-test", logging.INFO), Lines()
    logger.addHandler(lines)
    with opened(pipeline, **given) as r:
        with pytest.raises(PreflightError, match="data element 'cht_visits' does not exist"):
            run_pipeline(
                pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper, logger=logger
            )
        assert kind.checks == ["rec"] and kind.sent == []
        assert r.store.counts(pipeline.name) == {} and r.store.checkpoint(pipeline.name) is None
        (summary_line,) = lines.lines  # the run's summary alone: no batch was read or sent
        assert " changes stopped: read=0 " in summary_line and " batches=0 " in summary_line
        # In a task it fails without retries: a person must fix the destination or the file.
        with pytest.raises(AirflowFailException, match="failed its pre-flight check"), failing_plainly():
            run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        assert kind.sent == []


def test_an_unknown_destination_type_is_refused_with_the_kinds_there_are(cht, kind):
    unregister(KIND)
    with pytest.raises(
        ConfigError, match=r"destination.type: 'recording' is not available \(available: [a-z0-9, ]*rest"
    ):
        recording_pipeline(cht)
