"""Pipeline files are checked whole, and every problem names the file and the key."""

import textwrap
from datetime import UTC, datetime

import pytest

from cht_bridge.config import load_pipeline
from cht_bridge.errors import ConfigError

GOOD = """
name: pregnancies_to_emr
description: Pregnancy registrations to the EMR
schedule: "*/15 * * * *"
start_date: 2026-01-01
cht: {conn_id: cht_local}
relevant_to: "doc.type === 'data_record' && doc.form === 'pregnancy'"
mapping:
  id: doc._id
  patient.id: {path: doc.fields.patient_id}
  lmp: {path: doc.fields.lmp_date, optional: true}
  kind: {expr: "'pregnancy'"}
destination:
  conn_id: emr_api
  path: /api/pregnancies
  method: put
  auth: {type: header, header: x-api-key}
  mode: batch
  batch_size: 50
batch_size: 500
tags: [anc]
"""


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_file_loads_into_the_model(tmp_path):
    p = load_pipeline(write(tmp_path, GOOD))
    assert p.name == "pregnancies_to_emr"
    assert p.start_date == datetime(2026, 1, 1, tzinfo=UTC)
    assert p.schedule == "*/15 * * * *"
    assert p.cht_conn_id == "cht_local" and p.cht_db == "medic"
    assert list(p.mapping) == ["id", "patient.id", "lmp", "kind"]
    assert p.destination.method == "PUT" and p.destination.mode == "batch" and p.destination.batch_size == 50
    assert p.destination.auth.type == "header" and p.destination.auth.header == "x-api-key"
    assert p.batch_size == 500 and p.tags == ("anc",)


def test_task_timeout_defaults_to_an_hour_and_is_read(tmp_path):
    assert load_pipeline(write(tmp_path, GOOD)).task_timeout_minutes == 60
    assert load_pipeline(write(tmp_path, GOOD + "task_timeout_minutes: 15\n")).task_timeout_minutes == 15


def test_name_defaults_to_the_file_name(tmp_path):
    p = load_pipeline(write(tmp_path, GOOD.replace("name: pregnancies_to_emr\n", ""), "from_file.yaml"))
    assert p.name == "from_file"


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ('schedule: "*/15 * * * *"', "schedule: every day", "schedule", "not a valid cron expression"),
        ("start_date: 2026-01-01", "start_date: soon", "start_date", "a date such as"),
        ("cht: {conn_id: cht_local}", "cht: {db: medic}", "cht.conn_id", "Airflow connection"),
        ("  id: doc._id", "  id: _id", "mapping.id", "must start with 'doc.'"),
        ("  kind: {expr: \"'pregnancy'\"}", "  kind: {optional: true}", "mapping.kind", "needs 'path' or 'expr'"),
        ("  method: put", "  method: GET", "destination.method", "POST, PUT"),
        ("  mode: batch", "  mode: bulk", "destination.mode", "single, batch"),
        (
            "  auth: {type: header, header: x-api-key}",
            "  auth: {type: header}",
            "destination.auth.header",
            "header name",
        ),
        ("  auth: {type: header, header: x-api-key}", "  auth: {type: oauth}", "destination.auth.type", "none, basic"),
        ("  batch_size: 50", "  batch_size: 5000", "destination.batch_size", "1 to 500"),
        ("  path: /api/pregnancies", "  path: api", "destination.path", "starting with '/'"),
        ("batch_size: 500", "batch_size: many", "batch_size", "whole number"),
        ("tags: [anc]", "tagz: [anc]", "tagz", "unknown key"),
        ("tags: [anc]", "task_timeout_minutes: 0", "task_timeout_minutes", "whole number from 1 to 1440"),
        ("tags: [anc]", "task_timeout_minutes: 1h", "task_timeout_minutes", "whole number from 1 to 1440"),
    ],
)
def test_each_bad_key_is_named_with_the_file(tmp_path, old, new, key, words):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid pipeline configuration")
    line = next(line for line in message.splitlines() if line.strip().startswith(f"- {key}:"))
    assert words in line


