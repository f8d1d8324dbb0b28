"""``make demo`` end to end, twice, on the default synthetic CHT: it works, the second run sends
and creates nothing new, and nothing it prints or logs holds a password or a patient's name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from standins.generate import generate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_demo(home: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    proc = subprocess.run(
        [sys.executable, "-m", "standins.demo", "--home", str(home)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def summary_rows(output: str, columns: int = 8) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == columns and parts[1] in ("success", "failed"):
            rows[parts[0]] = parts[1:]
    return rows


OPENMRS_PIPELINES = {"openmrs_kenyaemr_referrals", "openmrs_bahmni_patients"}
DHIS2_PIPELINES = {"dhis2_monthly_aggregates", "dhis2_assessment_events"}


def fhir_created(output: str) -> dict[str, int]:
    """The counts of the demo's "On the EMR's FHIR server ..." line (``standins/fhir_demo.py``)."""
    line = next(line for line in output.splitlines() if line.startswith("On the EMR's FHIR server"))
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (Patient|Practitioner|ServiceRequest)s", line)}


REVERSE = ("received", "link", "review", "new", "unplaced", "persons", "reports")


def test_demo_twice_and_its_logs_hold_no_secret_and_no_patient_name(tmp_path):
    home = tmp_path / "sandbox"
    first = run_demo(home)
    rows = summary_rows(first)
    assert (
        set(rows)
        == {
            "patients_fhir",
            "pregnancy_registrations",
            "referrals",
            "referrals_to_fhir",
            "self_quarantine_rapidpro",
        }
        | OPENMRS_PIPELINES
        | DHIS2_PIPELINES
    )
    for name, (state, read, relevant, sent, _unchanged, failed, dead) in rows.items():
        assert state == "success" and int(read) >= 400 and int(relevant) > 0 and failed == "0", name
        if name == "dhis2_monthly_aggregates":  # sent: data values of whole months, not reports
            assert int(sent) > 0 and dead == "0"
        elif name == "dhis2_assessment_events":  # dead: the reports of the facility left out of the org unit table
            unplaced = int(re.search(r"(\d+) reports without an org unit", first).group(1))
            assert int(dead) == unplaced > 0 and int(sent) + unplaced == int(relevant)
        else:
            assert int(sent) == int(relevant) and dead == "0", name
    assert re.search(r"dhis2_monthly_aggregates: .*CHT (\d+) values, DHIS2 \1: \1 equal, 0 missing", first)
    assert "Delivered payloads:" in first and "Delivery ledger:" in first
    reverse = {name: dict(zip(("state", *REVERSE), row, strict=True)) for name, row in summary_rows(first, 9).items()}
    assert set(reverse) == {"contact_tracing_from_csv", "ltfu_from_emr", "self_screening_from_rapidpro"}
    for counts in reverse.values():
        assert counts["state"] == "success"
        decided = sum(int(counts[k]) for k in ("link", "review", "new", "unplaced"))
        assert int(counts["received"]) > 0 and decided >= int(counts["received"]) - 1  # minus a repeated person
        assert int(counts["link"]) > 0 and int(counts["new"]) > 0 and int(counts["reports"]) > 0
    assert reverse["contact_tracing_from_csv"]["unplaced"] == "1"  # the row with an unknown facility code
    assert "writes refused by CHT: 0" in first
    assert "OpenMRS FHIR2 stand-ins" in first and "kenyaemr" in first and "bahmni" in first
    created = fhir_created(first)  # what referrals_to_fhir created on the FHIR server
    assert created["ServiceRequest"] == int(rows["referrals_to_fhir"][3]) and created["Patient"] > 0

    second = run_demo(home)
    for state, *_counts, sent, _unchanged, failed, dead in summary_rows(second).values():
        assert (state, sent, failed, dead) == ("success", "0", "0", "0")
    assert "Receiver this run: 0 new items" in second
    assert fhir_created(second) == created  # nothing created twice
    for counts in summary_rows(second, 9).values():
        assert counts[0] == "success" and counts[1:] == ["0"] * 7  # nothing received, nothing created

    secrets = list(json.loads((home / "credentials.json").read_text()).values())
    patient_names = {d["name"] for d in generate(5000, seed=42) if d.get("type") == "person" and d.get("name")}
    assert len(patient_names) > 20
    texts = [first, second, (home / "demo.log").read_text()]
    texts += [p.read_text(errors="replace") for p in (home / "airflow").rglob("*.log")]
    for text in texts:
        for secret in secrets:
            assert secret not in text
        leaked = [name for name in patient_names if name in text]
        assert leaked == []
