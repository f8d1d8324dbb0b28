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


def test_the_example_csv_pipeline_reads_its_folder_under_the_cluster_and_compose_settings(tmp_path, monkeypatch):
    """Under the CeleryExecutor a relative drop folder is refused unless CHT_BRIDGE_CSV_ROOT (a URL) says
    where it lives: make cluster gives the repository as file://, compose the include volume."""
    import yaml

    from cht_bridge.hooks.source import open_source
    from cht_bridge.reverse.loader import load_reverse_pipeline

    paths = cluster.Paths(tmp_path)
    paths.run.mkdir(parents=True)
    paths.sandbox_env.write_text(json.dumps({"environment": {"AIRFLOW_CONN_CHT_LOCAL": "{}"}}))
    env = cluster.airflow_environment(paths)
    for key in ("AIRFLOW__CORE__EXECUTOR", "CHT_BRIDGE_CSV_ROOT"):
        monkeypatch.setenv(key, env[key])
    pipeline = load_reverse_pipeline(cluster.ROOT / "include" / "reverse" / "contact_tracing_csv.yaml")
    source = open_source(pipeline.source)
    assert str(source.folder) == f"file://{cluster.ROOT}/{pipeline.source.folder}"
    assert sum(len(page.records) for page in source.pages(None)) == 21
    compose_file = yaml.safe_load((cluster.ROOT / "docker-compose.yaml").read_text())["x-airflow-common"]
    root = compose_file["environment"]["CHT_BRIDGE_CSV_ROOT"]
    assert root == "file:///opt/airflow/" and "./include:/opt/airflow/include" in compose_file["volumes"]


def test_the_pools_dag_has_its_connection_and_user_in_both(tmp_path):
    """cht_bridge_pools logs in as cht_bridge_pools (role op): make cluster and compose both define it."""
    import yaml

    paths = cluster.Paths(tmp_path)
    paths.run.mkdir(parents=True)
    paths.sandbox_env.write_text(json.dumps({"environment": {}}))
    env = cluster.airflow_environment(paths)
    conn = json.loads(env["AIRFLOW_CONN_CHT_BRIDGE_AIRFLOW_API"])
    assert conn["host"] == cluster.api_url() and conn["login"] == cluster.POOLS_USER
    assert conn["password"] == cluster.cluster_secrets(paths)["pools_user"]
    assert f"{cluster.POOLS_USER}:op" in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    compose_env = yaml.safe_load((cluster.ROOT / "docker-compose.yaml").read_text())["x-airflow-common"]["environment"]
    compose_conn = compose_env["AIRFLOW_CONN_CHT_BRIDGE_AIRFLOW_API"]
    assert "${AIRFLOW_POOLS_PASSWORD:?" in compose_conn and '"login": "cht_bridge_pools"' in compose_conn
    assert "cht_bridge_pools:op" in compose_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]


def test_make_airflow_gets_the_pools_user_without_losing_the_admins_password(tmp_path):
    passwords = tmp_path / "simple_auth_manager_passwords.json.generated"
    passwords.write_text(json.dumps({"admin": "kept"}))
    env = cluster.pools_user_access(passwords, "http://127.0.0.1:8080")
    saved = json.loads(passwords.read_text())
    assert saved["admin"] == "kept" and len(saved[cluster.POOLS_USER]) == 24
    assert passwords.stat().st_mode & 0o777 == 0o600
    assert json.loads(env["AIRFLOW_CONN_CHT_BRIDGE_AIRFLOW_API"])["password"] == saved[cluster.POOLS_USER]
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == f"admin:admin,{cluster.POOLS_USER}:op"
    assert cluster.pools_user_access(passwords, "http://127.0.0.1:8080") == env  # the same password next start


def test_secrets_keep_what_exists_and_an_emptied_file_does_not_silently_change_the_database_password(tmp_path):
    import pytest

    paths = cluster.Paths(tmp_path)
    first = cluster.cluster_secrets(paths)
    secrets_file = tmp_path / "secrets.json"
    partial = {k: v for k, v in first.items() if k not in ("jwt", "pools_user")}  # an older cluster's file
    secrets_file.write_text(json.dumps(partial))
    again = cluster.cluster_secrets(paths)
    assert {k: again[k] for k in partial} == partial and set(again) == set(first)  # only the missing ones added
    assert json.loads(secrets_file.read_text()) == again
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "PG_VERSION").write_text("16\n")  # the database exists, made with the old password
    for emptied in ("", "{}"):
        secrets_file.write_text(emptied)
        with pytest.raises(RuntimeError, match="no postgres, fernet .*make cluster-clean"):
            cluster.cluster_secrets(paths)
        assert secrets_file.read_text() == emptied  # nothing regenerated behind the person's back
