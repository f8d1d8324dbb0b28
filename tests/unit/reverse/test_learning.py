"""Matching that learns, in the reverse pipelines: which model a run uses (the newest that passed,
else the shipped one), review answers kept as labelled pairs, and the training DAG's work."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cht_bridge.errors import ConfigError
from cht_bridge.matching.model import save_model_file
from cht_bridge.reverse.choices import SKIP, Choice
from cht_bridge.reverse.learning import incoming_key, model_for, train_for
from cht_bridge.reverse.loader import parse_reverse_pipeline
from cht_bridge.reverse.review import review_order
from cht_bridge.reverse.run import apply_choice, match_config
from cht_bridge.state.inbound import RECEIVED, REVIEW, InboundLedger, InboundRow
from cht_bridge.state.matching import MatchingStore
from cht_bridge.state.store import StateStore
from standins.populations import population

ROOT = Path(__file__).resolve().parents[3]
BASE = {
    "name": "ltfu",
    "start_date": "2026-01-01",
    "source": {"type": "fhir", "conn_id": "emr", "resource": "Patient"},
    "mapping": {"person.given_name": "doc.name.0.given.0", "place": "doc.managingOrganization.identifier.value"},
    "places": {"table": "include/places/facilities.csv", "key": "place"},
    "target": {"conn_id": "cht", "form": "LTFU_FOLLOWUP"},
}


def pipeline(**match):
    return parse_reverse_pipeline({**BASE, "match": match}, file="ltfu.yaml")


@pytest.fixture
def ledger(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield InboundLedger(store)
    store.close()


def _model(upper: float, ok: bool) -> dict:
    checks = {"thresholds chosen on a list": ok}
    return {
        "comparisons": [{"output_column_name": "names"}],
        "cht_bridge": {"upper": upper, "lower": 0.2, "checks": checks},
    }


def test_the_run_uses_the_newest_passing_model_and_falls_back_to_the_shipped_one(ledger) -> None:
    learned = pipeline(model="learned")
    store = MatchingStore(ledger.store)
    assert model_for(learned, store) == (None, "shipped (no trained model has passed its checks yet)")
    store.add_model(_model(0.91, ok=False), passed=False, report="")
    assert model_for(learned, store)[0] is None
    store.add_model(_model(0.92, ok=True), passed=True, report="# report")
    store.add_model(_model(0.93, ok=False), passed=False, report="")
    model, origin = model_for(learned, store)
    assert model["cht_bridge"]["upper"] == 0.92 and origin.startswith("learned #2")
    store.add_model(_model(0.94, ok=True), passed=True, report="")
    assert model_for(learned, store)[0]["cht_bridge"]["upper"] == 0.94
    config = match_config(learned, model_for(learned, store)[0])
    assert (config.upper, config.lower) == (0.94, 0.2)
    # the pipeline file's own threshold wins over the model's
    assert match_config(pipeline(model="learned", upper=0.999), model).upper == 0.999
    # no model named: the shipped one, whatever the store holds
    assert model_for(pipeline(), store) == (None, "shipped")
    assert match_config(pipeline()).model is None


def test_only_the_newest_models_are_kept(ledger) -> None:
    store = MatchingStore(ledger.store)
    for upper in (0.9, 0.91, 0.92):
        store.add_model(_model(upper, ok=True), passed=True, report="", keep=2)
    assert [m.model["cht_bridge"]["upper"] for m in store.models()] == [0.92, 0.91]


def test_a_model_file_is_checked_at_parse_time_and_used(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    save_model_file(path, _model(0.97, ok=True))
    model, origin = model_for(pipeline(model=str(path)), None)
    assert model["cht_bridge"]["upper"] == 0.97 and origin == f"file {path}"
    with pytest.raises(ConfigError, match="match.model"):
        pipeline(model=str(tmp_path / "missing.json"))


def _review_row(ledger: InboundLedger, source_id: str, probability: float) -> InboundRow:
    row = InboundRow("ltfu", source_id, "1", RECEIVED, record={"person": {"given_name": "Mary", "phone": "0712"}})
    ledger.receive("ltfu", [row], None, None)
    row = ledger.get("ltfu", source_id, "1")
    row.status, row.place_id, row.probability = REVIEW, "hc-1", probability
    row.candidates = [{"id": "p-1", "probability": probability}, {"id": "p-2", "probability": 0.1}]
    ledger.save(row)
    return row


def test_every_answer_is_kept_as_labelled_pairs(ledger) -> None:
    p = pipeline(model="learned")
    for source_id in ("a", "b", "c"):
        _review_row(ledger, source_id, 0.6)
    apply_choice(p, ledger, ("a", "1"), Choice.link(1), "ana")
    apply_choice(p, ledger, ("b", "1"), Choice.parse("Create a new person"), "ana")
    apply_choice(p, ledger, ("c", "1"), SKIP, "ana")
    apply_choice(p, ledger, ("a", "1"), Choice.link(0), "bob")  # already answered: nothing more
    labels = [(x.source_id, x.existing_id, x.match) for x in MatchingStore(ledger.store).labels(["ltfu"])]
    assert labels == [
        ("a", "p-1", False),
        ("a", "p-2", True),
        ("b", "p-1", False),
        ("b", "p-2", False),
        ("c", None, None),
    ]
    kept = MatchingStore(ledger.store).labels()[0]
    assert kept.person == {"given_name": "Mary", "phone": "0712"} and kept.place_id == "hc-1"


def test_questions_are_asked_most_uncertain_first(ledger) -> None:
    rows = [_review_row(ledger, sid, p) for sid, p in (("sure", 0.97), ("even", 0.52), ("unsure", 0.3))]
    assert review_order(rows) == [["even", "1"], ["unsure", "1"], ["sure", "1"]]


def _doc(person) -> dict:
    lineage = None
    for place in reversed(person.area):
        lineage = {"_id": place, **({"parent": lineage} if lineage else {})}
    return {
        "_id": person.id, "type": "person", "name": f"{person.given_name} {person.family_name}", "sex": person.sex,
        "date_of_birth": person.date_of_birth, "phone": person.phone, "parent": lineage,
    }  # fmt: skip


def test_training_reads_the_areas_the_ledger_and_the_labels(ledger, tmp_path: Path) -> None:
    data = population(500, 300, seed=12)
    areas = sorted({p.area[1] for p in data.existing})
    table = tmp_path / "places.csv"
    table.write_text("code,place_id\n" + "".join(f"{a.upper()},{a}\n" for a in areas))
    p = parse_reverse_pipeline({**BASE, "match": {"model": "learned"}, "places": {"table": str(table)}}, file="x.yaml")
    docs = [_doc(person) for person in data.existing]
    rows = []
    for person in data.incoming:
        fields = {"given_name": person.given_name, "family_name": person.family_name, "sex": person.sex}
        fields |= {"date_of_birth": person.date_of_birth, "phone": person.phone}
        rows.append(InboundRow("ltfu", person.id, "1", RECEIVED, record={"person": fields, "place": areas[0]}))
    ledger.receive("ltfu", rows, None, None)
    for row in ledger.rows("ltfu", [RECEIVED]):
        row.place_id = areas[0]
        ledger.save(row)
    # one answered question whose row is closed since: it trains from the person kept with the label
    truth = next(pid for pid, real in data.truth.items() if real)
    MatchingStore(ledger.store).add_answer(
        "ltfu", "gone-1", [data.truth[truth]], 0, False, rows[0].record["person"], areas[0], "ana"
    )
    asked: list[str] = []

    def persons_under(pipeline, place_id):
        asked.append(place_id)
        return [d for d in docs if place_id in str(d["parent"])]

    summary = train_for([p], ledger, persons_under, seed=5)
    assert sorted(asked) == areas
    assert (summary["existing"], summary["incoming"], summary["labels"]) == (500, 301, 1)
    stored = MatchingStore(ledger.store).models()[0]
    assert stored.id == summary["model_id"] and stored.passed == summary["passed"]
    assert stored.report.startswith("# Matcher training report")
    assert incoming_key("ltfu", "gone-1") == "ltfu|gone-1"
    if summary["passed"]:
        assert model_for(p, MatchingStore(ledger.store))[0] == stored.model
    # the same data and seed: the same model
    again = train_for([p], ledger, persons_under, seed=5)
    first, second = (m.model for m in MatchingStore(ledger.store).models()[1::-1])
    first["cht_bridge"].pop("seconds"), second["cht_bridge"].pop("seconds")
    assert first == second and again["model_id"] != summary["model_id"]


def test_the_training_dag_is_monthly_with_one_task() -> None:
    spec = importlib.util.spec_from_file_location("train_dag", ROOT / "dags" / "cht_bridge_matching_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.cht_bridge_matching_train
    assert dag.dag_id == "cht_bridge_matching_train" and [t.task_id for t in dag.tasks] == ["train"]
    assert dag.schedule == "@monthly" and not dag.catchup
