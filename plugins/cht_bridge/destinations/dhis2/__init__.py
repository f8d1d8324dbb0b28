"""DHIS2 (``destination.type: dhis2``): tracker imports here, aggregate data value sets in ``cht_bridge.aggregate``.

``destination.dhis2.kind`` picks the import (``config/kinds/dhis2.py``). ``kind: tracker`` is a
per-document destination like the others: each mapped report becomes an event (and, in a tracker
program, a tracked entity and an enrollment), sent by ``tracker.TrackerDestination`` with UIDs
derived from CHT ids (``uids``) after the metadata pre-flight (``preflight``). ``kind: aggregate``
does not send one payload per report: its run computes whole periods and posts them
(``cht_bridge.aggregate``), calling the same ``preflight.verify``, so the per-document sync
refuses to open it.
"""

from __future__ import annotations

from typing import Any


class Dhis2Destination:
    """Opens the destination of a ``dhis2`` pipeline's kind (``registry.KINDS['dhis2']``)."""

    @classmethod
    def configured(cls, session: Any, base_url: str, destination: Any, delivery: Any = None) -> Any:
        kind = getattr(destination.settings, "kind", None)
        if kind == "tracker":
            from cht_bridge.destinations.dhis2.tracker import TrackerDestination

            return TrackerDestination.configured(session, base_url, destination, delivery)
        from cht_bridge.errors import ConfigError

        raise ConfigError(
            f"destination connection '{destination.conn_id}'",
            [f"destination.dhis2.kind: '{kind}' is not sent document by document: an aggregate pipeline runs "
             "as its own task (cht_bridge.aggregate), which posts whole periods as dataValueSets"],
        )  # fmt: skip


DESTINATION = Dhis2Destination  # what ``destination.type: dhis2`` opens (see ``registry``)
