"""What the matcher decides for each incoming person, and the policy that decides it.

Two thresholds, as in OpenCR, SantéMPI and Tuva's EMPI: at or above ``upper`` the person is
linked, below ``lower`` a new contact is created, in between a person reviews. Two close
candidates, or an identifier that contradicts agreeing demographics, also go to review: linking
the wrong person sends a health worker to the wrong home, which costs more than a review.
One exception to the thresholds lives in the matcher: a lone candidate between them links when
its date of birth and place, without the name or the (household-level) phone, already make a
strong case (``corroborated_link``, ``corroboration_bits``, ``rival_probability``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

DecisionKind = Literal["link", "review", "new"]


@dataclass(frozen=True)
class MatchConfig:
    """How cautious the matcher is.

    :param upper: link at or above this probability.
    :param lower: below this probability the person is new; in between, review.
    :param ambiguity_margin: review when the second candidate is within this of the first.
    :param region: ISO country for phones written without a country code (``KE``, ``UG``…).
    :param expected_match_share: prior share of incoming people who already exist; divided by
        the number of existing people it is the prior that a random pair is one person.
    :param duplicate_share: the same prior for two rows of one incoming list.
    :param shared_phone_count: a phone held by this many existing people or more is a household
        or CHW phone: not enough, with a date of birth, for a deterministic link.
    :param threads: DuckDB threads (``None``: all cores).
    :param corroborated_link: a lone candidate between the thresholds links from this
        probability on when names agree and the date of birth and place alone give at least
        ``corroboration_bits`` bits of evidence (``1.0`` or more switches this off).
    :param corroboration_bits: see ``corroborated_link`` (8 bits: odds of 256 to 1).
    :param rival_probability: "lone" means no other candidate at or above this probability.
    :param same_as_upper: two rows of the incoming list are one person at or above this
        probability (``None``: ``upper``). Rows marked ``same_as`` only follow a link the earlier
        row made on its own, or go to review.
    :param max_candidates: the best candidates kept per incoming person, which is how many a
        reviewer is offered (a reverse pipeline's ``review.max_candidates``).
    :param model: a trained model (``python -m cht_bridge.matching train``) as a dict; ``None``
        scores with the shipped ``model.json``. Use :func:`config_for_model` to take its
        thresholds and match share too.
    """

    # The candidate probabilities are calibrated (on the synthetic population, the share of wrong
    # candidates in each probability band matches 1 - p), so ``upper`` is the accepted risk of
    # one link: 0.995 keeps the expected wrong links under one per 5,000 incoming people.
    upper: float = 0.995
    lower: float = 0.1
    ambiguity_margin: float = 0.05
    region: str = "KE"
    expected_match_share: float = 0.75
    duplicate_share: float = 0.02
    shared_phone_count: int = 2
    threads: int | None = None
    corroborated_link: float = 0.5
    corroboration_bits: float = 8.0
    rival_probability: float = 0.01
    same_as_upper: float | None = 0.99
    max_candidates: int = 3
    model: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower <= self.upper <= 1.0:
            raise ValueError("thresholds must satisfy 0 <= lower <= upper <= 1")
        if self.ambiguity_margin < 0:
            raise ValueError("ambiguity_margin must not be negative")
        if self.same_as_upper is not None and not 0.0 <= self.same_as_upper <= 1.0:
            raise ValueError("same_as_upper must lie between 0 and 1")
        if self.max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")


def config_for_model(model: dict[str, Any] | None, **overrides: Any) -> MatchConfig:
    """A configuration that scores with ``model`` and takes the thresholds and the share of
    incoming people who already exist that training chose for it; ``overrides`` (the pipeline
    file's or the command line's, ``None`` values ignored) win."""
    chosen = (model or {}).get("cht_bridge", {})
    values: dict[str, Any] = {
        key: chosen[key]
        for key in ("upper", "lower", "expected_match_share", "corroborated_link")
        if chosen.get(key) is not None
    }
    values.update({key: value for key, value in overrides.items() if value is not None})
    return MatchConfig(model=model, **values)


@dataclass(frozen=True)
class Candidate:
    """An existing person the incoming one may be; ``reason`` holds no personal data."""

    existing_id: str
    probability: float
    reason: str
    #: per field: (comparison, words, match weight in bits), strongest first (``evidence.py``)
    evidence: tuple[tuple[str, str, float], ...] = ()


@dataclass(frozen=True)
class Decision:
    """The outcome for one incoming person.

    :param incoming_id: the incoming person's id.
    :param decision: ``link``, ``review`` or ``new``.
    :param existing_id: the linked (or best, for review) existing person.
    :param probability: the probability behind the decision (1.0 for deterministic links).
    :param reason: short, loggable: ids, counts and rules only, never names, phones or dates.
    :param candidates: best candidates first.
    :param same_as: an earlier incoming id of the same list naming the same person.
    """

    incoming_id: str
    decision: DecisionKind
    existing_id: str | None
    probability: float | None
    reason: str
    candidates: list[Candidate] = field(default_factory=list)
    same_as: str | None = None


def decide(incoming_id: str, candidates: Sequence[Candidate], config: MatchConfig, any_match: float = 0.0) -> Decision:
    """Apply the two thresholds and the ambiguity rule to ranked probabilistic candidates.

    :param candidates: best first; probabilities compete (they sum to at most 1).
    :param any_match: probability that the person is *one of* the candidates; two equally good
        candidates at 0.5 each are a review, not a new person.
    """
    any_match = max(any_match, sum(c.probability for c in candidates))
    if not candidates or any_match < config.lower:
        best = candidates[0].probability if candidates else None
        return Decision(incoming_id, "new", None, best, "no candidate above lower threshold", list(candidates))
    best = candidates[0]
    close = [c for c in candidates[1:] if best.probability - c.probability <= config.ambiguity_margin]
    if close:
        reason = f"ambiguous: {len(close) + 1} candidates within {config.ambiguity_margin:g}"
        return Decision(incoming_id, "review", best.existing_id, best.probability, reason, list(candidates))
    if best.probability >= config.upper:
        return Decision(incoming_id, "link", best.existing_id, best.probability, best.reason, list(candidates))
    reason = f"between thresholds; {best.reason}"
    return Decision(incoming_id, "review", best.existing_id, best.probability, reason, list(candidates))
