"""``python -m cht_bridge.mapping preview`` prints one JSON line per document and push."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run_preview(tmp_path, config, docs):
    docs_path = tmp_path / "docs.jsonl"
    docs_path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    proc = subprocess.run(
        [sys.executable, "-m", "cht_bridge.mapping", "preview", str(config), str(docs_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin"},
    )
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


def test_preview_a_pipeline_file(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(
        "name: preg\nstart_date: 2026-01-01\ncht: {conn_id: c}\ndestination: {conn_id: d, path: /x}\n"
        "relevant_to: \"doc.form === 'pregnancy'\"\nmapping: {id: doc._id, lmp: doc.fields.lmp}\n"
    )
    docs = [
        {"_id": "a", "form": "pregnancy", "fields": {"lmp": "2026-01-01"}},
        {"_id": "b", "form": "other"},
        {"_id": "c", "form": "pregnancy", "fields": {}},
    ]
    proc, lines = run_preview(tmp_path, config, docs)
    assert proc.returncode == 0, proc.stderr
    assert lines == [
        {"id": "a", "pipeline": "preg", "relevant": True, "payload": {"id": "a", "lmp": "2026-01-01"}},
        {"id": "b", "pipeline": "preg", "relevant": False},
        {
            "id": "c",
            "pipeline": "preg",
            "relevant": True,
            "error": "Mapping error for 'preg/lmp' on source document 'c': cannot find 'doc.fields.lmp' on source document",
        },
    ]


def test_preview_every_push_of_an_app_settings(tmp_path):
    proc, lines = run_preview(tmp_path, ROOT / "standins" / "app_settings.json", [{"_id": "x", "type": "task"}])
    assert proc.returncode == 0, proc.stderr
    assert len(lines) == 8 and all(line["id"] == "x" and line["relevant"] is False for line in lines)


def test_a_bad_config_is_a_clear_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("name: x\n")
    proc, _ = run_preview(tmp_path, config, [])
    assert proc.returncode == 2
    assert f"error: {config}: invalid pipeline configuration" in proc.stderr
