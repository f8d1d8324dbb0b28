"""Every task has an execution_timeout, and it bounds work, not a person's thinking time.

On Airflow 3.3 a human-in-the-loop task is parked in AWAITING_INPUT between asking and being
answered, with no process running; only ``response_timeout`` (``review.timeout_hours``) bounds
that wait. So the review task's execution_timeout can be as short as any other task's: this run
gives it 2 s and lets the reviewer take 5 s.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from standins.reviewer import Question, ScriptedReviewer
from tests.integration.dagrun import ROOT
from tests.integration.test_reverse_pipeline import ledger_rows, trace_list  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


def test_a_review_answered_after_its_execution_timeout_is_not_killed(monkeypatch, trace_list) -> None:  # noqa: F811
    from airflow.dag_processing.dagbag import DagBag

    folder, name, _ = trace_list
    monkeypatch.setenv("CHT_BRIDGE_REVERSE_PIPELINES", str(folder))
    dag = DagBag(str(ROOT / "dags")).get_dag(name)
    review = dag.get_task("review")
    assert review.execution_timeout == timedelta(minutes=60)  # the pipeline's task_timeout_minutes
    review.partial_kwargs["execution_timeout"] = timedelta(seconds=2)
    waited: list[float] = []

    def slow_person(question: Question) -> str:
        start = time.monotonic()
        time.sleep(5)
        waited.append(time.monotonic() - start)
        return "Create a new person"

    with ScriptedReviewer(name, slow_person) as reviewer:
        run = dag.test()

    assert not reviewer.errors, reviewer.errors
    assert str(run.state) == "success" and waited and waited[0] >= 5
    row = ledger_rows(name)["c-3"]  # the row the reviewer answered, written to CHT in the same run
    assert (row.status, row.decision, row.decided_by) == ("done", "new", "demo-reviewer")
