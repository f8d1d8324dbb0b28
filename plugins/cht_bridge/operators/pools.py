"""The ``cht_bridge_pools`` task: create the per-Connection pools the pipeline files need, if missing.

A pipeline file added to a running deployment on a new CHT (or source) Connection names a pool no
start step created, and Airflow's scheduler never schedules its tasks (``cht_bridge.pools``). This
task, every few minutes and on demand, computes the pools the loaded pipeline files need
(``pools.uses`` / ``wanted``, the same code the deployment step runs), asks the api-server which
exist, says which pipelines wait on each missing one, and creates it (``airflow_api``). It never
resizes an existing pool. Its log and XCom hold pool and pipeline names and counts only.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator


class EnsurePoolsOperator(BaseOperator):
    """Create each missing pool of the pipelines in ``pipelines_folder`` and ``reverse_folder``.

    :param conn_id: the Connection naming the api-server and a user with the role ``op`` or ``admin``.
    """

    ui_color = "#f5f5f5"

    def __init__(self, *, pipelines_folder: str, reverse_folder: str, conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipelines_folder = pipelines_folder
        self.reverse_folder = reverse_folder
        self.conn_id = conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from pathlib import Path

        from cht_bridge.airflow_api import AirflowPools
        from cht_bridge.errors import AuthError, UnusableConnection
        from cht_bridge.hooks.connection import airflow_api_session
        from cht_bridge.operators.resources import failing_plainly
        from cht_bridge.pools import missing, pipelines_in_pools, roles_of, uses, wanted

        with failing_plainly():  # a missing Connection, a refused user, a bad setting: once, plainly
            found = uses(Path(self.pipelines_folder), Path(self.reverse_folder))
            want = wanted(roles_of(found))
            session, base_url = airflow_api_session(self.conn_id)
            api = AirflowPools(session, base_url, conn_id=self.conn_id)
            try:
                absent = missing(want, [name for name in want if api.exists(name)])
                waiting = pipelines_in_pools(found)
                created, existed = {}, []
                for name, (slots, description) in absent.items():
                    self.log.warning(
                        "pool %s is missing: the tasks of %d pipeline(s) wait on it (%s); creating it with %d slots",
                        name, len(waiting.get(name, [])), ", ".join(waiting.get(name, [])), slots,
                    )  # fmt: skip
                    if api.create(name, slots, description):
                        created[name] = slots
                    else:
                        existed.append(name)  # 409: a lost answer's repeat, another run, a person: left as it is
            except AuthError as exc:
                if exc.status != 403:
                    raise
                raise UnusableConnection(  # logged in, but the user's role may not write pools
                    self.conn_id, "names a user that may not create pools (HTTP 403): give it the role op or admin"
                ) from None
        self.log.info(
            "%d pools needed, %d existed, %d created%s%s",
            len(want), len(want) - len(absent), len(created),
            f": {', '.join(f'{n} ({s} slots)' for n, s in created.items())}" if created else "",
            f"; {len(existed)} already existed when created (made by a repeat of this run's own request, "
            f"or by another writer): {', '.join(existed)}" if existed else "",
        )  # fmt: skip
        return {
            "needed": len(want),
            "created": created,
            "waited": {name: waiting.get(name, []) for name in absent},
        }
