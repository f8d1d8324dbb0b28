"""Human-in-the-loop on the cluster: a reverse pipeline's review question is parked by a Celery
worker (the task instance then has no process), answered by a person through the api-server's REST
API, and the answer is recorded by whichever worker resumes the task."""

from __future__ import annotations

import time

import pytest

from standins.cluster_client import AirflowApi, answer_open_questions
from standins.demo import demo_reviewer

pytestmark = pytest.mark.cluster
DAG = "ltfu_from_emr"


def test_review_questions_are_answered_through_the_api_server(running_cluster):
    api = AirflowApi()
    api.wait_for_dags([DAG], timeout=300)
    api.unpause(DAG)  # a scheduled DAG: unpausing may start a scheduled run before ours (one at a time)
    ours = api.trigger(DAG)
    choose = demo_reviewer()
    answered: dict[tuple[str, str, int], str] = {}
    parked_states: set[str] = set()
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if api.run_state(DAG, ours) in ("success", "failed"):
            break
        # Every open question of the DAG, whichever run asked it.
        for ti in answer_open_questions(api, DAG, choose):
            parked_states.add(ti["state"])
            answered[(ti["dag_run_id"], ti["task_id"], ti["map_index"])] = ti["label"]
        time.sleep(3)
    runs = {run for run, _, _ in answered} | {ours}
    states = {run: api.run_state(DAG, run) for run in runs}
    assert set(states.values()) == {"success"}, states
    assert answered, "no review question was asked (run it on a fresh cluster: the list is read once)"
    assert parked_states == {"awaiting_input"}, parked_states  # parked: no worker process held while waiting
    for run, task_id, map_index in answered:
        ti = next(t for t in api.task_instances(DAG, run) if (t["task_id"], t["map_index"]) == (task_id, map_index))
        assert ti["state"] == "success", ti
    for run in runs:
        written = next(t for t in api.task_instances(DAG, run) if t["task_id"] == "write_reviewed")
        assert written["state"] in ("success", "skipped"), written
