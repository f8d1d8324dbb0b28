"""The DHIS2 pre-flight: before a run sends anything, does every metadata object it names exist, and may the user write it?

A run that posts to a data element DHIS2 does not have, or to an org unit outside the user's
capture scope, is refused value by value (E7610, E7617, E1000...), so the pre-flight reads the
metadata once per run and fails with the whole list instead:

* the user (``GET /api/me``, which also proves the credentials, §1.1): its ``authorities``
  (``F_DATAVALUE_ADD`` for aggregates, §1.3: else 403) and its data capture org units;
* each data element, category option combo, org unit, data set, program, program stage, tracked
  entity type and attribute, read from the metadata API by the pipeline's id scheme
  (``GET /api/<collection>?filter=<id|code|name>:in:[...]&fields=...&paging=false``);
* that each org unit lies in the user's capture scope (its ``path`` passes through one of the
  user's org units: else DHIS2 answers E7617 / E1000), that the data set, program and program
  stage share *data write* with the user (``access.data.write``: else E7601 / E1091 / E1095),
  that a program stage belongs to its program (E1089), a data element to its stage (E1305), an
  attribute to its program, the org units to the program (E1029/E1041), and that the program is
  of the kind the pipeline needs (events without registration, or a tracker program).

``verify`` is the one entry point, for the tracker destination's ``check()`` and the aggregate
run alike; the caller runs it once per run. Under ``id_scheme: ATTRIBUTE`` identifiers cannot be
looked up without the attribute's UID, so only the user, authority and scope checks run.
Messages hold metadata ids and the pipeline keys that use them, never data values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from cht_bridge.errors import PreflightError
from cht_bridge.http.read import Reader

log = logging.getLogger(__name__)

SCHEME_FIELDS = {"UID": "id", "CODE": "code", "NAME": "name"}
FILTER_CHUNK = 50  # identifiers per metadata request: keeps the URL short
ACCESS = "access[read,write,data[read,write]]"


@dataclass(frozen=True)
class Needs:
    """What a pipeline will write to: each identifier (in ``id_scheme``) -> where the pipeline names it.

    ``program_type`` is ``WITHOUT_REGISTRATION`` (events) or ``WITH_REGISTRATION`` (tracker) when
    the pipeline depends on it; ``stage_data_elements`` are data elements that must belong to
    ``program_stages``; ``authority`` one the user must hold (``F_DATAVALUE_ADD`` for aggregates).
    """

    id_scheme: str = "UID"
    data_elements: Mapping[str, str] = field(default_factory=dict)
    category_option_combos: Mapping[str, str] = field(default_factory=dict)
    org_units: Mapping[str, str] = field(default_factory=dict)
    data_set: str | None = None
    program: str | None = None
    program_type: str | None = None
    program_stages: Mapping[str, str] = field(default_factory=dict)
    stage_data_elements: Mapping[str, str] = field(default_factory=dict)
    tracked_entity_type: str | None = None
    tracked_entity_attributes: Mapping[str, str] = field(default_factory=dict)
    authority: str | None = None


def verify(session: requests.Session, api_url: str, needs: Needs, *, conn_id: str, timeout: float = 30.0) -> None:
    """Check ``needs`` against the DHIS2 whose API root is ``api_url`` (``…/api`` or ``…/api/40``).

    :raises PreflightError: naming every missing or unwritable item, before anything was sent.
    :raises AuthError: the credentials were refused.
    :raises SourceError: DHIS2 could not be read (after the read retries): worth a task retry.
    """
    reader = Reader(session, conn_id=conn_id, system="DHIS2", timeout=timeout)
    problems = _Check(reader, api_url.rstrip("/"), needs).problems()
    if problems:
        log.error("DHIS2 connection '%s': pre-flight found %d problem(s)", conn_id, len(problems))
        raise PreflightError(conn_id, f"{len(problems)} problem(s), nothing was sent: " + "; ".join(problems))
    log.info("DHIS2 connection '%s': pre-flight passed", conn_id)


class _Check:
    def __init__(self, reader: Reader, api: str, needs: Needs) -> None:
        self.reader = reader
        self.api = api
        self.needs = needs
        self.by = SCHEME_FIELDS.get(needs.id_scheme.upper())  # None under ATTRIBUTE: nothing to look up by
        self.out: list[str] = []

    def problems(self) -> list[str]:
        n = self.needs
        me = self.reader.get_json(f"{self.api}/me", {"fields": "id,username,authorities,organisationUnits[id]"})
        user = str(me.get("username", "?"))
        scope = {o.get("id") for o in me.get("organisationUnits") or [] if isinstance(o, dict)}
        authorities = set(me.get("authorities") or [])
        if n.authority and n.authority not in authorities and "ALL" not in authorities:
            self.out.append(f"user '{user}' lacks the authority {n.authority}")
        if self.by is None:
            log.warning("id_scheme ATTRIBUTE: the pre-flight checks the user only, not each identifier")
            return self.out
        elements = self._lookup(
            "dataElements", {**n.data_elements, **n.stage_data_elements}, "data element", "id,code,name"
        )
        self._lookup("categoryOptionCombos", n.category_option_combos, "category option combo", "id,code,name")
        units = self._lookup("organisationUnits", n.org_units, "org unit", "id,code,name,path")
        for ref, unit in units.items():
            if not scope & set(str(unit.get("path", "")).split("/")):
                self.out.append(
                    f"org unit `{ref}` ({n.org_units[ref]}): outside user '{user}''s data capture org units"
                )
        if n.data_set:
            found = self._lookup("dataSets", {n.data_set: "data_set"}, "data set", f"id,code,name,{ACCESS}")
            for ref, data_set in found.items():
                self._writable(data_set, f"data set `{ref}`", user)
        program = self._program(units, user)
        stages = self._lookup(
            "programStages", n.program_stages, "program stage",
            f"id,code,name,program[id],{ACCESS},programStageDataElements[dataElement[id,code,name]]",
        )  # fmt: skip
        for ref, stage in stages.items():
            self._writable(stage, f"program stage `{ref}`", user)
            if program is not None and (stage.get("program") or {}).get("id") != program["id"]:
                self.out.append(
                    f"program stage `{ref}` ({n.program_stages[ref]}): not a stage of program `{n.program}`"
                )
            in_stage = {de.get("id") for de in _members(stage.get("programStageDataElements"), "dataElement")}
            for de, where in n.stage_data_elements.items():
                if de in elements and elements[de]["id"] not in in_stage:
                    self.out.append(f"data element `{de}` ({where}): not a data element of program stage `{ref}`")
        return self.out

    def _program(self, units: dict[str, dict[str, Any]], user: str) -> dict[str, Any] | None:
        n = self.needs
        if not n.program:
            return None
        fields = (f"id,code,name,programType,trackedEntityType[id,code,name],organisationUnits[id],{ACCESS},"
                  "programTrackedEntityAttributes[trackedEntityAttribute[id,code,name]]")  # fmt: skip
        program = self._lookup("programs", {n.program: "program"}, "program", fields).get(n.program)
        tet = None
        if n.tracked_entity_type:
            tet = self._lookup(
                "trackedEntityTypes", {n.tracked_entity_type: "tracked_entity.type"}, "tracked entity type", "id,code,name"
            ).get(n.tracked_entity_type)  # fmt: skip
        attributes = self._lookup(
            "trackedEntityAttributes", n.tracked_entity_attributes, "tracked entity attribute", "id,code,name"
        )  # fmt: skip
        if program is None:
            return None
        self._writable(program, f"program `{n.program}`", user)
        kind = program.get("programType")
        if n.program_type and kind and kind != n.program_type:
            wanted = (
                "an event program (without registration)"
                if n.program_type == "WITHOUT_REGISTRATION"
                else "a tracker program (with registration), for tracked_entity"
            )
            self.out.append(f"program `{n.program}`: is {kind}, the pipeline needs {wanted}")
        if tet is not None and (program.get("trackedEntityType") or {}).get("id") not in (None, tet["id"]):
            self.out.append(f"program `{n.program}`: its tracked entity type is not `{n.tracked_entity_type}`")
        if "programTrackedEntityAttributes" in program:
            members = _members(program["programTrackedEntityAttributes"], "trackedEntityAttribute")
            in_program = {a.get("id") for a in members}
            for ref, attribute in attributes.items():
                if attribute["id"] not in in_program:
                    where = n.tracked_entity_attributes[ref]
                    self.out.append(
                        f"tracked entity attribute `{ref}` ({where}): not an attribute of program `{n.program}`"
                    )
        if "organisationUnits" in program:
            assigned = {o.get("id") for o in program["organisationUnits"] or []}
            for ref, unit in units.items():
                if unit["id"] not in assigned:
                    self.out.append(f"org unit `{ref}` ({n.org_units[ref]}): not assigned to program `{n.program}`")
        return program

    def _lookup(self, collection: str, wanted: Mapping[str, str], what: str, fields: str) -> dict[str, dict[str, Any]]:
        """The objects of ``collection`` named in ``wanted`` by the id scheme; each missing one is a problem."""
        refs = sorted(set(wanted))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(refs), FILTER_CHUNK):
            chunk = refs[start : start + FILTER_CHUNK]
            params = {"filter": f"{self.by}:in:[{','.join(chunk)}]", "fields": fields, "paging": "false"}
            answer = self.reader.get_json(f"{self.api}/{collection}", params)
            for obj in answer.get(collection) or [] if isinstance(answer, dict) else []:
                if isinstance(obj, dict) and obj.get(self.by) in wanted:
                    found[obj[self.by]] = obj
        for ref in refs:
            if ref not in found:
                self.out.append(f"{what} `{ref}` ({wanted[ref]}): not found on the server, or not readable by the user")
        return found

    def _writable(self, obj: dict[str, Any], what: str, user: str) -> None:
        access = obj.get("access")
        if isinstance(access, dict) and not (access.get("data") or {}).get("write"):
            self.out.append(f"{what}: user '{user}' has no data write access (its sharing)")


def _members(items: Any, key: str) -> list[dict[str, Any]]:
    return [i[key] for i in items or [] if isinstance(i, dict) and isinstance(i.get(key), dict)]
