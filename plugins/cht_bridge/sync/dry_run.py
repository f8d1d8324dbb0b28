"""Dry runs: what a run would send, written to a file instead of the destination.

A person switching a pipeline on (or fixing a mapping) wants to see the payloads first. The file
holds the count and the first payloads, because payloads carry patient data that must not reach
logs or XCom. It goes under the artifacts location (``cht_bridge.storage.artifacts_root``: the Airflow
home on the local disk with owner-only permissions by default, or an object store / shared volume
every worker and person can reach when the tasks run on several machines).
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cht_bridge.destinations.base import Delivery
from cht_bridge.state import Outcome

MAX_FAILURES = 100  # reasons kept in the file; the count covers them all


class DryRun:
    """Collects what would be sent; ``write`` saves it as one JSON file."""

    def __init__(self, path: Any, samples: int = 20) -> None:
        self.path = path if hasattr(path, "protocol") else Path(path)  # an ObjectStoragePath stays one
        self.samples = samples
        self.would_send = 0
        self.payloads: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.failure_count = 0

    @classmethod
    def under(cls, folder: Any, pipeline: str, run_id: str, samples: int = 20) -> DryRun:
        """The artifact of one Airflow run: ``<folder>/dry_runs/<pipeline>/<run_id>.json``.

        ``folder`` is a local path or an ObjectStoragePath (S3, GCS, a shared volume).
        """
        safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", run_id)
        base = folder if hasattr(folder, "protocol") else Path(folder)
        return cls(base / "dry_runs" / pipeline / f"{safe}.json", samples)

    def add(self, deliveries: list[Delivery], outcomes: list[Outcome]) -> None:
        self.would_send += len(deliveries)
        for d in deliveries[: max(0, self.samples - len(self.payloads))]:
            item: dict[str, Any] = {"doc_id": d.doc_id, "payload": None if d.body is None else json.loads(d.body)}
            if d.method:
                item.update(method=d.method, path=d.path)
            self.payloads.append(item)
        failed = [o for o in outcomes if not o.delivered]
        self.failure_count += len(failed)
        room = max(0, MAX_FAILURES - len(self.failures))
        self.failures += [{"doc_id": o.doc_id, "error": o.error} for o in failed[:room]]

    def write(self, pipeline: str, selection: dict[str, Any], summary: dict[str, Any]) -> Any:
        """Save the artifact (mode 0600 on a local disk) and return its path."""
        from cht_bridge.storage import is_local, local_path

        artifact = {
            "pipeline": pipeline,
            "created_at": datetime.now(UTC).isoformat(),
            "selection": selection,
            "would_send": self.would_send,
            "would_fail": self.failure_count,
            "summary": summary,
            "payloads": self.payloads,
            "failures": self.failures,
        }
        text = json.dumps(artifact, indent=2, ensure_ascii=False)
        if not is_local(self.path):
            # An object store writes a whole object at close: no reader sees half of it.
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as f:
                f.write(text)
            return self.path
        path = local_path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        return self.path
