"""Show what a mapping would send, for people writing one against sample documents.

No Airflow and no CHT are needed: the input is already-hydrated documents, one JSON object a
line, and the pipelines come from a pipeline file or from every ``outbound`` entry of a CHT
``app_settings.json``. The DAGs map with the same ``Mapper``, so what this prints is what a run
would send.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from cht_bridge.config import load_pipeline, parse_pipeline, pipelines_from_app_settings
from cht_bridge.config.model import Pipeline
from cht_bridge.errors import ConfigError
from cht_bridge.mapping.engine import Mapper
from cht_bridge.v8 import Sandbox

CHUNK = 1000
#: Destination kinds whose payloads are FHIR resources, validated before they are sent.
FHIR_KINDS = ("fhir", "openmrs")


def load_pipelines(path: str | Path) -> list[Pipeline]:
    """Pipelines from a pipeline YAML file, or one per ``outbound`` push of an app_settings JSON."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return [load_pipeline(path)]
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), [f"line {exc.lineno}: not valid JSON ({exc.msg})"]) from exc
    pushes = pipelines_from_app_settings(settings, source=str(path))
    return [parse_pipeline(p.pipeline, file=f"{path}: outbound.{p.push}") for p in pushes]


def read_jsonl(lines: Iterable[str], source: str) -> Iterator[dict]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(source, [f"line {number}: not a JSON object ({exc.msg})"]) from exc
            if not isinstance(doc, dict):
                raise ConfigError(source, [f"line {number}: not a JSON object"])
            yield doc


def preview(pipelines: list[Pipeline], docs: Iterable[dict]) -> Iterator[dict[str, Any]]:
    """One result per document and pipeline, in document order."""
    sandbox = Sandbox()
    try:
        mappers = [Mapper.for_pipeline(p, sandbox=sandbox) for p in pipelines]
        docs = iter(docs)
        while chunk := list(islice(docs, CHUNK)):
            results = [mapper.map(chunk) for mapper in mappers]
            for i, doc in enumerate(chunk):
                for pipeline, mapped in zip(pipelines, results, strict=True):
                    m = mapped[i]
                    line: dict[str, Any] = {"id": doc.get("_id"), "pipeline": pipeline.name, "relevant": m.relevant}
                    if m.error is not None:
                        line["error"] = m.error
                    elif m.relevant:
                        line["payload"] = m.payload
                        if is_fhir(pipeline):
                            line.update(_verdict(pipeline, m.payload))
                    yield line
    finally:
        sandbox.close()


def is_fhir(pipeline: Pipeline) -> bool:
    """Whether the pipeline's payloads are FHIR resources (templates, or a FHIR destination kind)."""
    return pipeline.fhir is not None or getattr(pipeline.destination, "type", None) in FHIR_KINDS


def _verdict(pipeline: Pipeline, payload: Any) -> dict[str, Any]:
    from cht_bridge.fhir.validate import as_resources, problems  # R4 models: only for FHIR pipelines

    system = pipeline.fhir.identifier_system if pipeline.fhir is not None else None
    reasons = problems(as_resources(payload), identifier_system=system)
    return {"refused": reasons} if reasons else {"valid": True}


def run_preview(config: str, docs_path: str, out: TextIO) -> int:
    pipelines = load_pipelines(config)
    with open(docs_path, encoding="utf-8") as handle:
        for line in preview(pipelines, read_jsonl(handle, docs_path)):
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0
