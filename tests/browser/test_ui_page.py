"""The CHT Bridge page in a real browser: Playwright drives Debian's ``chromium`` against
``make airflow``'s stack (``standins.standalone.launch``) after ``make demo`` has run on it.

Checked: the page is in the UI's navigation and its pipelines table shows every demo pipeline
with the ledger's counts; a document the receiver rejects becomes a dead letter on the page;
Replay (a dry run, then for real) turns it into delivered; and a user who may not read a DAG sees
no row for its pipeline. The screenshots in the README are taken here (``CHT_BRIDGE_SCREENSHOTS=docs`` keeps them in ``docs/``).

Airflow's simple auth manager grants by role, and a role reads every DAG (it restricts DAGs only
in multi-team mode, by DAG bundle), and ``airflow standalone`` forces that auth manager. So the
permission check runs a second api-server on the same stack with a real auth manager subclass
that denies one user one DAG (``restricted_auth.py``), and the page must follow whatever the auth
manager says.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
#: Where the screenshots go: the test's own folder, or (``CHT_BRIDGE_SCREENSHOTS=docs``) the README's.
SHOTS_ENV = "CHT_BRIDGE_SCREENSHOTS"
PORT, RESTRICTED_PORT = 8091, 8092
HIDDEN = ("nurse", "referrals")


def _names(folder: str) -> tuple[str, ...]:
    """The pipelines the demo runs: one per file in ``include/<folder>`` (its ``name``)."""
    import yaml

    return tuple(sorted(yaml.safe_load(p.read_text())["name"] for p in (ROOT / "include" / folder).glob("*.yaml")))


FORWARD = _names("pipelines")
REVERSE = _names("reverse")

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    message = "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):  # CI=true, as CI services set it
        pytest.fail(message + ": under CI the browser tests must run")
    pytest.skip(message)


def _free(port: int) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            pytest.fail(f"port {port} is in use: the browser tests run Airflow there")


def _wait(url: str, timeout_s: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    pytest.fail(f"{what} did not answer at {url} within {timeout_s:.0f}s; see {log}")


def _stop(proc: subprocess.Popen) -> None:
    from standins.standalone import _stop_group

    _stop_group(proc)


class Airflow:
    """The running stack: REST calls as a user, and the ledgers."""

    def __init__(self, stack, base: str, passwords: dict[str, str]) -> None:
        self.stack, self.base, self.passwords = stack, base, passwords

    def token(self, user: str, base: str | None = None) -> str:
        answer = requests.post(
            f"{base or self.base}/auth/token", json={"username": user, "password": self.passwords[user]}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def api(self, method: str, path: str, user: str = "admin", base: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(user, base)}"}
        return requests.request(method, f"{base or self.base}{path}", headers=headers, timeout=60, **kwargs)

    def run_and_wait(self, dag_id: str, timeout_s: float = 300) -> None:
        """Unpause, trigger, and wait until no run of the DAG is queued or running."""
        assert self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).ok
        answer = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        assert answer.ok, answer.text
        run_id = answer.json()["dag_run_id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            runs = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
            mine = next(r for r in runs if r["dag_run_id"] == run_id)
            if mine["state"] in ("success", "failed") and all(r["state"] not in ("queued", "running") for r in runs):
                assert mine["state"] == "success", mine
                return
            time.sleep(3)
        pytest.fail(f"{dag_id} run {run_id} did not finish within {timeout_s:.0f}s")

    def store(self):
        from cht_bridge.state import StateStore

        return StateStore(f"sqlite:///{self.stack.state_db}")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    chromium()
    _free(PORT)
    _free(RESTRICTED_PORT)
    from standins import stack as sandbox
    from standins.standalone import launch

    work = tmp_path_factory.mktemp("browser")
    home = work / "sandbox"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    demo = subprocess.run(
        [sys.executable, "-m", "standins.demo", "--home", str(home), "--docs", "400"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]

    passwords = {"admin": secrets.token_urlsafe(12), HIDDEN[0]: secrets.token_urlsafe(12)}
    password_file = work / "passwords.json"
    password_file.write_text(json.dumps(passwords))
    users = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{HIDDEN[0]}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
    }
    stack = sandbox.start(home, docs=400)
    procs: list[subprocess.Popen] = []
    try:
        log = work / "standalone.log"
        with open(log, "wb") as out:
            env = {**users, "AIRFLOW__API__PORT": str(PORT), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{PORT}"}
            procs.append(launch(stack, {**clean, **env}, stdout=out, stderr=subprocess.STDOUT))
        _wait(f"http://127.0.0.1:{PORT}/api/v2/monitor/health", 300, "airflow standalone", procs[0], log)
        airflow = Airflow(stack, f"http://127.0.0.1:{PORT}", passwords)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the DAG processor has parsed the DAG files
            dags = {d["dag_id"] for d in airflow.api("GET", "/api/v2/dags?limit=100").json().get("dags", [])}
            if set(FORWARD + REVERSE) <= dags:
                break
            time.sleep(3)
        else:
            pytest.fail(f"the DAGs were not parsed in time; see {log}")

        # The same stack behind a second api-server whose auth manager denies one user one DAG.
        restricted_log = work / "restricted.log"
        env = {
            **clean, **stack.environment(), **users,
            "AIRFLOW__CORE__AUTH_MANAGER": "tests.browser.restricted_auth.RestrictedAuthManager",
            "CHT_BRIDGE_TEST_HIDDEN_DAGS": ":".join(HIDDEN),
            "AIRFLOW__API__PORT": str(RESTRICTED_PORT),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{RESTRICTED_PORT}",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }  # fmt: skip
        with open(restricted_log, "wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "airflow", "api-server", "--port", str(RESTRICTED_PORT)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=ROOT,
                )  # fmt: skip
            )
        _wait(f"http://127.0.0.1:{RESTRICTED_PORT}/api/v2/monitor/health", 300, "api-server", procs[1], restricted_log)
        yield airflow
    finally:
        for proc in reversed(procs):
            _stop(proc)
        stack.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ[SHOTS_ENV]) if os.environ.get(SHOTS_ENV) else tmp_path_factory.mktemp("shots")
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield instance
        instance.close()


def logged_in(browser, airflow: Airflow, user: str, base: str | None = None):
    """A browser page logged in to Airflow through its login form."""
    page = browser.new_context(viewport={"width": 1200, "height": 620}).new_page()
    page.set_default_timeout(60_000)
    page.goto(base or airflow.base)
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(airflow.passwords[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    return page


def open_from_nav(page):
    """The CHT Bridge page as a person reaches it: Browse → CHT Bridge; its frame."""
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="CHT Bridge").click()
    page.wait_for_url("**/plugin/cht-bridge")
    frame = page.frame_locator("iframe")
    frame.locator("table#pipelines").wait_for()
    return frame


def table_counts(frame) -> dict[str, dict[str, int]]:
    out = {}
    for row in frame.locator("table#pipelines tbody tr").all():
        name = row.get_attribute("data-pipeline")
        out[name] = {
            s.get_attribute("data-status"): int(s.locator("b").inner_text()) for s in row.locator("[data-status]").all()
        }
    return out


def test_the_pipelines_table_shows_every_demo_pipeline_with_the_ledgers_counts(airflow, browser, shots):
    from cht_bridge.state.inbound import InboundLedger

    page = logged_in(browser, airflow, "admin")
    frame = open_from_nav(page)
    shown = table_counts(frame)
    assert set(shown) == set(FORWARD + REVERSE)
    store = airflow.store()
    for name in FORWARD:
        assert shown[name] == store.counts(name) and shown[name]["delivered"] > 0
    for name in REVERSE:
        assert shown[name] == InboundLedger(store).counts(name) and shown[name]
    row = frame.locator("tr[data-pipeline='pregnancy_registrations']")
    assert row.locator("td").nth(2).inner_text() == "*/15 * * * *"
    assert "success" in row.locator("td").nth(3).inner_text()  # the demo's run
    assert row.locator("[data-col='breaker']").inner_text() == "closed"
    assert row.locator("td").nth(0).locator("a[href='/dags/pregnancy_registrations']").count() == 1
    page.locator("iframe").screenshot(path=str(shots / "ui-pipelines.png"))

    def lags() -> list[float]:
        cells = frame.locator("table#pipelines tbody td[data-col='lag']").all()
        return [float(c.get_attribute("data-sort") or 0) for c in cells]

    frame.get_by_role("columnheader", name="Lag").click()  # sortable: ascending, then descending
    assert lags() == sorted(lags()) and len(set(lags())) > 1
    frame.get_by_role("columnheader", name="Lag").click()
    assert lags() == sorted(lags(), reverse=True)
    assert (shots / "ui-pipelines.png").stat().st_size > 10_000
    frame.locator("tr[data-pipeline='contact_tracing_from_csv'] a").first.click()
    frame.locator("table#unplaced tbody tr").first.wait_for()
    assert "no place for" in frame.locator("table#unplaced tbody tr").first.inner_text()
    assert (
        frame.locator("a#required-actions").get_attribute("href") == "/dags/contact_tracing_from_csv/required_actions"
    )
    page.locator("iframe").screenshot(path=str(shots / "ui-reverse-waiting.png"))

    # Re-match the unplaced row (its code is still missing from the place table, so it stays unplaced).
    row = frame.locator("table#unplaced tbody tr").first
    source_id = row.get_attribute("data-source")
    assert airflow.api("PATCH", "/api/v2/dags/contact_tracing_from_csv", json={"is_paused": False}).ok
    row.locator("input.pick").check()
    frame.locator("button#do-dry-run").click()
    frame.locator("#dry-run-state.success").wait_for(timeout=300_000)
    assert "selected 1" in frame.locator("#dry-run-state").inner_text()
    frame.locator("button#do-replay").click()
    frame.locator("#replay-state.success").wait_for(timeout=300_000)
    assert "selected 1" in frame.locator("#replay-state").inner_text()
    waiting = InboundLedger(airflow.store()).rows("contact_tracing_from_csv", ["unplaced"])
    assert [r.source_id for r in waiting] == [source_id]


def test_a_rejected_document_is_a_dead_letter_on_the_page_and_replay_delivers_it(airflow, browser, shots):
    stack = airflow.stack
    couch, admin = stack.couch.url, stack.couch.admin_auth
    docs = requests.get(f"{couch}/medic/_all_docs", params={"include_docs": "true"}, auth=admin, timeout=60).json()
    report = next(r["doc"] for r in docs["rows"] if r["doc"].get("form") == "pregnancy")
    doc_id = f"ui-test-{uuid.uuid4().hex[:12]}"
    new = {k: v for k, v in report.items() if k not in ("_rev", "_id")}
    requests.put(f"{couch}/medic/{doc_id}", json=new, auth=admin, timeout=30).raise_for_status()
    stack.receiver.configure(reject_field="report_id", reject_status=422)
    airflow.run_and_wait("pregnancy_registrations")
    assert airflow.store().ledger("pregnancy_registrations", doc_id)["status"] == "dead"

    page = logged_in(browser, airflow, "admin")
    frame = open_from_nav(page)
    assert frame.locator("tr[data-pipeline='pregnancy_registrations'] [data-col='dead_24h']").inner_text() == "1"
    frame.locator("tr[data-pipeline='pregnancy_registrations'] a").first.click()
    frame.locator("input#reason").fill("rejected")
    frame.get_by_role("button", name="Filter").click()
    row = frame.locator(f"tr[data-doc='{doc_id}']")
    row.wait_for()
    assert "dead" in row.inner_text() and f"HTTP 422: rejected: {doc_id}" in row.inner_text()
    page.locator("iframe").screenshot(path=str(shots / "ui-dead-letters.png"))

    stack.receiver.configure(reject_field=None)  # the receiver is fixed; now replay
    assert airflow.api("PATCH", "/api/v2/dags/cht_bridge_replay", json={"is_paused": False}).ok
    row.locator("input.pick").check()
    assert frame.locator("button#do-replay").is_disabled()  # a dry run comes first
    frame.locator("button#do-dry-run").click()
    frame.locator("#dry-run-state.success").wait_for(timeout=300_000)
    assert "mapped 1, sent 0" in frame.locator("#dry-run-state").inner_text()
    assert airflow.store().ledger("pregnancy_registrations", doc_id)["status"] == "dead"  # the dry run sent nothing
    link = frame.locator("a#dry-run-link")
    assert link.get_attribute("href").startswith("/dags/cht_bridge_replay/runs/")
    dry_run_id = link.inner_text().split(" / ", 1)[1]
    replay = "/cht-bridge/api/pipelines/pregnancy_registrations/replay"
    for refused in ({}, {"after_dry_run": dry_run_id, "ids": [doc_id, "another"]}, {"after_dry_run": "nope"}):
        body = {"ids": [doc_id], "dry_run": False, "status": "both", **refused}
        answer = airflow.api("POST", replay, json=body)  # for real only after that dry run of those rows
        assert answer.status_code == 422, answer.text
    frame.locator("button#do-replay").click()
    frame.locator("#replay-state.success").wait_for(timeout=300_000)
    assert "sent 1" in frame.locator("#replay-state").inner_text()
    assert airflow.store().ledger("pregnancy_registrations", doc_id)["status"] == "delivered"
    received = [json.loads(line) for line in stack.receiver.received_path.read_text().splitlines()]
    assert any((item.get("payload") or {}).get("report_id") == doc_id for item in received)
    frame.get_by_role("link", name="← All pipelines").click()
    frame.locator("table#pipelines").wait_for()
    assert frame.locator("tr[data-pipeline='pregnancy_registrations'] [data-status='dead']").count() == 0


def test_a_user_who_may_not_read_a_dag_sees_no_row_for_its_pipeline(airflow, browser):
    restricted = f"http://127.0.0.1:{RESTRICTED_PORT}"
    user, hidden = HIDDEN
    page = logged_in(browser, airflow, user, restricted)
    frame = open_from_nav(page)
    shown = set(table_counts(frame))
    assert shown == set(FORWARD + REVERSE) - {hidden}
    assert airflow.api("GET", f"/cht-bridge/api/pipelines/{hidden}/failures", user, restricted).status_code == 403
    assert airflow.api("GET", f"/cht-bridge/pipelines/{hidden}", user, restricted).status_code == 403
    # The same user on the simple auth manager (a viewer reads every DAG) sees it; so does admin here.
    assert hidden in {p["pipeline"] for p in airflow.api("GET", "/cht-bridge/api/pipelines", user).json()["pipelines"]}
    admin_rows = airflow.api("GET", "/cht-bridge/api/pipelines", "admin", restricted).json()["pipelines"]
    assert hidden in {p["pipeline"] for p in admin_rows}
    # A viewer may read a pipeline but not trigger a replay: Airflow's API refuses it as this user.
    answer = airflow.api(
        "POST", "/cht-bridge/api/pipelines/pregnancy_registrations/replay", user, restricted,
        json={"ids": ["x"], "dry_run": True, "status": "dead"},
    )  # fmt: skip
    assert answer.status_code == 403, answer.text
