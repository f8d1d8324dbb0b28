"""Where the trained matcher's review comes from: its risk budgets against thresholds chosen with
the truth, and whether its probabilities are calibrated where the thresholds fall.

For each run (a population, its seed and the training seed) it trains on the benchmark's own
files (``training.train``, as ``bench.matching`` does through the command line), then prints:

* wrong links / duplicates / review with the thresholds training chose (``thresholds.choose``:
  expected wrong links under one in 20,000 rows, expected duplicates under one in 1,000);
* the *oracle* thresholds, chosen with the truth: the lowest ``upper`` at and above which no link
  is wrong, and under it the highest ``lower`` whose duplicates stay within the goal (0.5 % of the
  truly existing rows) — a bound no method without the truth can be expected to reach;
* the rows in review between the two ``upper`` and between the two ``lower``: how many, how many
  wrong best candidates (truly existing people) the model predicted there, and how many there were;
* what each budget costs: wrong links / duplicates / review for a few other budgets;

and, pooled over the runs of each population, the calibration in one-bit bands of the best
candidate's match weight (predicted wrong best candidates, the sum of 1 - p, against the real
ones, and how many of those were truly new people) and of ``any_match`` (predicted against real
existing people, and how many of them had their person among the candidates at all).

``python -m bench.matching_thresholds [--existing 5000] [--incoming 5000] [--runs east:7:7 west:11:7] [--cht-dates]``
(``population:seed:training seed``; ``bench.matching`` trains the second population with the
first one's ``--seed``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from bench.matching import evaluate
from cht_bridge.matching.decisions import MatchConfig, config_for_model
from cht_bridge.matching.matcher import Scored, decide_all, score_people
from cht_bridge.matching.thresholds import _GRID, choose
from cht_bridge.matching.training import train
from standins.populations import Population, population
from standins.populations_west import west_population

#: Duplicates goal of issue 14: truly existing people decided new, over the truly existing rows.
DUPLICATE_GOAL = 0.005
#: (wrong-link risk, duplicate risk) tried besides the defaults.
BUDGETS = ((5e-5, 1e-3), (1e-4, 1e-3), (2e-4, 1e-3), (5e-5, 2e-3))
DEFAULT_RUNS = ("east:7:7", "east:11:11", "west:11:7", "west:12:11")


@dataclass(frozen=True)
class Band:
    """Rows whose score falls in ``[low, low + 1)`` bits (the first and last band are open)."""

    low: int
    rows: int
    predicted: float
    actual: int
    marked: int


def bits(probability: float) -> float:
    """Match weight of a probability, bounded so 0 and 1 stay finite."""
    p = min(max(probability, 1e-15), 1.0 - 1e-15)
    return math.log2(p / (1.0 - p))


def bands(items: Iterable[tuple[float, float, bool, bool]], low: int, high: int) -> list[Band]:
    """Group ``(score, predicted chance of the event, event happened, marked)`` by the score's
    match weight in one-bit bands from ``low`` to ``high`` (scores outside go to the end bands)."""
    found: dict[int, list[float]] = {}
    for score, chance, happened, marked in items:
        band = min(max(math.floor(bits(score)), low), high)
        row = found.setdefault(band, [0, 0.0, 0, 0])
        row[0] += 1
        row[1] += chance
        row[2] += happened
        row[3] += happened and marked
    return [Band(k, int(v[0]), v[1], int(v[2]), int(v[3])) for k, v in sorted(found.items())]


def oracle(
    scored: Scored, config: MatchConfig, counts: Callable[[list], tuple[int, int]], duplicate_goal: float
) -> tuple[float, float]:
    """The thresholds chosen with the truth: the lowest ``upper`` of the grid at and above which no
    link is wrong, then the highest ``lower`` under it with at most ``duplicate_goal`` duplicates.

    :param counts: (wrong links, duplicates) of a list of decisions, from the truth.
    """
    wrong = {u: counts(decide_all(scored, replace(config, upper=u, lower=0.0)))[0] for u in _GRID}
    upper = min(u for u in _GRID if all(wrong[v] == 0 for v in _GRID if v >= u))
    lowers = [v for v in _GRID if v <= upper]
    ok = [v for v in lowers if counts(decide_all(scored, replace(config, upper=upper, lower=v)))[1] <= duplicate_goal]
    return upper, max(ok, default=0.0)


def _counts(data: Population) -> Callable[[list], tuple[int, int]]:
    def counts(decisions: list) -> tuple[int, int]:
        metrics = evaluate(decisions, data)
        return int(metrics["wrong links"]), int(metrics["duplicates (existing decided new)"])

    return counts


def _line(decisions: list, data: Population) -> str:
    m = evaluate(decisions, data)
    return f"{m['wrong links']} / {m['duplicate rate']:.2%} / {m['review share']:.2%} ({m['reviews']} rows)"


def analyse(
    kind: str, seed: int, training_seed: int, n_existing: int, n_incoming: int, cht_dates: bool = False
) -> list[tuple]:
    """Print one run's thresholds, oracle, gaps and budgets; return its rows for the pooled bands
    (``cht_dates``: the generators' CHT-form estimated dates and year typos)."""
    make = population if kind == "east" else west_population
    data = make(n_existing, n_incoming, seed=seed, cht_dates=cht_dates)
    model = train(data.existing, data.incoming, seed=training_seed)
    config = config_for_model(model)
    scored = score_people(data.incoming, data.existing, config)
    decisions = decide_all(scored, config)
    existing_rows = sum(1 for value in data.truth.values() if value is not None)
    upper, lower = oracle(scored, config, _counts(data), DUPLICATE_GOAL * existing_rows)
    print(f"\n{kind} seed {seed} (trained with seed {training_seed}), wrong links / duplicates / review")
    print(f"  chosen upper {bits(config.upper):.2f} bits, lower {bits(config.lower):.2f}: {_line(decisions, data)}")
    at_oracle = decide_all(scored, replace(config, upper=upper, lower=lower))
    print(f"  oracle upper {bits(upper):.2f} bits, lower {bits(lower):.2f}: {_line(at_oracle, data)}")
    rows = []
    for position, decision in enumerate(decisions):
        ranked = scored.ranked.get(scored.keys[position])
        best = ranked.candidates[0] if ranked and ranked.candidates else None
        real = data.truth[decision.incoming_id]
        offered = {c.existing_id for c in ranked.candidates} if ranked else set()
        rows.append((decision, best, ranked.any_match if ranked else 0.0, real, real in offered))
    review = [r for r in rows if r[0].decision == "review"]
    gap = [r for r in review if r[1] is not None and upper <= r[1].probability < config.upper]
    predicted = sum(1 - r[1].probability for r in gap)
    print(
        f"  in review between the two upper: {len(gap)} rows, predicted wrong best candidates {predicted:.2f}, "
        f"real {sum(r[1].existing_id != r[3] for r in gap)}"
    )
    gap = [r for r in review if config.lower <= r[2] < lower]
    print(
        f"  in review between the two lower: {len(gap)} rows, predicted existing {sum(r[2] for r in gap):.1f}, "
        f"real {sum(r[3] is not None for r in gap)}"
    )
    for wrong_risk, duplicate_risk in BUDGETS:
        chosen = choose(scored, config, (), wrong_risk, duplicate_risk)
        tried = decide_all(scored, replace(config, upper=chosen.upper, lower=chosen.lower))
        print(f"  budgets {wrong_risk:g} wrong links, {duplicate_risk:g} duplicates per row: {_line(tried, data)}")
    return rows


def print_bands(label: str, rows: Sequence[tuple]) -> None:
    """The pooled calibration of the best candidate and of ``any_match`` (module docstring)."""
    probabilistic = [r for r in rows if r[1] is not None and not r[0].reason.startswith("deterministic")]
    upper_side = bands(
        ((r[1].probability, 1 - r[1].probability, r[1].existing_id != r[3], r[3] is None) for r in probabilistic), 2, 14
    )
    print(f"\n{label}: best candidate's match weight | rows | predicted wrong | real wrong | of them new")
    for band in upper_side:
        print(
            f"  {_range(band, 2, 14)} | {band.rows:>6} | {band.predicted:>8.2f} | {band.actual:>4} | {band.marked:>4}"
        )
    lower_side = bands(
        ((r[2], r[2], r[3] is not None, r[4]) for r in rows if not r[0].reason.startswith("deterministic")), -12, 6
    )
    print(f"{label}: any_match in bits | rows | predicted existing | real existing | of them a candidate")
    for band in lower_side:
        print(
            f"  {_range(band, -12, 6)} | {band.rows:>6} | {band.predicted:>8.2f} | {band.actual:>5} | {band.marked:>5}"
        )


def _range(band: Band, low: int, high: int) -> str:
    if band.low == low:
        return f"{f'< {low + 1}':>10}"
    return f"{f'{band.low} to {band.low + 1}' if band.low < high else f'>= {high}':>10}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.matching_thresholds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--existing", type=int, default=5000)
    parser.add_argument("--incoming", type=int, default=5000)
    parser.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="population:seed:training seed")
    parser.add_argument(
        "--cht-dates", action="store_true", help="populations with CHT-form estimated dates, year typos"
    )
    args = parser.parse_args(argv)
    pooled: dict[str, list[tuple]] = {}
    for run in args.runs:
        kind, seed, training_seed = run.split(":")
        if kind not in {"east", "west"}:
            raise SystemExit(f"--runs {run}: population must be east or west")
        pooled.setdefault(kind, []).extend(
            analyse(kind, int(seed), int(training_seed), args.existing, args.incoming, args.cht_dates)
        )
    for kind, rows in pooled.items():
        print_bands("East African" if kind == "east" else "second population", rows)


if __name__ == "__main__":
    main()
