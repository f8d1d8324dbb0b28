"""``make airflow``: ``airflow standalone`` wired to the local CHT sandbox.

Open http://localhost:8080 (the generated admin password is printed by Airflow and kept in
``.sandbox/airflow``), then trigger any of the example DAGs by hand. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from include.sandbox import stack as sandbox


def main() -> int:
    # Stop the sandbox's servers on SIGTERM too, not only on Ctrl-C or a normal exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = sandbox.start()
    print(f"CHT (CouchDB protocol) at {stack.couch.url}; receiver at {stack.receiver.url}", flush=True)
    env = {**os.environ, **stack.environment()}
    # `airflow standalone` starts its components as `airflow ...` commands found on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    try:
        return subprocess.call([sys.executable, "-m", "airflow", "standalone"], env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
