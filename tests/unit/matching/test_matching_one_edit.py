"""The model's cheaper SQL reaches the same levels as the SQL it replaced (``model.py``): the edit
distance computed only where one keystroke is possible, and the tokens shared counted without
``list_intersect``. Evaluated by DuckDB itself, on every string one keystroke from a set of words
and phones, and level by level on pairs of synthetic people (typos included)."""

from __future__ import annotations

import copy
import itertools
import random
import string

import duckdb
import pyarrow as pa
import pytest

from cht_bridge.matching import model as model_module
from cht_bridge.matching.features import Frequencies, build_table, e164
from cht_bridge.matching.model import NAME_ONE_EDIT_POSSIBLE, PHONE_ONE_EDIT_POSSIBLE, load_model
from standins.populations import population
from standins.populations_west import west_population

# What model.py wrote before: each rewritten expression, and the one it replaced.
_BEFORE = [
    (
        model_module._distance_if(NAME_ONE_EDIT_POSSIBLE, "x", "y"),
        "damerau_levenshtein(x, y)",
    ),
    (model_module._PHONE_DISTANCE, 'damerau_levenshtein("phone_l", "phone_r")'),
    (
        f'{model_module._COMMON_TOKENS} >= 2 AND ({model_module._COMMON_TOKENS} = len("names_r") '
        f'OR {model_module._COMMON_TOKENS} = len("names_l"))',
        'len(list_intersect("names_l", "names_r")) >= 2 AND (list_has_all("names_l", "names_r") '
        'OR list_has_all("names_r", "names_l"))',
    ),
    (model_module._COMMON_TOKENS, 'len(list_intersect("names_l", "names_r"))'),
]


def as_before(model: dict) -> dict:
    """``model`` with every rewritten expression put back as it was (for a reference to compare
    with); fails when there is nothing to put back, so a comparison with it is never vacuous."""
    before = copy.deepcopy(model)
    replaced = 0
    for comparison in before["comparisons"]:
        for level in comparison["comparison_levels"]:
            sql = level["sql_condition"]
            for new, old in _BEFORE:
                replaced += sql.count(new)
                sql = sql.replace(new, old)
            level["sql_condition"] = sql
    assert replaced, "no rewritten expression found in the model"
    assert all(
        "IS FALSE THEN 2" not in lv["sql_condition"] for c in before["comparisons"] for lv in c["comparison_levels"]
    )
    return before


def _one_edit(word: str, alphabet: str) -> set[str]:
    """Every string one keystroke from ``word``: a character changed, added or dropped, or two
    neighbours swapped."""
    found = set()
    for i in range(len(word) + 1):
        found.update(word[:i] + c + word[i:] for c in alphabet)
    for i in range(len(word)):
        found.add(word[:i] + word[i + 1 :])
        found.update(word[:i] + c + word[i + 1 :] for c in alphabet)
    for i in range(len(word) - 1):
        found.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    found.discard(word)
    return found


def _violations(pairs: list[tuple[str, str]], condition: str) -> int:
    """Pairs one keystroke apart (by DuckDB's own distance) for which ``condition`` is false."""
    connection = duckdb.connect()
    connection.register("pairs", pa.table({"x": [a for a, _ in pairs], "y": [b for _, b in pairs]}))
    sql = f"SELECT count(*) FROM pairs WHERE damerau_levenshtein(x, y) <= 1 AND ({condition.format(x='x', y='y')}) IS FALSE"  # noqa: S608
    return connection.execute(sql).fetchall()[0][0]


_NAMES = ["a", "ab", "abc", "abcd", "acbd", "amina", "mohamed", "otieno", "wanjiku", "kiprotich", "ali", "yusuf"]


@pytest.fixture(scope="module")
def name_pairs() -> list[tuple[str, str]]:
    pairs = [(word, other) for word in _NAMES for other in _one_edit(word, "abcmo")]
    rng = random.Random(5)
    pairs += [(rng.choice(_NAMES), rng.choice(_NAMES)) for _ in range(200)]
    return pairs + [(b, a) for a, b in pairs]


@pytest.fixture(scope="module")
def phone_pairs() -> list[tuple[str, str]]:
    phones = ["+254712345678", "+25471234567", "+2547123456789", "0712345678", "+123456789", "+2547"]
    pairs = [(phone, other) for phone in phones for other in _one_edit(phone, "0178")]
    return pairs + [(b, a) for a, b in pairs]


def test_names_one_keystroke_apart_always_meet_the_cheap_condition(name_pairs) -> None:
    assert _violations(name_pairs, NAME_ONE_EDIT_POSSIBLE) == 0
    # the words hold the one edit that changes both ends' pairs: a condition without the
    # first-and-last-letter clause misses it, so this test would catch that mistake
    narrower = NAME_ONE_EDIT_POSSIBLE.replace(" OR (left({x}, 1) = left({y}, 1) AND right({x}, 1) = right({y}, 1))", "")
    assert narrower != NAME_ONE_EDIT_POSSIBLE
    assert _violations(name_pairs, narrower) > 0


