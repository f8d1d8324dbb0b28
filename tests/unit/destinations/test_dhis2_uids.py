"""Deterministic DHIS2 UIDs from CHT ids: DHIS2's format, stable across runs, distinct per object."""

from __future__ import annotations

import uuid

from cht_bridge.destinations.dhis2 import uids


def test_uids_have_dhis2s_format_and_are_the_same_every_time():
    ids = [str(uuid.UUID(int=i)) for i in range(20000)]
    made = [uids.event_uid("ChtAssess01", i) for i in ids]
    assert all(uids.is_uid(u) for u in made)
    assert len(set(made)) == len(made)  # 20,000 reports, no collision
    assert made == [uids.event_uid("ChtAssess01", i) for i in ids]  # a re-run names the same events
    # Pinned: a change of the derivation would make every event sent before it a duplicate.
    assert uids.event_uid("ChtAssess01", "abc") == "MwuiTT1GJtT"


def test_each_object_kind_and_program_has_its_own_uid():
    person = "0f49d01a-15a1-4a52-b710-900bd3c1fe3f"
    made = {uids.tracked_entity_uid(person), uids.enrollment_uid("ChtPregnan1", person),
            uids.enrollment_uid("ChtAssess01", person), uids.event_uid("ChtPregnan1", person),
            uids.event_uid("ChtAssess01", person)}  # fmt: skip
    assert len(made) == 5


def test_the_uid_rule():
    assert uids.is_uid("Kj6vYde4LHh")
    for bad in ("1j6vYde4LHh", "Kj6vYde4LH", "Kj6vYde4LHhh", "Kj6vYde4LH_", "", None):
        assert not uids.is_uid(bad)
