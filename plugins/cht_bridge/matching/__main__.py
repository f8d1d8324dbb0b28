"""Command line: match an incoming CSV list against existing people, or train a model for it.

``python -m cht_bridge.matching link --existing existing.csv --incoming incoming.csv
--out decisions.csv [--model model.json] [--upper 0.995 --lower 0.5 --margin 0.05 --region KE]``

``python -m cht_bridge.matching train --existing existing.csv [--incoming incoming.csv]
[--labels labels.csv] --out model.json [--report report.md] [--seed 42]``

Prints counts and seconds; never names or phones.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from cht_bridge.matching.csv_io import read_people, write_decisions
from cht_bridge.matching.decisions import MatchConfig, config_for_model
from cht_bridge.matching.labels import read_labels
from cht_bridge.matching.matcher import match
from cht_bridge.matching.model import BRIDGE_KEY, load_model_file, save_model_file
from cht_bridge.matching.report import render_report
from cht_bridge.matching.training import passed, train


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m cht_bridge.matching", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    link = commands.add_parser("link", help="decide link/review/new for every incoming person")
    link.add_argument("--existing", required=True, help="CSV of existing (CHT) people")
    link.add_argument("--incoming", required=True, help="CSV of incoming (EMR) people")
    link.add_argument("--out", required=True, help="CSV of decisions to write")
    link.add_argument("--upper", type=float, help=f"link at or above (default the model's, or {MatchConfig.upper})")
    link.add_argument("--lower", type=float, help=f"new below (default the model's, or {MatchConfig.lower})")
    link.add_argument(
        "--margin", type=float, default=MatchConfig.ambiguity_margin, help="review when top two are this close"
    )
    link.add_argument("--region", default=MatchConfig.region, help="default phone region (default %(default)s)")
    link.add_argument("--model", help="a trained model (train --out); default the shipped one")
    train = commands.add_parser("train", help="estimate a model from this deployment's data")
    train.add_argument("--existing", required=True, help="CSV of existing (CHT) people")
    train.add_argument("--incoming", help="CSV of incoming (EMR) people: needed to estimate m and thresholds")
    train.add_argument("--labels", help="CSV of reviewed pairs: incoming_id, existing_id, match (1/0/empty)")
    train.add_argument("--out", required=True, help="model file to write")
    train.add_argument("--report", help="Markdown report to write (default: next to --out, .md)")
    train.add_argument("--seed", type=int, default=42, help="seed of the random pairs (default %(default)s)")
    train.add_argument("--region", default=MatchConfig.region, help="default phone region (default %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(args)

    started = time.perf_counter()
    model = load_model_file(args.model) if args.model else None
    config = config_for_model(
        model,
        upper=args.upper,
        lower=args.lower,
        ambiguity_margin=args.margin,
        region=args.region,
    )
    decisions = match(read_people(args.incoming), read_people(args.existing), config)
    write_decisions(args.out, decisions)
    counts = Counter(d.decision for d in decisions)
    seconds = time.perf_counter() - started
    print(
        f"link {counts['link']}, review {counts['review']}, new {counts['new']} "
        f"({len(decisions)} incoming) in {seconds:.2f} s -> {args.out}"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    labels = read_labels(args.labels) if args.labels else []
    model = train(
        read_people(args.existing),
        read_people(args.incoming) if args.incoming else [],
        labels,
        region=args.region,
        seed=args.seed,
    )
    save_model_file(args.out, model)
    report = Path(args.report) if args.report else Path(args.out).with_suffix(".md")
    report.write_text(render_report(model), encoding="utf-8")
    block = model[BRIDGE_KEY]
    verdict = (
        "passed its checks"
        if passed(model)
        else "FAILED a check: " + ", ".join(name for name, ok in block["checks"].items() if not ok)
    )
    thresholds = f"upper {block['upper']:.4f}, lower {block['lower']:.4f}" if "upper" in block else "no thresholds"
    print(
        f"trained on {block['trained_on']['existing']} existing, {block['trained_on']['incoming']} incoming, "
        f"{len(labels)} labels: {thresholds}; {verdict}; in {time.perf_counter() - started:.2f} s "
        f"-> {args.out}, {report}"
    )
    return 0 if passed(model) else 1


if __name__ == "__main__":
    sys.exit(main())
