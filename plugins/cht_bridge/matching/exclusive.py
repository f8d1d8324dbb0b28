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
each pair's match weight moves by ``log2(1 - q_X) + log2(N / (N - C))``. The second term, the
"people the others leave", is capped (``MAX_BOOST``): ``C`` is the model's own estimate, and as
it nears ``N`` the term would grow without bound and turn a pair with evidence against it into a
link. The claims depend on the posteriors, which depend on the claims: damped mean-field rounds
run until no pair's adjustment moves by ``TOLERANCE`` (at most ``MAX_ROUNDS``). With a
population much larger than the list (5,000 rows in 100,000 people) the second term is near
zero and only the first, the claims on one person, acts.

What counts as "the list": the rows scored together in one call. At run time that is one
pipeline run's rows (``reverse/run.py``): rows of earlier runs, and people the pipeline already
linked or created from other source ids, make no claims. In training several pipelines' open
rows are scored together; ``lists`` names each row's pipeline so that rows of different
pipelines (which may well name the same person) never compete.

Used by models trained since this was added (``EXCLUSIVE_CLAIMS`` in their ``cht_bridge``
block); the shipped model's decisions were checked without it and stay as they were. When a
pair's adjustment is half a bit or more, its evidence says so in words (``CLAIMED``,
``LEFT_OVER``), so a reviewer sees why its weight is not the fields' sum.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from cht_bridge.matching.scoring import ScoredPair

log = logging.getLogger(__name__)

#: The key of a trained model's ``cht_bridge`` block saying its pairs' priors see the other rows.
EXCLUSIVE_CLAIMS = "exclusive_claims"
#: The mean-field update stops once no pair's adjustment would move by this many bits more.
TOLERANCE = 1e-3
#: ... or after this many rounds (logged: the claims were not settled). Most lists settle in
#: 10-50 rounds; a few pairs of rows that claim each other's people settle slowly (the trained
#: East-African benchmark at 5,000 x 5,000: two pairs, about 250 rounds).
MAX_ROUNDS = 400
#: Each round moves the adjustment this part of the way to its target (undamped, two rows that
#: claim one person flip between "both" and "neither" and never settle).
DAMPING = 0.5
#: Two rows of the list are one person (their claims do not compete) from this probability on.
SAME_ROW = 0.5
#: Another row's claim on a person lowers a pair's weight by at most log2(1 / FLOOR) bits: a
#: claim is a probability, and a person two rows both fit beyond doubt is a question, not a fact.
FLOOR = 2.0**-10
#: "The others leave few people" raises a pair's weight by at most log2(1 / (1 - share)) bits (the
#: others cannot leave fewer than the share of new people would in a list as large as the
#: population) and never by more than this: the claims are the model's own estimates, and as they
#: near every existing person the term would grow without bound.
MAX_BOOST = 3.0
#: An adjustment of this many bits or more is shown to the reviewer in words.
SHOWN_BITS = 0.5
#: The evidence a reviewer reads (comparison, words) for each part of the adjustment.
CLAIMED = ("other_rows", "another row of this list is likely this person")
LEFT_OVER = ("other_rows", "most people here are named by other rows of this list")