def test_all_problems_are_reported_at_once(tmp_path):
    path = write(tmp_path, GOOD.replace("  method: put", "  method: GET").replace("  mode: batch", "  mode: x"))
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert [p.split(":")[0] for p in err.value.problems] == ["destination.method", "destination.mode"]


def test_yaml_syntax_errors_give_the_line(tmp_path):
    path = write(tmp_path, "name: x\nmapping: {id: doc._id\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert str(err.value).startswith(f"{path}: invalid pipeline configuration:\n  - line 3")


def test_a_file_that_is_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping of keys"):
        load_pipeline(write(tmp_path, "- just\n- a list\n"))


# -- delivery and deletes ------------------------------------------------------------------------------


def test_delivery_and_deletes_default_to_bounded_retries_and_cht_behaviour(tmp_path):
    p = load_pipeline(write(tmp_path, GOOD))
    assert (p.delivery.retries, p.delivery.breaker_after, p.delivery.dead_after) == (4, 10, 5)
    assert p.deletes.action == "ignore"  # as CHT: a deleted document sends nothing


def test_delivery_and_deletes_are_read(tmp_path):
    text = GOOD + textwrap.dedent(
        """
        delivery: {retries: 2, backoff_seconds: 0.5, max_backoff_seconds: 30, breaker_after: 20, dead_after: 3}
        deletes:
          action: send
          method: post
          path: /api/pregnancies/{destination_id}/void
          body: {id: "{doc_id}", voided: true}
        """
    )
    p = load_pipeline(write(tmp_path, text))
    assert (p.delivery.retries, p.delivery.backoff_seconds, p.delivery.max_backoff_seconds) == (2, 0.5, 30.0)
    assert (p.delivery.breaker_after, p.delivery.dead_after) == (20, 3)
    assert (p.deletes.action, p.deletes.method, p.deletes.path) == (
        "send",
        "POST",
        "/api/pregnancies/{destination_id}/void",
    )
    assert p.deletes.body == {"id": "{doc_id}", "voided": True}


@pytest.mark.parametrize(
    "extra, key, words",
    [
        ("delivery: {retries: -1}", "delivery.retries", "whole number from 0 to 20"),
        ("delivery: {backoff_seconds: 5, max_backoff_seconds: 1}", "delivery.max_backoff_seconds", "not be smaller"),
        ("delivery: {dead_after: 0}", "delivery.dead_after", "from 1 to 1000"),
        ("delivery: {tries: 3}", "delivery.tries", "unknown key"),
        ("deletes: purge", "deletes.action", "must be one of ignore, send"),
        ("deletes: {action: send, method: GET}", "deletes.method", "must be one of DELETE, POST, PUT, PATCH"),
        ("deletes: {action: send, path: 'x/{doc_id}'}", "deletes.path", "starting with '/'"),
        ("deletes: {action: send, path: '/x/{uuid}'}", "deletes.path", "only {doc_id} and {destination_id}"),
        ("deletes: {action: send, body: 'void'}", "deletes.body", "JSON object or list"),
        ("deletes: {action: ignore, path: /x}", "deletes", "only with action: send"),
    ],
)
def test_bad_delivery_and_deletes_keys_are_named(tmp_path, extra, key, words):
    path = write(tmp_path, GOOD + extra + "\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert f"{key}: " in str(err.value) and words in str(err.value) and str(path) in str(err.value)


def test_find_pipeline_by_name(tmp_path):
    from cht_bridge.config import find_pipeline

    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, "name: broken\n", "broken.yaml")
    assert find_pipeline(tmp_path, "pregnancies_to_emr").destination.conn_id == "emr_api"
    with pytest.raises(ConfigError, match="broken.yaml"):
        find_pipeline(tmp_path, "broken")  # its own file's problems, not "not found"
    with pytest.raises(ConfigError, match="no valid pipeline file named 'nope'"):
        find_pipeline(tmp_path, "nope")
