"""Review fixes of the estimation change: training falls back to the shipped m where the data is
thin, the "two names written as one, alike" level is not a shared name, and a single name is no
run-together blocking key."""

from __future__ import annotations

import duckdb

from cht_bridge.matching import Person
from cht_bridge.matching.features import Frequencies, build_table
from cht_bridge.matching.model import load_model


def _table(people: list[Person], prefix: str):
    counts = Frequencies(people, [None] * len(people))
    return build_table(people, [f"{prefix}{i}" for i in range(len(people))], [None] * len(people), counts)


def test_a_single_name_is_no_run_together_blocking_key() -> None:
    existing = [Person(id=f"m{i}", given_name="Mary", family_name=f"Family{i}") for i in range(50)]
    existing.append(Person(id="grace", given_name="Grace", family_name="Akinyi"))
    incoming = [Person(id="mary", given_name="Mary"), Person(id="run", given_name="Graceakinyi")]
    left, right = _table(existing, "e"), _table(incoming, "i")
    # a single name's key is one no token equals (not None: the row would leave the exploded rule)
    assert right.column("name_joins").to_pylist() == [[""], [""]]
    assert sorted(left.column("name_joins").to_pylist()[-1]) == ["akinyigrace", "graceakinyi"]
    connection = duckdb.connect()
    connection.register("existing_people", left)
    connection.register("incoming_people", right)
    found = set()
    for rule in load_model()["blocking_rules_to_generate_predictions"]:
        if "name_joins" not in rule["blocking_rule"]:
            continue
        sides = []
        for table in ("existing_people", "incoming_people"):
            sql = table
            for column in rule.get("arrays_to_explode", []):
                sql = f'(SELECT * EXCLUDE ("{column}"), unnest("{column}") AS "{column}" FROM {sql})'
            sides.append(sql)
        sql = f"SELECT DISTINCT l.unique_id, r.unique_id FROM {sides[0]} l JOIN {sides[1]} r ON {rule['blocking_rule']}"
        found |= set(connection.execute(sql).fetchall())
    # only the run-together name meets its person; "Mary" meets none of the fifty Marys this way
    assert found == {("e50", "i1")}
