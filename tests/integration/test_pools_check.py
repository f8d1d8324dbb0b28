"""``python -m cht_bridge.pools --check`` and the creation step against a real (SQLite) Airflow database."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_check_lists_missing_pools_and_fails_and_says_when_pools_are_off(tmp_path):
    import subprocess
    import sys

    env = {
        "PATH": str(Path(sys.executable).parent),
        "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}",
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "CHT_BRIDGE_PIPELINES": str(ROOT / "include" / "pipelines"),
        "CHT_BRIDGE_REVERSE_PIPELINES": str(ROOT / "include" / "reverse"),
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)

    def check(**extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cht_bridge.pools", "--check"], env={**env, **extra}, capture_output=True, text=True
        )

    off = check()
    assert off.returncode == 0 and "per-Connection pools are off" in off.stdout
    on = check(CHT_BRIDGE_CONNECTION_POOLS="true")
    assert on.returncode == 1 and "missing pool cht_bridge__cht_local" in on.stdout, on.stdout + on.stderr
    assert "the tasks of contact_tracing_from_csv, ltfu_from_emr, self_screening_from_rapidpro will not" in on.stdout
    made = subprocess.run(
        [sys.executable, "-m", "cht_bridge.pools"], env={**env, "CHT_BRIDGE_CONNECTION_POOLS": "true"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0 and "created pool cht_bridge__cht_local" in made.stdout
    again = check(CHT_BRIDGE_CONNECTION_POOLS="true")
    assert again.returncode == 0 and "every pool exists" in again.stdout
