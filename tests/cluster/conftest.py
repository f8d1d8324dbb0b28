"""The scale test needs a running ``make cluster`` (PostgreSQL, Redis, Airflow with two Celery
workers: minutes to start, two cores busy), so it is marked ``cluster``, left out of ``make test``
(``-m "not cluster"`` in pyproject.toml) and run by ``make test-cluster``."""

from __future__ import annotations

import pytest
import requests

from standins import cluster


def cluster_up() -> bool:
    try:
        return requests.get(f"{cluster.api_url()}/api/v2/monitor/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="session")
def running_cluster() -> cluster.Paths:
    if not cluster_up() or not all(cluster.running(cluster.Paths(), w) for w in cluster.WORKERS):
        pytest.fail("the cluster is not running: start it with `make cluster` (stop it with `make cluster-stop`)")
    return cluster.Paths()
