"""``preflight.verify`` as an aggregate run calls it: data elements, category option combos, the data
set's data write sharing, org units in the user's capture scope, the F_DATAVALUE_ADD authority;
against the DHIS2 stand-in, reading metadata only."""

from __future__ import annotations

import pytest
import requests

from cht_bridge.destinations.dhis2.preflight import Needs, verify
from cht_bridge.errors import AuthError, PreflightError
from standins.dhis2 import Dhis2, Metadata

pytestmark = pytest.mark.integration

CREDENTIALS = {"username": "bridge", "password": "district"}
ROOT, OU_A, OU_FAR = "ImspTQPwCqd", "DiszpKrYNg8", "FarAwayOu01"
DS, DE, COC = "CHTcommMon1", "CHTpregReg1", "bRowv6yZOF2"


def server(*, authorities=("F_DATAVALUE_ADD",), data_write=True) -> Dhis2:
    md = Metadata(
        {
            "organisationUnits": [{"id": ROOT, "name": "Kenya"}, {"id": OU_A, "code": "OU_A", "parent": {"id": ROOT}},
                                  {"id": OU_FAR, "name": "another country"}],
            "dataElements": [{"id": DE, "code": "PREG"}],
            "categoryOptionCombos": [{"id": COC, "code": "FEMALE"}],
            "dataSets": [{"id": DS, "code": "MONTHLY", "dataSetElements": [{"dataElement": {"id": DE}}],
                          "access": {"read": True, "write": False, "data": {"read": True, "write": data_write}}}],
        },
        user={"id": "xE7jOejl9FI", "username": "bridge", "authorities": list(authorities), "organisationUnits": [{"id": ROOT}]},
    )  # fmt: skip
    return Dhis2(md, CREDENTIALS).start()


def check(dhis2: Dhis2, needs: Needs, auth=("bridge", "district")) -> None:
    with requests.Session() as session:
        session.auth = auth
        verify(session, f"{dhis2.url}/api", needs, conn_id="dhis2_test", timeout=10)


AGGREGATE = Needs(
    data_elements={DE: "data_values[0]", "MissingDE01": "data_values[1]"},
    category_option_combos={COC: "data_values[0]", "MissingCOC1": "data_values[2]"},
    org_units={OU_A: "table line 2", OU_FAR: "table line 3", "MissingOU01": "table line 4"},
    data_set=DS,
    authority="F_DATAVALUE_ADD",
)


def test_an_aggregate_pipelines_needs_pass_when_everything_is_there():
    dhis2 = server()
    try:
        check(dhis2, Needs(data_elements={DE: "x"}, category_option_combos={COC: "x"}, org_units={OU_A: "x"}, data_set=DS,
                           authority="F_DATAVALUE_ADD"))  # fmt: skip
        check(dhis2, Needs(id_scheme="CODE", data_elements={"PREG": "x"}, category_option_combos={"FEMALE": "x"},
                           org_units={"OU_A": "x"}, data_set="MONTHLY"))  # fmt: skip
        assert dhis2.stats()["data_requests"] == 0
    finally:
        dhis2.stop()


def test_every_missing_or_unwritable_item_is_named_in_one_error():
    dhis2 = server(authorities=("F_DATAVALUE_DELETE",), data_write=False)
    try:
        with pytest.raises(PreflightError) as refused:
            check(dhis2, AGGREGATE)
        message = str(refused.value)
        assert "failed its pre-flight check: 6 problem(s), nothing was sent: " in message
        for part in (
            "user 'bridge' lacks the authority F_DATAVALUE_ADD",
            "data element `MissingDE01` (data_values[1]): not found on the server, or not readable by the user",
            "category option combo `MissingCOC1` (data_values[2]): not found",
            "org unit `MissingOU01` (table line 4): not found",
            f"org unit `{OU_FAR}` (table line 3): outside user 'bridge''s data capture org units",
            f"data set `{DS}`: user 'bridge' has no data write access (its sharing)",
        ):
            assert part in message, (part, message)
        assert dhis2.stats()["data_requests"] == 0
    finally:
        dhis2.stop()


def test_wrong_credentials_stop_the_preflight_at_once():
    dhis2 = server()
    try:
        with pytest.raises(AuthError):
            check(dhis2, AGGREGATE, auth=("bridge", "wrong"))
        assert dhis2.stats()["unauthorized"] == 1
    finally:
        dhis2.stop()
