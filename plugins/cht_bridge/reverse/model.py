"""The reverse-pipeline model: what a file in ``include/reverse/`` says once it has been checked.

A reverse pipeline reads a list from another system (an EMR's lost-to-follow-up patients, the
contacts of a case), matches each person to the CHT contacts, and creates a CHT report for each
row (and a person first when nobody matches), so a health worker gets a task. Frozen dataclasses
with no I/O, so the DAG file can build them at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cht_bridge.config.model import DEFAULT_TASK_TIMEOUT_MINUTES, MappingSource

#: Pages one run reads from a FHIR or REST source at most (``source.max_pages``). A list that
#: long is read over several runs (each page's checkpoint is kept); a server whose paging never
#: ends (a fresh next link or cursor on every page, or the same page again and again) is stopped.
DEFAULT_MAX_PAGES = 10_000
#: How far a FHIR ``meta.lastUpdated`` may lie ahead of this machine's clock and still move the
#: checkpoint (``source.clock_skew_minutes``): a server clock a little ahead is normal, a date
#: beyond that is an error upstream, and a checkpoint there would skip every real change until then.
DEFAULT_CLOCK_SKEW_MINUTES = 5

#: Keys of the mapped record that the run reads. ``person.*`` feeds the matcher and a new
#: person; ``report.*`` becomes the fields of the CHT report; ``place`` is looked up in the
#: place table. ``person.date_of_birth_estimated`` maps a source's own estimate flag (a CSV
#: ``birthdate_estimated`` column, a REST API's ``birthdateEstimated``; CHT's ``approx``): the
#: matcher then compares a different date by its likely year (an equal one is still the same date),
#: and a person created from the row says ``approx``.
PERSON_FIELDS = (
    "given_name",
    "family_name",
    "name",
    "sex",
    "date_of_birth",
    "date_of_birth_estimated",
    "phone",
    "identifier",
)


@dataclass(frozen=True)
class SourceConfig:
    """Where the list comes from. Credentials live in the Airflow Connection ``conn_id``."""

    type: str  # fhir | rest | csv | rapidpro
    conn_id: str | None = None
    resource: str | None = None  # fhir: the resource type searched (Patient, ServiceRequest, Task…)
    path: str | None = None  # rest: the endpoint under the Connection's host
    items: str = ""  # rest: dotted path of the item list in a page
    id_field: str = "id"  # rest: the item's id; csv: the id column
    version_field: str | None = None  # rest: the item's version (default: a hash of the item)
    paging: dict[str, Any] = field(default_factory=lambda: {"type": "none"})  # rest
    params: dict[str, Any] = field(default_factory=dict)  # fhir/rest: extra query parameters
    page_size: int = 100
    folder: str | None = None  # csv: the folder lists are dropped into
    pattern: str = "*.csv"  # csv
    timeout: float = 30.0
    max_pages: int = DEFAULT_MAX_PAGES  # fhir/rest/rapidpro: pages one run reads at most (rapidpro: all flows)
    clock_skew_minutes: float = DEFAULT_CLOCK_SKEW_MINUTES  # fhir
    flows: tuple[str, ...] = ()  # rapidpro: the flows (UUIDs) whose completed runs are read
    overlap_seconds: float = 60.0  # rapidpro: how far before the watermark each read starts


@dataclass(frozen=True)
class MatchSettings:
    """The matcher's thresholds and the CHT person property that holds the source's identifier.

    A threshold left out (``None``) is the matcher's own default (``cht_bridge.matching.MatchConfig``),
    tuned on the synthetic benchmark; a pipeline file sets one only to be more or less cautious.
    """

    upper: float | None = None  # at or above: link without asking
    lower: float | None = None  # below: a new person; in between: a person decides
    margin: float | None = None  # top two candidates closer than this: a person decides
    region: str = "KE"  # phones without a country code are read in this region
    identifier_field: str | None = "external_id"  # CHT person property holding the source's id
    # None: the shipped model; "learned": the newest model cht_bridge_matching_train stored that
    # passed its checks (else the shipped one); any other text: a model file (relative: from the repo)
    model: str | None = None


@dataclass(frozen=True)
class PlaceSettings:
    """How a row's facility or area code becomes the CHT place a new person is created under."""

    table: str  # CSV with columns code, place_id (+ optional name); relative paths from the repo
    key: str = "place"  # the mapped field holding the code


@dataclass(frozen=True)
class Target:
    """The CHT instance written to, and what is created there."""

    conn_id: str
    form: str  # the JSON form code of the report (upper case in CHT)
    person_type: str = "person"  # the contact type of a new person
    people_api: str = "legacy"  # legacy: POST /api/v1/people (CHT 3.x+); v1_person: POST /api/v1/person (5.2+)
    timeout: float = 30.0


@dataclass(frozen=True)
class Review:
    """How uncertain matches reach a person (Airflow's human-in-the-loop operators)."""

    timeout_hours: float = 72.0  # then the row waits for the next run's review
    max_candidates: int = 3
    assignees: tuple[str, ...] = ()  # Airflow user ids allowed to answer; empty: anyone


@dataclass(frozen=True)
class ReversePipeline:
    """One list → CHT pipeline; one Airflow DAG is generated from each."""

    name: str
    file: str  # the file it came from, for error messages
    start_date: datetime
    source: SourceConfig
    mapping: dict[str, MappingSource]
    match: MatchSettings
    places: PlaceSettings
    target: Target
    review: Review = field(default_factory=Review)
    relevant_to: str = "true"
    schedule: str | None = None
    description: str = ""
    script_timeout_ms: int = 1000
    state_conn_id: str | None = None
    retries: int = 2
    task_timeout_minutes: int = DEFAULT_TASK_TIMEOUT_MINUTES  # each task's execution_timeout
    tags: tuple[str, ...] = ()


#: A REST source's paging styles and the keys each takes (``reverse.sources.rest``).
PAGING_KEYS = {
    "none": {"type"},
    "cursor": {"type", "param", "next"},
    "offset": {"type", "param", "limit_param", "page_size"},
}
PAGING_DEFAULTS = {
    "none": {},
    "cursor": {"param": "cursor"},
    "offset": {"param": "offset", "limit_param": "limit", "page_size": 100},
}


def checked_paging(paging: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A REST source's ``paging`` with its defaults filled in, and its problems as ``(key, message)``.

    The one check of a paging block: the pipeline loader reports the problems with the file, the
    source refuses to start with them (``key`` is "" for the block as a whole).
    """
    if not isinstance(paging, dict) or paging.get("type", "none") not in PAGING_KEYS:
        return {"type": "none"}, [("", "must be a mapping with type cursor, offset or none")]
    kind = paging.get("type", "none")
    allowed = PAGING_KEYS[kind]
    problems = [(key, f"unknown key (allowed: {', '.join(sorted(allowed))})") for key in paging if key not in allowed]
    filled = {**PAGING_DEFAULTS[kind], **paging, "type": kind}
    if kind == "cursor" and (not isinstance(filled.get("next"), str) or not filled["next"]):
        problems.append(("next", "required for cursor paging: the dotted path of the next cursor in an answer"))
    size = filled.get("page_size", 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        problems.append(("page_size", f"must be a positive integer, not {size!r}"))
    return filled, problems
