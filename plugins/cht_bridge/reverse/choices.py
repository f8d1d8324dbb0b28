"""A reviewer's answer as one typed value, and what a review question offers, readable by a program.

Airflow's human-in-the-loop question offers buttons by their text and answers with the text
pressed, and the task that reads the answer is a fresh operator that knows only the texts. So a
choice is formatted here (``Choice.label``) and parsed back here (``Choice.parse``), and nowhere
else: the operator, the run and the scripted reviewer share one spelling.

A person reads the candidates in the question's table; a program (the scripted reviewer of the
demo and the tests) reads them from ``Offer``, written into the question's body as an HTML comment
(``offer_block``). Airflow's UI renders the body as Markdown with raw HTML skipped, so the person
sees only the table. The comment holds the list row's source id and the CHT ids of the candidates
offered, nothing else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    LINK = "link"  # the row is candidate ``candidate`` of the question
    NEW = "new"  # the row is a person CHT does not have yet
    SKIP = "skip"  # close the row without writing anything
    LATER = "later"  # leave the row in review; the next run asks again


_FIXED_LABELS = {Kind.NEW: "Create a new person", Kind.SKIP: "Skip this row", Kind.LATER: "Decide later"}
_LINK = re.compile(r"Link to candidate ([1-9][0-9]*)")


@dataclass(frozen=True)
class Choice:
    """One answer to a review question; ``candidate`` is the 0-based candidate of a ``LINK``."""

    kind: Kind
    candidate: int | None = None

    def __post_init__(self) -> None:
        if (self.kind is Kind.LINK) != (self.candidate is not None):
            raise ValueError("a link choice names a candidate, and only a link choice does")
        if self.candidate is not None and self.candidate < 0:
            raise ValueError("candidate indexes start at 0")

    @classmethod
    def link(cls, index: int) -> Choice:
        return cls(Kind.LINK, index)

    @property
    def label(self) -> str:
        """The button's text; candidates are numbered from 1 for the person reading the table."""
        if self.kind is Kind.LINK:
            return f"Link to candidate {self.candidate + 1}"
        return _FIXED_LABELS[self.kind]

    @classmethod
    def parse(cls, label: str) -> Choice:
        """The choice a button's text stands for.

        :raises ValueError: for a text no question offers (the text is not quoted back: it is
            whatever the caller was given).
        """
        for kind, text in _FIXED_LABELS.items():
            if label == text:
                return cls(kind)
        found = _LINK.fullmatch(label)
        if found is None:
            raise ValueError("not a review choice")
        return cls.link(int(found.group(1)) - 1)


NEW = Choice(Kind.NEW)
SKIP = Choice(Kind.SKIP)
LATER = Choice(Kind.LATER)
#: What a reviewer can answer besides linking to a candidate, in the order the buttons show.
OTHER_CHOICES = (NEW, SKIP, LATER)


def option_labels(candidates: Iterable[int]) -> list[str]:
    """The buttons of a question: a link per candidate index offered, then the other choices."""
    return [Choice.link(i).label for i in candidates] + [c.label for c in OTHER_CHOICES]


# -- what a question offers, for a program --------------------------------------------------------

_OFFER = re.compile(r"<!-- cht-bridge-review (\{.*?\}) -->")


@dataclass(frozen=True)
class Offer:
    """The list row a question is about and the CHT ids of the candidates it offers, by index."""

    record: str
    candidates: dict[int, str] = field(default_factory=dict)

    def link_to(self, person_id: str) -> Choice | None:
        """The choice that links the row to ``person_id``, or ``None`` when it is not offered."""
        return next((Choice.link(i) for i, pid in self.candidates.items() if pid == person_id), None)


def offer_block(offer: Offer) -> str:
    """``offer`` as an HTML comment for the question's Markdown body (unseen in the UI)."""
    data = {"record": offer.record, "candidates": [[i, pid] for i, pid in sorted(offer.candidates.items())]}
    text = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
    return f"<!-- cht-bridge-review {text} -->"  # no ">" inside: an id cannot end the comment early


def read_offer(body: str) -> Offer:
    """The ``Offer`` a question's body carries.

    :raises ValueError: when the body has none (not a CHT Bridge review question).
    """
    found = _OFFER.search(body or "")
    if found is None:
        raise ValueError("the question carries no cht-bridge-review block")
    data = json.loads(found.group(1))
    return Offer(str(data["record"]), {int(i): str(pid) for i, pid in data["candidates"]})
