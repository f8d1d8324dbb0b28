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
