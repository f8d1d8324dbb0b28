"""What ``make demo``'s FHIR referral pipeline created on the local FHIR server, in one line.

Counted by the pipeline's own identifier system (``destination.fhir.identifier_system`` of
``include/pipelines/referrals_to_fhir.yaml``), so the EMR's lost-to-follow-up Patients the sandbox
loaded are not counted; run the demo again and the counts stay: nothing is created twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from standins.fhir_server import HTTP_TIMEOUT, LocalFhir

PIPELINE = Path(__file__).resolve().parent.parent / "include" / "pipelines" / "referrals_to_fhir.yaml"
TYPES = ("Patient", "Practitioner", "ServiceRequest")


def created(fhir: LocalFhir, pipeline_file: Path = PIPELINE) -> dict[str, Any]:
    """The identifier system and, per resource type, how many resources carry an identifier in it."""
    from cht_bridge.config import load_pipeline

    system = load_pipeline(pipeline_file).destination.settings.identifier_system
    counts = {}
    with fhir.session() as session:
        for resource_type in TYPES:
            r = session.get(
                f"{fhir.url}/{resource_type}", params={"identifier": f"{system}|", "_count": 1}, timeout=HTTP_TIMEOUT
            )
            r.raise_for_status()
            counts[resource_type] = r.json().get("total", 0)
    return {"system": system, "counts": counts}


def print_created(fhir: LocalFhir, pipeline_file: Path = PIPELINE) -> None:
    """Print what the FHIR referral pipeline created on the local FHIR server."""
    found = created(fhir, pipeline_file)
    counts = ", ".join(f"{n} {resource_type}s" for resource_type, n in found["counts"].items())
    print(f"On the EMR's FHIR server ({fhir.url}), identifier system {found['system']}: {counts}")
