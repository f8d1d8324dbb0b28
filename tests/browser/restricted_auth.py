"""A real Airflow auth manager that denies chosen users chosen DAGs, for the permission tests.

Airflow's simple auth manager grants by role only (viewer, user, op, admin): a role reads every
DAG. It can restrict DAGs per user only in multi-team mode, through DAG bundles assigned to
teams, which the sandbox's one DAG folder cannot express. This subclass keeps everything of the
simple auth manager (users, passwords, login page, tokens) and adds per-DAG denial, read from
``CHT_BRIDGE_TEST_HIDDEN_DAGS`` (``user:dag_a|dag_b,other:dag_c``). Airflow calls it as it calls
any auth manager: ``is_authorized_dag`` for one DAG, ``filter_authorized_dag_ids`` and
``get_authorized_dag_ids`` for lists (the base class's versions, which call ``is_authorized_dag``).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

ENV = "CHT_BRIDGE_TEST_HIDDEN_DAGS"


def hidden() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in filter(None, (part.strip() for part in os.environ.get(ENV, "").split(","))):
        user, _, dags = item.partition(":")
        out[user] = set(filter(None, dags.split("|")))
    return out


class RestrictedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        dag_id = getattr(details, "id", None)
        if dag_id and dag_id in hidden().get(user.username, set()):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
