"""The destination contract's pieces every kind shares: the three answers, the delete request, the registry."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from cht_bridge.destinations import BaseDestination, RestDestination, Result, destination_class, register
from cht_bridge.destinations.registry import kinds, unregister


def test_a_result_is_delivered_retryable_or_refused():
    assert Result("a", True, 201, "x-1").outcome == "delivered"
    assert Result("a", False, 503, error="busy", retryable=True).outcome == "retryable"
    assert Result("a", False, 422, error="bad date").outcome == "refused"


def test_the_default_delete_request_fills_the_pipeline_template_with_ids_made_safe_for_a_path():
    kind = BaseDestination()
    kind.path = "/api/anc/"
    rules = SimpleNamespace(method="POST", path=None, body={"void": True, "ref": "{destination_id}"})
    d = kind.deletion("r/1?x", "emr 7", "k1", rules)
    assert (d.doc_id, d.key, d.method, d.path) == ("r/1?x", "k1", "POST", "/api/anc/r%2F1%3Fx")
    assert json.loads(d.body) == {"void": True, "ref": "emr 7"}  # the body keeps the id as it is
    rules = SimpleNamespace(method="DELETE", path="/records/{destination_id}", body=None)
    d = kind.deletion("r1", None, "k2", rules)  # never given an id by the destination: the CHT id
    assert (d.path, d.body) == ("/records/r1", None)
    assert kind.check() is None and kind.retries == 0  # no pre-flight, no repeats by default


def test_the_registry_maps_types_to_kinds_and_names_them_when_one_is_unknown():
    from cht_bridge.destinations.fhir import FhirDestination

    assert destination_class("rest") is RestDestination and destination_class("fhir") is FhirDestination
    built_in = kinds()
    assert {"dhis2", "fhir", "openmrs", "rapidpro", "rest"} <= set(built_in) and built_in == sorted(built_in)
    register("custom", BaseDestination)
    try:
        assert destination_class("custom") is BaseDestination and kinds() == sorted([*built_in, "custom"])
    finally:
        unregister("custom")
    with pytest.raises(KeyError, match=rf"no destination kind 'nothing' \(available: {', '.join(built_in)}\)"):
        destination_class("nothing")
