"""The tasks' metrics reach a real StatsD listener (a UDP socket on 127.0.0.1) through Airflow's own
metrics settings (``[metrics] statsd_on/host/port/prefix``), and the breaker's state is recorded
in the state store for the CHT Bridge page."""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import receiver_connection
from tests.integration.dagrun import PREGNANCY_PIPELINE, new_pipeline, run_dag, state_store, write_pipeline

pytestmark = pytest.mark.integration

FLAG = {"path": "doc.fields.flag", "optional": True}


class StatsdListener:
    """Collects the StatsD packets sent to it: ``name -> [(value, type)]``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen: dict[str, list[tuple[float, str]]] = {}

    def drain(self, settle_s: float = 0.5) -> dict[str, list[tuple[float, str]]]:
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():  # "name:value|type[|@rate]"
                name, _, rest = line.partition(":")
                value, kind = rest.split("|")[:2]
                self.seen.setdefault(name, []).append((float(value), kind))
        return self.seen


@pytest.fixture
def statsd(monkeypatch):
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    listener = StatsdListener()
    for key, value in {"STATSD_ON": "True", "STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(listener.port),
                       "STATSD_PREFIX": "airflow"}.items():  # fmt: skip
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    yield listener
    monkeypatch.delenv("AIRFLOW__METRICS__STATSD_ON")
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    listener.sock.close()


def ours(seen: dict, name: str) -> dict[str, list[tuple[float, str]]]:
    prefix = f"airflow.cht_bridge.{name}."
    return {key.removeprefix(prefix): values for key, values in seen.items() if key.startswith(prefix)}


def test_a_run_sends_lag_sent_and_dead_lettered_and_a_replay_sends_what_it_delivered(
    cht, receiver, statsd, monkeypatch, airflow_db, tmp_path
):
    cht.seed(300)
    folder, name = new_pipeline(monkeypatch, tmp_path, cht, receiver_connection(receiver), "metrics")
    docs = sorted(
        (d for d in cht.all_docs() if d.get("type") == "data_record" and d.get("form") == "pregnancy"),
        key=lambda d: d["_id"],
    )
    for doc in docs[:3]:
        doc["fields"]["flag"] = "implausible lmp_date"
    cht.put(*docs[:3])
    receiver.configure(reject_field="flag", reject_status=400)
    write_pipeline(folder, name, cht={"conn_id": "cht_test", "db": cht.db},
                   mapping={**PREGNANCY_PIPELINE["mapping"], "flag": FLAG})  # fmt: skip

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["dead_lettered"] == 3
    metrics = ours(statsd.drain(), name)
    assert metrics["sent"] == [(summary["sent"], "c")] and summary["sent"] == len(docs) - 3
    assert metrics["dead_lettered"] == [(3.0, "c")]
    assert "failed" not in metrics  # a counter that did not move sends nothing
    ((lag, kind),) = metrics["lag_seconds"]
    assert kind == "g" and lag == pytest.approx(summary["lag_seconds"], abs=1)
    assert state_store().breakers([name])[name]["is_open"] == 0

    receiver.configure(reject_field=None)
    statsd.seen.clear()
    state, summary = run_dag(monkeypatch, folder, "cht_bridge_replay", {"pipeline": name})
    assert state == "success" and summary["sent"] == 3
    assert ours(statsd.drain(), name)["sent"] == [(3.0, "c")]


def test_a_run_stopped_by_the_breaker_counts_breaker_opened_and_the_store_shows_it_open_until_a_run_ends(
    cht, receiver, statsd, monkeypatch, airflow_db, tmp_path
):
    cht.seed(200)
    folder, name = new_pipeline(monkeypatch, tmp_path, cht, receiver_connection(receiver), "breaker")
    write_pipeline(folder, name, cht={"conn_id": "cht_test", "db": cht.db},
                   delivery={"retries": 0, "backoff_seconds": 0.01, "breaker_after": 3})  # fmt: skip
    receiver.configure(fail_rate=1.0, fail_kinds=["500"])

    state, _ = run_dag(monkeypatch, folder, name)
    assert state == "failed"
    metrics = ours(statsd.drain(), name)
    assert metrics["breaker_opened"] == [(1.0, "c")]
    breaker = state_store().breakers([name])[name]
    assert breaker["is_open"] == 1 and "times in a row" in breaker["reason"]

    receiver.configure(fail_rate=0.0)
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["sent"] > 0
    assert state_store().breakers([name])[name]["is_open"] == 0


def test_a_reverse_run_sends_rows_in_review_reports_sent_and_lag(cht_api, statsd, monkeypatch, airflow_db, tmp_path):
    from tests.integration.reverse_setup import contact_list
    from tests.integration.test_reverse_pipeline import run_reverse_dag

    folder, name, _, _ = contact_list(tmp_path, monkeypatch, cht_api)
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name)  # every question left for later
    assert state == "success"
    metrics = ours(statsd.drain(), name)
    assert metrics["rows_in_review"] == [(1.0, "g")] and xcoms["match"]["waiting_review"] == 1
    created = sum(xcoms[task].get("reports_created", 0) for task in ("write_decided", "write_reviewed"))
    assert created > 0 and sum(v for v, kind in metrics["sent"] if kind == "c") == created
    assert all(kind == "g" and 0 <= lag < 120 for lag, kind in metrics["lag_seconds"])
