"""The RapidPro runs source with several flows and a page budget, against the RapidPro stand-in and
the local CHT API: a backlog on one flow neither fails the run nor keeps the other flows from being
read, and goes on next run from where it stopped; the ``after`` overlap re-reads runs already
written without writing them again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cht_bridge.http.origin import OriginAuth, ScopedSession
from cht_bridge.mapping import Mapper
from cht_bridge.reverse.run import receive
from cht_bridge.reverse.sources.rapidpro import RapidProRunsSource
from cht_bridge.state import StateStore
from cht_bridge.state.inbound import InboundLedger
from standins.rapidpro import RapidProStandIn
from tests.integration.test_rapidpro_reverse import (
    TOKEN,
    screening_pipeline,
    screening_reports,
    seed_runs,
    whole_run,
)
from tests.integration.test_rapidpro_reverse import source as pipeline_source

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ANSWERS = {"symptoms": {"value": "no", "category": "No"}}


def runs_source(rapidpro: RapidProStandIn, flows: list[str], max_pages: int) -> RapidProRunsSource:
    session = ScopedSession()
    session.auth = OriginAuth(rapidpro.url, headers={"Authorization": f"Token {TOKEN}"})
    return RapidProRunsSource(session, rapidpro.url, flows, conn_id="rapidpro_test", max_pages=max_pages)


def read(pipeline: Any, source: RapidProRunsSource, ledger: InboundLedger) -> dict[str, Any]:
    mapper = Mapper(pipeline.name, pipeline.relevant_to, pipeline.mapping, source=pipeline.file)
    try:
        return receive(pipeline, source, mapper, ledger).counts
    finally:
        mapper.close()


def stored_ids(ledger: InboundLedger, pipeline: Any) -> list[str]:
    return [row.source_id for row in ledger.rows(pipeline.name, ["received", "unplaced", "failed", "done"])]


@pytest.fixture
def workspace(tmp_path):
    with RapidProStandIn(TOKEN, page_size=2) as rapidpro:
        store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        yield rapidpro, store
        store.close()


def test_a_backlog_on_one_flow_neither_fails_the_run_nor_starves_the_next_flow(tmp_path, workspace):
    rapidpro, store = workspace
    busy, quiet = rapidpro.add_flow("Bulk screening"), rapidpro.add_flow("Follow-up")
    backlog = [
        rapidpro.add_run(busy, f"tel:+2547120001{i:02d}", ANSWERS, modified_on=T0 + timedelta(minutes=i))["uuid"]
        for i in range(7)
    ]  # four pages of two
    late = rapidpro.add_run(quiet, "tel:+254712000200", ANSWERS, modified_on=T0 + timedelta(hours=1))["uuid"]
    pipeline = screening_pipeline(tmp_path, busy)
    ledger = InboundLedger(store)

    first = read(pipeline, runs_source(rapidpro, [busy, quiet], max_pages=3), ledger)

    # The busy flow took its turn twice, the quiet one once: the quiet flow's run is in.
    assert first["pages"] == 3 and first["received"] == 5, first
    assert first["flows_with_more"] == 1
    assert late in stored_ids(ledger, pipeline)
    mark = ledger.checkpoint(pipeline.name)
    assert mark[busy] == {"modified_on": (T0 + timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "more": True}
    assert mark[quiet] == (T0 + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    # The next run goes on from where the busy flow stopped (not the overlap before it) and finishes.
    second = read(pipeline, runs_source(rapidpro, [busy, quiet], max_pages=3), ledger)
    assert second["received"] == 3 and second["flows_with_more"] == 0, second  # runs 4, 5, 6
    assert sorted(stored_ids(ledger, pipeline)) == sorted([*backlog, late])
    third = read(pipeline, runs_source(rapidpro, [busy, quiet], max_pages=3), ledger)
    assert third["received"] == 0 and third["flows_with_more"] == 0
    assert len(stored_ids(ledger, pipeline)) == 8  # each run once


def test_a_flow_whose_overlap_window_holds_more_pages_than_a_run_reads_still_moves_on(tmp_path, workspace):
    """Ten runs within ten seconds, two pages of two a run: resuming 60 s before the watermark would
    read the same four runs every run; resuming where the read stopped gets through them all."""
    rapidpro, store = workspace
    flow = rapidpro.add_flow("Bulk screening")
    for i in range(10):
        rapidpro.add_run(flow, f"tel:+2547120003{i:02d}", ANSWERS, modified_on=T0 + timedelta(seconds=i))
    pipeline = screening_pipeline(tmp_path, flow)
    ledger = InboundLedger(store)
    received = []
    for _ in range(8):
        counts = read(pipeline, runs_source(rapidpro, [flow], max_pages=2), ledger)
        received.append(counts["received"])
        if counts["flows_with_more"] == 0:
            break
    assert sum(received) == 10 and len(stored_ids(ledger, pipeline)) == 10, received
    assert counts["flows_with_more"] == 0


def test_max_pages_below_the_number_of_flows_is_refused_with_the_key():
    from cht_bridge.errors import ConfigError
    from cht_bridge.reverse.loader import parse_reverse_pipeline

    raw = {
        "name": "rp",
        "start_date": "2026-01-01",
        "source": {"type": "rapidpro", "conn_id": "rapidpro_test", "flows": ["a", "b", "c"], "max_pages": 2},
        "mapping": {"report.x": "doc.uuid"},
        "places": {"table": "places.csv", "key": "place"},
        "target": {"conn_id": "cht_api_test", "form": "SELF_SCREENING"},
    }
    with pytest.raises(ConfigError, match=r"source\.max_pages"):
        parse_reverse_pipeline(raw, file="rp.yaml")


def test_the_overlap_re_reads_written_runs_without_writing_them_again(tmp_path, cht_api):
    """Runs already written to CHT, read again by the ``after`` overlap (here an hour wide, so every
    run is in it), create nothing; a run committed late with an older ``modified_on`` is read once."""
    from cht_bridge.cht.api import ChtApiClient
    from tests.integration.reverse_setup import seed_area

    seed_area(cht_api.db)
    with RapidProStandIn(TOKEN, page_size=2) as rapidpro:
        flow = rapidpro.add_flow("Self screening")
        seed_runs(rapidpro, flow)
        store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            plain = screening_pipeline(tmp_path, flow)
            pipeline = replace(plain, source=replace(plain.source, overlap_seconds=3600.0))
            api = ChtApiClient(cht_api.url, "medic", cht_api.online, conn_id="cht_api_test")
            ledger = InboundLedger(store)
            whole_run(pipeline, rapidpro, ledger, api)
            from cht_bridge.reverse.choices import NEW, Choice
            from cht_bridge.reverse.run import apply_choice, write_ready

            for key in ledger.review_keys(pipeline.name):
                apply_choice(pipeline, ledger, tuple(key), NEW, "reviewer")
            write_ready(pipeline, ledger, api)
            written = len(screening_reports(cht_api))
            assert written == 3

            # Every run is inside the re-read window: all are read again, none is new.
            again = whole_run(pipeline, rapidpro, ledger, api)
            assert again["receive"]["read"] == 4 and again["receive"]["unchanged"] == 4, again["receive"]
            assert again["receive"]["received"] == 0 and again["write"]["reports_created"] == 0
            assert len(screening_reports(cht_api)) == written

            # A run that committed late, stamped before the watermark but inside the overlap.
            rapidpro.add_run(flow, "tel:+254712000001", {"symptoms": {"value": "yes", "category": "Yes"}},
                             modified_on=T0 + timedelta(minutes=2, seconds=30))  # fmt: skip
            late = whole_run(pipeline, rapidpro, ledger, api)
            assert late["receive"]["received"] == 1, late["receive"]
            # Known by its phone alone, which a household shares: a person decides, the number's
            # owner first (not Brian, whose number is one digit off, in the same household).
            assert late["match"]["review"] == 1 and late["write"]["reports_created"] == 0, late["match"]
            (key,) = ledger.review_keys(pipeline.name)
            row = ledger.get(pipeline.name, *key)
            assert row.candidates[0]["id"] == "p-achieng", row.candidates
            apply_choice(pipeline, ledger, tuple(key), Choice.link(0), "reviewer")
            assert write_ready(pipeline, ledger, api).counts["reports_created"] == 1
            assert len(screening_reports(cht_api)) == written + 1
            assert whole_run(pipeline, rapidpro, ledger, api)["write"]["reports_created"] == 0
            assert len(screening_reports(cht_api)) == written + 1
            assert pipeline_source(pipeline, rapidpro).overlap == timedelta(hours=1)
        finally:
            store.close()


def test_an_unplaced_runs_reason_and_log_show_codes_but_never_a_free_text_answer(tmp_path, cht_api, caplog):
    """Two community members unknown to CHT: one typed where they live (free text), one answered a
    code the place table lacks. Both wait as ``unplaced``; the reason shows the code, not the text."""
    import logging

    from cht_bridge.cht.api import ChtApiClient
    from tests.integration.reverse_setup import seed_area

    not_a_code = "an answer that is not a place code"
    seed_area(cht_api.db)
    typed = "near Mama Achieng's shop, Nyalenda"
    with RapidProStandIn(TOKEN, page_size=2) as rapidpro:
        flow = rapidpro.add_flow("Self screening")
        rapidpro.add_run(flow, "tel:+254733000401", {**ANSWERS, "village": {"value": typed, "category": typed}},
                         modified_on=T0)  # fmt: skip
        rapidpro.add_run(flow, "tel:+254733000402", {**ANSWERS, "village": {"value": "x", "category": "MFL-999"}},
                         modified_on=T0 + timedelta(minutes=1))  # fmt: skip
        store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            pipeline = screening_pipeline(tmp_path, flow)
            api = ChtApiClient(cht_api.url, "medic", cht_api.online, conn_id="cht_api_test")
            ledger = InboundLedger(store)
            with caplog.at_level(logging.INFO):
                counts = whole_run(pipeline, rapidpro, ledger, api)
            assert counts["match"]["unplaced"] == 2, counts
            reasons = sorted(row.reason for row in ledger.rows(pipeline.name, ["unplaced"]))
        finally:
            store.close()
    assert len(reasons) == 2
    coded, free = sorted(reasons, key=lambda r: "MFL-999" not in r)
    for text in [*reasons, caplog.text]:
        assert "Achieng" not in text and "Nyalenda" not in text and "+25473300040" not in text
    assert "'MFL-999'" in coded and not_a_code not in coded
    assert not_a_code in free and pipeline.places.table in free  # what a person fixing it needs
    assert "MFL-999" in caplog.text  # the log lists the code to add to the place table


def test_a_written_run_whose_modified_on_moves_is_not_written_again(tmp_path, cht_api):
    """One conversation, one report: a completed run RapidPro touches later (a new ``modified_on``,
    the same answers) is read again as a new version, and the ledger, keyed for this source by the
    run's uuid once a row of it went on, takes it as already received."""
    from cht_bridge.cht.api import ChtApiClient
    from tests.integration.reverse_setup import seed_area

    seed_area(cht_api.db)
    with RapidProStandIn(TOKEN, page_size=2) as rapidpro:
        flow = rapidpro.add_flow("Self screening")
        run = rapidpro.add_run(flow, "tel:+254712000001", {**ANSWERS, "name": "Achieng Otieno"}, modified_on=T0)
        store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            pipeline = screening_pipeline(tmp_path, flow)
            api = ChtApiClient(cht_api.url, "medic", cht_api.online, conn_id="cht_api_test")
            ledger = InboundLedger(store)
            first = whole_run(pipeline, rapidpro, ledger, api)
            assert first["write"]["reports_created"] == 1, first
            rapidpro.update_run(run["uuid"])  # still completed, answers unchanged, modified_on now
            again = whole_run(pipeline, rapidpro, ledger, api)
            assert again["receive"]["read"] == 1 and again["receive"]["received"] == 0, again["receive"]
            assert again["receive"]["already_received"] == 1
            assert again["write"]["reports_created"] == 0
            assert len(screening_reports(cht_api)) == 1
            assert ledger.counts(pipeline.name) == {"done": 1}
        finally:
            store.close()
