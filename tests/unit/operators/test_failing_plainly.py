"""Which CHT Bridge errors Airflow retries, and which fail the task for a person to act on."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cht_bridge.errors import AuthError, CircuitOpenError
from cht_bridge.mapping.engine import ScriptStalled
from cht_bridge.operators.resources import failing_plainly


@pytest.mark.parametrize(
    "error",
    [CircuitOpenError("dest", 5, "HTTP 503", []), ScriptStalled("pipeline 'p': 10 of 12 documents stalled")],
    ids=["breaker", "stalled"],
)
def test_an_outage_or_a_starved_worker_is_retried_by_airflow_without_a_traceback(error):
    with pytest.raises(AirflowException) as caught, failing_plainly():
        raise error
    assert type(caught.value) is AirflowException and caught.value.__cause__ is None
    assert str(caught.value) == str(error)


def test_refused_credentials_fail_without_retries():
    with pytest.raises(AirflowFailException), failing_plainly():
        raise AuthError("cht", 401, "CHT")


def test_a_bad_setting_fails_without_retries_naming_its_variable(monkeypatch):
    from cht_bridge.env_settings import positive_whole_number
    from cht_bridge.pools import pool_slots

    monkeypatch.setenv("CHT_BRIDGE_SPLIT_MONTHS", "three")
    with (
        pytest.raises(AirflowFailException, match="CHT_BRIDGE_SPLIT_MONTHS: 'three' is not a positive"),
        failing_plainly(),
    ):
        positive_whole_number("CHT_BRIDGE_SPLIT_MONTHS")  # was silently ignored (one month)
    with pytest.raises(AirflowFailException, match="CHT_BRIDGE_POOL_SLOTS: '0'"), failing_plainly():
        pool_slots("emr", {"CHT_BRIDGE_POOL_SLOTS": "0"})  # was a ValueError: retried, with a traceback
    monkeypatch.setenv("CHT_BRIDGE_SPLIT_DAYS", "0")
    with pytest.raises(AirflowFailException, match="CHT_BRIDGE_SPLIT_DAYS"), failing_plainly():
        positive_whole_number("CHT_BRIDGE_SPLIT_DAYS")
    monkeypatch.setenv("CHT_BRIDGE_SPLIT_DAYS", " 7 ")
    monkeypatch.delenv("CHT_BRIDGE_SPLIT_MONTHS")
    assert (
        positive_whole_number("CHT_BRIDGE_SPLIT_DAYS") == 7 and positive_whole_number("CHT_BRIDGE_SPLIT_MONTHS") is None
    )
