"""Command line: match an incoming CSV list against existing people.

``python -m cht_bridge.matching link --existing existing.csv --incoming incoming.csv
--out decisions.csv [--upper 0.995 --lower 0.5 --margin 0.05 --region KE]``

Prints the counts of link/review/new and the seconds taken; never names or phones.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from cht_bridge.matching.csv_io import read_people, write_decisions
from cht_bridge.matching.decisions import MatchConfig
from cht_bridge.matching.matcher import match


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m cht_bridge.matching", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    link = commands.add_parser("link", help="decide link/review/new for every incoming person")
    link.add_argument("--existing", required=True, help="CSV of existing (CHT) people")
    link.add_argument("--incoming", required=True, help="CSV of incoming (EMR) people")
    link.add_argument("--out", required=True, help="CSV of decisions to write")
    link.add_argument("--upper", type=float, default=MatchConfig.upper, help="link at or above (default %(default)s)")
    link.add_argument("--lower", type=float, default=MatchConfig.lower, help="new below (default %(default)s)")
    link.add_argument(
        "--margin", type=float, default=MatchConfig.ambiguity_margin, help="review when top two are this close"
    )
    link.add_argument("--region", default=MatchConfig.region, help="default phone region (default %(default)s)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    config = MatchConfig(upper=args.upper, lower=args.lower, ambiguity_margin=args.margin, region=args.region)
    decisions = match(read_people(args.incoming), read_people(args.existing), config)
    write_decisions(args.out, decisions)
    counts = Counter(d.decision for d in decisions)
    seconds = time.perf_counter() - started
    print(
        f"link {counts['link']}, review {counts['review']}, new {counts['new']} "
        f"({len(decisions)} incoming) in {seconds:.2f} s -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
