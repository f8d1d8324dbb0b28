"""One run of a reverse pipeline, in three steps that each finish on their own.

``receive`` reads the source from its checkpoint, maps each new (record, version) and adds it to
the inbound ledger; ``match_received`` decides for each row link / review / new against the CHT
persons of its area (rows still waiting for a place are placed again first); ``write_ready``
creates what was decided in CHT. A reviewer's choice (``apply_choice``) turns a ``review`` row
into a decided one, which the next ``write_ready`` writes; ``replay`` sends rows that waited for a
person's fix through again. Every step reads its work from the ledger, so a step retried by
Airflow, or a run after a crash, picks up exactly where the last one stopped, and nothing is
posted to CHT twice.

Logs carry source ids, counts and reasons; never names, phones or dates of birth.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from cht_bridge.cht.api import ChtApiClient, WriteError
from cht_bridge.mapping import Mapper
from cht_bridge.reverse.choices import Choice, Kind
from cht_bridge.reverse.model import ReversePipeline
from cht_bridge.reverse.phone_places import code_label
from cht_bridge.reverse.places import PlaceTable
from cht_bridge.reverse.sources.base import Source
from cht_bridge.state.inbound import (
    DONE,
    FAILED,
    PERSON_SENT,
    READY,
    RECEIVED,
    REPORT_SENT,
    REVIEW,
    SKIPPED,
    UNPLACED,
    InboundLedger,
    InboundRow,
    refused_row,
)

log = logging.getLogger(__name__)

#: Runs in a row a write may fail for a passing reason (timeout, 429, 5xx without CHT's details)
#: before its row is ``failed`` and waits for a replay, like the forward path's ``dead_after``.
GIVE_UP_AFTER = 5
#: Starts the reason of a row whose write failed for a passing reason; the next run tries again.
RETRY_LATER = "tried again by the next run: "
#: Said of an ``unplaced`` row whose record an earlier version of the bridge erased: nothing is
#: left to place, so it is closed, keeping the missing code in its reason.
ORPHANED = "closed: its record was erased by an earlier version; the source's next version of it, or a reset checkpoint, brings it back"
#: What a replay reopens, by the ``replay`` Param.
REPLAY_STATUSES = {"failed": (FAILED,), "unplaced": (UNPLACED,), "both": (FAILED, UNPLACED)}
#: Rows a replay lists in its XCom and log (all are counted).
REPLAY_LISTED = 100


@dataclass
class StepCounts:
    """What one step did; the task returns it (counts, and a replay's ids and reasons) as its XCom."""

    counts: dict[str, Any]

    def as_xcom(self) -> dict[str, Any]:
        return dict(self.counts)


def _bump(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


# -- 1. receive ----------------------------------------------------------------------------------


def receive(
    pipeline: ReversePipeline, source: Source, mapper: Mapper, ledger: InboundLedger, run_id: str | None = None
) -> StepCounts:
    """Read the source from its checkpoint; add each new (id, version) to the ledger, mapped.

    Each page's rows and the checkpoint after it are written in one transaction, so a crash
    re-reads at most one page, and the ledger's key makes that re-read add nothing. A source whose
    records are final once read (``once_per_id``, e.g. completed RapidPro runs) gets one row per
    id: a new version of a record whose row is not waiting for a fix is ``already_received``.
    """
    counts = {"read": 0, "received": 0, "unchanged": 0, "filtered": 0, "mapping_failed": 0, "superseded": 0, "pages": 0}
    once_per_id = bool(getattr(source, "once_per_id", False))
    started = time.monotonic()
    for page in source.pages(ledger.checkpoint(pipeline.name)):
        counts["pages"] += 1
        counts["read"] += len(page.records)
        seen = ledger.seen(pipeline.name, [(r.id, r.version) for r in page.records])
        settled = ledger.settled(pipeline.name, [r.id for r in page.records]) if once_per_id else set()
        fresh, keys = [], set()
        rows: list[InboundRow] = []
        for record in page.records:
            if (record.id, record.version) in seen or (record.id, record.version) in keys:
                counts["unchanged"] += 1
                continue
            if record.id in settled:  # a final record touched again upstream: written once already
                _bump(counts, "already_received")
                continue
            keys.add((record.id, record.version))
            refused = refused_row(pipeline.name, record.id, record.version)
            if refused is not None:  # the ledger could not track what it creates in CHT
                rows.append(refused)
                _bump(counts, "refused_id")
                log.warning("%s: record %s refused: %s", pipeline.name, refused.source_id, refused.reason)
                continue
            if record.error is not None:  # read, but unusable (e.g. an invalid FHIR resource)
                rows.append(
                    InboundRow(pipeline.name, record.id, record.version, FAILED, reason=f"source: {record.error}")
                )
                counts["source_invalid"] = counts.get("source_invalid", 0) + 1
                log.warning("%s: record %s v%s unusable: %s", pipeline.name, record.id, record.version, record.error)
                continue
            fresh.append(record)
        mapped = mapper.map([{**r.data, "_id": r.id} for r in fresh])
        for record, result in zip(fresh, mapped, strict=True):
            row = InboundRow(pipeline.name, record.id, record.version, RECEIVED)
            if result.error is not None:
                row.status, row.reason = FAILED, f"mapping: {result.error}"
                counts["mapping_failed"] += 1
                log.warning("%s: record %s v%s not mapped: %s", pipeline.name, record.id, record.version, result.error)
            elif not result.relevant:
                counts["filtered"] += 1
                continue
            else:
                row.record = result.payload
                counts["received"] += 1
            rows.append(row)
        superseded: list[tuple[str, str]] = []
        ledger.receive(pipeline.name, rows, page.checkpoint, run_id, superseded)
        counts["superseded"] += len(superseded)
        for source_id, version in superseded:
            log.info("%s: record %s v%s replaced by its newer version", pipeline.name, source_id, version)
        log.info(
            "%s: page %d read=%d new=%d unchanged=%d", pipeline.name, counts["pages"], len(page.records),
            len(keys), len(page.records) - len(keys),
        )  # fmt: skip
    counts.update(getattr(source, "counts", None) or {})  # what the source tells beyond its pages
    counts["seconds"] = round(time.monotonic() - started, 3)
    return StepCounts(counts)


# -- 2. match ------------------------------------------------------------------------------------


def match_received(
    pipeline: ReversePipeline,
    ledger: InboundLedger,
    api: ChtApiClient,
    places: PlaceTable,
    run_id: str | None = None,
) -> StepCounts:
    """Decide link / review / new for every received row; rows without a place are set aside.

    Rows set aside by earlier runs (``unplaced``, with their record) are placed again first, so a
    code added to the place table lets them through. The CHT persons of each area are read once
    per run (``persons_under``), and CHT's own phone lookup adds people registered elsewhere
    (people move; EMR villages are free text).
    """
    from cht_bridge.matching import match

    counts = {"unplaced": 0, "placed_again": 0, "waiting_place": 0, "link": 0, "review": 0, "new": 0, "duplicate": 0}
    rows = ledger.rows(pipeline.name, [RECEIVED, UNPLACED])
    placed: list[InboundRow] = []
    missing: set[str] = set()
    for row in rows:
        if row.record is None:  # set aside by a version of the bridge that erased its record
            counts["orphaned"] = counts.get("orphaned", 0) + 1
            log.warning("%s: record %s was set aside without its data and is closed", pipeline.name, row.source_id)
            row.status, row.reason = SKIPPED, f"{row.reason}; {ORPHANED}"
            ledger.save(row, run_id)
            continue
        code = row.record.get("place")
        place_id = places.place_for(code)
        if place_id is None:
            counts["waiting_place"] += 1
            missing.add(code_label(code) if code else "(none)")
            reason = unplaced_reason(pipeline, places, code)
            if row.status != UNPLACED:
                counts["unplaced"] += 1
                log.warning("%s: record %s set aside: %s", pipeline.name, row.source_id, reason)
            if (row.status, row.reason) != (UNPLACED, reason):
                row.status, row.reason, row.place_id = UNPLACED, reason, None
                ledger.save(row, run_id)
            continue
        if row.status == UNPLACED:
            counts["placed_again"] += 1
            log.info("%s: record %s has a place now (%s)", pipeline.name, row.source_id, place_id)
        row.place_id = place_id
        placed.append(row)
    if missing:
        codes = ", ".join(sorted(missing)[:20]) + (" …" if len(missing) > 20 else "")
        log.warning(
            "%s: %d rows wait for a place: add these %s codes to %s: %s",
            pipeline.name, counts["waiting_place"], pipeline.places.key, places.file, codes,
        )  # fmt: skip
    if placed:
        incoming = [incoming_person(row, str(i), pipeline) for i, row in enumerate(placed)]
        existing = _existing_people(pipeline, api, placed, incoming)
        from cht_bridge.reverse.learning import model_for
        from cht_bridge.state.matching import MatchingStore

        model, origin = model_for(pipeline, MatchingStore(ledger.store))
        log.info("%s: matching with the %s model", pipeline.name, origin)
        decisions = match(incoming, existing, match_config(pipeline, model))
        by_incoming = {str(i): row for i, row in enumerate(placed)}
        for row, decision in zip(placed, decisions, strict=True):
            _decide(row, decision, by_incoming, pipeline)
            ledger.save(row, run_id)
            _bump(counts, "duplicate" if row.status == SKIPPED else decision.decision)
    counts["waiting_review"] = len(ledger.review_keys(pipeline.name))
    log.info("%s: matched %s", pipeline.name, counts)
    return StepCounts(counts)


def unplaced_reason(pipeline: ReversePipeline, places: PlaceTable, code: Any) -> str:
    if not code:
        return f"the row has no {pipeline.places.key}"
    return f"no place for {pipeline.places.key} {code_label(code)} in {places.file}"


def match_config(pipeline: ReversePipeline, model: dict[str, Any] | None = None) -> Any:
    """The matcher's settings: its own defaults (or a trained ``model``'s thresholds), with what the
    pipeline file sets.

    ``review.max_candidates`` is how many candidates the matcher keeps, so a reviewer is offered
    as many as the file allows.
    """
    from cht_bridge.matching.decisions import config_for_model

    m = pipeline.match
    return config_for_model(
        model,
        region=m.region,
        max_candidates=pipeline.review.max_candidates,
        upper=m.upper,
        lower=m.lower,
        ambiguity_margin=m.margin,
    )


def incoming_person(row: InboundRow, person_id: str, pipeline: ReversePipeline) -> Any:
    """The matcher's view of a list row: the mapped ``person.*`` fields and the row's place."""
    from cht_bridge.matching import Person

    person = dict((row.record or {}).get("person") or {})
    given, family = person.get("given_name"), person.get("family_name")
    if not given and not family and person.get("name"):
        *first, last = str(person["name"]).split() or [""]
        given, family = " ".join(first) or None, last or None
    return Person(
        id=person_id,
        given_name=_text(given),
        family_name=_text(family),
        sex=_text(person.get("sex")),
        date_of_birth=_text(person.get("date_of_birth")),
        date_of_birth_estimated=person.get("date_of_birth_estimated"),
        phone=_text(person.get("phone")),
        place=row.place_id,
        area=row.place_id,
        identifier=_text(person.get("identifier")),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _existing_people(
    pipeline: ReversePipeline, api: ChtApiClient, rows: list[InboundRow], incoming: list[Any]
) -> list[Any]:
    from cht_bridge.matching import from_cht_person, normalise_phone

    docs: dict[str, dict[str, Any]] = {}
    places = sorted({row.place_id for row in rows if row.place_id})
    for place_id in places:
        for doc in api.persons_under(place_id):
            docs[doc["_id"]] = doc
    phones = sorted({p for p in (normalise_phone(x.phone, pipeline.match.region) for x in incoming if x.phone) if p})
    for phone in phones:
        for doc in api.contacts_by_phone(phone):
            docs.setdefault(doc["_id"], doc)
    log.info(
        "%s: %d CHT persons from %d places and %d phones",
        pipeline.name,
        len(docs),
        len(places),
        len(phones),
    )
    return [from_cht_person(doc, pipeline.match.identifier_field) for doc in docs.values()]


def _decide(row: InboundRow, decision: Any, by_incoming: dict[str, InboundRow], pipeline: ReversePipeline) -> None:
    row.decision = decision.decision
    row.decided_by = "matcher"
    row.probability = decision.probability
    row.reason = decision.reason
    row.candidates = [
        {
            "id": c.existing_id,
            "probability": c.probability,
            "reason": c.reason,
            "evidence": [list(item) for item in getattr(c, "evidence", ())],
        }
        for c in (decision.candidates or [])[: pipeline.review.max_candidates]
    ]
    same_as = getattr(decision, "same_as", None)
    if same_as is not None and same_as in by_incoming:
        first = by_incoming[same_as]
        row.same_as = first.source_id
        row.status = SKIPPED
        row.reason = f"the list names this person twice: same person as record {first.source_id}"
        return
    if decision.decision == "link":
        row.status, row.person_id = READY, decision.existing_id
    elif decision.decision == "new":
        row.status, row.person_id = READY, None
    else:
        row.status = REVIEW


# -- review ----------------------------------------------------------------------------------------


def apply_choice(
    pipeline: ReversePipeline, ledger: InboundLedger, key: tuple[str, str], choice: Choice, reviewer: str
) -> InboundRow | None:
    """A reviewer's answer to a ``review`` row: link to a candidate, create, skip, or later."""
    row = ledger.get(pipeline.name, *key)
    if row is None or row.status != REVIEW:
        return row  # already decided (a retried task): the first answer stands
    if choice.kind is Kind.LATER:
        return row
    if choice.kind is Kind.LINK and choice.candidate >= len(row.candidates):
        raise ValueError(f"review choice {choice.label!r}: record {row.source_id} has {len(row.candidates)} candidates")
    row.decided_by = reviewer
    person = (row.record or {}).get("person")  # kept with the label: a closed row forgets it
    if choice.kind is Kind.NEW:
        row.status, row.decision, row.person_id = READY, "new", None
    elif choice.kind is Kind.SKIP:
        row.status, row.reason = SKIPPED, f"skipped by reviewer {reviewer}"
    else:
        candidate = row.candidates[choice.candidate]
        row.status, row.decision = READY, "link"
        row.person_id, row.probability = candidate["id"], candidate.get("probability")
    ledger.save(row)
    from cht_bridge.reverse.learning import record_answer

    record_answer(ledger, row, choice.candidate, choice.kind is Kind.NEW, reviewer, person)
    return row


# -- 3. write -------------------------------------------------------------------------------------


def write_ready(
    pipeline: ReversePipeline,
    ledger: InboundLedger,
    api: ChtApiClient,
    run_id: str | None = None,
    give_up_after: int = GIVE_UP_AFTER,
) -> StepCounts:
    """Create the decided rows in CHT: a person first when needed, then the report.

    Each write is marked in the ledger before it is sent; a row found marked (a crash, a timeout)
    is looked up in CHT by its ``source_ref`` before anything is posted again.

    A write CHT refuses for a reason a person must fix (CHT's validation or config errors: an
    unknown form, a missing place, a 400) makes the row ``failed``, with its record and CHT's
    reason, until a replay. A write that fails for a passing reason (timeout, 429, 5xx without
    details) is tried again by the next run, once a run, and the row is ``failed`` after
    ``give_up_after`` runs in a row.
    """
    counts = {
        "persons_created": 0,
        "persons_found": 0,
        "reports_created": 0,
        "reports_found": 0,
        "failed": 0,
        "retry_later": 0,
    }
    for row in ledger.rows(pipeline.name, [READY, PERSON_SENT, REPORT_SENT]):
        if run_id is not None and row.run_id == run_id and (row.reason or "").startswith(RETRY_LATER):
            counts["retry_later"] += 1  # this run tried it already: once a run counts the runs
            continue
        try:
            _write_row(pipeline, ledger, api, row, counts, run_id)
        except WriteError as exc:
            row.attempts += 1
            if exc.retryable and row.attempts < give_up_after:
                counts["retry_later"] += 1
                row.reason = f"{RETRY_LATER}{exc}"
            else:
                counts["failed"] += 1
                row.status = FAILED
                row.reason = f"gave up after {row.attempts} runs: {exc}" if exc.retryable else str(exc)
            ledger.save(row, run_id)  # makes the reason one line, as logged here
            log.warning(
                "%s: record %s not written (try %d): %s", pipeline.name, row.source_id, row.attempts, row.reason
            )
    counts["failed_waiting"] = ledger.counts(pipeline.name).get(FAILED, 0)
    if counts["failed_waiting"]:
        failed = ledger.rows(pipeline.name, [FAILED], limit=20)
        ids = ", ".join(row.source_id for row in failed) + (" …" if counts["failed_waiting"] > 20 else "")
        log.warning(
            "%s: %d rows failed and wait for a replay (Param replay=failed once the cause is fixed): %s",
            pipeline.name, counts["failed_waiting"], ids,
        )  # fmt: skip
    log.info("%s: wrote %s", pipeline.name, counts)
    return StepCounts(counts)


def _write_row(
    pipeline: ReversePipeline,
    ledger: InboundLedger,
    api: ChtApiClient,
    row: InboundRow,
    counts: dict[str, int],
    run_id: str | None,
) -> None:
    if row.status == PERSON_SENT:
        found = api.find_person(row.place_id, row.source_ref)
        row.status, row.person_id = READY, found
        if found:
            row.person_created = True
            counts["persons_found"] += 1
            ledger.save(row, run_id)
    if row.status == READY and row.person_id is None:
        row.status = PERSON_SENT
        ledger.save(row, run_id)
        row.person_id = api.create_person(new_person(pipeline, row), pipeline.target.people_api)
        row.status, row.person_created = READY, True
        ledger.save(row, run_id)
        counts["persons_created"] += 1
    if row.status == REPORT_SENT:
        found = api.find_report(row.person_id, row.source_ref)
        if found:
            row.status, row.report_id = DONE, found
            row.reason = None
            ledger.save(row, run_id)
            counts["reports_found"] += 1
            return
        row.status = READY
    if row.status == READY:
        row.status = REPORT_SENT
        ledger.save(row, run_id)
        row.report_id = api.create_report(new_report(pipeline, row))
        row.status, row.reason = DONE, None
        ledger.save(row, run_id)
        counts["reports_created"] += 1


# -- replay ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayChoice:
    """Which waiting rows a replay takes, and what it does with them (the reverse DAG's Params)."""

    status: str  # failed | unplaced | both
    source_ids: tuple[str, ...] = ()  # empty: every row with the status
    dry_run: bool = False  # list what would happen; change nothing
    give_up: bool = False  # close the rows as skipped (their record erased) instead of sending them


def replay(
    pipeline: ReversePipeline,
    ledger: InboundLedger,
    places: PlaceTable,
    choice: ReplayChoice,
    run_id: str | None = None,
) -> StepCounts:
    """Put rows that waited for a person's fix back into the run: ``failed``, ``unplaced`` or both.

    A failed row goes back to its write mark (``report_sent`` when its person exists,
    ``person_sent`` under its place as the table says now when not), so the write step looks it
    up in CHT by its ``source_ref`` before it posts: a replay never creates a second person or
    report, however often it is asked for. An unplaced row is matched again. A row without a
    mapped record (its mapping or the source failed) cannot be sent again; a new version of the
    record brings it back. ``give_up`` closes the rows instead (``skipped``, record erased): for
    rows that will never go through. ``dry_run`` lists what would happen and changes nothing.
    """
    rows = ledger.rows(pipeline.name, REPLAY_STATUSES[choice.status])
    if choice.source_ids:
        chosen = set(choice.source_ids)
        rows = [row for row in rows if row.source_id in chosen]
    counts: dict[str, Any] = {"selected": len(rows), "replayed": 0, "unplaced": 0, "not_replayable": 0, "given_up": 0}
    counts["not_found"] = sorted(set(choice.source_ids) - {row.source_id for row in rows})
    listed: list[dict[str, Any]] = []
    for row in rows:
        before, reason = row.status, row.reason
        after = _give_up(row, run_id) if choice.give_up else _reopen(pipeline, places, row)
        _bump(counts, _replay_outcome(after))
        if len(listed) < REPLAY_LISTED:
            listed.append({"source_id": row.source_id, "source_version": row.source_version, "status": before,
                           "to": after, "reason": reason})  # fmt: skip
        log.info(
            "%s: record %s v%s: %s → %s%s (%s)", pipeline.name, row.source_id, row.source_version, before,
            after or "not replayable", " [dry run]" if choice.dry_run else "", reason,
        )  # fmt: skip
        if after is not None and not choice.dry_run:
            ledger.save(row, run_id)
    counts["dry_run"] = choice.dry_run
    counts["rows"] = listed
    log.info("%s: replay %s: %s", pipeline.name, choice.status, {k: v for k, v in counts.items() if k != "rows"})
    return StepCounts(counts)


def _replay_outcome(after: str | None) -> str:
    if after is None:
        return "not_replayable"
    return {UNPLACED: "unplaced", SKIPPED: "given_up"}.get(after, "replayed")


def _give_up(row: InboundRow, run_id: str | None) -> str:
    row.status, row.reason = SKIPPED, f"given up by a person (run {run_id}): {row.reason}"
    return row.status


def _reopen(pipeline: ReversePipeline, places: PlaceTable, row: InboundRow) -> str | None:
    """Move ``row`` to where the run takes it up again; ``None`` when it cannot be sent again."""
    if row.record is None:
        return None
    row.attempts = 0
    if row.status == UNPLACED:
        row.status = RECEIVED
    elif row.person_id:
        row.status = REPORT_SENT
    else:
        code = row.record.get("place")
        row.place_id = places.place_for(code)
        if row.place_id is None:
            row.status, row.reason = UNPLACED, unplaced_reason(pipeline, places, code)
        else:
            row.status = PERSON_SENT
    return row.status


def new_person(pipeline: ReversePipeline, row: InboundRow) -> dict[str, Any]:
    """The person a list row creates, under its place, carrying the source's identifier."""
    from cht_bridge.matching import normalise_phone
    from cht_bridge.matching.records import clean_date, clean_sex, date_is_estimate

    person = dict((row.record or {}).get("person") or {})
    name = person.get("name") or " ".join(p for p in (person.get("given_name"), person.get("family_name")) if p)
    body: dict[str, Any] = {"name": name or f"Unnamed ({row.source_id})", "type": pipeline.target.person_type}
    body["parent"] = row.place_id
    sex, dob = clean_sex(person.get("sex")), clean_date(person.get("date_of_birth"))
    if sex:
        body["sex"] = sex  # CHT's words: male / female
    if dob and dob <= date.today().isoformat():  # a future date is a typo or a placeholder: not written
        body["date_of_birth"] = dob  # CHT's format: YYYY-MM-DD
        if date_is_estimate(person.get("date_of_birth"), person.get("date_of_birth_estimated")):
            body["date_of_birth_method"] = "approx"  # how CHT's person form marks an estimate
    phone = normalise_phone(person.get("phone"), pipeline.match.region) if person.get("phone") else None
    if phone:
        body["phone"] = phone
    if pipeline.match.identifier_field and person.get("identifier"):
        body[pipeline.match.identifier_field] = str(person["identifier"])
    body["source_ref"] = row.source_ref
    return body


def new_report(pipeline: ReversePipeline, row: InboundRow) -> dict[str, Any]:
    """The JSON-form record about the row's person; ``source_ref`` makes it findable again."""
    fields = dict((row.record or {}).get("report") or {})
    person = (row.record or {}).get("person") or {}
    body: dict[str, Any] = {"_meta": {"form": pipeline.target.form}, **fields}
    body["patient_uuid"] = row.person_id
    body.setdefault("external_id", str(person.get("identifier") or row.source_id))
    body["source_ref"] = row.source_ref
    return body
