"""An existing person is named by at most one row of a list: each pair's prior given the claims
the list's other rows make.

The matcher's candidates compete within a row (``matcher._rank``): a row is at most one existing
person. The same holds the other way: an EMR list names each person once (bar its own
duplicates, which ``within`` pairs find), so a new relative who looks like existing person X is
unlikely to be X when another row of the list is X beyond doubt, and a row is, if anyone, one of
the people the other rows do not already name. Scored one row at a time, both are lost: on the
synthetic benchmarks 38 of the 46 wrong best candidates at 0.3 or more were a person another row
of the same list truly named, and a true pair between the thresholds kept the prior of one in all
existing people when four in five of them were already accounted for.

Sampling a list's existing rows without replacement, row r is existing person X with prior
``share * (1 - q_X) / (N - C)``: ``q_X`` is the probability that another row (outside r's
duplicate group) is X, ``C`` the number of existing people the other rows name (the sum of their
probabilities of being anyone), ``N`` the existing people. The shipped prior is ``share / N``, so
each pair's match weight moves by ``log2(1 - q_X) + log2(N / (N - C))``. The claims depend on the
posteriors, which depend on the claims: a few damped rounds of this mean-field update settle
them. With a population much larger than the list (5,000 rows in 100,000 people) the second term
is near zero and only the first, the claims on one person, acts.

Used by models trained since this was added (``EXCLUSIVE_CLAIMS`` in their ``cht_bridge``
block); the shipped model's decisions were checked without it and stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from cht_bridge.matching.scoring import ScoredPair

#: The key of a trained model's ``cht_bridge`` block saying its pairs' priors see the other rows.
EXCLUSIVE_CLAIMS = "exclusive_claims"
#: Mean-field rounds, each moving the adjustment half-way to its target (10: within 0.1 %).
ROUNDS = 10
#: Two rows of the list are one person (their claims do not compete) from this probability on.
SAME_ROW = 0.5
#: Another row's claim on a person lowers a pair's weight by at most log2(1 / FLOOR) bits: a
#: claim is a probability, and a person two rows both fit beyond doubt is a question, not a fact.
FLOOR = 2.0**-10


def with_claims(
    pairs: Sequence[ScoredPair], within: Sequence[ScoredPair], share: float, n_existing: int, margin: float
) -> list[ScoredPair]:
    """``pairs`` (existing ``left``, incoming ``right``) with match weights that count the other
    rows' claims (see the module docstring); ``within``: pairs of incoming rows, whose
    probability says two rows are one person.

    Claims may make a row's best candidate likelier or less likely, never another candidate the
    best: a row whose own evidence puts two candidates within ``margin`` (twins in one household),
    or whose best would change, keeps its weights. Two rows of a list naming one person that
    ``within`` does not recognise (one has no date of birth) claim the same person; letting
    that claim push one of them onto the twin linked it to the wrong person.
    """
    if not pairs or n_existing < 1:
        return list(pairs)
    rows = _index([pair.right for pair in pairs])
    people = _index([pair.left for pair in pairs])
    n_rows = int(rows.max()) + 1
    group = _groups([pair.right for pair in pairs], within)[rows]
    n_groups = int(group.max()) + 1
    # (person, group) cell of each pair: a group's own claims on a person do not compete
    cells = np.unique(people * n_groups + group, return_inverse=True)[1]
    weights = np.array([pair.match_weight for pair in pairs], dtype=float)
    adjustment = np.zeros(len(pairs))
    own, _ = _posterior(weights, rows, n_rows, share)
    for _ in range(ROUNDS):
        posterior, any_match = _posterior(weights + adjustment, rows, n_rows, share)
        claims = np.bincount(people, weights=posterior)[people] - np.bincount(cells, weights=posterior)[cells]
        claimed = np.clip(claims, 0.0, 1.0 - FLOOR)
        by_group = np.bincount(group[_first_pair(rows, n_rows)], weights=any_match, minlength=n_groups)
        others = float(any_match.sum()) - by_group[group]
        unclaimed = np.maximum(n_existing - others, 1.0)
        target = np.log2(1.0 - claimed) + np.log2(n_existing / unclaimed)
        adjustment = 0.5 * adjustment + 0.5 * target
    posterior, _ = _posterior(weights + adjustment, rows, n_rows, share)
    kept = _unsettled(own, rows, n_rows, margin) | (_best(posterior, rows, n_rows) != _best(own, rows, n_rows))
    adjustment = np.where(kept[rows], 0.0, adjustment)
    return [
        replace(pair, match_weight=float(weight), probability=float(1.0 / (1.0 + 2.0 ** (-weight))))
        for pair, weight in zip(pairs, weights + adjustment, strict=True)
    ]


def _posterior(weights: np.ndarray, rows: np.ndarray, n_rows: int, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's probability within its row (candidates and "someone new" competing, as in
    ``matcher._rank``), and each row's probability of being anyone."""
    top = np.full(n_rows, -np.inf)
    np.maximum.at(top, rows, weights)
    relative = np.exp2(weights - top[rows])
    none = max(1.0 - share, 1e-9) * np.exp2(-np.minimum(top, 1000.0))
    total = none.copy()
    np.add.at(total, rows, relative)
    return relative / total[rows], 1.0 - none / total


def _ranked(posterior: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ordered by row, most probable first (the first on a tie), and where each row's
    run starts in that order."""
    order = np.lexsort((np.arange(len(rows)), -posterior, rows))
    starts = np.r_[True, rows[order][1:] != rows[order][:-1]]
    return order, starts


def _best(posterior: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Per row, the position of its most probable pair (the first on a tie)."""
    order, starts = _ranked(posterior, rows)
    best = np.zeros(n_rows, dtype=np.int64)
    best[rows[order][starts]] = order[starts]
    return best


def _unsettled(posterior: np.ndarray, rows: np.ndarray, n_rows: int, margin: float) -> np.ndarray:
    """Per row: whether its two most probable pairs lie within ``margin`` of each other."""
    order, starts = _ranked(posterior, rows)
    ordered = posterior[order]
    # a pair right after its row's first is that row's second
    seconds = np.flatnonzero(~starts & np.r_[False, starts[:-1]])
    found = np.zeros(n_rows, dtype=bool)
    found[rows[order][seconds]] = ordered[seconds - 1] - ordered[seconds] <= margin
    return found


def _first_pair(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """For each row, the position of one of its pairs (to read the row's group)."""
    first = np.zeros(n_rows, dtype=np.int64)
    first[rows[::-1]] = np.arange(len(rows))[::-1]
    return first


def _index(keys: Sequence[str]) -> np.ndarray:
    found: dict[str, int] = {}
    return np.array([found.setdefault(key, len(found)) for key in keys], dtype=np.int64)


def _groups(row_keys: Sequence[str], within: Sequence[ScoredPair]) -> np.ndarray:
    """A group number per distinct row key (in first-seen order): rows ``within`` calls one
    person share a group."""
    order = list(dict.fromkeys(row_keys))
    position = {key: i for i, key in enumerate(order)}
    parent = list(range(len(order)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pair in within:
        if pair.probability >= SAME_ROW and pair.left in position and pair.right in position:
            a, b = root(position[pair.left]), root(position[pair.right])
            parent[max(a, b)] = min(a, b)
    roots = [root(i) for i in range(len(order))]
    return np.unique(np.array(roots, dtype=np.int64), return_inverse=True)[1]
