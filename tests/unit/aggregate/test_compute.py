"""Page-by-page aggregation: partial results merge to the totals of one pass, distinct patients
stay exact across pages, and reports without an org unit or a date are counted, not dropped."""

import json
import random
from collections import Counter

from cht_bridge.aggregate import compute
from cht_bridge.aggregate.compute import DATE, FILTERS, NUMBERS, PATIENT, PLACE, Accumulator
from cht_bridge.aggregate.post import DataValue, chunks
from cht_bridge.config.kinds.dhis2_aggregate import AggregateSettings, DataValueRule, OrgUnitRule
from cht_bridge.mapping import Mapped

SETTINGS = AggregateSettings(
    kind="aggregate", id_scheme="UID", dry_run=False, period="monthly", time_zone="UTC",
    org_unit=OrgUnitRule(table="x.csv"),
    data_values=(
        DataValueRule("n", "count", "deCount0001"),
        DataValueRule("s", "sum", "deSum000001", field="doc.fields.x"),
        DataValueRule("p", "distinct_patients", "dePatient01"),
    ),
)  # fmt: skip
TABLE = {"place-a": "ouA00000001", "place-b": "ouB00000001"}
DAY = 86_400_000


def _reports(n, rng):
    out = []
    for i in range(n):
        place = rng.choice(["place-a", "place-b", "place-unknown"])
        date = 1767225600000 + rng.randrange(59) * DAY  # January and February 2026
        body = {
            DATE: date,
            PLACE: place,
            PATIENT: f"p{rng.randrange(40)}",
            FILTERS: [True, True, True],
            NUMBERS: [None, i % 3, None],
        }
        out.append(Mapped(f"r{i}", True, body=json.dumps(body)))
    return out


def test_pages_merge_to_the_totals_of_one_pass(monkeypatch):
    monkeypatch.setattr(compute, "COMPACT_PARTS", 2)  # merge often, as a million reports would
    rng = random.Random(4)
    reports = _reports(900, rng)
    acc = Accumulator(SETTINGS, TABLE.get)
    for start in range(0, len(reports), 50):
        acc.add(reports[start : start + 50])
    acc._compact_pairs()  # noqa: SLF001
    counts, sums, patients = Counter(), Counter(), {}
    for m in reports:
        b = json.loads(m.body)
        ou = TABLE.get(b[PLACE])
        if ou is None:
            continue
        month = "202601" if b[DATE] < 1769904000000 else "202602"
        counts[(month, ou)] += 1
        sums[(month, ou)] += b[NUMBERS][1]
        patients.setdefault((month, ou), set()).add(b[PATIENT])
    cells = acc.cells()
    assert {(p, o): v for (p, o, i), v in cells.items() if i == 0} == counts
    assert {(p, o): v for (p, o, i), v in cells.items() if i == 1} == sums
    assert {(p, o): v for (p, o, i), v in cells.items() if i == 2} == {k: len(v) for k, v in patients.items()}
    unplaced = [m.doc_id for m in reports if json.loads(m.body)[PLACE] == "place-unknown"]
    assert acc.unplaced.count == len(unplaced) and acc.unplaced.ids == unplaced
    assert acc.counted == len(reports) - len(unplaced)


def test_filters_periods_and_problems():
    def body(date, flags, place="place-a"):
        return json.dumps({DATE: date, PLACE: place, PATIENT: None, FILTERS: flags, NUMBERS: [None, "2.5", None]})

    acc = Accumulator(SETTINGS, TABLE.get, periods={"202601"})
    acc.add([
        Mapped("a", True, body=body(1767225600000, [True, True, True])),
        Mapped("b", True, body=body(1767225600000, [False, True, False])),
        Mapped("c", True, body=body(1769904000000, [True, True, True])),  # February: not asked for
        Mapped("d", True, body=body("not a date", [True, True, True])),
        Mapped("e", True, error="Mapping error"),
        Mapped("f", False),
    ])  # fmt: skip
    assert acc.cells() == {
        ("202601", "ouA00000001", 0): 1.0,
        ("202601", "ouA00000001", 1): 5.0,
    }  # no patient: none distinct
    assert (acc.undated.ids, acc.unmapped.ids, acc.counted) == (["d"], ["e"], 2)


def test_requests_hold_one_period_and_at_most_chunk_size_values():
    values = [DataValue(p, f"ou{i:09d}", "de", None, None, "1") for p in ("202602", "202601") for i in range(5)]
    got = list(chunks(values, 3))
    assert [len(c) for c in got] == [3, 2, 3, 2]
    assert all(len({v.period for v in c}) == 1 for c in got)
    assert values[0].key == '["202602","ou000000000","de","",""]'
