"""Re-estimate m (and the share of people who already exist) by EM that knows a list row is at
most one existing person.

Splink's EM treats every blocked pair on its own: a row whose date of birth a few strangers share
contributes several "probable matches" with different names, and m of "names differ" came out at
7 % on the second synthetic population where true pairs show 0.3 %, which made each stranger
sharing a date of birth a rival worth review. Here the E-step is the matcher's own decision model
(``matcher._rank``): for each incoming row, candidate k is the person with probability
``prior * BF_k / (1 - share + prior * sum_j BF_j)`` (``prior = share / existing``), so candidates
compete with each other and with "someone new". The M-step takes each level's m as the
posterior-weighted share of pairs at it, smoothed towards the starting model's m by
``PSEUDO_PAIRS`` pairs, and the share as the mean
probability that a row is anyone. Term-frequency adjustments are read once from Splink's scores.

u was measured on random pairs of the list and the population (``training.py``), and a list
names its population: a random pair is the same person with probability ``prior`` (``share /
existing``; 1.6e-4 at 5,000 x 5,000 with 80 % existing, 4,000 true pairs in 25 M), so the
sample's share at a level is ``(1 - prior) * u + prior * m``, not u (h/m100k: "same name tokens"
1.12e-4 at 5k x 5k against <= 1e-5 at 100k). Given ``observed`` (the sample's shares), every
round takes the true pairs out with the round's m and prior (``corrected_u``, a second unknown of
the same mixture the E-step already models, so it is part of the EM, not a correction after it).
What is left of a level is known only down to the sample's resolution (``training.MIN_U_PAIRS``
pairs of those sampled): below it, the level gets the smaller of the start's u and that bound,
exactly as a level the sample shows too rarely does, so the correction never makes a level
rarer than the sample can tell. A level whose pair has a term frequency scores ``m / tf`` (its
u cancels), so its correction moves only pairs without one.

A level the data cannot estimate keeps the starting (shipped) m, and only the other levels share
what is left: one no pair reaches, or one with fewer than ``MIN_PAIRS_PER_LEVEL`` expected true
pairs both in the data and under its starting m (a small list). Giving such a level m = u, or
its share to the levels reached, made a small all-new list's weak levels strong ("one token
shared" +3.75 bits) and left the strong levels it never reached at weight 0 (a learned model then
called every true "plus/minus tokens" pair new). A level rare among many true pairs (starting m
times the true pairs >= ``MIN_PAIRS_PER_LEVEL``) is estimated, however small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

#: Pairs' worth of the starting m in each level's estimate.
PSEUDO_PAIRS = 5.0
#: Fewer expected true pairs than this at a level: its m is the starting model's.
MIN_PAIRS_PER_LEVEL = 5
#: EM rounds (the estimates settle in a few; each round is a few vector operations).
ROUNDS = 15


def refine(
    pairs: pa.Table,
    comparisons: Sequence[dict[str, Any]],
    start: Sequence[dict[str, Any]],
    *,
    share: float,
    n_existing: int,
    bounds: tuple[float, float],
    known: dict[str, str | None] | None = None,
    excluded: set[tuple[str, str]] | None = None,
    observed: dict[tuple[str, str], float] | None = None,
    resolution: float = 0.0,
) -> tuple[list[dict[str, Any]], float]:
    """New comparisons with re-estimated m, and the estimated share of rows who already exist.

    :param pairs: the blocked pairs (``levels``): ``incoming`` (the row), ``level_<comparison>``
        (position of the level reached among the levels that are not null; -1 for null) and, where
        used, ``mw_tf_adj_<comparison>``.
    :param comparisons: the model's comparisons (their u is kept, their m is the first guess).
    :param start: the starting model's comparisons (same names and labels), the smoothing prior.
    :param share: first guess of the share of incoming rows who already exist.
    :param n_existing: existing people (a pair's prior is ``share / n_existing``).
    :param bounds: the share is kept within these.
    :param known: what reviewers said rows are (incoming key → existing key, or ``None``: new);
        their pairs' posteriors are clamped to the answer (semi-supervised EM).
    :param excluded: (existing key, incoming key) pairs a reviewer said are two people.
    :param observed: (comparison, label) → the share of random list x population pairs at the
        level; given, u is re-estimated each round (``corrected_u``), else kept.
    :param resolution: the smallest u the random sample can tell (``corrected_u``).
    """
    if pairs.num_rows == 0:
        # one pair with every comparison null: no level reached
        columns = {f"level_{c['output_column_name']}": [-1] for c in comparisons}
        models = [_Comparison(c, _start_m(c, start), columns, _start_u(c, start), observed) for c in comparisons]
        for model in models:
            model.update(np.zeros(1))  # no data: every level keeps the start's m
        return [model.comparison() for model in models], share
    columns = pairs.to_pydict()
    rows = _row_index(columns["incoming"])
    clamp = _clamp(columns["existing"], columns["incoming"], known or {}, excluded or set())
    models = [_Comparison(c, _start_m(c, start), columns, _start_u(c, start), observed) for c in comparisons]
    n_rows = int(rows.max()) + 1
    for _ in range(ROUNDS):
        weights = sum((model.weights() for model in models), np.zeros(pairs.num_rows))
        posterior, any_match = _posterior(weights, rows, n_rows, share, n_existing)
        posterior = np.where(np.isnan(clamp), posterior, clamp)
        for model in models:
            model.update(posterior)
        share = min(max(float(any_match.sum()) / n_rows, bounds[0]), bounds[1])
        if observed is not None:
            for model in models:
                model.correct_u(share / max(n_existing, 1), resolution)
    return [model.comparison() for model in models], share


def corrected_u(observed: np.ndarray, m: np.ndarray, prior: float, resolution: float, start: np.ndarray) -> np.ndarray:
    """u of levels whose share among random pairs is ``observed``, when a random pair is the same
    person with probability ``prior`` and the same person reaches the levels with ``m``:
    ``(observed - prior * m) / (1 - prior)``; where that is below ``resolution`` (including below
    zero: the sample showed fewer pairs than the true pairs alone explain), the smaller of
    ``start`` and ``resolution``."""
    u = (observed - prior * m) / (1.0 - prior)
    return np.where(u < resolution, np.minimum(start, resolution), u)


def levels(connection: Any, pairs: str, comparisons: Sequence[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    """The level each pair of table ``pairs`` (``existing``, ``incoming``, ``mw_tf_adj_*``) reaches
    in each comparison, evaluated in DuckDB with the comparisons' own SQL (Splink 5 returns a
    pair's weight per comparison, not its level). ``columns``: the feature columns to compare."""
    cases = []
    for comparison in comparisons:
        whens, position = [], 0
        for level in comparison["comparison_levels"]:
            sql = level["sql_condition"]
            if level.get("is_null_level"):
                whens.append(f"WHEN {sql} THEN -1")
            elif sql.strip().upper() == "ELSE":
                whens.append(f"ELSE {position}")
            else:
                whens.append(f"WHEN {sql} THEN {position}")
            position += 0 if level.get("is_null_level") else 1
        if not whens[-1].startswith("ELSE"):
            whens.append(f"ELSE {position - 1}")
        cases.append(f'CASE {" ".join(whens)} END AS "level_{comparison["output_column_name"]}"')
    sides = ", ".join(f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in columns)
    tf = ", ".join(
        f'p."{c}"'
        for c in connection.sql(f"SELECT * FROM {pairs} LIMIT 0").to_arrow_table().column_names
        if c.startswith("mw_tf_adj_")
    )
    sql = (
        f"SELECT existing, incoming, {', '.join(cases)}{', ' + tf if tf else ''} FROM (SELECT p.*, {sides} FROM {pairs} p "  # noqa: S608 (the model's own SQL)
        "JOIN existing_people l ON l.unique_id = p.existing JOIN incoming_people r ON r.unique_id = p.incoming) p"
    )
    return connection.sql(sql).to_arrow_table()


def _clamp(
    existing: list[str], incoming: list[str], known: dict[str, str | None], excluded: set[tuple[str, str]]
) -> np.ndarray:
    """Per pair: the posterior a reviewer's answer fixes (1 or 0), or NaN where none does."""
    values = np.full(len(existing), np.nan)
    for position, (left, right) in enumerate(zip(existing, incoming, strict=True)):
        if right in known:
            values[position] = 1.0 if known[right] == left else 0.0
        elif (left, right) in excluded:
            values[position] = 0.0
    return values


def _row_index(keys: list[str]) -> np.ndarray:
    found: dict[str, int] = {}
    return np.array([found.setdefault(key, len(found)) for key in keys], dtype=np.int64)


def _posterior(
    weights: np.ndarray, rows: np.ndarray, n_rows: int, share: float, n_existing: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's one-to-one posterior, and each row's probability of being anyone."""
    top = np.full(n_rows, -np.inf)
    np.maximum.at(top, rows, weights)
    relative = np.exp2(weights - top[rows])
    prior = math.log2(max(share, 1e-9) / max(n_existing, 1))
    # "Someone new" relative to the best candidate: (1 - share) / (prior * 2**top).
    none = np.exp2(np.minimum(math.log2(max(1.0 - share, 1e-9)) - prior - top, 1000.0))
    total = none.copy()
    np.add.at(total, rows, relative)
    posterior = relative / total[rows]
    return posterior, 1.0 - none / total


def _start_u(comparison: dict[str, Any], start: Sequence[dict[str, Any]]) -> dict[str, float]:
    return _start_m(comparison, start, "u_probability")


def _start_m(
    comparison: dict[str, Any], start: Sequence[dict[str, Any]], key: str = "m_probability"
) -> dict[str, float]:
    """The starting model's ``key`` per level label of ``comparison`` (levels without one: absent)."""
    for candidate in start:
        if candidate["output_column_name"] == comparison["output_column_name"]:
            return {
                level.get("label_for_charts", ""): level[key]
                for level in candidate["comparison_levels"]
                if not level.get("is_null_level") and level.get(key) is not None
            }
    return {}


class _Comparison:
    """One comparison's levels, the level each pair reached, and its m being estimated."""

    def __init__(
        self,
        comparison: dict[str, Any],
        start: dict[str, float],
        columns: dict[str, list],
        start_u: dict[str, float] | None = None,
        observed: dict[tuple[str, str], float] | None = None,
    ) -> None:
        self.source = comparison
        name = comparison["output_column_name"]
        self.levels = [level for level in comparison["comparison_levels"] if not level.get("is_null_level")]
        self.position = np.array(columns[f"level_{name}"], dtype=np.int64)
        tf = columns.get(f"mw_tf_adj_{name}")
        raw = np.array(tf, dtype=float) if tf is not None else np.full(len(self.position), np.nan)
        self.tf = np.nan_to_num(raw)
        self.m = np.array([level["m_probability"] for level in self.levels], dtype=float)
        adjusted = np.array([bool(level.get("tf_adjustment_column")) for level in self.levels] + [False])
        #: pairs whose weight is m / tf: Splink's adjustment log2(u / tf) was read with ``self.scored_u``
        #: (a pair at such a level without a frequency has none, 0, and scores m / u)
        self.has_tf = adjusted[np.where(self.position >= 0, self.position, len(self.levels))] & (self.tf != 0)
        self.u = np.array([level["u_probability"] for level in self.levels], dtype=float)
        self.scored_u = self.u.copy()
        labels = [level.get("label_for_charts", "") for level in self.levels]
        seen = [(name, label) in (observed or {}) for label in labels]
        #: the levels the random sample measured, their shares there, and the start's u (the floor)
        self.measured = np.array(seen, dtype=bool)
        self.observed = np.array([(observed or {}).get((name, label), 0.0) for label in labels])
        self.start_u = np.array([(start_u or {}).get(label, u) for label, u in zip(labels, self.u, strict=True)])
        self.fixed = np.array([bool(level.get("fix_m_probability")) for level in self.levels])
        self.reached = np.bincount(self.position[self.position >= 0], minlength=len(self.levels)) > 0
        #: the starting model's m (a level it lacks: the current m)
        self.start = np.array(
            [start.get(level.get("label_for_charts", ""), m) for level, m in zip(self.levels, self.m, strict=True)]
        )
        self.prior = self.start / self.start.sum()

    def weights(self) -> np.ndarray:
        per_level = np.log2(self.m / self.u)
        at = np.maximum(self.position, 0)
        # a pair with a term frequency scores m / tf whatever u is: undo u's move in its adjustment
        tf = self.tf + np.where(self.has_tf, np.log2(self.u / self.scored_u)[at], 0.0)
        return np.where(self.position < 0, 0.0, per_level[at] + tf)

    def correct_u(self, prior: float, resolution: float) -> None:
        """u of the measured levels with this round's true pairs taken out (``corrected_u``)."""
        found = corrected_u(self.observed, self.m, prior, resolution, self.start_u)
        self.u = np.where(self.measured, found, self.u)

    def update(self, posterior: np.ndarray) -> None:
        known = self.position >= 0
        counts = np.bincount(self.position[known], weights=posterior[known], minlength=len(self.levels))
        # Expected true pairs at a level: those the data puts there, or, if more, those its starting
        # m puts there (then the data, showing fewer, says the level is rare for true pairs).
        expected = np.maximum(counts, self.start * posterior[known].sum())
        thin = ~self.fixed & (~self.reached | (expected < MIN_PAIRS_PER_LEVEL))
        free = ~self.fixed & ~thin
        self.m = np.where(thin, self.start, self.m)
        if not free.any():
            # nothing to estimate: the start's m, summing to one over the levels left
            self.m[~self.fixed] *= max(1.0 - self.m[self.fixed].sum(), 1e-9) / self.m[~self.fixed].sum()
            return
        mass = max(1.0 - self.m[~free].sum(), 1e-9)
        estimate = (counts[free] + PSEUDO_PAIRS * self.prior[free]) / (
            counts[free].sum() + PSEUDO_PAIRS * self.prior[free].sum()
        )
        self.m[free] = np.maximum(estimate * mass, 1e-9)

    def comparison(self) -> dict[str, Any]:
        result = dict(self.source)
        m = iter(self.m)
        u = iter(self.u)
        result["comparison_levels"] = [
            level
            if level.get("is_null_level")
            else dict(level, m_probability=float(next(m)), u_probability=float(next(u)))
            for level in self.source["comparison_levels"]
        ]
        return result
