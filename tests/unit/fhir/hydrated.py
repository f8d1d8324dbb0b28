"""Synthetic CHT documents hydrated by the bridge's own hydration (the sandbox's, as a run does),
without a CHT: every contact is known to the sandbox's cache, and shortcodes resolve as the
``contacts_by_reference`` view would answer."""

from __future__ import annotations

import json

from cht_bridge.v8 import Sandbox
from standins.generate import generate

CONTACT_TYPES = {"person", "clinic", "health_center", "district_hospital", "contact"}


def hydrated_reports(n_docs: int = 400, seed: int = 11, form: str | None = None) -> list[dict]:
    """The generator's reports (of ``form``), hydrated: ``contact``, ``patient`` and their lineages filled in."""
    docs = list(generate(n_docs, seed=seed))
    contacts = [d for d in docs if d.get("type") in CONTACT_TYPES]
    reports = [d for d in docs if d.get("type") == "data_record" and d.get("form") and form in (None, d["form"])]
    sandbox = Sandbox()
    try:
        sandbox.learn(json.dumps(contacts))
        refs = sandbox.load_docs(json.dumps(reports))
        codes = {c.get("patient_id") or c.get("place_id"): c["_id"] for c in contacts}
        rows = [{"id": codes[ref], "key": ["shortcode", ref]} for ref in refs if ref in codes]
        assert sandbox.resolve(json.dumps({"rows": rows}), refs) == ""
        assert sandbox.missing() == [], "every contact is in the cache"
        return sandbox.hydrated()
    finally:
        sandbox.close()
