"""``make airflow``: ``airflow standalone`` wired to the local CHT sandbox.

Open http://localhost:8080 (the generated admin password is printed by Airflow and kept in
``.sandbox/airflow``), then trigger any of the example DAGs by hand. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import subprocess
import sys

from include.sandbox import stack as sandbox


def main() -> int:
    stack = sandbox.start()
    print(f"CHT (CouchDB protocol) at {stack.couch.url}; receiver at {stack.receiver.url}", flush=True)
    env = {**os.environ, **stack.environment()}
    try:
        return subprocess.call([sys.executable, "-m", "airflow", "standalone"], env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
