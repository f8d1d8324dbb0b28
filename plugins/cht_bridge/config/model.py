"""The pipeline model: what a pipeline file says once it has been checked.

Frozen dataclasses with no I/O, so a DAG file can build them at parse time and a task can
rebuild them from the same file at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: A mapping source as CHT's ``outbound`` config writes it: a ``doc.``-prefixed path, or an
#: object with ``path``/``expr``/``optional``. Kept verbatim so the engine applies CHT's rules.
MappingSource = str | dict[str, Any]


@dataclass(frozen=True)
class Auth:
    """How the destination request is authenticated; the secret is the Connection's password."""

    type: str = "none"  # none | basic | bearer | header
    header: str | None = None  # header name for type "header", e.g. "x-api-key"


@dataclass(frozen=True)
class Destination:
    """Where payloads go. Host, login and secret live in the Airflow Connection ``conn_id``."""

    conn_id: str
    path: str
    type: str = "rest"
    method: str = "POST"
    auth: Auth = field(default_factory=Auth)
    mode: str = "single"  # single: one payload a request; batch: a JSON array a request
    batch_size: int = 100
    concurrency: int = 4
    timeout: float = 30.0


@dataclass(frozen=True)
class Pipeline:
    """One CHT → destination pipeline; one Airflow DAG is generated from each."""

    name: str
    source: str  # the file it came from, for error messages
    start_date: datetime
    cht_conn_id: str
    relevant_to: str
    mapping: dict[str, MappingSource]
    destination: Destination
    schedule: str | None = None
    description: str = ""
    cht_db: str = "medic"
    batch_size: int = 1000
    script_timeout_ms: int = 1000
    state_conn_id: str | None = None
    retries: int = 2  # Airflow task retries after a transient failure (CHT or destination down)
    tags: tuple[str, ...] = ()
