"""Why does the trained matcher's review grow with the population? Each step of ``match()`` that
should not depend on the population's size, switched off or set right, on one trained model.

For each run (population, seed, training seed) it trains on the run's own files (or reads the
model ``--models`` keeps, ``bench.matching_oracle.trained_model``), then scores and decides the
list with the model as trained and with one change at a time, and prints wrong links /
duplicates / review for each:

* ``claims off``: no other-rows claims or "people the others leave" boost (``exclusive.py``);
* ``tf off``: no term-frequency adjustment of any level (names, dates, phones, places);
* ``tf on CHT only``: frequencies counted on the CHT population alone, not population + list;
* ``share = truth``: the prior share of list rows that exist set to the truth (training
  estimates it from the model's own ``any_match``);
* ``prior as at 5,000 (wrong on purpose)``: the prior of a pair as if the population had 5,000
  people; not a fix, a measure of how much of the growth is the prior alone;
* ``boost off (claims kept)``: no "people the others leave" term (``exclusive.MAX_BOOST`` 0), the
  other rows' claims on one person kept;
* ``floors as shares (before)``: frequency floors as shares of the population, as before
  ``scoring.floors_for_population``;
* ``no blocking budget``: the name-and-letter rules at their widest whatever pairs they make;
* ``margin 0``: no "rival within 0.05" review;
* ``no within-list step``: rows of the list never marked one person (``same_as_upper`` 1);
* ``thresholds with the truth``: the lowest ``upper`` with no wrong link and, under it, the highest
  ``lower`` with duplicates <= 0.5 % (hindsight: the least review any pair of thresholds gives).

``python -m bench.matching_scale [--existing 100000] [--runs east:7:7 west:11:7] [--models DIR]``.
5,000 x 100,000: about 2-3 minutes a run on 2 cores (scored six times), plus training once.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from bench.matching import evaluate
from bench.matching_oracle import trained_model
from cht_bridge.matching import exclusive, matcher, scoring
from cht_bridge.matching.decisions import Decision, MatchConfig, config_for_model
from cht_bridge.matching.exclusive import EXCLUSIVE_CLAIMS
from cht_bridge.matching.features import Frequencies
from cht_bridge.matching.matcher import Scored, decide_all, score_people
from cht_bridge.matching.model import BRIDGE_KEY
from standins.populations import Population, population
from standins.populations_west import west_population

#: Duplicates the thresholds chosen with the truth may leave (the goal).
DUPLICATE_GOAL = 0.005
_GRID = [i / 400 for i in range(401)]


def without_tf(model: dict[str, Any]) -> dict[str, Any]:
    """``model`` with no level adjusted by term frequency."""
    comparisons = [
        dict(
            c,
            comparison_levels=[
                {k: v for k, v in lv.items() if k != "tf_adjustment_column"} for lv in c["comparison_levels"]
            ],
        )
        for c in model["comparisons"]
    ]
    return dict(model, comparisons=comparisons)


def without_claims(model: dict[str, Any]) -> dict[str, Any]:
    return dict(model, **{BRIDGE_KEY: dict(model.get(BRIDGE_KEY, {}), **{EXCLUSIVE_CLAIMS: False})})


@contextmanager
def patched(module: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def _cht_only_frequencies(n_existing: int) -> Callable[..., Frequencies]:
    """A ``Frequencies`` that counts only the first ``n_existing`` people (``score_people`` passes
    the CHT people first, then the list's)."""

    def build(people: list, phones: list) -> Frequencies:
        return Frequencies(people[:n_existing], phones[:n_existing])

    return build


_ANY_BANDS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9, 1.0 + 1e-9)
_BANDS = (-math.inf, 0.0, 3.0, 6.0, 8.0, 10.0, 12.0, 16.0, math.inf)


