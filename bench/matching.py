"""Patient-matching benchmark: accuracy and speed of ``cht_bridge.matching.match`` on synthetic
East-African data (``standins/populations.py``, fixed seed).

For each size it prints the wrong-link rate (links to anyone but the true person, over incoming
people), the duplicate rate (truly existing people decided ``new``, over truly existing incoming
people), the review share, pairwise precision/recall/F1 of the links, within-list duplicate
detection, and the wall time of ``match()`` alone (data generation is not timed).

Goals: 0 wrong links, <= 0.5 % duplicates, <= 1 % review, 5k x 5k in <= 2 s on 2 cores.

Then the same with a model trained on the benchmark's own files (``python -m cht_bridge.matching
train`` on CSVs written to a temporary folder, timed), on this population and on a second one
unlike it (``standins/populations_west.py``: other names, codes for places, no phone, no sex,
20 % new); and once more after 200 simulated review answers (the most uncertain people, answered
from the truth) are fed back with ``--labels``: every row decided by the model, then the answered
rows as answered (what the reverse pipeline does with them) and the review of the rows nobody
answered before and after. ``--no-trained`` skips these.

``python -m bench.matching [--existing 5000 100000] [--incoming 5000] [--seed 7] [--west-seed 11]``
(check a change on a second pair of seeds too, e.g. ``--seed 11 --west-seed 12``: the goals are
for methods, not for one draw); ``--cht-dates`` generates both populations with estimated dates as
CHT's person form writes them (``approx``) and year typos in the list (``cht_dates=True`` of the
generators; off, the data every earlier result was measured on);
``--calibrate`` instead prints, per comparison level, the share of true pairs (m) and of random
pairs (u) observed in the synthetic data next to the model's fixed values, which is how the
hand-set values in ``cht_bridge/matching/model.py`` were checked.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import tempfile
import time
from collections import Counter
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import duckdb
import pyarrow as pa

from cht_bridge.matching import Decision, MatchConfig, match
from cht_bridge.matching.__main__ import main as cli
from cht_bridge.matching.csv_io import write_people
from cht_bridge.matching.decisions import config_for_model
from cht_bridge.matching.features import Frequencies, build_table, e164
from cht_bridge.matching.labels import Label, from_answer, truth_of, write_labels
from cht_bridge.matching.model import load_model, load_model_file
from standins.populations import Population, population
from standins.populations_west import west_population


def evaluate(result: list[Decision], data: Population) -> dict[str, float]:
    """Accuracy metrics of ``result`` against the population's truth."""
    truth = data.truth
    n = len(result)
    existing_rows = sum(1 for value in truth.values() if value is not None)
    links = [d for d in result if d.decision == "link"]
    right = sum(1 for d in links if truth[d.incoming_id] == d.existing_id)
    wrong = len(links) - right
    duplicates = sum(1 for d in result if d.decision == "new" and truth[d.incoming_id] is not None)
    reviews = sum(1 for d in result if d.decision == "review")
    precision = right / len(links) if links else 1.0
    recall = right / existing_rows if existing_rows else 1.0
    found_same = {d.incoming_id: d.same_as for d in result if d.same_as}
    same_right = sum(1 for later, earlier in found_same.items() if data.duplicates.get(later) == earlier)
    return {
        "incoming": n,
        "truly existing": existing_rows,
        "links": len(links),
        "wrong links": wrong,
        "wrong-link rate": wrong / n,
        "duplicates (existing decided new)": duplicates,
        "duplicate rate": duplicates / existing_rows if existing_rows else 0.0,
        "reviews": reviews,
        "review share": reviews / n,
        "precision": precision,
        "recall": recall,
        "F1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "within-list duplicates (truth)": len(data.duplicates),
        "same_as found / right": f"{len(found_same)} / {same_right}",
    }


def run(
    n_existing: int, n_incoming: int, seed: int, config: MatchConfig, cht_dates: bool = False
) -> tuple[dict, float, Counter]:
    data = population(n_existing, n_incoming, seed=seed, cht_dates=cht_dates)
    started = time.perf_counter()
    result = match(data.incoming, data.existing, config)
    seconds = time.perf_counter() - started
    reasons = Counter(d.reason.split(";")[0].split(":")[0] for d in result if d.decision == "review")
    return evaluate(result, data), seconds, reasons


