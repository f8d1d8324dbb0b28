"""The training report: why the matcher decides as it does, in Markdown a programme can read.

Three parts, each a table with text bars so that it reads in a terminal, a Git forge and the
Airflow UI alike: the match weight of every comparison level (how much agreeing at that level
counts for or against "same person"), the histogram of the list's probabilities with the two
thresholds, and the reviewers' labelled pairs as a confusion table before and after training.
No names, dates or phones: only levels, counts and probabilities.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from cht_bridge.matching.model import BRIDGE_KEY
from cht_bridge.matching.thresholds import CONFUSION_COLUMNS

_BAR = 30  # characters of the longest bar


def render_report(model: dict[str, Any]) -> str:
    """The report of a trained model (``training.train``'s result) as Markdown."""
    block = model.get(BRIDGE_KEY, {})
    lines = ["# Matcher training report", ""]
    lines += _summary(block)
    lines += ["", "## Match weight per comparison", ""]
    lines += weight_chart(model)
    lines += ["", "## Probabilities of the list, with the thresholds", ""]
    lines += histogram(block.get("probabilities", []), block.get("lower"), block.get("upper"))
    metrics = block.get("metrics", {})
    if block.get("trained_on", {}).get("labels"):
        lines += ["", "## Labelled pairs (reviewers' answers)", ""]
        if "confusion_before" in metrics:
            lines += ["Before training (the starting model and its thresholds):", ""]
            lines += confusion_table(metrics["confusion_before"]) + [""]
        lines += ["After training:", ""] + confusion_table(metrics.get("confusion_after", {}))
    return "\n".join(lines) + "\n"


def _summary(block: dict[str, Any]) -> list[str]:
    trained = block.get("trained_on", {})
    metrics = block.get("metrics", {})
    lines = [
        f"- trained on {trained.get('existing', 0)} existing people, {trained.get('incoming', 0)} list rows, "
        f"{trained.get('labels', 0)} labelled pairs (seed {trained.get('seed')}) in {block.get('seconds', '?')} s",
        f"- columns: {_columns(block.get('profile', {}))}",
    ]
    if block.get("refused"):
        lines.append(f"- {block['refused']}; the model in use is kept")
    if "upper" in block:
        lines.append(
            f"- thresholds: link at p >= {block['upper']:.4f}, new below {block['lower']:.4f}; "
            f"share of the list already in CHT {block.get('expected_match_share', 0):.1%}"
        )
    if metrics:
        lines.append(
            f"- on the list: {metrics.get('link', 0)} link, {metrics.get('review', 0)} review "
            f"({metrics.get('review_share', 0):.1%}), {metrics.get('new', 0)} new; expected wrong links "
            f"{metrics.get('expected_wrong_links', 0)}, expected duplicates {metrics.get('expected_duplicates', 0)}"
        )
    for name, ok in (block.get("checks") or {}).items():
        lines.append(f"- check {'passed' if ok else 'FAILED'}: {name}")
    return lines


def _columns(found: dict[str, Any]) -> str:
    filled = found.get("filled", {})
    parts = [f"{name} {share:.0%}" + (" (no weight)" if share == 0 else "") for name, share in filled.items()]
    apart = "; area independent of the place (agreeing together is a level)" if found.get("area_apart") else ""
    return ", ".join(parts) + f"; places compared as {found.get('place_kind', 'code')}s{apart}"


def weight_chart(model: dict[str, Any]) -> list[str]:
    """Per comparison level: m, u and the match weight log2(m/u) as a bar (+ for, - against)."""
    rows = ["| comparison | level | m | u | weight (bits) | |", "|---|---|---:|---:|---:|---|"]
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            if not m or not u:
                continue
            weight = math.log2(m / u)
            bar = ("+" if weight > 0 else "-") * min(_BAR, round(abs(weight)))
            tf = " (x the value's frequency)" if level.get("tf_adjustment_column") else ""
            rows.append(
                f"| {comparison['output_column_name']} | {level.get('label_for_charts', '')}{tf} | {m:.4g} | {u:.3g} "
                f"| {weight:+.1f} | `{bar}` |"
            )
    return rows


def histogram(probabilities: list[float], lower: float | None, upper: float | None) -> list[str]:
    """Counts of the best candidates' probabilities by match weight (2-bit bins), thresholds marked."""
    if not probabilities:
        return ["(no list to score)"]
    bins = Counter(_bin(p) for p in probabilities)
    top = max(bins.values())
    marks = {_bin(value): name for name, value in (("lower", lower), ("upper", upper)) if value is not None}
    rows = ["| match weight | probability from | people | | threshold |", "|---:|---:|---:|---|---|"]
    for edge in sorted(bins):
        bar = "#" * max(1, round(bins[edge] / top * _BAR))
        p_from = 1 / (1 + 2 ** (-edge))
        rows.append(f"| {edge:+d} | {p_from:.4f} | {bins[edge]} | `{bar}` | {marks.get(edge, '')} |")
    return rows


def _bin(probability: float) -> int:
    p = min(max(probability, 1e-12), 1 - 1e-12)
    return int(math.floor(math.log2(p / (1 - p)) / 2) * 2)


def confusion_table(table: dict[str, dict[str, int]]) -> list[str]:
    """The labelled confusion table: labels as rows, decisions as columns."""
    rows = ["| labelled as | " + " | ".join(CONFUSION_COLUMNS) + " |", "|---|" + "---:|" * len(CONFUSION_COLUMNS)]
    for label, counts in table.items():
        rows.append(f"| {label} | " + " | ".join(str(counts.get(c, 0)) for c in CONFUSION_COLUMNS) + " |")
    return rows