def calibration(scored: Scored, data: Population) -> None:
    """Per band of the best candidate's weight (log2 of its odds): the rows, the wrong best
    candidates the model predicts (the sum of 1 - p) and those seen (the best is not the person,
    or the row is new). Calibrated bands mean the model is right to hold these rows back."""
    bands: dict[int, list[float]] = {}
    for key, person in zip(scored.keys, scored.incoming, strict=True):
        ranked = scored.ranked.get(key)
        if not ranked or not ranked.candidates:
            continue
        best = ranked.candidates[0]
        p = min(best.probability, 1 - 1e-15)
        bits = math.log2(p / (1 - p)) if p > 0 else -math.inf
        band = next(i for i in range(len(_BANDS) - 1) if _BANDS[i] <= bits < _BANDS[i + 1])
        found = bands.setdefault(band, [0, 0.0, 0])
        found[0] += 1
        found[1] += 1 - best.probability
        found[2] += data.truth[person.id] != best.existing_id
    print("  best candidate's weight: rows / wrong predicted / wrong seen")
    for band in sorted(bands):
        rows, predicted, seen = bands[band]
        print(f"      [{_BANDS[band]:>5}, {_BANDS[band + 1]:>5}) bits  {rows:>5}  {predicted:7.1f}  {seen:>4}")
    shares: dict[int, list[float]] = {}
    for position, person in enumerate(scored.incoming):
        any_match = scored.any_match(position)
        band = next(i for i, edge in enumerate(_ANY_BANDS[1:]) if any_match < edge)
        found = shares.setdefault(band, [0, 0.0, 0, 0])
        found[0] += 1
        found[1] += any_match
        found[2] += data.truth[person.id] is not None
        ranked = scored.ranked.get(scored.keys[position])
        found[3] += len(ranked.candidates) if ranked else 0
    print("  any_match (the row is someone in CHT): rows / existing predicted / existing seen / candidates per row")
    for band in sorted(shares):
        rows, predicted, seen, candidates = shares[band]
        print(
            f"      [{_ANY_BANDS[band]:.3f}, {_ANY_BANDS[band + 1]:.3f})  {rows:>5}  {predicted:7.1f}  {seen:>4}"
            f"  {candidates / rows:6.1f}"
        )


def _prior_times(score: Callable[..., Any], factor: float) -> Callable[..., Any]:
    """``scoring.score`` with the prior of a pair of the list and the population times ``factor``."""

    def scaled(*args: Any, prior_between: float, **kwargs: Any) -> Any:
        return score(*args, prior_between=prior_between * factor, **kwargs)

    return scaled


def _score(data: Population, config: MatchConfig) -> Scored:
    return score_people(data.incoming, data.existing, config)


def line(label: str, decisions: list[Decision], data: Population, seconds: float | None = None) -> dict:
    m = evaluate(decisions, data)
    took = f"  ({seconds:.1f} s)" if seconds is not None else ""
    print(
        f"  {label:<40} {m['wrong links']:>3} / {m['duplicate rate']:6.2%} / {m['review share']:6.2%}"
        f"  ({m['reviews']} review rows){took}"
    )
    return m


def with_the_truth(scored: Scored, config: MatchConfig, data: Population) -> tuple[float, float, dict]:
    """The lowest ``upper`` with no more wrong links than the trained thresholds make (a link at
    p 0.99998 or a deterministic one is not undone by any usable threshold), then the highest ``lower`` under it with duplicates
    within the goal: the least review thresholds can give on this run, chosen in hindsight. The
    ``upper`` tried are the best candidates' own probabilities (wrong links only fall as it rises)."""

    def wrong(upper: float) -> int:
        return evaluate(decide_all(scored, replace(config, upper=upper, lower=min(config.lower, upper))), data)[
            "wrong links"
        ]

    tried = sorted({r.candidates[0].probability for r in scored.ranked.values() if r.candidates} | {1.0})
    least = wrong(config.upper)
    low, high = 0, len(tried) - 1
    while low < high:
        middle = (low + high) // 2
        if wrong(tried[middle]) <= least:
            high = middle
        else:
            low = middle + 1
    upper = tried[low]
    lower = 0.0
    for step in _GRID:
        if step > upper:
            break
        found = evaluate(decide_all(scored, replace(config, upper=upper, lower=step)), data)
        if found["duplicate rate"] <= DUPLICATE_GOAL:
            lower = step
    return upper, lower, evaluate(decide_all(scored, replace(config, upper=upper, lower=lower)), data)


