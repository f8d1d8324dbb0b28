"""``make bench``: N synthetic CHT documents through extract → hydrate → relevance → map → load.

Measured in one run, on the same local CouchDB-protocol server:
- the raw read rate of ``_changes?include_docs=true`` (plain ``requests``, pages of 2,000, JSON
  decoded, second of two passes so the server is as warm as it is for our run, uncompressed as
  the worker asks a server on the loopback), which is what a reader of a CouchDB on this machine
  pays (a remote CHT is read with gzip, which costs both ends CPU: not measured here);
- our end-to-end rate (documents read from the feed per second, with every report hydrated,
  mapped in the sandbox, hashed, checked against the ledger, posted in batches of 500 to the demo
  receiver running in its own process, and recorded);
- their ratio, the worker's peak RSS, and its process CPU per document read (user + system time
  of every thread, V8's included; wall time would mostly measure the other processes on the machine).

``python -m bench.pipeline --docs 100000`` (``make bench DOCS=1000000`` for a million;
``--server memory`` for pouchdb-server's in-memory storage, which serves faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from standins.couchdb import LocalCouch
from standins.seed import seed

ROOT = Path(__file__).resolve().parents[1]
PAGE = 2000


def raw_read_rate(url: str, auth: tuple[str, str]) -> tuple[int, float]:
    from cht_bridge.cht.couch import on_this_machine  # plugins/ is on the path (Makefile, README)

    session = requests.Session()
    session.auth = auth
    if on_this_machine(url):  # as the worker reads it (``CouchClient``): uncompressed on the loopback
        session.headers["Accept-Encoding"] = "identity"
    since, total, started = 0, 0, time.perf_counter()
    while True:
        body = session.get(
            f"{url}/medic/_changes",
            params={"since": since, "limit": PAGE, "include_docs": "true", "seq_interval": PAGE},
            timeout=600,
        ).json()
        total += len(body["results"])
        since = body["last_seq"]
        if len(body["results"]) < PAGE:
            break
    return total, time.perf_counter() - started


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def start_receiver(folder: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "standins.receiver", "--port", "0", "--dir", str(folder)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    first = proc.stdout.readline().strip()  # "receiver listening on http://127.0.0.1:PORT"
    return proc, first.rsplit(" ", 1)[-1]


def run(docs: int, mode: str, in_memory: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="cht-bridge-bench-"))
    couch = LocalCouch(work / "couch", in_memory=in_memory).start()
    receiver = None
    try:
        t = time.perf_counter()
        counts = seed(couch.url, couch.admin_auth, docs)
        seeded_s = time.perf_counter() - t
        # CHT keeps its views built; build this one before timing, as a live CHT would have it.
        t = time.perf_counter()
        requests.get(
            f"{couch.url}/medic/_design/medic-client/_view/contacts_by_reference",
            params={"limit": 1},
            auth=couch.admin_auth,
            timeout=3600,
        ).raise_for_status()
        view_s = time.perf_counter() - t

        server = psutil.Process(couch.pid)
        raw_read_rate(couch.url, couch.admin_auth)  # a first pass warms the server's caches
        server_cpu = _cpu(server)
        raw_docs, raw_s = raw_read_rate(couch.url, couch.admin_auth)
        raw_server_cpu = _cpu(server) - server_cpu
        receiver, receiver_url = start_receiver(work / "receiver")
        server_cpu = _cpu(server)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
        worker = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.worker",
                "--couch",
                couch.url,
                "--receiver",
                receiver_url,
                "--state",
                f"sqlite:///{work / 'state.db'}",
                "--mode",
                mode,
            ],
            input=":".join(couch.admin_auth) + "\n",
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        if worker.returncode != 0:
            raise SystemExit(worker.stderr[-3000:])
        result = json.loads(worker.stdout.strip().splitlines()[-1])
        e2e_server_cpu = _cpu(server) - server_cpu
        receiver_cpu = _cpu(psutil.Process(receiver.pid))
        stats = requests.get(f"{receiver_url}/_stats", timeout=30).json()
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=30)
        couch.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = result["summary"]
    raw_rate = raw_docs / raw_s
    e2e_rate = summary["read"] / result["elapsed"]
    return {
        "docs": docs,
        "mode": mode,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "server": "pouchdb-server 4.2.0, " + ("in memory" if in_memory else "LevelDB"),
        "seed_s": round(seeded_s, 1),
        "view_build_s": round(view_s, 1),
        "seeded": counts,
        "raw_changes_docs": raw_docs,
        "raw_changes_rate": round(raw_rate),
        "e2e_read": summary["read"],
        "e2e_relevant": summary["relevant"],
        "e2e_sent": summary["sent"],
        "e2e_failed": summary["failed"],
        "e2e_seconds": round(result["elapsed"], 1),
        "e2e_rate": round(e2e_rate),
        "ratio": round(e2e_rate / raw_rate, 2),
        "worker_peak_rss_mb": round(result["peak_rss_mb"]),
        "cpu_s_raw_read_server": round(raw_server_cpu, 1),
        "cpu_s_e2e_server": round(e2e_server_cpu, 1),
        "cpu_s_e2e_worker": round(result["cpu_s"], 1),
        # The worker's process CPU (user + system, every thread, V8's included) per document read:
        # what a worker pays per document, whatever else runs on the machine.
        "cpu_us_per_doc_worker": round(result["cpu_s"] / max(summary["read"], 1) * 1e6, 1),
        "cpu_s_e2e_receiver": round(receiver_cpu, 1),
        "receiver_items": stats["items"],
        "receiver_requests": stats["requests"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--mode", default="batch", choices=["batch", "single"])
    parser.add_argument(
        "--server",
        default="leveldb",
        choices=["leveldb", "memory"],
        help="pouchdb-server storage: leveldb (on disk, as CouchDB keeps CHT's data; usable at every size) "
        "or memory (serves faster, but needs ~20 GB of RAM at 1M documents)",
    )
    args = parser.parse_args(argv)
    print_result(run(args.docs, args.mode, in_memory=args.server == "memory"))
    return 0


def print_result(result: dict) -> None:
    """One ``key  value`` line per measure, keys aligned."""
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
