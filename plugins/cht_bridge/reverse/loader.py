"""Read a reverse-pipeline file and check every key before anything runs.

Same rules as the forward pipelines (``cht_bridge.config.loader``): every problem in a file is
collected into one ``ConfigError`` naming the file and the key, and nothing here touches the
network, so the DAG file can call it at parse time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cht_bridge.config.loader import (
    _conn_id,
    _int,
    _mapping,
    _number,
    _Problems,
    first_checks,
    read_yaml,
    shared_keys,
)
from cht_bridge.errors import ConfigError
from cht_bridge.reverse.model import (
    DEFAULT_CLOCK_SKEW_MINUTES,
    DEFAULT_MAX_PAGES,
    PERSON_FIELDS,
    MatchSettings,
    PlaceSettings,
    ReversePipeline,
    Review,
    SourceConfig,
    Target,
    checked_paging,
)
from cht_bridge.storage import CLIMBS_OUT, climbs_out

TOP_KEYS = {
    "name", "description", "schedule", "start_date", "source", "relevant_to", "mapping", "match", "places",
    "target", "review", "script_timeout_ms", "state", "retries", "task_timeout_minutes", "tags",
}  # fmt: skip
SOURCE_TYPES = ("fhir", "rest", "csv", "rapidpro")
SOURCE_KEYS = {
    "fhir": {"type", "conn_id", "resource", "params", "page_size", "timeout", "max_pages", "clock_skew_minutes"},
    "rest": {"type", "conn_id", "path", "items", "id_field", "version_field", "paging", "params", "timeout"}
    | {"max_pages"},
    "csv": {"type", "folder", "pattern", "id_field"},
    "rapidpro": {"type", "conn_id", "flows", "timeout", "max_pages", "overlap_seconds"},
}
MATCH_KEYS = {"upper", "lower", "margin", "region", "identifier_field", "model"}
PLACE_KEYS = {"table", "key"}
TARGET_KEYS = {"conn_id", "form", "person_type", "people_api", "timeout"}
PEOPLE_APIS = ("legacy", "v1_person")
REVIEW_KEYS = {"timeout_hours", "max_candidates", "assignees"}


def load_reverse_pipeline(path: str | Path) -> ReversePipeline:
    """Load and check one reverse-pipeline file.

    :raises ConfigError: naming the file and every key at fault.
    """
    path = Path(path)
    return parse_reverse_pipeline(read_yaml(path), file=str(path), default_name=path.stem)


def parse_reverse_pipeline(raw: Any, *, file: str, default_name: str | None = None) -> ReversePipeline:
    """Check an already-parsed reverse-pipeline mapping and build the frozen model."""
    problems, name, schedule, start_date = first_checks(raw, TOP_KEYS, source=file, default_name=default_name)
    source = _source(raw.get("source"), problems)
    relevant_to = raw.get("relevant_to", "true")
    if not isinstance(relevant_to, str) or not relevant_to.strip():
        problems.add("relevant_to", "must be a JavaScript expression over the source record `doc`")
    mapping = _mapping(raw.get("mapping"), problems)
    _mapped_keys(mapping, problems)
    match = _match(raw.get("match", {}), problems)
    places = _places(raw.get("places"), problems)
    target = _target(raw.get("target"), problems)
    review = _review(raw.get("review", {}), problems)
    shared = shared_keys(raw, problems, default_batch=None)  # source.page_size sets the pages
    if places and mapping and places.key not in mapping:
        problems.add("places.key", f"'{places.key}' is not a key of mapping (it must hold the facility or area code)")

    if problems.lines:
        raise ConfigError(file, problems.lines)
    return ReversePipeline(
        name=name, file=file, start_date=start_date, source=source, mapping=mapping, match=match, places=places,
        target=target, review=review, relevant_to=relevant_to, schedule=schedule, **shared,
    )  # fmt: skip


def _section(value: Any, key: str, allowed: set[str], problems: _Problems, *, required: bool = True) -> dict | None:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        problems.add(key, "required: a mapping" if value is None else f"must be a mapping, got {type(value).__name__}")
        return None
    problems.unknown(value, allowed, f"{key}.")
    return value


def _text(section: dict, key: str, prefix: str, problems: _Problems, default: str | None = None) -> str | None:
    value = section.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(f"{prefix}.{key}", "must be a non-empty string")
        return None
    return value


def _source(value: Any, problems: _Problems) -> SourceConfig | None:
    if not isinstance(value, dict):
        problems.add("source", "required: a mapping with type (fhir, rest or csv)")
        return None
    kind = value.get("type")
    if kind not in SOURCE_TYPES:
        problems.add("source.type", f"must be one of {', '.join(SOURCE_TYPES)}")
        return None
    problems.unknown(value, SOURCE_KEYS[kind], "source.")
    params = value.get("params", {})
    if not isinstance(params, dict):
        problems.add("source.params", "must be a mapping of query parameters")
        params = {}
    common = {
        "type": kind,
        "params": {str(k): v for k, v in params.items()},
        "page_size": _int(value.get("page_size", 100), "source.page_size", 1, 1000, problems),
        "timeout": _number(value.get("timeout", 30), "source.timeout", 1, 600, problems),
    }
    if kind == "csv":
        folder = _text(value, "folder", "source", problems)
        if folder is None:
            problems.add("source.folder", "required: the folder CSV lists are dropped into")
        elif climbs_out(folder):
            problems.add("source.folder", CLIMBS_OUT)
        return SourceConfig(
            **common,
            folder=folder,
            pattern=_text(value, "pattern", "source", problems, "*.csv") or "*.csv",
            id_field=_text(value, "id_field", "source", problems, "id") or "id",
        )
    conn_id = _conn_id(value.get("conn_id"), "source.conn_id", problems)
    common["max_pages"] = _int(value.get("max_pages", DEFAULT_MAX_PAGES), "source.max_pages", 1, 1_000_000, problems)
    if kind == "rapidpro":
        return _rapidpro_source(value, common, conn_id, problems)
    if kind == "fhir":
        resource = value.get("resource")
        if not isinstance(resource, str) or not resource[:1].isupper() or not resource.isalpha():
            problems.add("source.resource", "required: a FHIR resource type such as Patient, ServiceRequest or Task")
        skew = _number(
            value.get("clock_skew_minutes", DEFAULT_CLOCK_SKEW_MINUTES), "source.clock_skew_minutes", 0, 1440, problems
        )
        return SourceConfig(**common, conn_id=conn_id, resource=resource, clock_skew_minutes=skew)
    path = _text(value, "path", "source", problems)
    if path is None:
        problems.add("source.path", "required: the endpoint path, e.g. /api/ltfu")
    items = value.get("items", "")
    if not isinstance(items, str):
        problems.add("source.items", "must be a dotted path such as data.results ('' for a top-level list)")
        items = ""
    return SourceConfig(
        **common,
        conn_id=conn_id,
        path=path,
        items=items,
        id_field=_text(value, "id_field", "source", problems, "id") or "id",
        version_field=_text(value, "version_field", "source", problems),
        paging=_paging(value.get("paging", {"type": "none"}), problems),
    )


def _rapidpro_source(value: dict, common: dict[str, Any], conn_id: str | None, problems: _Problems) -> SourceConfig:
    """RapidPro runs: the flows' UUIDs, and the overlap of each incremental read."""
    flows = value.get("flows")
    if not isinstance(flows, list) or not flows or not all(isinstance(f, str) and f.strip() for f in flows):
        problems.add("source.flows", "required: a list of flow UUIDs whose completed runs are read")
        flows = []
    overlap = _number(value.get("overlap_seconds", 60), "source.overlap_seconds", 0, 86400, problems)
    if isinstance(common.get("max_pages"), int) and common["max_pages"] < len(flows):
        problems.add(
            "source.max_pages", f"must be at least the number of flows ({len(flows)}): each reads a page a run"
        )
    common = {k: v for k, v in common.items() if k != "page_size"}  # RapidPro pages by 250
    return SourceConfig(**common, conn_id=conn_id, flows=tuple(flows), overlap_seconds=overlap)