def study(kind: str, seed: int, training_seed: int, n_existing: int, n_incoming: int, models: str | None) -> None:
    data = (population if kind == "east" else west_population)(n_existing, n_incoming, seed=seed)
    model = trained_model(data, kind, seed, training_seed, models)
    config = config_for_model(model)
    exists = sum(t is not None for t in data.truth.values()) / len(data.incoming)
    print(
        f"\n{'East' if kind == 'east' else 'second'} {seed} (trained with {training_seed}), {n_existing:,} x "
        f"{n_incoming:,}: upper {config.upper:.4f}, lower {config.lower:.4f}, share {config.expected_match_share:.3f} "
        f"(truth {exists:.3f}); wrong links / duplicates / review"
    )
    started = time.perf_counter()
    base = _score(data, replace(config, max_candidates=10**6))
    line("as trained", decide_all(base, config), data, time.perf_counter() - started)
    calibration(base, data)
    for label, change in (
        ("margin 0", replace(config, ambiguity_margin=0.0)),
        ("no within-list step", replace(config, same_as_upper=1.0)),
    ):
        line(label, decide_all(base, change), data)
    upper, lower, m = with_the_truth(base, config, data)
    print(
        f"  {'thresholds with the truth':<40} {m['wrong links']:>3} / {m['duplicate rate']:6.2%} / "
        f"{m['review share']:6.2%}  (upper {upper:.6f}, lower {lower:.4f})"
    )
    rescored: list[tuple[str, Callable[[MatchConfig], Scored], MatchConfig]] = [
        ("claims off", lambda c: _score(data, c), replace(config, model=without_claims(model))),
        ("tf off", lambda c: _score(data, c), replace(config, model=without_tf(model))),
        ("share = truth", lambda c: _score(data, c), replace(config, expected_match_share=exists)),
    ]
    for label, run, changed in rescored:
        started = time.perf_counter()
        line(label, decide_all(run(changed), changed), data, time.perf_counter() - started)
    started = time.perf_counter()
    with patched(matcher, "score", _prior_times(matcher.score, n_existing / 5000)):
        line(
            "prior as at 5,000 (wrong on purpose)",
            decide_all(_score(data, config), config),
            data,
            time.perf_counter() - started,
        )
    started = time.perf_counter()
    with patched(matcher, "Frequencies", _cht_only_frequencies(len(data.existing))):
        line("tf on CHT only", decide_all(_score(data, config), config), data, time.perf_counter() - started)
    started = time.perf_counter()
    with patched(exclusive, "MAX_BOOST", 0.0):
        line("boost off (claims kept)", decide_all(_score(data, config), config), data, time.perf_counter() - started)
    started = time.perf_counter()
    with patched(scoring, "FLOOR_PEOPLE", 10**15):
        line("floors as shares (before)", decide_all(_score(data, config), config), data, time.perf_counter() - started)
    started = time.perf_counter()
    with patched(scoring, "PAIRS_PER_INCOMING_ROW", 10**9):
        line("no blocking budget", decide_all(_score(data, config), config), data, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.matching_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--existing", type=int, default=100_000)
    parser.add_argument("--incoming", type=int, default=5000)
    parser.add_argument("--runs", nargs="*", default=["east:7:7", "west:11:7"], help="population:seed:training seed")
    parser.add_argument("--models", help="a folder keeping each run's trained model (read back when there)")
    args = parser.parse_args(argv)
    for text in args.runs:
        kind, seed, training_seed = text.split(":")
        if kind not in {"east", "west"}:
            raise SystemExit(f"{text}: population must be east or west")
        study(kind, int(seed), int(training_seed), args.existing, args.incoming, args.models)


if __name__ == "__main__":
    main()
