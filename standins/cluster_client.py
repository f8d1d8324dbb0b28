"""Drive a running ``make cluster`` from outside, as a person or a CI job would: Airflow's REST API,
generated pipeline files, the receiver's file, Airflow's task instance table and the CHT data.

Used by the scale test (``tests/cluster/``) and ``bench/cluster.py``. Nothing here starts a process.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from standins import cluster

FORMS = ("pregnancy", "assessment", "immunization_visit")
DESTINATIONS = ("demo_receiver", "second_receiver")
WINDOW = ("2025-11-01", "2026-11-01")  # the seeded reports' 12 months (standins/generate.py)
TERMINAL = {"success", "failed"}


class AirflowApi:
    """The api-server's REST API with a bearer token from ``/auth/token`` (SimpleAuthManager)."""

    def __init__(self, url: str | None = None, paths: cluster.Paths | None = None) -> None:
        self.url, paths = url or cluster.api_url(), paths or cluster.Paths()
        password = json.loads((paths.home / "passwords.json").read_text())[cluster.ADMIN]
        answer = requests.post(
            f"{self.url}/auth/token", json={"username": cluster.ADMIN, "password": password}, timeout=30
        )
        answer.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.session.request(method, f"{self.url}/api/v2{path}", timeout=60, **kwargs)
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {answer.status_code} {answer.text[:300]}")
        return answer.json() if answer.content else None

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.call("GET", "/dags", params={"limit": 1000})["dags"]}

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 300) -> None:
        wanted, deadline = set(dag_ids), time.monotonic() + timeout
        while not wanted <= self.dag_ids():
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs not parsed after {timeout:.0f}s: {sorted(wanted - self.dag_ids())}")
            time.sleep(3)

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"logical_date": None, "conf": conf or {}}
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
            "task_instances"
        ]

    def pool(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/pools/{name}")

    def set_pool_slots(self, name: str, slots: int) -> None:
        body = {"name": name, "slots": slots, "include_deferred": False}
        self.call("PATCH", f"/pools/{name}", json=body, params={"update_mask": "slots"})

    def wait_for_runs(self, runs: dict[str, str], timeout: float) -> dict[str, str]:
        """Wait until every ``{dag_id: run_id}`` ends; return their states (unfinished ones as they are)."""
        deadline, states = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            states = {dag: self.run_state(dag, run) for dag, run in runs.items()}
            if all(s in TERMINAL for s in states.values()):
                break
            time.sleep(3)
        return states


def scale_pipeline(number: int, form: str, destination: str, *, schedule: str | None = None) -> str:
    """A generated pipeline file: one form's reports to ``/scale/<number>`` on one destination Connection."""
    mode = "batch" if number % 2 else "single"
    return (
        f"name: scale_{number:02d}\n"
        f"description: Scale test pipeline {number} ({form} reports to {destination})\n"
        f"schedule: {json.dumps(schedule)}\n"
        "start_date: 2026-01-01\n"
        "cht:\n  conn_id: cht_local\n"
        f"relevant_to: \"doc.type === 'data_record' && doc.form === '{form}'\"\n"
        "mapping:\n"
        "  report_id: doc._id\n"
        "  form: doc.form\n"
        '  reported_at: {expr: "new Date(doc.reported_date).toISOString()"}\n'
        "  chw.id: {path: doc.contact._id, optional: true}\n"
        "destination:\n"
        f"  conn_id: {destination}\n"
        f"  path: /scale/{number:02d}\n"
        "  method: POST\n"
        "  auth: {type: basic}\n"
        f"  mode: {mode}\n"
        "  concurrency: 2\n"
        f"batch_size: {250 + 50 * (number % 5)}\n"
        "retries: 3\n"
        "tags: [scale]\n"
    )


def write_scale_pipelines(folder: Path, count: int = 20) -> dict[str, str]:
    """``count`` pipelines over the three forms and both destinations, plus ``scale_backfill``;
    returns {pipeline name: form}."""
    folder.mkdir(parents=True, exist_ok=True)
    forms = {}
    for n in range(1, count + 1):
        form = FORMS[n % len(FORMS)]
        (folder / f"scale_{n:02d}.yaml").write_text(scale_pipeline(n, form, DESTINATIONS[n % 2]))
        forms[f"scale_{n:02d}"] = form
    text = scale_pipeline(0, "assessment", "demo_receiver").replace("scale_00", "scale_backfill")
    (folder / "scale_backfill.yaml").write_text(text.replace("/scale/00", "/scale/backfill"))
    forms["scale_backfill"] = "assessment"
    return forms


def live_reports(couch_url: str, auth: tuple[str, str]) -> list[dict[str, Any]]:
    """Every current report (``data_record`` with a form) in the sandbox's ``medic``: id, form, date."""
    answer = requests.get(f"{couch_url}/medic/_all_docs", params={"include_docs": "true"}, auth=auth, timeout=600)
    answer.raise_for_status()
    return [
        {"id": d["_id"], "form": d["form"], "reported_date": d.get("reported_date")}
        for d in (row.get("doc") for row in answer.json()["rows"])
        if d and d.get("type") == "data_record" and d.get("form")
    ]


def in_window(report: dict[str, Any], window: tuple[str, str] = WINDOW) -> bool:
    start, end = (int(datetime.fromisoformat(w).replace(tzinfo=UTC).timestamp() * 1000) for w in window)
    return isinstance(report["reported_date"], (int, float)) and start <= report["reported_date"] < end


@dataclass
class Delivered:
    """What the receiver stored for one path: items, distinct keys, and how often each report came."""

    items: int
    keys: int
    per_report: Counter


def receiver_stats(sandbox: dict[str, Any]) -> dict[str, Any]:
    """The sandbox receiver's ``GET /_stats`` (counts only), with the demo receiver Connection's login."""
    conn = json.loads(sandbox["environment"]["AIRFLOW_CONN_DEMO_RECEIVER"])
    answer = requests.get(f"{sandbox['receiver_url']}/_stats", auth=(conn["login"], conn["password"]), timeout=30)
    answer.raise_for_status()
    return answer.json()


def received_by_path(receiver_dir: Path, prefix: str = "/scale/") -> dict[str, Delivered]:
    items: dict[str, int] = defaultdict(int)
    keys: dict[str, set] = defaultdict(set)
    reports: dict[str, Counter] = defaultdict(Counter)
    path = receiver_dir / "received.jsonl"
    if not path.exists():
        return {}
    with path.open() as f:
        for line in f:
            item = json.loads(line)
            if not item["path"].startswith(prefix):
                continue
            items[item["path"]] += 1
            keys[item["path"]].add(item["key"])
            if item.get("payload"):
                reports[item["path"]][item["payload"]["report_id"]] += 1
    return {p: Delivered(items[p], len(keys[p]), reports[p]) for p in items}


def airflow_db(paths: cluster.Paths | None = None) -> Any:
    """A connection to the cluster's Airflow metadata database (read only by the checks)."""
    import psycopg

    paths = paths or cluster.Paths()
    password = cluster.cluster_secrets(paths)["postgres"]
    return psycopg.connect(
        f"postgresql://airflow:{password}@127.0.0.1:{cluster.PORTS['postgres']}/airflow", autocommit=True
    )


def pool_overlaps(conn: Any, since: datetime) -> dict[str, int]:
    """Per pool, the most task instances (all tries) that ran at the same moment since ``since``,
    from the start and end dates in Airflow's ``task_instance`` and ``task_instance_history`` tables."""
    rows = conn.execute(
        """SELECT pool, start_date, end_date FROM task_instance WHERE start_date >= %(s)s AND end_date IS NOT NULL
           UNION ALL
           SELECT pool, start_date, end_date FROM task_instance_history
           WHERE start_date >= %(s)s AND end_date IS NOT NULL""",
        {"s": since},
    ).fetchall()
    events: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for pool, start, end in rows:
        events[pool] += [(start, 1), (end, -1)]
    peak: dict[str, int] = {}
    for pool, marks in events.items():
        running = top = 0
        for _, step in sorted(marks, key=lambda m: (m[0], m[1])):  # an end before a start at the same instant
            running += step
            top = max(top, running)
        peak[pool] = top
    return peak


def answer_open_questions(api: AirflowApi, dag_id: str, choose: Any) -> list[dict[str, Any]]:
    """Answer each open review question of ``dag_id`` (whichever run asked it) with ``choose(Question)``,
    through the REST API as a person in the UI would; return their task instances, each with its ``label``."""
    from standins.reviewer import Question

    answered = []
    for d in api.call("GET", f"/dags/{dag_id}/dagRuns/~/hitlDetails", params={"limit": 100})["hitl_details"]:
        if d["response_received"]:
            continue
        ti = d["task_instance"]
        label = choose(Question(dag_id, ti["task_id"], ti["map_index"], d["subject"], d["body"], d["options"]))
        api.call(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails",
            json={"chosen_options": [label], "params_input": {}},
        )
        answered.append({**ti, "label": label})
    return answered