def _paging(value: Any, problems: _Problems) -> dict[str, Any]:
    filled, found = checked_paging(value)
    for key, message in found:
        problems.add(f"source.paging.{key}".rstrip("."), message)
    return filled


def _mapped_keys(mapping: dict[str, Any], problems: _Problems) -> None:
    """The run reads ``person.*``, ``report.*`` and the place key; catch typos like ``persn.phone``."""
    for key in mapping:
        head, _, rest = key.partition(".")
        if head == "person" and rest not in PERSON_FIELDS:
            problems.add(f"mapping.{key}", f"unknown person field (allowed: {', '.join(PERSON_FIELDS)})")
        elif head not in ("person", "report", "place") and key != "place":
            problems.add(f"mapping.{key}", "must start with person., report. or be place")
    if mapping and not any(k.startswith("person.") for k in mapping):
        problems.add("mapping", "needs person.* fields (given_name, family_name or name, …) to match people")


def _match(value: Any, problems: _Problems) -> MatchSettings:
    section = _section(value, "match", MATCH_KEYS, problems, required=False)
    if not section:
        return MatchSettings()
    limits = {}
    for key in ("upper", "lower", "margin"):
        if section.get(key) is not None:
            limits[key] = _number(section[key], f"match.{key}", 0.0, 1.0, problems)
    if limits.get("lower", 0.0) > limits.get("upper", 1.0):
        problems.add("match.lower", f"must not be above match.upper ({limits['upper']})")
    identifier = section.get("identifier_field", "external_id")
    if identifier is not None and (not isinstance(identifier, str) or not identifier):
        problems.add("match.identifier_field", "must be a CHT person property name, or null")
    region = section.get("region", "KE")
    if not isinstance(region, str) or len(region) != 2 or not region.isalpha():
        problems.add("match.region", "must be a two-letter country code such as KE or UG")
    model = section.get("model")
    if model is not None and not _model_ok(model):
        problems.add(
            "match.model", "must be 'learned' or the path of a model file (python -m cht_bridge.matching train)"
        )
    return MatchSettings(**limits, region=str(region).upper(), identifier_field=identifier, model=model)


