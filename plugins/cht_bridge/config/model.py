"""The pipeline model: what a pipeline file says once it has been checked.

Frozen dataclasses with no I/O, so a DAG file can build them at parse time and a task can
rebuild them from the same file at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cht_bridge.http.settings import AuthSetting as Auth  # a destination's ``auth:`` block

#: A mapping source as CHT's ``outbound`` config writes it: a ``doc.``-prefixed path, or an
#: object with ``path``/``expr``/``optional``. Kept verbatim so the engine applies CHT's rules.
MappingSource = str | dict[str, Any]

#: Each task of a pipeline's DAG is stopped after this long (Airflow's ``execution_timeout``),
#: so a read or a delivery that hangs despite its own deadlines cannot hold the pipeline for
#: ever. Every step keeps its place page by page (checkpoints, ledgers), so a stopped task
#: loses nothing: Airflow's retry or the next run carries on from there. An hour is many times
#: what a first sync of a million documents needs at the measured ~9,000 documents a second.
DEFAULT_TASK_TIMEOUT_MINUTES = 60


@dataclass(frozen=True)
class DestinationConfig:
    """The pipeline file's ``destination:`` settings: where payloads go (not the sender, ``destinations.Destination``).

    Host, login and secret live in the Airflow Connection ``conn_id``.
    """

    conn_id: str
    path: str
    type: str = "rest"
    method: str = "POST"
    auth: Auth = field(default_factory=Auth)
    mode: str = "single"  # single: one payload a request; batch: a JSON array a request
    batch_size: int = 100
    concurrency: int = 4
    timeout: float = 30.0
    #: The kind's own block (``destination.<type>:``) as its checker in ``config/kinds/`` parsed it;
    #: None for a kind without one (``rest``).
    settings: Any = None


@dataclass(frozen=True)
class DeliverySettings:
    """The pipeline file's ``delivery:`` settings (not one request, ``destinations.Delivery``).

    How hard a pipeline tries before a document waits for the next run or is given up.

    Retries inside a run absorb a destination's hiccups (408, 429, 5xx, timeouts); runs absorb
    outages; ``dead_after`` stops a document that can never arrive from being tried for ever,
    which is what CHT's own outbound queue does.
    """

    retries: int = 4  # repeats of one request after a retryable answer, inside the run
    backoff_seconds: float = 1.0  # first wait; doubles on each repeat, with jitter
    max_backoff_seconds: float = 60.0  # longest wait inside a run; a longer Retry-After waits for the next run
    breaker_after: int = 10  # consecutive retryable failures that stop the run (circuit breaker)
    dead_after: int = 5  # failed runs after which a document becomes a dead letter


@dataclass(frozen=True)
class Deletes:
    """What a deleted CHT document (a tombstone in the changes feed) does at the destination.

    ``ignore`` is CHT's own behaviour. ``send`` sends one request per deleted document that was
    delivered before; ``path`` and the strings in ``body`` may use ``{doc_id}`` and
    ``{destination_id}`` (the id the destination answered when the document was delivered).
    """

    action: str = "ignore"  # ignore | send
    method: str = "DELETE"
    path: str | None = None  # defaults to the destination's path + "/{doc_id}"
    body: Any = None  # JSON to send with the request, or None for no body


@dataclass(frozen=True)
class Pipeline:
    """One CHT → destination pipeline; one Airflow DAG is generated from each."""

    name: str
    file: str  # the file it came from, for error messages
    start_date: datetime
    cht_conn_id: str
    relevant_to: str
    mapping: dict[str, MappingSource]
    destination: DestinationConfig
    schedule: str | None = None
    description: str = ""
    cht_db: str = "medic"
    batch_size: int = 1000
    script_timeout_ms: int = 1000
    state_conn_id: str | None = None
    retries: int = 2  # Airflow task retries after a transient failure (CHT or destination down)
    task_timeout_minutes: int = DEFAULT_TASK_TIMEOUT_MINUTES  # each task's execution_timeout
    tags: tuple[str, ...] = ()
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    deletes: Deletes = field(default_factory=Deletes)
    #: FHIR templates (the ``fhir:`` block, ``cht_bridge.fhir.templates.FhirTemplates``): each
    #: document becomes the list of resources they make; ``mapping`` is then their fields' sources.
    fhir: Any = None