def calibrate(n: int, seed: int, random_pairs: int = 200_000) -> None:
    """Print observed m (true pairs) and u (random pairs) per level beside the model's values."""
    data = population(n, n, seed=seed)
    phones = [e164(p, "KE") for p in [*data.existing, *data.incoming]]
    counts = Frequencies([*data.existing, *data.incoming], phones)
    left = build_table(data.existing, [p.id for p in data.existing], phones[:n], counts)
    right = build_table(data.incoming, [p.id for p in data.incoming], phones[n:], counts)
    rng = random.Random(seed)
    pairs = {
        "m": [(t, i) for i, t in data.truth.items() if t],
        "u": [(rng.choice(data.existing).id, rng.choice(data.incoming).id) for _ in range(random_pairs)],
    }
    pairs["u"] = [(e, i) for e, i in pairs["u"] if data.truth[i] != e]
    con = duckdb.connect()
    con.execute("SET lambda_syntax='ENABLE_SINGLE_ARROW'")
    con.register("l_people", left)
    con.register("r_people", right)
    columns = ", ".join(f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in left.column_names)
    shares: dict[str, Counter] = {}
    for kind, chosen in pairs.items():
        con.register("chosen", pa.table({"a": [a for a, _ in chosen], "b": [b for _, b in chosen]}))
        con.execute(
            f"CREATE OR REPLACE TABLE joined AS SELECT {columns} FROM chosen "
            "JOIN l_people l ON l.unique_id = chosen.a JOIN r_people r ON r.unique_id = chosen.b"
        )
        for comparison in load_model()["comparisons"]:
            levels = comparison["comparison_levels"]
            whens = " ".join(f"WHEN {lv['sql_condition']} THEN {k}" for k, lv in enumerate(levels[:-1]))
            rows = con.execute(f"SELECT CASE {whens} ELSE {len(levels) - 1} END AS g, count(*) FROM joined GROUP BY g")
            found = dict(rows.fetchall())
            known = sum(c for g, c in found.items() if not levels[g].get("is_null_level")) or 1
            for g, level in enumerate(levels):
                if not level.get("is_null_level"):
                    shares.setdefault(f"{comparison['output_column_name']}: {level['label_for_charts']}", Counter())[
                        kind
                    ] = found.get(g, 0) / known
    model = {
        f"{c['output_column_name']}: {lv['label_for_charts']}": lv
        for c in load_model()["comparisons"]
        for lv in c["comparison_levels"]
    }
    print(f"{'level':<62} {'m seen':>8} {'m model':>8} {'u seen':>9} {'u model':>9}")
    for label, seen in shares.items():
        level = model[label]
        print(
            f"{label[:62]:<62} {seen['m']:>8.3g} {level['m_probability']:>8.3g} "
            f"{seen['u']:>9.2g} {level['u_probability']:>9.2g}"
        )