def _model_ok(value: Any) -> bool:
    """``learned``, or a model file that exists and holds comparisons (read at parse time, as JSON:
    the matching package itself imports Splink, too heavy for a DAG file)."""
    import json

    from cht_bridge.reverse.places import from_repo

    if value == "learned":
        return True
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        model = json.loads(from_repo(value).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(model, dict) and bool(model.get("comparisons"))


def _places(value: Any, problems: _Problems) -> PlaceSettings | None:
    section = _section(value, "places", PLACE_KEYS, problems)
    if section is None:
        return None
    table = _text(section, "table", "places", problems)
    if table is None:
        problems.add("places.table", "required: a CSV file with columns code and place_id")
        return None
    return PlaceSettings(table=table, key=_text(section, "key", "places", problems, "place") or "place")


def _target(value: Any, problems: _Problems) -> Target | None:
    section = _section(value, "target", TARGET_KEYS, problems)
    if section is None:
        return None
    conn_id = _conn_id(section.get("conn_id"), "target.conn_id", problems)
    form = section.get("form")
    if not isinstance(form, str) or not form or form != form.upper():
        problems.add("target.form", "required: the JSON form code, upper case as CHT stores it (e.g. LTFU_FOLLOWUP)")
    api = section.get("people_api", "legacy")
    if api not in PEOPLE_APIS:
        problems.add("target.people_api", f"must be one of {', '.join(PEOPLE_APIS)}")
    return Target(
        conn_id=conn_id,
        form=form,
        person_type=_text(section, "person_type", "target", problems, "person") or "person",
        people_api=api,
        timeout=_number(section.get("timeout", 30), "target.timeout", 1, 600, problems),
    )


def _review(value: Any, problems: _Problems) -> Review:
    section = _section(value, "review", REVIEW_KEYS, problems, required=False)
    if not section:
        return Review()
    assignees = section.get("assignees", [])
    if not isinstance(assignees, list) or not all(isinstance(a, str) for a in assignees):
        problems.add("review.assignees", "must be a list of Airflow user ids")
        assignees = []
    return Review(
        timeout_hours=_number(section.get("timeout_hours", 72), "review.timeout_hours", 0.01, 24 * 60, problems),
        max_candidates=_int(section.get("max_candidates", 3), "review.max_candidates", 1, 10, problems),
        assignees=tuple(assignees),
    )
