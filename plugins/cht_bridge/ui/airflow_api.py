"""Trigger and read DAG runs through Airflow's own REST API, as the user who clicked.

The page never starts a run itself: it sends the user's own token (the bearer header, or the
UI's session cookie) to the api-server's ``/api/v2``, so Airflow checks that this user may
trigger that DAG, records the run as theirs, and validates the conf against the DAG's Params.
The api-server is reached on its own port on the loopback (``[api] port``), never at an address
taken from the request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import requests

from cht_bridge.http.read import AnswerLimits, request_within
from cht_bridge.http.reasons import answer_reason

LIMITS = AnswerLimits(deadline_s=20.0, max_bytes=1024 * 1024)
TIMEOUT = (5.0, 20.0)
#: The counts of a replay's XCom the page shows: a forward replay's summary, a reverse replay's.
SHOWN = ("retried", "mapped", "sent", "failed", "dead_lettered", "selected", "replayed", "unplaced", "not_replayable")


class AirflowApiError(Exception):
    """Airflow refused or failed a request; ``status`` is its HTTP status, the message its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def api_root() -> str:
    """``http://127.0.0.1:<[api] port><base path>``: this api-server, whatever host the browser used."""
    from airflow.configuration import conf

    host = conf.get("api", "host", fallback="0.0.0.0") or "0.0.0.0"
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    port = conf.getint("api", "port", fallback=8080)
    path = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"http://{host}:{port}{path}"


def _call(method: str, path: str, token: str, json: dict | None = None) -> dict[str, Any]:
    with requests.Session() as session:
        response = request_within(
            session, method, f"{api_root()}/api/v2{path}", LIMITS, json=json, timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )  # fmt: skip
    if response.status_code >= 300:
        raise AirflowApiError(response.status_code, answer_reason(response).text)
    return response.json()


def trigger(dag_id: str, conf: dict[str, Any], token: str, note: str) -> dict[str, Any]:
    """Start a run of ``dag_id`` with ``conf``; its id and state."""
    body = {"logical_date": None, "conf": conf, "note": note}
    run = _call("POST", f"/dags/{quote(dag_id, safe='')}/dagRuns", token, body)
    return {"dag_id": dag_id, "run_id": run["dag_run_id"], "state": run.get("state")}


def run_state(dag_id: str, run_id: str, token: str, task_id: str | None = None) -> dict[str, Any]:
    """A run's state, and when ``task_id`` is given and the run is over, that task's counts (its XCom)."""
    path = f"/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
    run = _call("GET", path, token)
    out: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "state": run.get("state"), "conf": run.get("conf")}
    if task_id and out["state"] in ("success", "failed"):
        try:
            entry = _call("GET", f"{path}/taskInstances/{quote(task_id, safe='')}/xcomEntries/return_value", token)
        except AirflowApiError:
            return out
        value = entry.get("value")
        if isinstance(value, dict) and isinstance(value.get("replay"), dict):  # a reverse run's receive task
            value = value["replay"]
        if isinstance(value, dict):  # counts only: never ids, reasons or the dry run's file
            out["counts"] = {k: value[k] for k in SHOWN if isinstance(value.get(k), int)}
    return out
