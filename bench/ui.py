"""``make bench``: the CHT Bridge page's answers for many pipelines and a large delivery ledger.

Writes ``--pipelines`` pipeline files and a SQLite ledger of ``--rows`` rows spread over them
(mostly delivered, some failed, dead, deleted and closed; failures over the last 30 days, with a
few dozen distinct reasons), then times what the page's API calls (``cht_bridge.ui.service`` and
``queries``, rendered to HTML as the page is): the pipelines overview, one pipeline's dead letters
and failures, and the same filtered by a reason. Each is the median of ``--repeat`` calls after
one warm-up; the goal is under 1 s. Airflow's own run lookup (one grouped query on ``dag_run``)
is left out: it needs Airflow's metadata database and is Airflow's index.

``python -m bench.ui --pipelines 50 --rows 1000000``
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

STATUSES = [("delivered", 0.94), ("failed", 0.03), ("dead", 0.015), ("deleted", 0.01), ("closed", 0.005)]
REASONS = [f"HTTP 422: rejected: field {name} is invalid" for name in ("lmp_date", "edd", "patient", "facility")] + [
    f"HTTP {code}: {what}" for code in (500, 502, 503, 504) for what in ("server error", "bad gateway", "busy")
]


def write_pipelines(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"bench_pipeline_{i:02d}" for i in range(n)]
    for name in names:
        config = {
            "name": name,
            "schedule": "*/15 * * * *",
            "start_date": "2026-01-01",
            "cht": {"conn_id": "cht_local"},
            "relevant_to": "doc.type === 'data_record'",
            "mapping": {"report_id": "doc._id"},
            "destination": {"conn_id": "demo_receiver", "path": f"/bench/{name}"},
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return names


def fill_ledger(path: Path, names: list[str], rows: int, seed: int = 1) -> None:
    """Raw inserts into a store made by ``StateStore``, in one transaction; its secondary indexes are
    dropped first and made again by the next ``StateStore`` open (``_migrate``), as fast as SQLite can,
    and so is ``cht_bridge_freshness``, which that open fills from the rows (as for an older ledger)."""
    from cht_bridge.state.store import deliveries

    rng = random.Random(seed)
    now = datetime.now(UTC).replace(tzinfo=None)
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    columns = (
        "pipeline, doc_id, doc_rev, status, attempts, response_status, last_error, first_attempt_at, "
        "last_attempt_at, delivered_at, failures, operation, reported_at"
    )

    def rows_of() -> object:
        for i in range(rows):
            status = rng.choices(statuses, weights)[0]
            when = now - timedelta(seconds=rng.randrange(30 * 86400))
            failed = status in ("failed", "dead")
            yield (
                names[i % len(names)], f"doc-{i:08d}", "1-abc", status, rng.randint(1, 6),
                422 if status == "dead" else (503 if failed else 201),
                rng.choice(REASONS) if failed else None, when.isoformat(" "), when.isoformat(" "),
                None if failed else when.isoformat(" "), 1 if failed else 0, "upsert",
                (when - timedelta(minutes=rng.randrange(600))).isoformat(" "),
            )  # fmt: skip

    for index in deliveries.indexes:
        db.execute(f"DROP INDEX IF EXISTS {index.name}")
    db.execute("DROP TABLE IF EXISTS cht_bridge_freshness")  # the next open fills it from these rows
    with db:
        db.executemany(f"INSERT INTO cht_bridge_delivery ({columns}) VALUES ({', '.join('?' * 13)})", rows_of())
    db.close()


def timed(fn, repeat: int) -> tuple[float, object]:
    result = fn()  # warm-up: the pipeline files parsed, the store's connection pool open
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="cht-bridge-bench-ui-"))
    os.environ["AIRFLOW_HOME"] = str(work / "airflow")
    os.environ["CHT_BRIDGE_PIPELINES"] = str(work / "pipelines")
    os.environ["CHT_BRIDGE_REVERSE_PIPELINES"] = str(work / "reverse")
    from cht_bridge.hooks import default_state_url
    from cht_bridge.state import StateStore
    from cht_bridge.ui import pages, queries, service

    names = write_pipelines(work / "pipelines", args.pipelines)
    url = default_state_url()
    StateStore(url).close()  # the tables and the indexes, as every task makes them
    started = time.perf_counter()
    fill_ledger(Path(url.removeprefix("sqlite:///")), names, args.rows)
    StateStore(url).close()  # the indexes again
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute("ANALYZE")
    print(f"ledger: {args.rows:,} rows over {len(names)} pipelines written in {time.perf_counter() - started:.1f}s")

    no_runs = lambda ids: {}  # noqa: E731 - Airflow's metadata database is not part of this benchmark
    overview_s, rows = timed(
        lambda: pages.pipelines_page(service.overview(names, runs=no_runs), "/cht-bridge"), args.repeat
    )
    store = service.store_for(None)
    listed = names[0]
    failures_s, _ = timed(
        lambda: pages.failures_page(listed, queries.failures(store, listed), "", "both", "/cht-bridge"), args.repeat
    )
    filtered_s, _ = timed(
        lambda: pages.failures_page(listed, queries.failures(store, listed, reason="lmp_date"), "lmp_date", "both",
                                    "/cht-bridge"),
        args.repeat,
    )  # fmt: skip
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT pipeline, status, count(*) FROM cht_bridge_delivery "
            "WHERE pipeline IN ('a','b') AND status IN ('failed','dead') AND last_attempt_at >= '2026' "
            "AND status <> 'delivered' GROUP BY pipeline, status"
        ).all()
    print(
        f"pipelines overview (page HTML), {len(names)} pipelines: {overview_s * 1000:.0f} ms (median of {args.repeat})"
    )
    print(f"dead letters and failures of one pipeline (newest {queries.LIST_LIMIT}): {failures_s * 1000:.0f} ms")
    print(f"the same, filtered by a reason: {filtered_s * 1000:.0f} ms")
    print("plan of the last-24-hours count: " + "; ".join(str(row[-1]) for row in plan))
    worst = max(overview_s, failures_s, filtered_s)
    print(f"slowest answer {worst * 1000:.0f} ms: {'within' if worst < 1 else 'OVER'} the 1 s goal")


if __name__ == "__main__":
    main()
