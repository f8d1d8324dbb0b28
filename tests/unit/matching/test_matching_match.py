"""``match()`` end to end on small lists, with real Splink and DuckDB (no mocks)."""

from __future__ import annotations

import pytest

from cht_bridge.matching import Decision, MatchConfig, Person, match
from cht_bridge.matching.deterministic import DeterministicIndex

EXISTING = [
    Person("e-grace", "Grace Akinyi", "Otieno", "F", "1990-03-05", "+254712345678", "hh-1"),
    Person("e-brian", "Brian", "Otieno", "M", "1988-07-10", "+254712345678", "hh-1"),
    Person("e-peter", "Peter Kamau", "Mwangi", "M", "1975-11-20", "+254722111333", "hh-2", identifier="11111111"),
    Person("e-atieno", "Atieno", "Odhiambo", "F", "2015-06-01", None, "hh-3"),
    Person("e-mary-1", "Mary", "Wanjiku", "F", "1980-01-01", None, "hh-4"),
    Person("e-mary-2", "Mary", "Wanjiku", "F", "1980-01-01", None, "hh-5"),
    Person("e-halima", "Halima", "Hassan", "F", "1995-02-14", "+254733444555", "hh-6", identifier="12345678"),
    Person("e-john", "John", "Ochieng", "M", "1960-05-05", "+254700123456", "hh-7"),
    Person("e-susan", "Susan", "Achieng", "F", "1962-08-08", "+254700123456", "hh-7"),
    Person("e-faith", "Faith Njeri", "Kariuki", "F", "2001-09-09", "+254711222333", "hh-8"),
    Person("e-baraka", "Baraka", "Juma", "M", "1999-12-24", "+254799888777", "hh-9"),
    Person("e-amina", "Amina", "Said", "F", "1985-04-30", None, "hh-10"),
]


def decide(*incoming: Person, config: MatchConfig | None = None) -> dict[str, Decision]:
    return {d.incoming_id: d for d in match(list(incoming), EXISTING, config or MatchConfig())}


def test_exact_person_with_swapped_tokens_and_local_phone_format_links() -> None:
    result = decide(Person("i-1", "Mwangi", "Peter Kamau", "m", "20/11/1975", "0722 111 333"))["i-1"]
    assert (result.decision, result.existing_id) == ("link", "e-peter")
    assert result.reason.startswith("deterministic: phone and date of birth")


@pytest.mark.parametrize(
    ("person", "expected"),
    [
        (Person("typo", "Faith", "Kariuk", "F", "2001-09-09"), "e-faith"),
        (Person("dropped-middle", "Grace", "Otieno", "F", "1990-03-05", "712345678.0"), "e-grace"),
        (Person("swapped", "Juma", "Baraka", "M", "1999-12-24", None, "hh-9"), "e-baraka"),
    ],
)
def test_fuzzy_versions_link_to_the_right_person(person: Person, expected: str) -> None:
    result = decide(person)[person.id]
    assert (result.decision, result.existing_id) == ("link", expected)
    assert result.probability is not None and result.probability >= 0.99


def test_o_a_name_pair_of_the_other_sex_does_not_link() -> None:
    result = decide(Person("otieno", "Otieno", "Odhiambo", "M", "2015-06-01"))["otieno"]
    assert result.decision != "link"


def test_two_equally_good_candidates_go_to_review() -> None:
    result = decide(Person("mary", "Mary", "Wanjiku", "F", "1980-01-01"))["mary"]
    assert result.decision == "review"
    assert {c.existing_id for c in result.candidates[:2]} == {"e-mary-1", "e-mary-2"}
    assert result.reason.startswith("ambiguous")


def test_unknown_person_is_new() -> None:
    result = decide(Person("zawadi", "Zawadi", "Wekesa", "F", "2010-10-10", "0799000111"))["zawadi"]
    assert (result.decision, result.existing_id) == ("new", None)


def test_shared_identifier_links_deterministically() -> None:
    result = decide(Person("halima", "Halima", "Hasan", "F", None, None, identifier="12 345 678"))["halima"]
    assert (result.decision, result.existing_id, result.probability) == ("link", "e-halima", 1.0)
    assert result.reason == "deterministic: identifier"


def test_identifier_that_disagrees_with_agreeing_demographics_goes_to_review() -> None:
    person = Person("peter", "Peter Kamau", "Mwangi", "M", "1975-11-20", None, "hh-2", identifier="99999999")
    result = decide(person)["peter"]
    assert (result.decision, result.existing_id) == ("review", "e-peter")
    assert "identifier conflict" in result.reason


def test_shared_household_phone_is_not_enough_to_link() -> None:
    # A child on the parents' phone: the phone agrees with two existing people, nothing else does.
    child = Person("child", "Kevin", "Ochieng", "M", "2012-03-03", "0700123456")
    result = decide(child)["child"]
    assert result.decision != "link"
    # Nor does the deterministic pass treat a shared phone plus a date of birth as proof.
    index = DeterministicIndex(EXISTING, [p.phone for p in EXISTING], shared_phone_count=2)
    assert index.phone_is_shared("+254700123456")
    assert index.find(Person("x", "Joan", "Ochieng", "F", "1960-05-05"), "+254700123456") is None


def test_person_named_twice_in_one_list_gets_same_as() -> None:
    result = decide(
        Person("first", "Zawadi", "Wekesa", "F", "2010-10-10", "0799000111"),
        Person("other", "Baraka", "Juma", "M", "1999-12-24", None, "hh-9"),
        Person("again", "Zawadi", "Wekessa", "F", "2010-10-10", "+254799000111"),
    )
    assert result["again"].same_as == "first"
    assert result["first"].same_as is None and result["other"].same_as is None
    assert result["first"].decision == result["again"].decision == "new"


def test_reasons_never_contain_personal_data() -> None:
    people = [
        Person("a", "Grace", "Otieno", "F", "1990-03-05", "0712345678"),
        Person("b", "Mary", "Wanjiku", "F", "1980-01-01"),
        Person("c", "Zawadi", "Wekesa", "F", "2010-10-10", "0799000111"),
    ]
    for decision in match(people, EXISTING):
        text = " ".join([decision.reason, *(c.reason for c in decision.candidates)]).lower()
        for secret in ("grace", "otieno", "mary", "wanjiku", "zawadi", "1990", "1980", "0712", "712345678", "799"):
            assert secret not in text


def test_same_input_gives_same_output() -> None:
    people = [
        Person("a", "Grace", "Otieno", "F", "1990-03-05", "0712345678"),
        Person("b", "Mary", "Wanjiku", "F", "1980-01-01"),
        Person("c", "Zawadi", "Wekesa", "F", "2010-10-10"),
    ]
    assert match(people, EXISTING) == match(people, EXISTING)


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError):
        MatchConfig(upper=0.5, lower=0.9)


def test_repeated_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        match([Person("a"), Person("a")], EXISTING)


def test_empty_lists() -> None:
    assert match([], EXISTING) == []
    assert [d.decision for d in match([Person("a", "Zawadi", "Wekesa")], [])] == ["new"]
