"""``make airflow``: ``airflow standalone`` wired to the local CHT sandbox.

Open http://localhost:8080 and log in as ``admin``, then trigger any of the example DAGs by hand; a
reverse pipeline's review questions wait under Browse → Required Actions. Ctrl-C stops everything.

The admin password is NOT printed: this sets ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS`` (the admin and
the ``cht_bridge_pools`` user), so ``airflow standalone`` says "Not outputting user passwords". Airflow
generates it into its passwords file, ``.sandbox/airflow/simple_auth_manager_passwords.json.generated``
(``$AIRFLOW_HOME``; or ``$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE`` when set), a JSON object
whose key ``admin`` holds it (``cht_bridge_pools`` holds the pools user's, also in its Connection).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from standins import stack as sandbox


def main() -> int:
    # Stop the sandbox's servers on SIGTERM too, not only on Ctrl-C or a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = sandbox.start()
    print(f"CHT (CouchDB protocol) at {stack.couch.url}; CHT API at {stack.cht_api.url}", flush=True)
    print(f"Receiver at {stack.receiver.url}; EMR FHIR server at {stack.fhir.url}", flush=True)
    print("Reverse pipelines ask about uncertain matches under Browse → Required Actions.", flush=True)
    proc = launch(stack)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_group(proc)
        stack.stop()


def launch(stack: sandbox.Stack, extra_env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    """Start ``airflow standalone`` wired to ``stack`` (``extra_env`` e.g. another ``AIRFLOW__API__PORT``)."""
    env = {**os.environ, **stack.environment(), **(extra_env or {})}
    # `airflow standalone` starts its components as `airflow ...` commands found on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # Per-Connection pools as include/cluster.env sets them (unless the environment does): created before
    # the scheduler starts, since a task naming a missing pool is never scheduled (cht_bridge.pools).
    from standins.cluster import pools_user_access, read_env_file

    shared = read_env_file()
    for key in ("CHT_BRIDGE_CONNECTION_POOLS", "CHT_BRIDGE_POOL_SLOTS"):
        env.setdefault(key, shared[key])
    if "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" not in env:  # the cht_bridge_pools DAG's user and Connection
        passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        api = f"http://127.0.0.1:{env.get('AIRFLOW__API__PORT', '8080')}"
        env.update(
            pools_user_access(Path(env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", passwords)), api)
        )
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    from cht_bridge.pools import ensure_pools_cli

    ensure_pools_cli(env)
    # Its own process group, stopped as a whole: `airflow standalone` does not always exit on Ctrl-C
    # once its components have stopped, and would otherwise keep the terminal.
    return subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=env, start_new_session=True, **popen)


def _stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGINT the whole group (as Ctrl-C would); SIGKILL whatever is still there after ``grace_s``."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or its zombie keeps the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


if __name__ == "__main__":
    sys.exit(main())
