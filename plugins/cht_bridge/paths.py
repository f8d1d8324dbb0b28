"""Where a path written in a pipeline file points: the repository root for a relative one.

A top-level module of its own (no sub-package imports it through another), so the reverse
pipelines' place table and DHIS2's org unit table resolve paths the same way without one of
them importing the other's package.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def from_repo(path: str | Path) -> Path:
    """A path from a pipeline file: absolute as given, relative from the repository root."""
    path = Path(path)
    return path if path.is_absolute() else REPO / path
