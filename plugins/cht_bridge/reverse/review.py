"""The question a reviewer sees: the list row and its CHT candidates side by side.

The reviewer must see names, dates of birth and phones to decide, so this text goes only to the
Airflow UI's human-in-the-loop question (stored with the task in Airflow's database), never to
logs or XCom. Candidates are read fresh from CHT, so the reviewer sees them as they are now.

Under the values, the matcher's evidence per field in words ("same date of birth", "phone differs
in one digit", "the name is a common one in this area") with the match weight each contributed
(bits: + for the same person, - against), so the reviewer sees why it hesitated. The questions
of one run are asked most uncertain first (``review_order``): those are where a person's answer
changes the most, and where the matcher learns the most from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cht_bridge.reverse.choices import Offer, offer_block, option_labels
from cht_bridge.reverse.model import ReversePipeline
from cht_bridge.state.inbound import InboundRow


@dataclass(frozen=True)
class Question:
    subject: str
    body: str
    options: list[str]  # a link per candidate still in CHT, then the other choices (``choices``)


def review_question(pipeline: ReversePipeline, row: InboundRow, api: Any) -> Question:
    """Build the side-by-side question for one ``review`` row."""
    ids = [c["id"] for c in row.candidates]
    docs = api.docs(ids)
    places = api.docs(sorted({_parent(d) for d in docs.values() if _parent(d)} | ({row.place_id} - {None})))
    person = (row.record or {}).get("person") or {}
    identifier = pipeline.match.identifier_field
    columns = ["", f"List row {row.source_id}"]
    for i, candidate in enumerate(row.candidates):
        p = candidate.get("probability")
        columns.append(f"Candidate {i + 1}" + (f" (p={p:.2f})" if p is not None else ""))
    lines = [
        ("Name", _name(person), [docs.get(c, {}).get("name") for c in ids]),
        ("Sex", person.get("sex"), [docs.get(c, {}).get("sex") for c in ids]),
        (
            "Date of birth",
            _born(person.get("date_of_birth"), person.get("date_of_birth_estimated")),
            [_born(docs.get(c, {}).get("date_of_birth"), docs.get(c, {}).get("date_of_birth_method")) for c in ids],
        ),
        ("Phone", person.get("phone"), [docs.get(c, {}).get("phone") for c in ids]),
        (
            "Identifier",
            person.get("identifier"),
            [docs.get(c, {}).get(identifier) if identifier else None for c in ids],
        ),
        (
            "Place",
            places.get(row.place_id or "", {}).get("name") or row.place_id,
            [places.get(_parent(docs.get(c, {})) or "", {}).get("name") for c in ids],
        ),
        ("CHT id", "", ids),
        *_evidence_lines(row.candidates),
        ("Why a candidate", "", [c.get("reason") for c in row.candidates]),
    ]
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for label, incoming, values in lines:
        cells = [label, _cell(incoming), *(_cell(v) for v in values)]
        table.append("| " + " | ".join(cells) + " |")
    offered = {i: c for i, c in enumerate(ids) if c in docs}
    gone = [i + 1 for i, c in enumerate(ids) if c not in docs]
    note = f"\n\nCandidate(s) {', '.join(map(str, gone))} no longer exist in CHT." if gone else ""
    body = (
        f"**{pipeline.name}**: the matcher is not sure who list record `{row.source_id}` is "
        f"({row.reason or 'uncertain match'}). Nothing is written to CHT until you decide.\n\n"
        + "\n".join(table)
        + note
        + "\n\nLink to a candidate, create a new person, skip the row, or decide later "
        "(the next run asks again).\n\n" + offer_block(Offer(row.source_id, offered))
    )
    return Question(f"{pipeline.name}: who is record {row.source_id}?", body, option_labels(offered))


def _born(value: Any, estimated: Any) -> Any:
    """A date of birth as its source wrote it, marked when it is an estimate: the source flags it
    (CHT's ``approx`` date has the month and day it was entered on) or it is written to the year or
    the month only. An equal date is still the same date; a different one is compared by year."""
    from cht_bridge.matching.records import date_is_estimate

    return f"{value} (estimated)" if value and date_is_estimate(value, estimated) else value


_FIELDS = (
    ("names", "Name"),
    ("date_of_birth", "Date of birth"),
    ("sex", "Sex"),
    ("phone", "Phone"),
    ("place", "Place"),
)
#: The evidence of ``matching.exclusive`` (``CLAIMED``, ``LEFT_OVER``; not imported: numpy).
_OTHER_ROWS = "other_rows"


def _evidence_lines(candidates: list[dict[str, Any]]) -> list[tuple[str, Any, list[Any]]]:
    """One table line per compared field: each candidate's evidence in words and its weight."""
    found = [{item[0]: item for item in c.get("evidence") or []} for c in candidates]
    lines = []
    for field, title in _FIELDS:
        if not any(field in evidence for evidence in found):
            continue
        cells = [
            f"{evidence[field][1]} ({evidence[field][2]:+.1f})" if field in evidence else None for evidence in found
        ]
        lines.append((f"Evidence: {title.lower()}", "", cells))
    # the other rows' claims on a candidate (``matching/exclusive.py``), when they moved its weight
    claims = [[item for item in c.get("evidence") or [] if item[0] == _OTHER_ROWS] for c in candidates]
    if any(claims):
        cells = ["; ".join(f"{item[1]} ({item[2]:+.1f})" for item in items) or None for items in claims]
        lines.append(("Evidence: other rows of this list", "", cells))
    return lines


def review_order(rows: list[InboundRow]) -> list[list[str]]:
    """``[source_id, source_version]`` of ``review`` rows, most uncertain first: the best candidate's
    probability nearest an even chance (in log-odds), then the oldest first. A row without a
    probability (a shared identifier or phone) is as uncertain as can be."""

    def distance(row: InboundRow) -> float:
        p = row.probability
        if p is None:
            return 0.0
        p = min(max(p, 1e-12), 1 - 1e-12)
        return abs(math.log2(p / (1 - p)))

    ordered = sorted(enumerate(rows), key=lambda item: (distance(item[1]), item[0]))
    return [[row.source_id, row.source_version] for _, row in ordered]


def _parent(doc: dict[str, Any]) -> str | None:
    parent = doc.get("parent") or {}
    return parent.get("_id")


def _name(person: dict[str, Any]) -> str | None:
    return person.get("name") or " ".join(p for p in (person.get("given_name"), person.get("family_name")) if p)


def _cell(value: Any) -> str:
    if value in (None, ""):
        return "–"
    return str(value).replace("|", "/").replace("\n", " ")
