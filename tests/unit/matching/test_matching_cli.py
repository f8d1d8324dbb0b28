"""The CLI end to end on temporary CSV files with missing columns and empty cells."""

from __future__ import annotations

import csv
from pathlib import Path

from cht_bridge.matching.__main__ import main
from cht_bridge.matching.csv_io import read_people


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_link_command_writes_one_decision_per_incoming_row(tmp_path: Path, capsys) -> None:
    existing = _write(
        tmp_path / "existing.csv",
        "id,name,sex,date_of_birth,phone,place,area\n"
        "c-1,Grace Akinyi Otieno,female,1990-03-05,+254712345678,hh-1,hh-1;chw-1\n"
        "c-2,John Kamau,male,,,,\n"
        "c-3,Amina Said,F,1985-04-30,,hh-3,\n",
    )
    incoming = _write(
        tmp_path / "incoming.csv",
        "id,given_name,family_name,phone,date_of_birth\n"
        "r-1,Grace,Otieno,0712345678,05/03/1990\n"
        "r-2,Zawadi,,,\n"
        "r-3,Amina,Said,,1985-04-30\n",
    )
    out = tmp_path / "decisions.csv"

    assert main(["link", "--existing", str(existing), "--incoming", str(incoming), "--out", str(out)]) == 0

    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0])[:4] == ["incoming_id", "decision", "existing_id", "probability"]
    by_id = {row["incoming_id"]: row for row in rows}
    assert (by_id["r-1"]["decision"], by_id["r-1"]["existing_id"]) == ("link", "c-1")
    assert (by_id["r-2"]["decision"], by_id["r-2"]["existing_id"], by_id["r-2"]["probability"]) == ("new", "", "")
    assert (by_id["r-3"]["decision"], by_id["r-3"]["existing_id"]) == ("link", "c-3")
    printed = capsys.readouterr().out
    assert "link 2, review 0, new 1" in printed and " s " in printed
    assert "Grace" not in printed


def test_rows_without_ids_are_numbered_and_names_split(tmp_path: Path) -> None:
    path = _write(tmp_path / "people.csv", "name,phone\nMary Wanjiku Kamau,\n,0712345678\n")
    first, second = read_people(path)
    assert (first.id, first.given_name, first.family_name) == ("1", "mary wanjiku", "kamau")
    assert (second.id, second.given_name, second.phone) == ("2", None, "0712345678")


def test_region_option_changes_phone_reading(tmp_path: Path) -> None:
    existing = _write(
        tmp_path / "e.csv", "id,name,sex,date_of_birth,phone\nu-1,Mugisha Ssempala,M,1991-01-02,+256772123456\n"
    )
    incoming = _write(
        tmp_path / "i.csv", "id,name,sex,date_of_birth,phone\nr-1,Ssempala Mugisha,M,02/01/1991,0772123456\n"
    )
    out = tmp_path / "d.csv"
    main(["link", "--existing", str(existing), "--incoming", str(incoming), "--out", str(out), "--region", "UG"])
    (row,) = csv.DictReader(out.open(encoding="utf-8"))
    assert (row["decision"], row["existing_id"]) == ("link", "u-1")
    assert row["reason"].startswith("deterministic: phone and date of birth")
