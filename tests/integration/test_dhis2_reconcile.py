"""The aggregate pipeline and ``cht_bridge_reconcile`` as real DAG runs: the reconciliation finds
values changed, deleted and added at DHIS2 behind the pipeline's back, writes them to its CSV and
HTML report, and with ``repost`` puts DHIS2 back to what CHT gives."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cht_bridge.aggregate.periods import period_of
from tests.integration.aggregate_setup import (
    CREDENTIALS,
    DE_REFER,
    expected,
    facilities,
    held,
    org_uid,
    pipeline_file,
    stand_in,
    write_table,
)
from tests.integration.dagrun import run_dag

pytestmark = pytest.mark.integration


def test_the_reconciliation_finds_what_changed_at_dhis2_and_repost_repairs_it(cht, airflow_db, monkeypatch, tmp_path):
    cht.seed(500, seed=3)
    docs = cht.all_docs()
    places = facilities(docs)
    org_units = {p["_id"]: org_uid(p["_id"]) for p in places}
    dhis2 = stand_in(places)
    try:
        folder = tmp_path / "pipelines"
        folder.mkdir()
        path = pipeline_file(folder, write_table(tmp_path / "ou.csv", places), db=cht.db)
        name = path.stem
        monkeypatch.setenv(f"AIRFLOW_CONN_CHT_{name.upper()}", cht.connection())
        monkeypatch.setenv(
            f"AIRFLOW_CONN_DHIS2_{name.upper()}",
            json.dumps({"conn_type": "http", "host": dhis2.url, "login": CREDENTIALS["username"],
                        "password": CREDENTIALS["password"]}),
        )  # fmt: skip
        state, summary = run_dag(monkeypatch, folder, name)
        want = expected(docs, lambda day: period_of(day, "monthly"), org_units)
        assert state == "success" and summary["delivered"] == len(want) and held(dhis2) == want

        # Behind the pipeline's back: one value edited, one deleted, one typed in that CHT does not give.
        (p1, ou1, de1), (p2, ou2, de2) = sorted(k for k in want if k[0] == "202605")[:2]
        dhis2.values.set_value(de1, p1, ou1, str(int(want[(p1, ou1, de1)]) + 7))
        dhis2.values.set_value(de2, p2, ou2, None)
        extra = next(("202606", ou, DE_REFER) for ou in org_units.values() if ("202606", ou, DE_REFER) not in want)
        dhis2.values.set_value(extra[2], extra[0], extra[1], "4")

        reports = tmp_path / "reports"
        conf = {"pipeline": name, "start": "2026-05-01", "end": "2026-07-01", "folder": str(reports)}
        state, totals = run_dag(monkeypatch, folder, "cht_bridge_reconcile", conf)
        assert state == "success"
        assert (totals["different"], totals["missing_in_dhis2"], totals["not_in_cht"]) == (1, 1, 1), totals
        assert totals["periods"] == ["202605", "202606"]
        assert totals["equal"] == sum(1 for k in want if k[0] in ("202605", "202606")) - 2
        rows = list(csv.DictReader(Path(totals["csv"]).read_text(encoding="utf-8").splitlines()))
        found = {(r["period"], r["org_unit"], r["data_element"]): (r["cht"], r["dhis2"], r["difference"]) for r in rows}
        assert found == {
            (p1, ou1, de1): (str(int(want[(p1, ou1, de1)])), str(int(want[(p1, ou1, de1)]) + 7), "different"),
            (p2, ou2, de2): (str(int(want[(p2, ou2, de2)])), "", "missing_in_dhis2"),
            extra: ("", "4", "not_in_cht"),
        }
        assert ou1 in Path(totals["html"]).read_text(encoding="utf-8")

        state, totals = run_dag(monkeypatch, folder, "cht_bridge_reconcile", {**conf, "repost": True})
        assert state == "success" and totals["reposted_periods"] == ["202605", "202606"]
        assert held(dhis2) == want, "the re-post put DHIS2 back to what CHT gives"
        state, totals = run_dag(monkeypatch, folder, "cht_bridge_reconcile", conf)
        assert totals["differences"] == 0 and totals["equal"] == totals["cht_values"] == totals["dhis2_values"]

        # The pipeline's own Params recompute past months; re-sending documents is refused.
        state, summary = run_dag(monkeypatch, folder, name, {"start": "2026-05-01", "end": "2026-06-01"})
        assert state == "success" and summary["kind"] == "window" and summary["periods"] == ["202605"]
        assert summary["delivered"] == sum(1 for k in want if k[0] == "202605") and held(dhis2) == want
        state, _ = run_dag(monkeypatch, folder, name, {"start": "2026-05-01", "end": "2026-06-01", "mode": "all"})
        assert state == "failed"
    finally:
        dhis2.stop()
