"""Airflow's own REST API (the api-server's ``/api/v2``), as CHT Bridge uses it: pools.

Airflow 3 tasks may not open the metadata database, so a task that creates pools asks the
api-server, as a person or a deployment script would, with a user of its auth manager (the
Connection ``cht_bridge_airflow_api``; ``hooks.connection.airflow_api_session`` logs in at
``auth/token`` under the Connection's base URL, where the calls below go too (a proxy's path is kept),
and sends the token only to the api-server's origin). The contract, from Airflow 3.3's
``airflow/api_fastapi/core_api/routes/public/pools.py`` and ``datamodels/pools.py``:

* ``GET /api/v2/pools/{name}``: 200 with the pool, 404 when there is none;
* ``POST /api/v2/pools`` with ``{"name", "slots", "description", "include_deferred"}`` (a strict model:
  no other keys): 201 created, 409 when a pool of that name exists (a unique-constraint error).
  Pools need the role ``op`` (SimpleAuthManager) to be written, ``viewer`` to be read: 403 otherwise.

Reads go through ``http.read.Reader`` (deadline, size cap, no redirects, retries of what may pass). So
does the create: it is idempotent (a repeat is a 409), so repeating it after a lost answer is safe; a 409
then cannot say whether the lost attempt or another writer made the pool, and ``create`` claims neither.
Nothing here resizes a pool: an operator may have changed it in the UI.
"""

from __future__ import annotations

from urllib.parse import quote

import requests

from cht_bridge.errors import SourceError
from cht_bridge.http.read import AnswerLimits, Reader

#: The Connection naming the api-server and a user that may create pools.
CONN_ID = "cht_bridge_airflow_api"
#: A pool is a few hundred bytes.
LIMITS = AnswerLimits(deadline_s=30.0, max_bytes=1024 * 1024)
SYSTEM = "Airflow's api-server"


class AirflowPools:
    """Read and create pools through one api-server (``base_url``) with a logged-in ``session``."""

    def __init__(self, session: requests.Session, base_url: str, *, conn_id: str = CONN_ID) -> None:
        self.base_url = base_url.rstrip("/")
        self.reader = Reader(
            session, conn_id=conn_id, system=SYSTEM, timeout=(10.0, 30.0), limits=LIMITS,
            headers={"Accept": "application/json"},
        )  # fmt: skip

    def _url(self, name: str | None = None) -> str:
        return f"{self.base_url}/api/v2/pools" + (f"/{quote(name, safe='')}" if name is not None else "")

    def exists(self, name: str) -> bool:
        """Whether the pool ``name`` exists (GET: 200 yes, 404 no).

        :raises AuthError: the user was refused (401/403).
        :raises SourceError: any other answer, or none after retries.
        """
        try:
            self.reader.get_json(self._url(name))
        except SourceError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create(self, name: str, slots: int, description: str) -> bool:
        """Create the pool ``name``; True when this call's first request created it, False on a 409 (left
        as it is): another run or a person made it, or an earlier attempt of this very POST did, its answer
        lost to a timeout or a 5xx (the Reader repeats it). The two cannot be told apart, so neither is claimed.

        :raises AuthError: the user was refused (401/403: a role below ``op`` cannot write pools).
        :raises SourceError: any other answer, or none after retries.
        """
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        try:
            self.reader.request_text("POST", self._url(), body=body)
        except SourceError as exc:
            if exc.status == 409:
                return False
            raise
        return True
