"""One reading of a yes/no flag for the forward pipelines (FHIR ``birth_date_estimated``, a
boolean observation) and the reverse ones (an estimated date of birth): CHT's ``approx`` means the
same going out and coming back."""

from __future__ import annotations

import pytest

from cht_bridge.flags import flag


@pytest.mark.parametrize(
    "value", [True, "true", " TRUE ", "yes", "1", 1, 1.0, "1.0", "approx", " Approx ", "estimated"]
)
def test_yes(value: object) -> None:
    assert flag(value) is True and flag(value, strict=True) is True


@pytest.mark.parametrize("value", [False, "false", "No", "0", 0, 0.0, "0.0", ""])
def test_no(value: object) -> None:
    assert flag(value) is False and flag(value, strict=True) is False


@pytest.mark.parametrize("value", ["maybe", "2", 2, "t", "y", "1.5", float("nan"), ["approx"], {"a": 1}])
def test_unknown_is_no_leniently_and_none_strictly(value: object) -> None:
    assert flag(value) is False
    assert flag(value, strict=True) is None


def test_none_is_no_leniently_and_unknown_strictly() -> None:
    assert flag(None) is False and flag(None, strict=True) is None


def test_the_fhir_builder_and_the_matcher_read_the_same_flag() -> None:
    from cht_bridge.fhir import build
    from cht_bridge.matching import csv_io, records

    assert build.flag is csv_io.flag is records.flag is flag
