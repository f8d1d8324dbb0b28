"""Read a pipeline file and check every key before anything runs.

All problems in a file are collected and raised together as one ``ConfigError`` that names the
file and each key, so a person fixes the file in one pass (the way splink's settings validation
reports). Nothing here touches the network, so the DAG file can call it at parse time.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from cht_bridge.config.model import (
    DEFAULT_TASK_TIMEOUT_MINUTES,
    Auth,
    Deletes,
    DeliverySettings,
    DestinationConfig,
    MappingSource,
    Pipeline,
)
from cht_bridge.errors import ConfigError
from cht_bridge.http.settings import AUTH_KEYS, read_auth

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
SCHEDULE_PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"}
METHODS = ("POST", "PUT")
MODES = ("single", "batch")
MAX_BATCH = 500  # per-item idempotency keys travel in one header; keep it under 16 KiB
#: Longest a task may run (minutes): a day, so a stuck read never blocks a pipeline longer than that.
MAX_TASK_TIMEOUT_MINUTES = 24 * 60

TOP_KEYS = {
    "name",
    "description",
    "schedule",
    "start_date",
    "cht",
    "relevant_to",
    "mapping",
    "destination",
    "batch_size",
    "script_timeout_ms",
    "state",
    "retries",
    "task_timeout_minutes",
    "tags",
    "delivery",
    "deletes",
    "fhir",
}
CHT_KEYS = {"conn_id", "db"}
DEST_KEYS = {"type", "conn_id", "path", "method", "auth", "mode", "batch_size", "concurrency", "timeout"}
SOURCE_KEYS = {"path", "expr", "optional"}
DELIVERY_KEYS = {"retries", "backoff_seconds", "max_backoff_seconds", "breaker_after", "dead_after"}
DELETE_KEYS = {"action", "method", "path", "body"}
DELETE_ACTIONS = ("ignore", "send")
DELETE_METHODS = ("DELETE", "POST", "PUT", "PATCH")


class _Problems:
    """Collects ``key: message`` lines while a file is checked."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(f"{key}: {message}")

    def unknown(self, section: dict, allowed: set[str], prefix: str = "") -> None:
        for key in section:
            if key not in allowed:
                self.add(f"{prefix}{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def first_checks(
    raw: Any, allowed: set[str], *, source: str, default_name: str | None
) -> tuple[_Problems, Any, str | None, datetime | None]:
    """Start checking a pipeline file: its shape, unknown keys, ``name``, ``schedule``, ``start_date``."""
    problems = _Problems()
    if not isinstance(raw, dict):
        raise ConfigError(source, ["(top level): must be a mapping of keys, got " + type(raw).__name__])
    problems.unknown(raw, allowed)
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.add("name", "must be letters, digits, '_', '.' or '-' (it becomes the DAG id)")
    return problems, name, _schedule(raw.get("schedule"), problems), _start_date(raw.get("start_date"), problems)


def shared_keys(raw: dict, problems: _Problems, *, default_batch: int | None) -> dict[str, Any]:
    """The keys every pipeline file has, forward or reverse, checked the same way.

    ``default_batch`` ``None``: the file has no ``batch_size`` (its source decides the page size).
    """
    state = raw.get("state") or {}
    state_conn_id = None
    if not isinstance(state, dict):
        problems.add("state", "must be a mapping with conn_id")
    else:
        problems.unknown(state, {"conn_id"}, "state.")
        if "conn_id" in state:
            state_conn_id = _conn_id(state.get("conn_id"), "state.conn_id", problems)
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.add("tags", "must be a list of strings")
        tags = []
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.add("description", "must be a string")
    shared = {
        "script_timeout_ms": _int(raw.get("script_timeout_ms", 1000), "script_timeout_ms", 10, 60000, problems),
        "retries": _int(raw.get("retries", 2), "retries", 0, 10, problems),
        "task_timeout_minutes": _int(
            raw.get("task_timeout_minutes", DEFAULT_TASK_TIMEOUT_MINUTES),
            "task_timeout_minutes",
            1,
            MAX_TASK_TIMEOUT_MINUTES,
            problems,
        ),
        "state_conn_id": state_conn_id,
        "tags": tuple(tags),
        "description": description,
    }
    if default_batch is not None:
        shared["batch_size"] = _int(raw.get("batch_size", default_batch), "batch_size", 1, 10000, problems)
    return shared


