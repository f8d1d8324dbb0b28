"""``destination.rapidpro:``: what a RapidPro (or TextIt) pipeline does, and its request budget.

``action: contact`` upserts one contact per document by its URN; ``action: flow_start`` starts a
flow for the documents' URNs or contacts, up to 100 of each per start. ``budget`` is how many
requests per hour this bridge may spend on each endpoint group of the workspace (``contacts`` =
RapidPro's ``v2.contacts`` throttle scope; ``flow_starts`` = its ``v2`` scope), shared by every
pipeline and task on the same Connection; the workspace's own limit is 3600 per group and hour
by default, and the rest of it is left to the other clients (CHT's gateway, people).

Pure Python and no I/O: DAG files parse it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ACTIONS = ("contact", "flow_start")
KEYS = {"action", "region", "budget", "restart_participants", "exclude_active", "lookup_pages"}
BUDGET_GROUPS = ("contacts", "flow_starts")
DEFAULT_BUDGET = 1800  # half of RapidPro's default 3600/hour per group: the rest is the workspace's
MAX_BUDGET = 1_000_000
DEFAULT_PATH = "/api/v2"  # the kind posts to contacts.json and flow_starts.json under it


@dataclass(frozen=True)
class RapidProSettings:
    """The checked ``destination.rapidpro`` block, read by ``destinations/rapidpro.py``."""

    action: str
    region: str = "KE"  # phones without a country code are read in this region (matching.phones)
    budget: tuple[tuple[str, int], ...] = (("contacts", DEFAULT_BUDGET), ("flow_starts", DEFAULT_BUDGET))
    restart_participants: bool = False  # RapidPro's default is true; a CHT event should not restart a flow
    exclude_active: bool = True
    lookup_pages: int = 20  # pages of GET flow_starts.json read to find a start whose answer was lost

    def per_hour(self, group: str) -> int:
        return dict(self.budget)[group]


def parse(block: dict[str, Any], add: Callable[[str, str], None]) -> RapidProSettings | None:
    """The settings, with every problem reported under its key."""
    for key in sorted(set(block) - KEYS):
        add(key, f"unknown key (allowed: {', '.join(sorted(KEYS))})")
    action = block.get("action")
    if action not in ACTIONS:
        add("action", f"required: one of {', '.join(ACTIONS)} (got {action!r})")
    region = block.get("region", "KE")
    if not isinstance(region, str) or len(region) != 2 or not region.isalpha():
        add("region", "must be a two-letter country code such as KE or UG")
        region = "KE"
    budget = dict(RapidProSettings.budget)
    given = block.get("budget", {})
    if not isinstance(given, dict):
        add("budget", f"must be a mapping of {' and '.join(BUDGET_GROUPS)} to requests per hour")
        given = {}
    for group, value in given.items():
        if group not in BUDGET_GROUPS:
            add(f"budget.{group}", f"unknown endpoint group (allowed: {', '.join(BUDGET_GROUPS)})")
        elif not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_BUDGET:
            add(f"budget.{group}", f"must be a whole number of requests per hour from 1 to {MAX_BUDGET}")
        else:
            budget[group] = value
    flags = {}
    for key, default in (("restart_participants", False), ("exclude_active", True)):
        flags[key] = block.get(key, default)
        if not isinstance(flags[key], bool):
            add(key, "must be true or false")
            flags[key] = default
    pages = block.get("lookup_pages", 20)
    if not isinstance(pages, int) or isinstance(pages, bool) or not 1 <= pages <= 1000:
        add("lookup_pages", "must be a whole number from 1 to 1000")
        pages = 20
    if action not in ACTIONS:
        return None
    return RapidProSettings(
        action=action, region=region.upper(), budget=tuple(sorted(budget.items())), lookup_pages=pages, **flags
    )
