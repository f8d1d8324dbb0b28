"""Destinations: where payloads go. Each kind keeps the contract in ``base.py``.

Adding a kind (``fhir``, ``openmrs``, ``dhis2``, ``rapidpro``) is one module and one line:

1. ``destinations/<kind>.py`` defines a class that subclasses ``BaseDestination`` (or keeps the
   ``Destination`` protocol) with ``configured(session, base_url, destination, delivery)``,
   ``send(deliveries) -> [Result]`` (one per delivery, in order: delivered with the destination's
   id, retryable, or refused with its reason; a bulk answer's per-record entries read into them),
   and, when it can prove a run would fail, ``check()`` (the pre-flight, run once per run before
   anything is sent; raise ``PreflightError``), and ``deletion(...)`` when a deleted CHT document
   is removed differently there (DHIS2's ``importStrategy=DELETE``, a FHIR ``DELETE Type/id``).
   The module sets ``DESTINATION = <the class>``.
2. ``registry.KINDS`` maps the ``destination.type`` value to that module; the pipeline loader
   then accepts that ``type``. A kind that needs keys of its own reads them from
   ``destination.<kind>:``, checked at parse time by a light module named in
   ``config/kinds.SETTINGS`` (see that package); the destination finds them in
   ``destination.settings``.

The sync run, dry run, replay and benchmark only call the contract, so none of them changes.
Airflow's hook (``hooks/destination.py``) prepares the session with the Connection's auth and opens
the kind through ``registry.open_destination``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Where each public name lives. They load on first use, so the pipeline loader can read
# ``registry.kinds()`` while a DAG file is parsed without importing requests and the HTTP layer.
_HOMES = {
    "BaseDestination": "base",
    "Delivery": "base",
    "Destination": "base",
    "Result": "base",
    "destination_class": "registry",
    "open_destination": "registry",
    "register": "registry",
    "RestDestination": "rest",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
