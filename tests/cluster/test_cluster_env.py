"""One source for the environment: docker-compose.yaml and `make cluster` read include/cluster.env.

Not marked ``cluster``: it needs no running cluster (compose is rendered by the real Compose binary,
the native environment is computed without starting anything)."""

from __future__ import annotations

import json
from pathlib import Path

from standins import cluster
from tests.compose.test_compose import AIRFLOW_SERVICES, ENV_EXAMPLE, SECRET_KEY, compose, env_values, needs_compose


def test_the_shared_file_is_plain_key_value_lines_without_secrets():
    values = cluster.read_env_file()
    assert values["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert values["CHT_BRIDGE_STATE_CONN_ID"] == "cht_bridge_state"
    assert not [key for key in values if SECRET_KEY.search(key)]
    assert not [value for value in values.values() if "${" in value or value[:1] in "'\""]


@needs_compose
def test_every_airflow_service_of_compose_gets_the_shared_settings(tmp_path):
    values = env_values(ENV_EXAMPLE)
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={'x0test' if SECRET_KEY.search(k) else v}\n" for k, v in values.items()))
    result = compose("config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    shared = cluster.read_env_file()
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        environment = services[name]["environment"]
        assert {k: environment.get(k) for k in shared} == shared, name


def test_make_cluster_gives_its_processes_the_shared_settings(tmp_path):
    paths = cluster.Paths(tmp_path)
    paths.run.mkdir(parents=True)
    paths.sandbox_env.write_text(json.dumps({"environment": {"AIRFLOW_CONN_CHT_LOCAL": "{}"}}))
    env = cluster.airflow_environment(paths)
    assert {k: env[k] for k in cluster.read_env_file()} == cluster.read_env_file()
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{cluster.api_url()}/execution/"
    assert json.loads(env["AIRFLOW_CONN_CHT_BRIDGE_STATE"])["schema"] == "cht_bridge"
    assert (Path(tmp_path) / "secrets.json").stat().st_mode & 0o777 == 0o600
