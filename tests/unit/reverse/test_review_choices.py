"""Review choices: one spelling, formatted and parsed in one module; what a question offers, as data."""

from __future__ import annotations

import pytest

from cht_bridge.reverse.choices import (
    LATER,
    NEW,
    OTHER_CHOICES,
    SKIP,
    Choice,
    Kind,
    Offer,
    offer_block,
    option_labels,
    read_offer,
)


def test_the_buttons_keep_their_texts() -> None:
    assert [c.label for c in OTHER_CHOICES] == ["Create a new person", "Skip this row", "Decide later"]
    assert Choice.link(0).label == "Link to candidate 1" and Choice.link(9).label == "Link to candidate 10"


@pytest.mark.parametrize("choice", [NEW, SKIP, LATER, *(Choice.link(i) for i in range(10))], ids=str)
def test_every_choice_parses_back_to_itself(choice: Choice) -> None:
    assert Choice.parse(choice.label) == choice


def test_a_link_names_its_candidate_from_zero() -> None:
    assert Choice.parse("Link to candidate 2") == Choice(Kind.LINK, 1)


@pytest.mark.parametrize(
    "text",
    ["", "Bogus", "Link to candidate 0", "Link to candidate", "Link to candidate -1", "link to candidate 1",
     "Link to candidate 2 (p=0.9)", "Link to candidate 01", " Decide later", "decide later"],
)  # fmt: skip
def test_a_text_no_question_offers_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a review choice"):
        Choice.parse(text)


def test_a_choice_is_a_link_with_a_candidate_or_another_kind_without() -> None:
    for bad in (lambda: Choice(Kind.LINK), lambda: Choice(Kind.NEW, 0), lambda: Choice.link(-1)):
        with pytest.raises(ValueError):
            bad()


def test_the_options_are_the_links_offered_then_the_other_choices() -> None:
    assert option_labels([0, 2]) == [
        "Link to candidate 1",
        "Link to candidate 3",
        "Create a new person",
        "Skip this row",
        "Decide later",
    ]
    assert option_labels([]) == ["Create a new person", "Skip this row", "Decide later"]


def test_an_offer_travels_in_the_body_and_reads_back() -> None:
    offer = Offer("c-3", {0: "p-mary-1", 2: "p-mary-3"})
    body = "**trace**: who is `c-3`?\n\n| a | b |\n|---|---|\n\n" + offer_block(offer)
    assert read_offer(body) == offer
    assert offer.link_to("p-mary-3") == Choice.link(2) and offer.link_to("p-nobody") is None


def test_ids_that_look_like_markup_cannot_end_the_comment() -> None:
    offer = Offer("row --> <b>x</b>", {0: "id-->", 1: "}-->{"})
    block = offer_block(offer)
    assert block.count("-->") == 1 and block.endswith(" -->") and "<b>" not in block
    assert read_offer("text\n\n" + block + "\n\nmore") == offer


def test_a_body_without_an_offer_is_refused() -> None:
    with pytest.raises(ValueError, match="no cht-bridge-review block"):
        read_offer("| CHT id | p-1 |")