def with_claims(
    pairs: Sequence[ScoredPair],
    within: Sequence[ScoredPair],
    share: float,
    n_existing: int,
    margin: float,
    lists: Mapping[str, str] | None = None,
) -> list[ScoredPair]:
    """``pairs`` (existing ``left``, incoming ``right``) with match weights that count the other
    rows' claims (see the module docstring), sorted by (row, person) so that the sums, and so
    the bits, do not depend on the order the pairs came in; ``within``: pairs of incoming rows,
    whose probability says two rows are one person; ``lists``: each incoming row's list (a
    pipeline), rows of different lists do not compete (all one list when ``None``).

    Claims may make a row's best candidate likelier or less likely, never another candidate the
    best: a row whose own evidence puts two candidates within ``margin`` (twins in one household),
    or whose best would change, keeps its weights. Two rows of a list naming one person that
    ``within`` does not recognise (one has no date of birth) claim the same person; letting
    that claim push one of them onto the twin linked it to the wrong person.
    """
    if not pairs or n_existing < 1:
        return list(pairs)
    row_ranks, person_ranks = _ranks([pair.right for pair in pairs]), _ranks([pair.left for pair in pairs])
    order = np.lexsort((person_ranks, row_ranks))
    pairs = [pairs[i] for i in order.tolist()]
    rows, people = row_ranks[order], person_ranks[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    row_keys = [pairs[i].right for i in starts]
    row_list = _index([(lists or {}).get(key, "") for key in row_keys])
    # a row's duplicate group, within its own list only
    group = _index(list(zip(row_list.tolist(), _groups(row_keys, within).tolist(), strict=True)))
    n_groups = int(group.max()) + 1
    pair_list, pair_group = row_list[rows], group[rows]
    # claims on a person count within its list, less the pair's own group's
    by_list = np.unique(people * (int(row_list.max()) + 1) + pair_list, return_inverse=True)[1]
    by_group = np.unique(people * n_groups + pair_group, return_inverse=True)[1]
    group_list = np.zeros(n_groups, dtype=np.int64)
    group_list[group] = row_list
    ceiling = min(MAX_BOOST, float(np.log2(1.0 / max(1.0 - share, 1e-9))))

    weights = np.array([pair.match_weight for pair in pairs], dtype=float)
    claimed_bits = np.zeros(len(pairs))
    boost_bits = np.zeros(len(pairs))
    own, _ = _posterior(weights, rows, starts, share)
    for rounds in range(1, MAX_ROUNDS + 1):
        posterior, any_match = _posterior(weights + claimed_bits + boost_bits, rows, starts, share)
        claims = np.bincount(by_list, weights=posterior)[by_list] - np.bincount(by_group, weights=posterior)[by_group]
        claimed_target = np.log2(1.0 - np.clip(claims, 0.0, 1.0 - FLOOR))
        named = np.bincount(group, weights=any_match, minlength=n_groups)
        others = np.bincount(group_list, weights=named)[group_list] - named
        unclaimed = np.maximum(n_existing - others, 1.0)
        boost_target = np.minimum(np.log2(n_existing / unclaimed), ceiling)[pair_group]
        claimed_step, boost_step = claimed_target - claimed_bits, boost_target - boost_bits
        claimed_bits += DAMPING * claimed_step
        boost_bits += DAMPING * boost_step
        step = max(float(np.abs(claimed_step).max()), float(np.abs(boost_step).max()))
        if step < TOLERANCE:
            log.debug("other rows' claims settled in %d rounds", rounds)
            break
    else:
        moving = int(np.count_nonzero(np.abs(claimed_step) >= TOLERANCE))
        log.warning("other rows' claims not settled after %d rounds: %d of %d pairs", MAX_ROUNDS, moving, len(pairs))
    adjustment = claimed_bits + boost_bits
    posterior, _ = _posterior(weights + adjustment, rows, starts, share)
    kept = _unsettled(own, rows, len(starts), margin) | (
        _best(posterior, rows, len(starts)) != _best(own, rows, len(starts))
    )
    moved = np.flatnonzero(~kept[rows] & (adjustment != 0.0))
    out = list(pairs)
    for i in moved.tolist():
        out[i] = _adjusted(out[i], float(weights[i] + adjustment[i]), float(claimed_bits[i]), float(boost_bits[i]))
    return out


def _adjusted(pair: ScoredPair, weight: float, claimed: float, left_over: float) -> ScoredPair:
    """``pair`` at its new weight, the adjustment among its weights and, when large enough, in
    its evidence in words."""
    shown = [(*words, round(bits, 2)) for words, bits in ((CLAIMED, claimed), (LEFT_OVER, left_over))]
    return ScoredPair(
        pair.left,
        pair.right,
        1.0 / (1.0 + 2.0 ** (-weight)),
        weight,
        (*pair.weights, (CLAIMED[0], claimed + left_over)),
        (*pair.evidence, *(item for item in shown if abs(item[2]) >= SHOWN_BITS)),
    )


def _posterior(
    weights: np.ndarray, rows: np.ndarray, starts: np.ndarray, share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's probability within its row (candidates and "someone new" competing, as in
    ``matcher._rank``), and each row's probability of being anyone; the pairs are sorted by
    row, a row's run beginning at ``starts``."""
    top = np.maximum.reduceat(weights, starts)
    relative = np.exp2(weights - top[rows])
    none = max(1.0 - share, 1e-9) * np.exp2(-np.minimum(top, 1000.0))
    total = none + np.add.reduceat(relative, starts)
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


def _ranks(keys: Sequence[str]) -> np.ndarray:
    """Each key's place among the distinct keys sorted (whatever order they come in)."""
    found = _index(keys)
    distinct = np.array(list(dict.fromkeys(keys)))
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[np.argsort(distinct, kind="stable")] = np.arange(len(distinct))
    return rank[found]


def _index(keys: Sequence[Hashable]) -> np.ndarray:
    """A number per key, in first-seen order."""
    found: dict[Hashable, int] = {}
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