def load_pipeline(path: str | Path) -> Pipeline:
    """Load and check one pipeline file.

    :raises ConfigError: naming the file and every key at fault.
    """
    path = Path(path)
    return parse_pipeline(read_yaml(path), file=str(path), default_name=path.stem)


def read_yaml(path: Path) -> Any:
    """The parsed file; an unreadable file or bad YAML is a ``ConfigError`` naming the line."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise ConfigError(str(path), [f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]) from exc
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc


def find_pipeline(folder: str | Path, name: str) -> Pipeline:
    """The pipeline called ``name`` among the files of ``folder`` (the replay DAG's lookup).

    :raises ConfigError: when no valid file has that name.
    """
    for path in sorted(Path(folder).glob("*.y*ml")):
        try:
            pipeline = load_pipeline(path)
        except ConfigError:
            if path.stem == name:
                raise
            continue
        if pipeline.name == name:
            return pipeline
    raise ConfigError(str(folder), [f"pipeline: no valid pipeline file named '{name}' in this folder"])


def parse_pipeline(raw: Any, *, file: str, default_name: str | None = None) -> Pipeline:
    """Check an already-parsed pipeline mapping and build the frozen model."""
    problems, name, schedule, start_date = first_checks(raw, TOP_KEYS, source=file, default_name=default_name)

    cht = raw.get("cht")
    cht_conn_id, cht_db = None, "medic"
    if not isinstance(cht, dict):
        problems.add("cht", "required: a mapping with conn_id (the Airflow connection to CHT)")
    else:
        problems.unknown(cht, CHT_KEYS, "cht.")
        cht_conn_id = _conn_id(cht.get("conn_id"), "cht.conn_id", problems)
        cht_db = cht.get("db", "medic")
        if not isinstance(cht_db, str) or not cht_db:
            problems.add("cht.db", "must be a database name such as 'medic'")

    relevant_to = raw.get("relevant_to")
    if not isinstance(relevant_to, str) or not relevant_to.strip():
        problems.add("relevant_to", "required: a JavaScript expression over the hydrated `doc`")

    destination = _destination(raw.get("destination"), problems)
    fhir = None
    if "fhir" in raw:
        fhir = _fhir(raw, destination, problems)
        mapping = fhir.mapping() if fhir is not None else {}
    else:
        mapping = _mapping(raw.get("mapping"), problems)
    shared = shared_keys(raw, problems, default_batch=1000)
    delivery = _delivery(raw.get("delivery", {}), problems)
    deletes = _deletes(raw.get("deletes", {"action": "ignore"}), problems)

    if problems.lines:
        raise ConfigError(file, problems.lines)
    return Pipeline(
        name=name,
        file=file,
        start_date=start_date,
        cht_conn_id=cht_conn_id,
        relevant_to=relevant_to,
        mapping=mapping,
        destination=destination,
        schedule=schedule,
        cht_db=cht_db,
        **shared,
        delivery=delivery,
        deletes=deletes,
        fhir=fhir,
    )


def _fhir(raw: dict, destination: DestinationConfig | None, problems: _Problems) -> Any:
    """The ``fhir:`` block (FHIR templates): the resources each document becomes, instead of ``mapping``."""
    from cht_bridge.fhir.templates import parse  # pure Python, no FHIR models

    if "mapping" in raw:
        problems.add("mapping", "a pipeline with a fhir: block takes no mapping (its templates are the mapping)")
    return parse(
        raw["fhir"],
        lambda key, message: problems.add(f"fhir.{key}" if key else "fhir", message),
        lambda key, source: _source(key, source, problems),
        default_system=getattr(getattr(destination, "settings", None), "identifier_system", None) or None,
    )


def _schedule(value: Any, problems: _Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add("schedule", "must be a cron expression, a preset such as '@daily', or null")
        return None
    if value in SCHEDULE_PRESETS:
        return value
    from croniter import croniter  # Airflow's own cron parser, already imported by Airflow

    if not croniter.is_valid(value):
        problems.add("schedule", f"'{value}' is not a valid cron expression")
    return value


def _start_date(value: Any, problems: _Problems) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    problems.add("start_date", "required: a date such as 2026-01-01")
    return None


def _conn_id(value: Any, key: str, problems: _Problems) -> str | None:
    if isinstance(value, str) and NAME_RE.match(value):
        return value
    problems.add(key, "required: the id of an Airflow connection")
    return None


def _int(value: Any, key: str, low: int, high: int, problems: _Problems) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add(key, f"must be a whole number from {low} to {high}")
        return low
    return value


def _mapping(value: Any, problems: _Problems) -> dict[str, MappingSource]:
    if not isinstance(value, dict) or not value:
        problems.add("mapping", "required: destination key → source path or {path, expr, optional}")
        return {}
    for dest, src in value.items():
        key = f"mapping.{dest}"
        if not isinstance(dest, str) or not dest:
            problems.add(key, "destination keys must be non-empty strings")
        else:
            _source(key, src, problems)
    return dict(value)


def _source(key: str, src: Any, problems: _Problems) -> None:
    """One mapping source: a ``doc.`` path, or ``{path, expr, optional}``."""
    if isinstance(src, str):
        if not _is_doc_path(src):
            problems.add(key, f"source path '{src}' must start with 'doc.' (CHT resolves it against {{doc}})")
    elif isinstance(src, dict):
        problems.unknown(src, SOURCE_KEYS, key + ".")
        expr, path = src.get("expr"), src.get("path")
        if not expr and not path:
            problems.add(key, "needs 'path' or 'expr'")
        if expr is not None and not isinstance(expr, (str, bool, int, float)):
            problems.add(key + ".expr", "must be a JavaScript expression")
        if path is not None and not expr and not _is_doc_path(path):
            problems.add(key + ".path", f"source path '{path}' must start with 'doc.'")
        if "optional" in src and not isinstance(src["optional"], bool):
            problems.add(key + ".optional", "must be true or false")
    else:
        problems.add(key, "must be a 'doc.' path or a mapping with path/expr/optional")


def _number(value: Any, key: str, low: float, high: float, problems: _Problems) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        problems.add(key, f"must be a number from {low:g} to {high:g}")
        return low
    return float(value)


def _delivery(value: Any, problems: _Problems) -> DeliverySettings:
    if not isinstance(value, dict):
        problems.add("delivery", "must be a mapping (retries, backoff_seconds, max_backoff_seconds, ...)")
        return DeliverySettings()
    problems.unknown(value, DELIVERY_KEYS, "delivery.")
    default = DeliverySettings()
    backoff = _number(
        value.get("backoff_seconds", default.backoff_seconds), "delivery.backoff_seconds", 0, 600, problems
    )
    longest = _number(
        value.get("max_backoff_seconds", default.max_backoff_seconds), "delivery.max_backoff_seconds", 0, 3600, problems
    )
    if longest < backoff:
        problems.add("delivery.max_backoff_seconds", "must not be smaller than delivery.backoff_seconds")
    return DeliverySettings(
        retries=_int(value.get("retries", default.retries), "delivery.retries", 0, 20, problems),
        backoff_seconds=backoff,
        max_backoff_seconds=longest,
        breaker_after=_int(
            value.get("breaker_after", default.breaker_after), "delivery.breaker_after", 1, 1000, problems
        ),
        dead_after=_int(value.get("dead_after", default.dead_after), "delivery.dead_after", 1, 1000, problems),
    )


def _deletes(value: Any, problems: _Problems) -> Deletes:
    if isinstance(value, str):
        value = {"action": value}
    if not isinstance(value, dict):
        problems.add("deletes", "must be 'ignore' or a mapping with action: send, method, path, body")
        return Deletes()
    problems.unknown(value, DELETE_KEYS, "deletes.")
    action = value.get("action", "ignore")
    if action not in DELETE_ACTIONS:
        problems.add("deletes.action", f"must be one of {', '.join(DELETE_ACTIONS)} (got '{action}')")
        return Deletes()
    method = str(value.get("method", "DELETE")).upper()
    if method not in DELETE_METHODS:
        problems.add("deletes.method", f"must be one of {', '.join(DELETE_METHODS)} (got '{value.get('method')}')")
    path = value.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        problems.add("deletes.path", "must be a path starting with '/', e.g. /patients/{doc_id}")
    elif isinstance(path, str):
        try:
            path.format(doc_id="x", destination_id="y")
        except (KeyError, IndexError, ValueError) as exc:
            problems.add("deletes.path", f"only {{doc_id}} and {{destination_id}} may be used ({exc!r})")
    body = value.get("body")
    if body is not None and not isinstance(body, (dict, list)):
        problems.add("deletes.body", "must be a JSON object or list, or left out for no body")
    if action == "ignore" and len(value) > 1:
        problems.add("deletes", "method, path and body are used only with action: send")
    return Deletes(action=action, method=method, path=path, body=body)


def _is_doc_path(path: Any) -> bool:
    return isinstance(path, str) and (path == "doc" or path.startswith("doc."))


def _destination(value: Any, problems: _Problems) -> DestinationConfig | None:
    if not isinstance(value, dict):
        problems.add("destination", "required: a mapping with conn_id and path")
        return None
    from cht_bridge.config.kinds import parse_settings, settings_module
    from cht_bridge.destinations.registry import kinds  # the kinds by name; their modules load when a run opens one

    kind = value.get("type", "rest")
    if kind not in kinds():
        problems.add("destination.type", f"'{kind}' is not available (available: {', '.join(kinds())})")
        kind_module = None
    else:
        kind_module = settings_module(kind)
    problems.unknown(value, DEST_KEYS | ({kind} if kind_module else set()), "destination.")
    settings = None
    if kind_module is not None:
        settings = parse_settings(
            kind, value.get(kind), lambda key, message: problems.add(f"destination.{key}", message)
        )
    conn_id = _conn_id(value.get("conn_id"), "destination.conn_id", problems)
    path = value.get("path", getattr(kind_module, "DEFAULT_PATH", None))
    if not isinstance(path, str) or not path.startswith("/"):
        problems.add("destination.path", "required: a path starting with '/', joined to the connection's host")
    method = str(value.get("method", "POST")).upper()
    if method not in METHODS:
        problems.add("destination.method", f"must be one of {', '.join(METHODS)} (got '{value.get('method')}')")
    mode = value.get("mode", "single")
    if mode not in MODES:
        problems.add("destination.mode", f"must be one of {', '.join(MODES)} (got '{mode}')")
    auth = _auth(value.get("auth", {"type": "none"}), problems)
    batch_size = _int(value.get("batch_size", 100), "destination.batch_size", 1, MAX_BATCH, problems)
    concurrency = _int(value.get("concurrency", 4), "destination.concurrency", 1, 64, problems)
    timeout = value.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        problems.add("destination.timeout", "must be a number of seconds from 0 to 600")
        timeout = 30
    return DestinationConfig(
        conn_id=conn_id,
        path=path,
        type=kind,
        method=method,
        auth=auth,
        mode=mode,
        batch_size=batch_size,
        concurrency=concurrency,
        timeout=float(timeout),
        settings=settings,
    )


def _auth(value: Any, problems: _Problems) -> Auth:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        problems.add("destination.auth", "must be a mapping such as {type: basic}")
        return Auth()
    problems.unknown(value, AUTH_KEYS, "destination.auth.")
    setting, found = read_auth(value)
    for key, message in found:
        problems.add(f"destination.auth.{key}", message)
    return setting
