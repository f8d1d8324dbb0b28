"""Destinations: where payloads go. Each kind keeps the contract in ``base.py``.

Adding a kind (``fhir``, ``openmrs``, ``dhis2``, ``rapidpro``) is one module and one line:

1. ``destinations/<kind>.py`` defines a class that subclasses ``BaseDestination`` (or keeps the
   ``Destination`` protocol) with ``configured(session, base_url, destination, delivery)``,
   ``send(deliveries) -> [Result]`` (one per delivery, in order: delivered with the destination's
   id, retryable, or refused with its reason; a bulk answer's per-record entries read into them),
   and, when it can prove a run would fail, ``check()`` (the pre-flight, run once per run before
   anything is sent; raise ``PreflightError``). The module sets ``DESTINATION = <the class>``.
2. ``registry.KINDS`` maps the ``destination.type`` value to that module.

The sync run, dry run, replay and benchmark only call the contract, so none of them changes.
"""

from cht_bridge.destinations.base import BaseDestination, Delivery, Destination, Result
from cht_bridge.destinations.registry import destination_class, open_destination, register
from cht_bridge.destinations.rest import RestDestination
from cht_bridge.destinations.retry import CircuitBreaker, RetryPolicy, classify

__all__ = [
    "BaseDestination",
    "CircuitBreaker",
    "Delivery",
    "Destination",
    "RestDestination",
    "Result",
    "RetryPolicy",
    "classify",
    "destination_class",
    "open_destination",
    "register",
]
