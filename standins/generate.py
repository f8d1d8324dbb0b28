"""Deterministic, streaming synthetic CHT ``medic`` data (hard-coded hierarchy, xform reports).

Why: tests and the demo need realistic documents at any size (100 .. 1,250,000) without a real CHT
instance and without holding the data set in memory. Every document is built from one
``random.Random(seed)``, so a seed reproduces the exact same stream, ``_id``s included.

Shapes follow the CHT data model (``cht.md`` §3):

* contacts: ``district_hospital`` → ``health_center`` → ``clinic`` (household) with ``person``s;
  lineage stored minified (``parent: {_id, parent: {_id, ...}}``); places carry ``contact`` (the
  minified primary contact) and a ``place_id`` shortcode; persons carry a ``patient_id`` shortcode.
  Shortcodes are numeric strings of 4 digits plus a weighted mod-11 check digit (5 digits) and grow
  by one digit each time the space is used up, as CHT does; they are unique across the stream.
  Roles: ``patient``, ``chw`` (primary contact of a health centre, sometimes a household member)
  and ``chw_supervisor`` (primary contact of a district hospital).
* reports: ``type: data_record`` with ``form`` in ``pregnancy | assessment | immunization_visit``,
  ``contact`` = minified CHW lineage, ``from`` = CHW phone, ``reported_date`` (epoch ms) uniform in
  the 365 days before ``anchor_ms``.
* other: ``_design/medic-client`` (views keyed as in cht.md §3.8), ``settings``, ``form:pregnancy``,
  SMS ``data_record``s without ``form`` and legacy ``<doc id>-info`` docs (things a reader skips).

Mix: ~15 % contacts, ~80 % reports, ~5 % other; exactly ``n_docs`` documents. Memory is bounded:
only the current place chain and a few hundred recent patients (to pick report subjects) are kept.

Loading the stream into a server is ``seed.py``'s job. CLI::

    python -m standins.generate --url URL --user admin --password-file F --docs 10000
    python -m standins.generate --docs 200 --jsonl out/medic.jsonl     # or --jsonl -
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from standins.fixed_docs import DESIGN_DOC, FORM_DOC, SETTINGS_DOC
from standins.names import (
    DISTRICTS,
    FAMILY_NAMES,
    FEMALE_NAMES,
    LOCALITIES,
    MALE_NAMES,
    SMS_TEXTS,
    SYMPTOMS,
    VACCINES,
)

DEFAULT_ANCHOR_MS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS
MIN_DOCS = 100
MAX_DOCS = 1_250_000  # a million reports (80 % of the documents): bench.dhis2 --in-process
CONTACT_SHARE = 0.15
OTHER_SHARE = 0.05
FORMS = ("pregnancy", "assessment", "immunization_visit")
CONTACT_TYPES = ("district_hospital", "health_center", "clinic", "person")


# -- small helpers --------------------------------------------------------------------------------
def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def lineage(*ids: str) -> dict[str, Any]:
    """Minified lineage, nearest first: ("a","b","c") → {_id:a, parent:{_id:b, parent:{_id:c}}}."""
    node: dict[str, Any] | None = None
    for doc_id in reversed(ids):
        node = {"_id": doc_id} if node is None else {"_id": doc_id, "parent": node}
    assert node is not None
    return node


def ymd(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


def _phone(rng: random.Random) -> str:
    return f"+2547{rng.randrange(10**8):08d}"


def check_digit(digits: str) -> str:
    """Weighted mod-11 check digit (weights len+1 .. 2; a result of 10 becomes 0), as CHT does."""
    weight = len(digits) + 1
    total = sum(int(d) * (weight - i) for i, d in enumerate(digits))
    return str(total % 11 % 10)


class _Shortcodes:
    """Unique CHT-style shortcodes in O(1) memory.

    The random part walks an affine permutation of ``0 .. 10**k - 1`` (so no set of used codes is
    needed); when that space is exhausted the random part grows by one digit, like CHT.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._digits = 4
        self._new_space()

    def _new_space(self) -> None:
        size = 10**self._digits
        a = self._rng.randrange(size // 3, size)
        while math.gcd(a, size) != 1:
            a += 1
        self._a, self._b, self._size, self._used = a, self._rng.randrange(size), size, 0

    def next(self) -> str:
        if self._used >= self._size:
            self._digits += 1
            self._new_space()
        body = f"{(self._a * self._used + self._b) % self._size:0{self._digits}d}"
        self._used += 1
        return body + check_digit(body)


@dataclass(frozen=True)
class _Chw:
    id: str
    lineage: dict[str, Any]  # minified lineage of the CHW person itself ({_id: chw, parent: ...})
    phone: str


@dataclass(frozen=True)
class _Patient:
    id: str
    patient_id: str
    name: str
    dob: date
    sex: str
    chws: tuple[_Chw, ...]
    facility: str


def kind_of(doc: dict[str, Any]) -> str:
    """Classify a doc as ``design``, ``contact``, ``report`` (data_record with form) or ``other``."""
    if doc.get("_id", "").startswith("_design/"):
        return "design"
    if doc.get("type") in CONTACT_TYPES or doc.get("type") == "contact":
        return "contact"
    if doc.get("type") == "data_record" and doc.get("form"):
        return "report"
    return "other"


# -- the generator ------------------------------------------------------------------------------
class _Generator:
    """Holds the generation state; every random draw goes through ``self.rng`` in a fixed order."""

    def __init__(self, n_docs: int, seed: int, anchor_ms: int) -> None:
        if not MIN_DOCS <= n_docs <= MAX_DOCS:
            raise ValueError(f"n_docs must be between {MIN_DOCS} and {MAX_DOCS}, got {n_docs}")
        self.rng = random.Random(seed)
        self.n_docs = n_docs
        self.anchor_ms = anchor_ms
        self.window_start_ms = anchor_ms - YEAR_MS  # reports are dated in [window_start, anchor)
        self.window_start_date = datetime.fromtimestamp(self.window_start_ms / 1000, UTC).date()
        self.codes = _Shortcodes(self.rng)
        self.patients: deque[_Patient] = deque(maxlen=300)
        self.women: deque[_Patient] = deque(maxlen=150)
        self.children: deque[_Patient] = deque(maxlen=150)
        self.chws: deque[_Chw] = deque(maxlen=20)
        self.last_report_id: str | None = None
        self.last_info_target: str | None = None

    # .. plan ...................................................................................
    def run(self) -> Iterator[dict[str, Any]]:
        fixed = [DESIGN_DOC, SETTINGS_DOC, FORM_DOC]
        n_contacts = round(self.n_docs * CONTACT_SHARE)
        n_other = max(len(fixed) + 2, round(self.n_docs * OTHER_SHARE))
        n_messages = (n_other - len(fixed)) // 2
        n_info = n_other - len(fixed) - n_messages
        n_reports = self.n_docs - n_contacts - n_other

        for doc in fixed:
            yield json.loads(json.dumps(doc))  # a fresh copy: callers may mutate what they get
        out = len(fixed)
        contacts = reports = messages = infos = 0
        groups = self._contact_groups()
        while contacts < n_contacts:
            for doc in next(groups):
                yield doc
                contacts += 1
                out += 1
            # Interleave the other kinds so the stream looks like a live database's history. The
            # cap keeps a few reports for the end, where the total is made exactly n_docs (the
            # last contact group may overshoot n_contacts by one doc).
            progress = min(contacts, n_contacts - 1) / n_contacts
            while reports < n_reports * progress and self.patients:
                yield self._report()
                reports += 1
                out += 1
            while messages < n_messages * progress and self.chws:
                yield self._message()
                messages += 1
                out += 1
            while infos < n_info * progress and self.last_report_id != self.last_info_target:
                yield self._info()
                infos += 1
                out += 1
        while out < self.n_docs:
            if infos < n_info and self.last_report_id != self.last_info_target:
                yield self._info()
                infos += 1
            elif messages < n_messages:
                yield self._message()
                messages += 1
            else:
                yield self._report()
            out += 1

    # .. contacts ...............................................................................
    def _contact_groups(self) -> Iterator[list[dict[str, Any]]]:
        """Endless contact groups: a place with its primary contact, or one more household member."""
        rng = self.rng
        while True:
            district = rng.choice(DISTRICTS)
            dh_id, sup_id = _uuid(rng), _uuid(rng)
            sup = self._person(sup_id, [dh_id], role="chw_supervisor", age=(30, 60))
            yield [self._place(dh_id, "district_hospital", f"{district} District Hospital", [], sup_id), sup]
            for _ in range(rng.randint(3, 6)):
                locality = rng.choice(LOCALITIES)
                facility = f"{locality} Health Centre"
                hc_id, chw_id = _uuid(rng), _uuid(rng)
                chw = self._person(chw_id, [hc_id, dh_id], role="chw", age=(22, 55))
                hc = self._place(hc_id, "health_center", facility, [dh_id], chw_id)
                if rng.random() < 0.3:
                    hc["rc_code"] = f"KE-HF-{rng.randrange(10**5):05d}"
                hc_chws = [_Chw(chw_id, lineage(chw_id, hc_id, dh_id), chw["phone"])]
                self.chws.append(hc_chws[0])
                yield [hc, chw]
                for h in range(rng.randint(8, 20)):
                    yield from self._household(facility, hc_id, dh_id, hc_chws, h == 0)

    def _household(
        self, facility: str, hc_id: str, dh_id: str, hc_chws: list[_Chw], young_family: bool
    ) -> Iterator[list[dict[str, Any]]]:
        """A clinic (household) and its members: head, maybe a spouse, then children.

        ``young_family`` (the first household of each health centre) guarantees a woman of
        child-bearing age and a child under five, so even 100-doc streams mix all three forms.
        """
        rng = self.rng
        family = rng.choice(FAMILY_NAMES)
        clinic_id = _uuid(rng)
        chain = [clinic_id, hc_id, dh_id]
        size = rng.randint(3, 6) if young_family else rng.randint(1, 6)
        head_sex = "male" if young_family else rng.choice(("male", "female"))
        for i in range(size):
            person_id = _uuid(rng)
            role = "patient"
            if i == 0:  # some household heads are CHWs themselves
                if not young_family and rng.random() < 0.04:
                    role = "chw"
                sex, age = head_sex, ((25, 45) if young_family else (22, 65))
            elif i == 1:
                sex = "female" if head_sex == "male" else "male"
                age = ((20, 35) if young_family else (18, 45)) if sex == "female" else (20, 60)
            else:
                sex = rng.choice(("male", "female"))
                age = (0, 4) if young_family and i == 2 else (0, 12)
            person = self._person(person_id, chain, role=role, age=age, sex=sex, family=family)
            if role == "chw":
                chw = _Chw(person_id, lineage(person_id, *chain), person["phone"])
                hc_chws.append(chw)
                self.chws.append(chw)
            else:
                self._remember(person, facility, tuple(hc_chws))
            if i == 0:
                place = self._place(clinic_id, "clinic", f"{family} Household", [hc_id, dh_id], person_id)
                yield [place, person]
            else:
                yield [person]

    def _contact_date(self, not_before_ms: int) -> int:
        low = max(self.window_start_ms - 2 * YEAR_MS, not_before_ms)
        return self.rng.randrange(low, self.window_start_ms)

    def _place(self, place_id: str, type_: str, name: str, ancestors: list[str], contact_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"_id": place_id, "type": type_, "name": name}
        if ancestors:
            doc["parent"] = lineage(*ancestors)
        doc["contact"] = lineage(contact_id, place_id, *ancestors)
        doc["place_id"] = self.codes.next()
        doc["reported_date"] = self._contact_date(0)
        return doc

    def _person(
        self,
        person_id: str,
        ancestors: list[str],
        role: str,
        age: tuple[int, int],
        sex: str | None = None,
        family: str | None = None,
    ) -> dict[str, Any]:
        rng = self.rng
        sex = sex or rng.choice(("male", "female"))
        given = rng.choice(MALE_NAMES if sex == "male" else FEMALE_NAMES)
        family = family or rng.choice(FAMILY_NAMES)
        # Ages are relative to the start of the report window, so nobody is reported on before
        # birth or registration. Children are at least one month old then.
        age_days = rng.randrange(max(age[0] * 365, 30), (age[1] + 1) * 365)
        dob_ms = self.window_start_ms - age_days * DAY_MS
        doc: dict[str, Any] = {
            "_id": person_id,
            "type": "person",
            "name": f"{given} {family}",
        }
        if rng.random() < 0.25:
            doc["short_name"] = given
        doc["date_of_birth"] = ymd(dob_ms)
        doc["sex"] = sex
        doc["phone"] = _phone(rng) if role != "patient" or (age[0] >= 18 and rng.random() < 0.8) else ""
        doc["role"] = role
        doc["parent"] = lineage(*ancestors)
        doc["patient_id"] = self.codes.next()
        doc["reported_date"] = self._contact_date(dob_ms)
        return doc

    def _remember(self, person: dict[str, Any], facility: str, chws: tuple[_Chw, ...]) -> None:
        p = _Patient(
            person["_id"],
            person["patient_id"],
            person["name"],
            date.fromisoformat(person["date_of_birth"]),
            person["sex"],
            chws,
            facility,
        )
        self.patients.append(p)
        age_years = (self.window_start_date - p.dob).days / 365
        if age_years < 5:
            self.children.append(p)
        elif p.sex == "female" and 15 <= age_years <= 45:
            self.women.append(p)

    # .. reports and other docs ...................................................................
    def _report(self) -> dict[str, Any]:
        rng = self.rng
        r = rng.random()
        if r < 0.25 and self.women:
            form, pool = "pregnancy", self.women
        elif r < 0.5 and self.children:
            form, pool = "immunization_visit", self.children
        else:
            form, pool = "assessment", self.patients
        patient = pool[rng.randrange(len(pool))]
        chw = rng.choice(patient.chws)
        report_id = _uuid(rng)
        reported_ms = rng.randrange(self.window_start_ms, self.anchor_ms)
        fields: dict[str, Any] = {
            "patient_id": patient.patient_id,
            "patient_uuid": patient.id,
            "patient_name": patient.name,
        }
        if form == "pregnancy":
            weeks = rng.randint(4, 36)
            lmp_ms = reported_ms - weeks * 7 * DAY_MS
            fields.update(
                lmp_date=ymd(lmp_ms),
                edd=ymd(lmp_ms + 280 * DAY_MS),
                weeks_since_lmp=weeks,
                anc_visits=rng.randint(0, min(4, weeks // 6)),
                risk_factors=" ".join(
                    rng.sample(
                        ("first_pregnancy", "previous_miscarriage", "hiv_positive", "diabetes", "high_blood_pressure"),
                        rng.choice((0, 0, 0, 1, 2)),
                    )
                ),
            )
        elif form == "assessment":
            temperature = round(min(41.5, max(35.0, rng.gauss(37.4, 0.9))), 1)
            symptoms = rng.sample(SYMPTOMS, rng.choice((0, 1, 1, 2, 3)))
            if temperature >= 38.0 and "fever" not in symptoms:
                symptoms.insert(0, "fever")
            referral = temperature >= 39.0 or "fast_breathing" in symptoms or rng.random() < 0.08
            fields.update(
                temperature=temperature,
                symptoms=" ".join(symptoms),
                referral="yes" if referral else "no",
                referral_facility=patient.facility if referral else "",
            )
        else:
            start = rng.randrange(len(VACCINES))
            fields.update(
                vaccines=list(VACCINES[start : start + rng.randint(1, 3)]),
                visit_date=ymd(reported_ms - rng.randint(0, 2) * DAY_MS),
            )
        fields["meta"] = {"instanceID": f"uuid:{_uuid(rng)}"}
        self.last_report_id = report_id
        return {
            "_id": report_id,
            "type": "data_record",
            "form": form,
            "content_type": "xml",
            "reported_date": reported_ms,
            "from": chw.phone,
            "contact": json.loads(json.dumps(chw.lineage)),
            "fields": fields,
            "hidden_fields": ["meta"],
            "errors": [],
        }

    def _message(self) -> dict[str, Any]:
        """An incoming SMS that is not a report: a data_record without ``form``."""
        rng = self.rng
        known = rng.random() < 0.7
        chw = self.chws[rng.randrange(len(self.chws))]
        phone = chw.phone if known else _phone(rng)
        doc: dict[str, Any] = {
            "_id": _uuid(rng),
            "type": "data_record",
            "from": phone,
            "reported_date": rng.randrange(self.window_start_ms, self.anchor_ms),
            "sms_message": {
                "message": rng.choice(SMS_TEXTS),
                "from": phone,
                "type": "sms_message",
                "locale": "en",
                "gateway_ref": _uuid(rng),
            },
            "errors": [] if known else [{"code": "sys.facility_not_found", "message": "Facility not found."}],
            "tasks": [],
        }
        if known:
            doc["contact"] = json.loads(json.dumps(chw.lineage))
        return doc

    def _info(self) -> dict[str, Any]:
        """A legacy Sentinel infodoc left in ``medic`` (readers must skip it)."""
        assert self.last_report_id is not None
        self.last_info_target = target = self.last_report_id
        ms = self.rng.randrange(self.window_start_ms, self.anchor_ms)
        iso = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
        return {
            "_id": f"{target}-info",
            "type": "info",
            "doc_id": target,
            "initial_replication_date": iso,
            "latest_replication_date": iso,
            "transitions": {},
        }


def generate(n_docs: int, seed: int = 42, anchor_ms: int = DEFAULT_ANCHOR_MS) -> Iterator[dict]:
    """Yield exactly ``n_docs`` synthetic ``medic`` docs in insertion order (no ``_rev``).

    Deterministic for a given (n_docs, seed, anchor_ms); lazy, so memory stays flat at 1M docs.
    """
    return _Generator(n_docs, seed, anchor_ms).run()


# -- CLI ------------------------------------------------------------------------------------------
def _read_password(path: Path) -> str:
    """A password file holds the password, or JSON with a ``password`` key (e.g. admin.json)."""
    text = path.read_text().strip()
    if text.startswith("{"):
        return str(json.loads(text)["password"])
    return text


def _anchor(value: str) -> int:
    dt = datetime.fromisoformat(value)  # naive means UTC
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Synthetic CHT medic data: seed a CouchDB or write JSONL.")
    parser.add_argument("--docs", type=int, default=1000, help=f"{MIN_DOCS}..{MAX_DOCS}")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--anchor",
        type=_anchor,
        default=DEFAULT_ANCHOR_MS,
        help="reports fall in the 12 months before this ISO date (default 2026-11-01)",
    )
    parser.add_argument("--jsonl", help="write the docs to this JSONL file ('-' = stdout) instead")
    parser.add_argument("--url", help="CouchDB base URL, e.g. http://127.0.0.1:5984")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password-file", type=Path)
    parser.add_argument("--db", default="medic")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--edits", type=float, default=0.05)
    parser.add_argument("--deletes", type=float, default=0.01)
    args = parser.parse_args(argv)

    if args.jsonl:
        with contextlib.ExitStack() as stack:
            out = sys.stdout
            if args.jsonl != "-":
                out = stack.enter_context(open(args.jsonl, "w", encoding="utf-8"))
            try:
                for doc in generate(args.docs, args.seed, args.anchor):
                    out.write(json.dumps(doc, separators=(",", ":")) + "\n")
            except BrokenPipeError:  # piped into `head`: stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not args.url or not args.password_file:
        parser.error("give --jsonl OUT, or --url and --password-file")
    from standins.seed import seed  # seed.py imports this module

    counts = seed(
        args.url,
        (args.user, _read_password(args.password_file)),
        args.docs,
        seed=args.seed,
        db=args.db,
        batch=args.batch,
        edits=args.edits,
        deletes=args.deletes,
        anchor_ms=args.anchor,
    )
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