def trained_run(data: Population, label: str, seed: int, answers: int = 200) -> None:
    """Train on the population's own files with the CLI, link with the model, then feed back
    ``answers`` simulated review answers and do both again."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_people(root / "existing.csv", data.existing)
        write_people(root / "incoming.csv", data.incoming)
        files = ["--existing", str(root / "existing.csv"), "--incoming", str(root / "incoming.csv")]
        labels: list[Label] = []
        first: list[Decision] = []
        for round_ in ("trained", f"trained + {answers} review answers"):
            extra = ["--labels", str(root / "labels.csv")] if labels else []
            started = time.perf_counter()
            cli(["train", *files, *extra, "--out", str(root / "model.json"), "--seed", str(seed)])
            train_seconds = time.perf_counter() - started
            model = load_model_file(root / "model.json")
            started = time.perf_counter()
            result = match(data.incoming, data.existing, config_for_model(model))
            link_seconds = time.perf_counter() - started
            block = model["cht_bridge"]
            print(
                f"\n{label}, {round_}: train {train_seconds:.2f} s, match() {link_seconds:.2f} s, "
                f"upper {block['upper']:.4f} lower {block['lower']:.4f}"
            )
            _print_metrics(evaluate(result, data))
            if not labels:
                labels = simulated_answers(result, data, answers)
                write_labels(root / "labels.csv", labels)
                first = result
                continue
            # The reverse pipeline links or creates an answered row as the reviewer said; the
            # thresholds decide only the others (above, every row was decided by the model).
            print("  answered rows as answered (as the reverse pipeline decides them):")
            _print_metrics(
                evaluate(as_answered(result, labels), data), keys=("wrong links", "duplicate rate", "review share")
            )
            unanswered = [(b, a) for b, a in zip(first, result, strict=True) if b.incoming_id not in truth_of(labels)]
            print(
                f"  rows nobody answered ({len(unanswered)}): review {sum(b.decision == 'review' for b, _ in unanswered)}"
                f" -> {sum(a.decision == 'review' for _, a in unanswered)}"
            )


def _print_metrics(metrics: dict, keys: tuple[str, ...] = ()) -> None:
    for name, value in metrics.items():
        if keys and name not in keys:
            continue
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {name:<34} {shown}")


def as_answered(result: list[Decision], labels: list[Label]) -> list[Decision]:
    """``result`` with each answered row decided by its answer (linked to the person named, or new)."""
    truth = truth_of(labels)
    return [
        replace(d, decision="link" if truth[d.incoming_id] else "new", existing_id=truth[d.incoming_id])
        if d.incoming_id in truth
        else d
        for d in result
    ]


def simulated_answers(result: list[Decision], data: Population, n: int) -> list[Label]:
    """A reviewer's answers, from the truth, for the ``n`` most uncertain people (review first,
    then the probabilistic decisions nearest an even chance)."""

    def uncertainty(d: Decision) -> tuple[int, float]:
        p = min(max(d.probability or 0.0, 1e-12), 1 - 1e-12)
        return (0 if d.decision == "review" else 1, abs(math.log2(p / (1 - p))))

    asked = sorted(
        (d for d in result if d.candidates and not d.reason.startswith("deterministic")),
        key=lambda d: (*uncertainty(d), d.incoming_id),
    )[:n]
    labels: list[Label] = []
    for d in asked:
        offered = [c.existing_id for c in d.candidates]
        real = data.truth[d.incoming_id]
        linked = offered.index(real) if real in offered else None
        labels += from_answer(d.incoming_id, offered, linked, new=linked is None)
    return labels


def _machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"splink {version('splink')}, duckdb {version('duckdb')}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.matching", description=__doc__.split("\n\n")[0])
    parser.add_argument("--existing", type=int, nargs="+", default=[5000, 100000])
    parser.add_argument("--incoming", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--upper", type=float, default=MatchConfig.upper)
    parser.add_argument("--lower", type=float, default=MatchConfig.lower)
    parser.add_argument("--margin", type=float, default=MatchConfig.ambiguity_margin)
    parser.add_argument("--calibrate", action="store_true", help="compare the model's m/u with the data")
    parser.add_argument("--no-trained", action="store_true", help="skip the trained-model runs")
    parser.add_argument("--west-seed", type=int, default=11, help="seed of the second population")
    parser.add_argument(
        "--cht-dates",
        action="store_true",
        help="both populations with CHT-form estimated dates (approx) and the list's year typos",
    )
    args = parser.parse_args(argv)
    if args.calibrate:
        calibrate(args.existing[0], args.seed)
        return
    config = MatchConfig(upper=args.upper, lower=args.lower, ambiguity_margin=args.margin)
    # Warm up imports and DuckDB once so the first timing is not the import time.
    warm = population(50, 50, seed=args.seed)
    match(warm.incoming, warm.existing, config)

    print(f"machine: {_machine()}")
    print(
        f"config: upper={config.upper} lower={config.lower} margin={config.ambiguity_margin} seed={args.seed}"
        f" dates: {'CHT-form estimates and year typos (--cht-dates)' if args.cht_dates else 'default'}"
    )
    for n_existing in args.existing:
        metrics, seconds, reasons = run(n_existing, args.incoming, args.seed, config, args.cht_dates)
        print(f"\n{args.incoming:,} incoming x {n_existing:,} existing: match() {seconds:.2f} s")
        for name, value in metrics.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            print(f"  {name:<34} {shown}")
        if reasons:
            print("  review reasons: " + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common()))
    if args.no_trained:
        return
    for n_existing in args.existing:
        size = f"{args.incoming:,} x {n_existing:,}"
        east = population(n_existing, args.incoming, seed=args.seed, cht_dates=args.cht_dates)
        trained_run(east, f"East African {size}", args.seed)
        west = west_population(n_existing, args.incoming, seed=args.west_seed, cht_dates=args.cht_dates)
        trained_run(west, f"second population {size}", args.seed)


if __name__ == "__main__":
    main()
