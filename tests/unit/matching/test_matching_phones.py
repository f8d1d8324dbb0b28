"""Phone normalisation follows matching.md §6.3: every way a Kenyan mobile is written → E.164."""

from __future__ import annotations

import pytest

from cht_bridge.matching import normalise_phone

KENYAN = "+254712345678"


@pytest.mark.parametrize(
    "raw",
    [
        "0712345678",
        "712345678",
        "254712345678",
        "+254712345678",
        "00254712345678",
        "0712 345 678",
        "254-712-345-678",
        "712345678.0",
        "7.12345678E8",
        712345678.0,
        712345678,
    ],
)
def test_kenyan_formats_normalise_to_e164(raw: object) -> None:
    assert normalise_phone(raw) == KENYAN


def test_new_kenyan_01_ranges_validate() -> None:
    assert normalise_phone("0110123456") == "+254110123456"


@pytest.mark.parametrize("raw", ["0700000000", "0711111111", "0123456789", "+254722222222"])
def test_placeholders_are_dropped(raw: str) -> None:
    assert normalise_phone(raw) is None


@pytest.mark.parametrize("raw", [None, "", "   ", "abc", "12345", float("nan"), "07123"])
def test_empty_and_invalid_are_none(raw: object) -> None:
    assert normalise_phone(raw) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0712345678 0722123456", KENYAN),
        ("0712345678/0722123456", KENYAN),
        ("0712345678 or 0722123456", KENYAN),
        ("0700000000 0722123456", "+254722123456"),  # the placeholder is skipped
    ],
)
def test_two_numbers_in_one_field_take_the_first_valid(raw: str, expected: str) -> None:
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize("raw", ["0772123456", "772123456", "256772123456", "00256772123456"])
def test_region_is_configurable(raw: str) -> None:
    assert normalise_phone(raw, region="UG") == "+256772123456"


def test_region_decides_what_a_national_number_means() -> None:
    assert normalise_phone("0712345678", region="UG") != KENYAN
