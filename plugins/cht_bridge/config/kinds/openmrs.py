"""``destination.openmrs:``: how FHIR resources are written into an OpenMRS FHIR2 module.

OpenMRS (KenyaEMR, Bahmni, O3) has no bundles and no conditional create, and knows identifiers
only by its own identifier types and places only by its Locations (``destinations.md`` §2.3), so a
pipeline says::

    destination:
      type: openmrs
      conn_id: kenyaemr                       # host: the server root, e.g. https://emr.example.org
      auth: {type: cookie, login_path: /openmrs/ws/rest/v1/session}
      openmrs:
        identifier_types:                     # an identifier's system -> identifier type name or uuid
          https://cht.example.org/national-id: 49af6cdc-7968-4abb-bf46-de10d7f4859f
          https://cht.example.org/uuid: CHT Document ID
        locations: include/places/emr_locations.csv   # cht_place,location_uuid[,name]
        identifier_system: https://cht.example.org/id   # the CHT ids' system; fhir.identifier_system defaults to it
        place_system: https://communityhealthtoolkit.org/place

Pure Python, no I/O: the location table is read when a run opens the destination.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The FHIR2 base under the server root (``destinations.md`` §2.1); ``destination.path`` may name another
#: (a distribution behind OpenHIM).
DEFAULT_PATH = "/openmrs/ws/fhir2/R4"
#: The identifier system of a reference to a CHT place: ``{"identifier": {"system": PLACE_SYSTEM,
#: "value": <CHT place uuid>}}``, turned into ``{"reference": "Location/<uuid>"}`` from the table.
PLACE_SYSTEM = "https://communityhealthtoolkit.org/place"
KEYS = {"identifier_system", "identifier_types", "locations", "place_system"}


@dataclass(frozen=True)
class OpenMrsSettings:
    """``identifier_types``: pairs (identifier system, OpenMRS identifier type name or uuid);
    ``locations``: the CSV of CHT place → OpenMRS Location uuid, or None; ``place_system``: see above;
    ``identifier_system``: the system of the CHT ids (the ``fhir:`` block's default), whose
    Organization references name the document's CHT place."""

    identifier_types: tuple[tuple[str, str], ...] = ()
    locations: str | None = None
    place_system: str = PLACE_SYSTEM
    identifier_system: str | None = None

    @property
    def identifier_type(self) -> dict[str, str]:
        return dict(self.identifier_types)


def parse(block: dict[str, Any], add: Callable[[str, str], None]) -> OpenMrsSettings:
    for key in sorted(set(block) - KEYS):
        add(key, f"unknown key (known: {', '.join(sorted(KEYS))})")
    types = block.get("identifier_types", {})
    pairs: list[tuple[str, str]] = []
    if not isinstance(types, dict):
        add("identifier_types", "must be a mapping of identifier system to OpenMRS identifier type name or uuid")
    else:
        for system, target in types.items():
            if not isinstance(target, str) or not target.strip():
                add(f"identifier_types.{system}", "must be the name or uuid of an OpenMRS identifier type")
            else:
                pairs.append((str(system), target.strip()))
    locations = block.get("locations")
    if locations is not None and (not isinstance(locations, str) or not locations.endswith(".csv")):
        add(
            "locations",
            "must be the path of a CSV file (cht_place,location_uuid[,name]), e.g. include/places/emr_locations.csv",
        )
        locations = None
    place_system = block.get("place_system", PLACE_SYSTEM)
    if not isinstance(place_system, str) or not place_system:
        add("place_system", "must be a URI string")
        place_system = PLACE_SYSTEM
    system = block.get("identifier_system")
    if system is not None and (not isinstance(system, str) or ":" not in system):
        add("identifier_system", "must be a URI: the system of the CHT ids (the fhir block's identifier_system)")
        system = None
    return OpenMrsSettings(tuple(pairs), locations, place_system, system)