def test_phones_one_keystroke_apart_always_meet_the_cheap_condition(phone_pairs) -> None:
    assert _violations(phone_pairs, PHONE_ONE_EDIT_POSSIBLE) == 0
    # without the four digits before the last four, a changed last digit is missed
    narrower = PHONE_ONE_EDIT_POSSIBLE.replace(
        " OR substr({x}, length({x}) - 8, 4) = substr({y}, length({y}) - 8, 4)", ""
    )
    assert narrower != PHONE_ONE_EDIT_POSSIBLE
    assert _violations(phone_pairs, narrower) > 0


@pytest.mark.parametrize(
    ("condition", "fixture"), [(NAME_ONE_EDIT_POSSIBLE, "name_pairs"), (PHONE_ONE_EDIT_POSSIBLE, "phone_pairs")]
)
def test_the_guarded_distance_is_on_the_same_side_of_one(request, condition: str, fixture: str) -> None:
    pairs = request.getfixturevalue(fixture)
    rng = random.Random(3)
    alphabet, length = (string.ascii_lowercase, (1, 9)) if fixture == "name_pairs" else (string.digits, (9, 9))

    def stranger() -> str:
        text = "".join(rng.choices(alphabet, k=rng.randint(*length)))
        return text if fixture == "name_pairs" else "+2547" + text[:8]

    pairs = pairs + [(stranger(), stranger()) for _ in range(500)]
    connection = duckdb.connect()
    connection.register("pairs", pa.table({"x": [a for a, _ in pairs], "y": [b for _, b in pairs]}))
    guarded = model_module._distance_if(condition, "x", "y")
    rows = connection.execute(
        f"SELECT count(*) FILTER (WHERE ({guarded} <= 1) IS DISTINCT FROM (damerau_levenshtein(x, y) <= 1)), "  # noqa: S608
        f"count(*) FILTER (WHERE ({condition.format(x='x', y='y')}) IS FALSE) FROM pairs"
    ).fetchall()[0]
    assert rows[0] == 0
    assert rows[1] > 0  # the condition does rule pairs out (the distance is skipped for them)


def _pairs_table(data, limit: int) -> pa.Table:
    """Pairs of people, their columns side by side as Splink names them: true pairs (typos and
    all), people of one list, and strangers."""
    people = [*data.existing, *data.incoming]
    phones = [e164(person, "KE") for person in people]
    keys = [f"p{index}" for index in range(len(people))]
    table = build_table(people, keys, phones, Frequencies(people, phones))
    rows = table.to_pylist()
    position = {person.id: index for index, person in enumerate(data.existing)}
    offset = len(data.existing)
    position.update({person.id: offset + index for index, person in enumerate(data.incoming)})
    chosen = [(position[true], position[incoming]) for incoming, true in data.truth.items() if true]
    rng = random.Random(11)
    chosen += [(rng.randrange(len(rows)), rng.randrange(len(rows))) for _ in range(limit)]
    chosen += list(itertools.combinations(range(offset, offset + 60), 2))
    columns = {}
    for name in table.column_names:
        columns[f"{name}_l"] = pa.array([rows[a][name] for a, _ in chosen], type=table.schema.field(name).type)
        columns[f"{name}_r"] = pa.array([rows[b][name] for _, b in chosen], type=table.schema.field(name).type)
    return pa.table(columns)


def _levels(connection, comparison: dict) -> list[int]:
    whens = [
        f"ELSE {i}" if level["sql_condition"] == "ELSE" else f"WHEN {level['sql_condition']} THEN {i}"
        for i, level in enumerate(comparison["comparison_levels"])
    ]
    return [row[0] for row in connection.execute(f"SELECT CASE {' '.join(whens)} END FROM pairs").fetchall()]  # noqa: S608


@pytest.mark.parametrize(
    "data", [population(500, 500, seed=7), west_population(500, 500, seed=11)], ids=["east", "second"]
)
def test_every_pair_reaches_the_same_level_as_with_the_sql_it_replaced(data) -> None:
    connection = duckdb.connect()
    connection.execute("SET lambda_syntax='ENABLE_SINGLE_ARROW'")
    connection.register("pairs", _pairs_table(data, 20_000))
    model = load_model()
    before = as_before(model)
    reached = 0
    for now, then in zip(model["comparisons"], before["comparisons"], strict=True):
        levels = _levels(connection, now)
        assert levels == _levels(connection, then), now["output_column_name"]
        reached += len(set(levels))
    assert reached > 25  # most levels are reached by some pair
