"""A data value's ledger key holds any code or name (id_scheme CODE/NAME): '/' too, read back exactly."""

from __future__ import annotations

from cht_bridge.aggregate import ledger
from cht_bridge.aggregate.post import DataValue, from_key, period_prefix, value_key
from cht_bridge.state import Outcome, StateStore


def test_a_key_with_slashes_and_quotes_in_its_parts_reads_back_as_the_same_five_parts():
    value = DataValue("202405", 'HC/North "A"', "HIV/AIDS tests", "<5y/female", None, "3")
    back = from_key(value.key)
    assert (back.period, back.org_unit, back.data_element, back.category_option_combo, back.attribute_option_combo) == (
        "202405", "HC/North \"A\"", "HIV/AIDS tests", "<5y/female", None,
    )  # fmt: skip
    assert value.key == value_key("202405", 'HC/North "A"', "HIV/AIDS tests", "<5y/female", "")
    assert value.key.startswith(period_prefix("202405")) and not value.key.startswith(period_prefix("2024"))


def test_the_ledger_finds_a_periods_delivered_values_whatever_their_codes_hold(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    try:
        mine = value_key("202405", "OU/1", "HIV/AIDS tests", None, None)
        other_period = value_key("2024051", "OU/1", "HIV/AIDS tests", None, None)  # a daily-looking neighbour
        store.record("p", [Outcome(k, None, True, payload_hash="h") for k in (mine, other_period)])
        assert list(ledger.delivered_values(store, "p", ["202405"])) == [mine]
        assert from_key(mine).org_unit == "OU/1"
    finally:
        store.close()
