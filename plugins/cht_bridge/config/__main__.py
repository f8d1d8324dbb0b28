"""Command line for pipeline files.

``python -m cht_bridge.config import-outbound APP_SETTINGS.json --out include/pipelines``
writes one pipeline file per CHT outbound push and prints the Airflow Connections to create
(the secret of each is the CHT credential named there; it is never written to a file).

``python -m cht_bridge.config check FILE...`` checks pipeline files and names every bad key.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import yaml

from cht_bridge.config.app_settings import pipelines_from_app_settings
from cht_bridge.config.loader import load_pipeline, parse_pipeline
from cht_bridge.errors import ConfigError


def import_outbound(settings_path: Path, out: Path, cht_conn_id: str, start: date | None) -> int:
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    pushes = pipelines_from_app_settings(settings, source=str(settings_path), cht_conn_id=cht_conn_id, start_date=start)
    out.mkdir(parents=True, exist_ok=True)
    for push in pushes:
        target = out / f"{push.pipeline['name']}.yaml"
        parse_pipeline(push.pipeline, file=str(target))  # the file we write must load
        target.write_text(yaml.safe_dump(push.pipeline, sort_keys=False, allow_unicode=True), encoding="utf-8")
        conn = push.connection
        print(f"wrote {target}")
        secret = conn["password_from_cht_credential"]
        login = f" --conn-login '{conn['login']}'" if conn["login"] else ""
        password = f" --conn-password '<the CHT credential \"{secret}\">'" if secret else ""
        print(
            f"  airflow connections add {conn['conn_id']} --conn-type http --conn-host '{conn['host']}'{login}{password}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cht_bridge.config", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import-outbound", help="turn CHT outbound pushes into pipeline files")
    imp.add_argument("app_settings", type=Path)
    imp.add_argument("--out", type=Path, default=Path("include/pipelines"))
    imp.add_argument("--cht-conn-id", default="cht_default")
    imp.add_argument("--start-date", type=date.fromisoformat, default=None)
    chk = commands.add_parser("check", help="check pipeline files")
    chk.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "import-outbound":
            return import_outbound(args.app_settings, args.out, args.cht_conn_id, args.start_date)
        for path in args.files:
            load_pipeline(path)
            print(f"{path}: ok")
        return 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
