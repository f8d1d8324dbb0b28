"""Command line: ``python -m cht_bridge.mapping preview PIPELINE_OR_APP_SETTINGS DOCS.jsonl``."""

from __future__ import annotations

import argparse
import sys

from cht_bridge.errors import ChtBridgeError
from cht_bridge.mapping.preview import run_preview


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cht_bridge.mapping", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser(
        "preview", help="print what each document would be mapped to (a FHIR pipeline's resources validated too)"
    )
    cmd.add_argument("config", help="a pipeline YAML file or a CHT app_settings.json")
    cmd.add_argument("docs", help="hydrated CHT documents, one JSON object a line")
    args = parser.parse_args(argv)
    try:
        return run_preview(args.config, args.docs, sys.stdout)
    except ChtBridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
