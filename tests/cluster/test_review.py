"""Human-in-the-loop on the cluster: a reverse pipeline's review question is parked by a Celery
worker (the task instance then has no process), answered by a person through the api-server's REST
API, and the answer is recorded by whichever worker resumes the task."""

from __future__ import annotations

import time

import pytest

from standins.cluster_client import AirflowApi
from standins.demo import demo_reviewer
from standins.reviewer import Question

pytestmark = pytest.mark.cluster
DAG = "ltfu_from_emr"


def test_review_questions_are_answered_through_the_api_server(running_cluster):
    api = AirflowApi()
    api.wait_for_dags([DAG], timeout=300)
    api.unpause(DAG)
    run = api.trigger(DAG)
    choose = demo_reviewer()
    answered: list[tuple[str, str]] = []
    parked_states: set[str] = set()
    deadline = time.monotonic() + 900
    state = "queued"
    while time.monotonic() < deadline:
        state = api.run_state(DAG, run)
        if state in ("success", "failed"):
            break
        details = api.call("GET", f"/dags/{DAG}/dagRuns/{run}/hitlDetails", params={"limit": 100})["hitl_details"]
        for d in details:
            if d["response_received"]:
                continue
            ti = d["task_instance"]
            parked_states.add(ti["state"])
            question = Question(DAG, ti["task_id"], ti["map_index"], d["subject"], d["body"], d["options"])
            label = choose(question)
            api.call(
                "PATCH",
                f"/dags/{DAG}/dagRuns/{run}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails",
                json={"chosen_options": [label], "params_input": {}},
            )
            answered.append((f"{ti['task_id']}[{ti['map_index']}]", label))
        time.sleep(3)
    assert state == "success", state
    assert answered, "the run asked no review question (run it on a fresh cluster: the list is read once)"
    assert "running" not in parked_states, parked_states  # parked: no worker process held while waiting
    reviews = [t for t in api.task_instances(DAG, run) if t["task_id"] == "review"]
    assert len(reviews) == len(answered) and {t["state"] for t in reviews} == {"success"}
    written = next(t for t in api.task_instances(DAG, run) if t["task_id"] == "write_reviewed")
    assert written["state"] == "success"
