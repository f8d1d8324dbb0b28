"""The training task of ``cht_bridge_matching_train``: one matching model per state store.

It reads the reverse pipeline files, keeps those with ``match.model: learned``, groups them by
state store, and for each group trains on the CHT persons of the pipelines' areas, the list rows
the ledger holds and the reviewers' labelled pairs (``reverse/learning.py``). The model, its
metrics and its Markdown report go to the state store (the newest ``keep`` models stay), and the
report also to ``models/`` under the artifacts location (``$CHT_BRIDGE_ARTIFACTS``, else
``$AIRFLOW_HOME/cht_bridge``), or to ``$CHT_BRIDGE_MODELS_FOLDER`` (a path or URL). The learned model
itself is read from the state store, so every worker finds the newest passing one. The log and
XCom carry counts, thresholds and checks only.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

MODELS_FOLDER_ENV = "CHT_BRIDGE_MODELS_FOLDER"


class MatchingTrainOperator(BaseOperator):
    """Train the matching model of every state store whose reverse pipelines use ``learned``.

    :param reverse_folder: where the reverse pipeline files are.
    :param keep: how many models each state store keeps.
    :param seed: seed of the random pairs (the same data and seed give the same model).
    """

    ui_color = "#e8f4e8"

    def __init__(self, *, reverse_folder: str, keep: int = 12, seed: int = 42, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reverse_folder = reverse_folder
        self.keep = keep
        self.seed = seed

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from cht_bridge.errors import ConfigError
        from cht_bridge.operators.resources import failing_plainly
        from cht_bridge.operators.reverse import cht_api, ledger_for
        from cht_bridge.reverse.learning import LEARNED, train_for
        from cht_bridge.reverse.loader import load_reverse_pipeline

        groups: dict[str | None, list[Any]] = defaultdict(list)
        for path in sorted(Path(self.reverse_folder).glob("*.y*ml")):
            try:
                pipeline = load_reverse_pipeline(path)
            except ConfigError:
                self.log.warning("%s fails its checks; not trained for", path.name)
                continue
            if pipeline.match.model == LEARNED:
                groups[pipeline.state_conn_id].append(pipeline)
        if not groups:
            self.log.info("no reverse pipeline sets match.model: learned; nothing to train")
            return []
        apis: dict[str, Any] = {}

        def persons_under(pipeline: Any, place_id: str) -> list[dict[str, Any]]:
            if pipeline.name not in apis:
                apis[pipeline.name] = cht_api(pipeline)
            return apis[pipeline.name].persons_under(place_id)

        results = []
        with failing_plainly():
            for pipelines in groups.values():
                with ledger_for(pipelines[0]) as ledger:
                    summary = train_for(pipelines, ledger, persons_under, seed=self.seed, keep=self.keep)
                    _write_report(ledger, summary["model_id"])
                results.append({"pipelines": sorted(p.name for p in pipelines), **summary})
                self.log.info("model #%s: %s", summary["model_id"], results[-1])
        return results


def _write_report(ledger: Any, model_id: int) -> None:
    """The newest report where people read artifacts (local by default), for those without database access."""
    from cht_bridge.hooks import bridge_home
    from cht_bridge.state.matching import MatchingStore
    from cht_bridge.storage import artifacts_folder, is_local, local_path

    folder = artifacts_folder(bridge_home(), "models", os.environ.get(MODELS_FOLDER_ENV))
    if is_local(folder):
        local_path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
    stored = next((m for m in MatchingStore(ledger.store).models() if m.id == model_id), None)
    if stored is not None:
        (folder / f"model-{model_id}.md").write_text(stored.report, encoding="utf-8")
