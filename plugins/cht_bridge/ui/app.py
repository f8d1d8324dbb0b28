"""The CHT Bridge page and its API: a FastAPI app the Airflow api-server mounts at ``/cht-bridge``.

Authentication and permissions are Airflow's: every route depends on Airflow's ``get_user`` (the
UI's session cookie or a bearer token from ``POST /auth/token``), the pipelines listed are the
DAG ids the auth manager lets the user read (``get_authorized_dag_ids``), and a pipeline's own
routes use ``requires_access_dag("GET")`` on its DAG id, so a user who may not read a DAG gets
neither its row nor its failures (403). Replays are triggered through Airflow's REST API with the
user's own token (``airflow_api``), so triggering needs the user's permission on that DAG too.
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from cht_bridge.ui import pages, queries, service
from cht_bridge.ui.airflow_api import AirflowApiError, run_state, trigger
from cht_bridge.ui.catalog import FORWARD

PREFIX = "/cht-bridge"
REPLAY_DAG_ID = "cht_bridge_replay"  # dag_factory.REPLAY_DAG_ID (not imported: it pulls the DAG machinery)
MAX_CHOSEN = 500

app = FastAPI(title="CHT Bridge", docs_url=None, redoc_url=None, openapi_url=None)
ReadsDag = Depends(requires_access_dag("GET"))


def readable(user: Any) -> set[str]:
    """The DAG ids this user may read, as Airflow's auth manager says."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


def _pipeline(dag_id: str, user: Any) -> Any:
    entry = service.find(dag_id, readable(user))
    if entry is None:
        raise HTTPException(404, f"no CHT Bridge pipeline '{dag_id}'")
    return entry


def _token(request: Request) -> str:
    """The user's own credential, passed on to Airflow's API (never stored, never logged)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        raise HTTPException(401, "Not authenticated")
    return token


def _json_only(request: Request) -> None:
    """A write must be a JSON request: a cross-site form cannot send one without CORS's consent."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send application/json")


# -- API ---------------------------------------------------------------------------------------


@app.get("/api/pipelines")
def api_pipelines(user: GetUserDep) -> dict[str, Any]:
    return {"pipelines": service.overview(readable(user))}


@app.get("/api/pipelines/{dag_id}/failures", dependencies=[ReadsDag])
def api_failures(
    dag_id: str,
    user: GetUserDep,
    reason: Annotated[str | None, Query(max_length=500)] = None,
    status: Annotated[str, Query(pattern="^(dead|failed|both)$")] = "both",
) -> dict[str, Any]:
    entry = _pipeline(dag_id, user)
    if entry.kind != FORWARD:
        raise HTTPException(404, f"'{dag_id}' is a reverse pipeline: see its waiting rows")
    statuses = ("dead", "failed") if status == "both" else (status,)
    return queries.failures(service.store_for(entry.state_conn_id), entry.name, statuses=statuses, reason=reason)


@app.get("/api/pipelines/{dag_id}/waiting", dependencies=[ReadsDag])
def api_waiting(dag_id: str, user: GetUserDep) -> dict[str, Any]:
    entry = _pipeline(dag_id, user)
    if entry.kind == FORWARD:
        raise HTTPException(404, f"'{dag_id}' is a forward pipeline: see its failures")
    return queries.waiting_rows(service.store_for(entry.state_conn_id), entry.name)


class ReplayRequest(BaseModel):
    ids: list[Annotated[str, Field(max_length=255)]] = Field(min_length=1, max_length=MAX_CHOSEN)
    dry_run: bool = True
    status: str = Field("both", pattern="^(dead|failed|both|unplaced)$")
    #: The real replay names the successful dry run of the same rows that came before it.
    after_dry_run: str | None = Field(None, max_length=250)


def _dry_run_first(target: str, conf: dict[str, Any], body: ReplayRequest, token: str) -> None:
    """A replay for real only after a successful dry run of exactly these rows (same DAG, same conf)."""
    if body.dry_run:
        return
    if not body.after_dry_run:
        raise HTTPException(422, "run a dry run of these rows first, then replay naming it (after_dry_run)")
    try:
        dry = run_state(target, body.after_dry_run, token)
    except AirflowApiError as exc:
        raise HTTPException(422, f"the dry run '{body.after_dry_run}' cannot be read: {exc}") from None
    if dry["state"] != "success" or dry.get("conf") != {**conf, "dry_run": True}:
        raise HTTPException(422, "the named dry run did not succeed, or chose other rows: run a dry run of these rows")


@app.post("/api/pipelines/{dag_id}/replay", dependencies=[ReadsDag, Depends(_json_only)])
def api_replay(dag_id: str, body: ReplayRequest, request: Request, user: GetUserDep) -> dict[str, Any]:
    """Replay chosen rows: a forward pipeline's documents with ``cht_bridge_replay``; a reverse
    pipeline's unplaced or failed rows with a replay run of its own DAG (``replay`` Param). A dry
    run first; the run for real must name that successful dry run of the same rows."""
    entry = _pipeline(dag_id, user)
    what = "dry run" if body.dry_run else "replay"
    if entry.kind == FORWARD:
        if body.status == "unplaced":
            raise HTTPException(422, "status 'unplaced' is for a reverse pipeline's rows")
        target, task = REPLAY_DAG_ID, "replay"
        conf = {"pipeline": entry.name, "status": body.status, "doc_ids": body.ids, "dry_run": body.dry_run}
    else:
        if body.status in ("dead",):
            raise HTTPException(422, "a reverse pipeline replays 'unplaced', 'failed' or 'both'")
        target, task = entry.name, "receive"
        conf = {"replay": body.status, "source_ids": body.ids, "dry_run": body.dry_run}
    note = f"CHT Bridge page: {what} of {len(body.ids)} rows of {entry.name}"
    token = _token(request)
    _dry_run_first(target, conf, body, token)
    try:
        run = trigger(target, conf, token, note)
    except AirflowApiError as exc:
        raise HTTPException(exc.status if exc.status in (401, 403, 404, 409, 422) else 502, str(exc)) from None
    return {**run, "task_id": task, "url": pages.run_url(target, run["run_id"])}


@app.get("/api/runs/{dag_id}/{run_id}", dependencies=[ReadsDag])
def api_run(dag_id: str, run_id: str, request: Request, task_id: str | None = None) -> dict[str, Any]:
    try:
        return run_state(dag_id, run_id, _token(request), task_id)
    except AirflowApiError as exc:
        raise HTTPException(exc.status if exc.status in (401, 403, 404) else 502, str(exc)) from None


# -- pages -------------------------------------------------------------------------------------


@app.get("/", response_class=HTMLResponse)
def page_pipelines(user: GetUserDep) -> str:
    return pages.pipelines_page(service.overview(readable(user)), PREFIX)


@app.get("/pipelines/{dag_id}", response_class=HTMLResponse, dependencies=[ReadsDag])
def page_pipeline(
    dag_id: str,
    user: GetUserDep,
    reason: Annotated[str | None, Query(max_length=500)] = None,
    status: Annotated[str, Query(pattern="^(dead|failed|both)$")] = "both",
) -> str:
    entry = _pipeline(dag_id, user)
    store = service.store_for(entry.state_conn_id)
    if entry.kind == FORWARD:
        statuses = ("dead", "failed") if status == "both" else (status,)
        found = queries.failures(store, entry.name, statuses=statuses, reason=reason)
        return pages.failures_page(entry.name, found, reason or "", status, PREFIX)
    return pages.waiting_page(entry.name, queries.waiting_rows(store, entry.name), PREFIX)
