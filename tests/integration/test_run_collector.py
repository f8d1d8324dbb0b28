"""A sync run moves documents with the cycle collector's young-generation threshold raised
(``sync/collector.py``), and the task's process has its own threshold back when the run ends,
also when the run stops."""

from __future__ import annotations

import gc

import pytest

from cht_bridge.destinations import Delivery, Result
from cht_bridge.sync import run_pipeline
from cht_bridge.sync.collector import RUN_THRESHOLD
from cht_bridge.sync.resources import Endpoint, opened
from tests.integration.test_destination_contract import (  # noqa: F401 - kind is a fixture
    RecordingDestination,
    kind,
    recording_pipeline,
    reports,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def default_threshold():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("kind", "default_threshold")
def test_documents_are_sent_with_the_raised_threshold_and_it_is_put_back_after(cht, tmp_path, monkeypatch):
    seen: list[tuple[int, int, int]] = []
    send = RecordingDestination.send

    def recording(self: RecordingDestination, deliveries: list[Delivery]) -> list[Result]:
        seen.append(gc.get_threshold())
        return send(self, deliveries)

    monkeypatch.setattr(RecordingDestination, "send", recording)
    reports(cht, 6)
    pipeline = recording_pipeline(cht)
    state = f"sqlite:///{tmp_path / 'state.db'}"
    given = {"cht": Endpoint(cht.url, cht.user), "destination": Endpoint("http://127.0.0.1:9"), "state_url": state}
    with opened(pipeline, **given) as r:
        summary = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        assert summary.sent == 6 and len(seen) == 2  # two batches of 4 and 2
        assert seen == [(RUN_THRESHOLD, 10, 10)] * 2
        assert gc.get_threshold() == (700, 10, 10)

        def broken(self: RecordingDestination, deliveries: list[Delivery]) -> list[Result]:
            seen.append(gc.get_threshold())
            raise RuntimeError("the destination kind broke")

        monkeypatch.setattr(RecordingDestination, "send", broken)
        cht.put(*({"_id": f"s{i}", "type": "data_record", "form": "visit", "reported_date": 1} for i in range(2)))
        with pytest.raises(RuntimeError):
            run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        assert seen[-1] == (RUN_THRESHOLD, 10, 10)
        assert gc.get_threshold() == (700, 10, 10)
