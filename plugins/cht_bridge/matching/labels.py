"""Labelled pairs: what reviewers said about the matcher's candidates.

A reviewer who links a list row to candidate k says "k is this person, and the other candidates
are not"; one who creates a new person says "none of them is"; a skip says nothing about who the
person is and is kept without a label (``match`` is ``None``). Training reads labelled pairs to
estimate m-probabilities and to choose the thresholds (``training.py``, ``thresholds.py``).

CSV form (``--labels``): columns ``incoming_id, existing_id, match`` with ``match`` 1, 0 or empty.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

LABEL_COLUMNS = ("incoming_id", "existing_id", "match")


@dataclass(frozen=True)
class Label:
    """One pair a reviewer judged: ``match`` True (same person), False (not), None (skipped)."""

    incoming_id: str
    existing_id: str | None
    match: bool | None


def from_answer(incoming_id: str, candidates: Sequence[str], linked: int | None, new: bool) -> list[Label]:
    """The labels one review answer gives.

    :param candidates: the existing ids the question offered, in order.
    :param linked: the 0-based candidate the reviewer linked, or ``None``.
    :param new: the reviewer created a new person (every candidate is someone else).
    """
    if linked is not None:
        return [Label(incoming_id, pid, i == linked) for i, pid in enumerate(candidates)]
    if new:
        return [Label(incoming_id, pid, False) for pid in candidates] or [Label(incoming_id, None, False)]
    return [Label(incoming_id, None, None)]


def read_labels(path: str | Path) -> list[Label]:
    """Load labels from a CSV file.

    :raises ValueError: naming the file and line of a ``match`` that is not 1, 0 or empty.
    """
    labels = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            row = {(key or "").strip().lower(): (value or "").strip() for key, value in row.items()}
            text = row.get("match", "").lower()
            if text not in {"1", "0", "", "true", "false"}:
                raise ValueError(f"{path}: line {line}: match must be 1, 0 or empty")
            value = None if text == "" else text in {"1", "true"}
            labels.append(Label(row.get("incoming_id", ""), row.get("existing_id") or None, value))
    return [label for label in labels if label.incoming_id]


def write_labels(path: str | Path, labels: Iterable[Label]) -> None:
    """Write labels in the CSV form ``read_labels`` reads."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(LABEL_COLUMNS)
        for label in labels:
            value = "" if label.match is None else str(int(label.match))
            writer.writerow([label.incoming_id, label.existing_id or "", value])


def truth_of(labels: Iterable[Label]) -> dict[str, str | None]:
    """What the labels say each labelled incoming person is: an existing id, or ``None`` (new).

    Skipped people and people whose labels only rule candidates out without a "new" answer are
    absent when nothing positive is known, except that all-negative labels mean "new".
    """
    positive: dict[str, str] = {}
    negative: set[str] = set()
    for label in labels:
        if label.match is True and label.existing_id:
            positive[label.incoming_id] = label.existing_id
        elif label.match is False:
            negative.add(label.incoming_id)
    return {**{pid: None for pid in negative}, **positive}


def ruled_out(labels: Iterable[Label]) -> set[tuple[str, str]]:
    """(incoming, existing) pairs a reviewer said are two people."""
    return {(label.incoming_id, label.existing_id) for label in labels if label.match is False and label.existing_id}
