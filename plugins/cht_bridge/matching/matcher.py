"""``match()``: decide, for each person of an incoming list, link, review or new.

The steps follow the project's matching reference notes: clean → deterministic pass → Splink
scores (incoming × existing, and within the incoming list) → thresholds → within-list duplicates.
Logs carry ids, counts and rule names only; never names, phones or dates of birth.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from cht_bridge.matching.decisions import Candidate, Decision, MatchConfig, decide
from cht_bridge.matching.deterministic import DeterministicIndex, Rule
from cht_bridge.matching.exclusive import EXCLUSIVE_CLAIMS, SAME_ROW, with_claims
from cht_bridge.matching.features import DATES_BY_KIND, Frequencies, build_table, e164, tf_tables
from cht_bridge.matching.model import BRIDGE_KEY
from cht_bridge.matching.records import Person
from cht_bridge.matching.scoring import ScoredPair, score

log = logging.getLogger(__name__)
# Evidence that is not the name and not the (household-level) phone: a relative shares a family
# name, a phone and a home, but rarely the date of birth as well.
_CORROBORATING_FIELDS = ("date_of_birth", "place")


class _Ranked(NamedTuple):
    candidates: list[Candidate]
    any_match: float
    best_weights: dict[str, float]


_NOTHING = _Ranked([], 0.0, {})


@dataclass(frozen=True)
class Scored:
    """Everything the thresholds act on, computed once: the ranked candidates of each incoming
    person, the deterministic index and the within-list pairs. ``decide_all`` turns it into
    decisions for any thresholds, which is how training tries many of them quickly."""

    incoming: Sequence[Person]
    keys: list[str]
    phones: list[str | None]
    ranked: dict[str, _Ranked]
    index: DeterministicIndex
    within: list[ScoredPair]

    def any_match(self, position: int) -> float:
        """Probability that incoming person ``position`` is one of the existing people."""
        return self.ranked.get(self.keys[position], _NOTHING).any_match


def match(incoming: Sequence[Person], existing: Sequence[Person], config: MatchConfig | None = None) -> list[Decision]:
    """Decide link/review/new for every incoming person, in input order.

    Deterministic: the same inputs and configuration give the same decisions.

    :param incoming: people from the EMR list (ids must be unique within the list).
    :param existing: people already in CHT (ids unique).
    :param config: thresholds and options (and the model, ``config.model``); defaults to
        :class:`MatchConfig`'s.
    :raises ValueError: when ids repeat within one list.
    """
    config = config or MatchConfig()
    decisions = decide_all(
        score_people(incoming, existing, config, within_min_probability=_within_floor(config)), config
    )
    _log_summary(decisions)
    return decisions


def score_people(
    incoming: Sequence[Person],
    existing: Sequence[Person],
    config: MatchConfig,
    lists: Sequence[str] | None = None,
    within_min_probability: float | None = None,
) -> Scored:
    """Clean, score and rank: every step of :func:`match` before the thresholds.

    :param lists: per incoming person, the list (pipeline) it comes from, when several lists are
        scored together (training): rows of different lists do not compete for a person
        (``exclusive.py``). ``None``: ``incoming`` is one list.
    :param within_min_probability: pairs of rows of the list under this probability may be left
        out of ``Scored.within`` (:func:`_within_floor`: the ones no decision under ``config``
        reads); ``None`` keeps them all, for callers that try other thresholds (training).
    :raises ValueError: when ids repeat, or ``lists`` does not name one list per incoming person.
    """
    if lists is not None and len(lists) != len(incoming):
        raise ValueError(f"{len(lists)} list names for {len(incoming)} incoming people")
    _require_unique_ids(incoming, "incoming")
    _require_unique_ids(existing, "existing")
    existing_phones = [e164(person, config.region) for person in existing]
    incoming_phones = [e164(person, config.region) for person in incoming]

    counts = Frequencies([*existing, *incoming], [*existing_phones, *incoming_phones])
    existing_keys = [f"e{index}" for index in range(len(existing))]
    incoming_keys = [f"i{index}" for index in range(len(incoming))]
    existing_table = build_table(existing, existing_keys, existing_phones, counts)
    incoming_table = build_table(incoming, incoming_keys, incoming_phones, counts)
    between, within = score(
        existing_table,
        incoming_table,
        tf_tables([existing_table, incoming_table], counts, _bridge_flag(config, DATES_BY_KIND)),
        prior_between=config.expected_match_share / max(len(existing), 1),
        prior_within=config.duplicate_share / max(len(incoming), 1),
        threads=config.threads,
        model=config.model,
        within_min_probability=within_min_probability,
    )
    if _bridge_flag(config, EXCLUSIVE_CLAIMS):
        by_key = dict(zip(incoming_keys, lists, strict=True)) if lists is not None else None
        share, margin = config.expected_match_share, config.ambiguity_margin
        between = with_claims(between, within, share, len(existing), margin, lists=by_key)
    existing_ids = {key: person.id for key, person in zip(existing_keys, existing, strict=True)}
    ranked = _rank(between, existing_ids, config.expected_match_share, config.max_candidates)
    index = DeterministicIndex(existing, existing_phones, config.shared_phone_count)
    return Scored(incoming, incoming_keys, incoming_phones, ranked, index, within)


def _within_floor(config: MatchConfig) -> float:
    """The least probability at which a pair of rows of the list changes a decision under
    ``config``: two rows are one person for ``_mark_duplicates`` from its threshold on, and their
    claims stop competing (``exclusive.SAME_ROW``) from that one on."""
    same_as = config.upper if config.same_as_upper is None else config.same_as_upper
    return min(same_as, SAME_ROW)


def _bridge_flag(config: MatchConfig, key: str) -> bool:
    """Whether the model's ``cht_bridge`` block switches on ``key`` (a way of scoring that models
    trained since it was added expect; the shipped model has none)."""
    return bool((config.model or {}).get(BRIDGE_KEY, {}).get(key))


def decide_all(scored: Scored, config: MatchConfig) -> list[Decision]:
    """Apply the policy (deterministic pass, thresholds, within-list duplicates) to scored people."""
    decisions = [
        _decide_one(person, phone, scored.ranked.get(key, _NOTHING), scored.index, config)
        for key, person, phone in zip(scored.keys, scored.incoming, scored.phones, strict=True)
    ]
    return _mark_duplicates(decisions, scored.incoming, scored.within, config)


def _decide_one(
    person: Person,
    phone: str | None,
    ranked: _Ranked,
    index: DeterministicIndex,
    config: MatchConfig,
) -> Decision:
    candidates = ranked.candidates
    rule = index.find(person, phone)
    if rule is not None:
        return _deterministic(person.id, rule, candidates)
    decision = decide(person.id, candidates, config, ranked.any_match)
    if decision.decision == "review" and _corroborated(candidates, ranked.best_weights, config):
        best = candidates[0]
        reason = f"lone candidate, corroborated by date of birth and place; {best.reason}"
        decision = replace(decision, decision="link", reason=reason)
    conflicting = decision.existing_id is not None and _identifiers_disagree(person, decision.existing_id, index)
    if decision.decision == "link" and conflicting:
        return replace(decision, decision="review", reason="identifier conflict; demographics agree")
    return decision


def _corroborated(candidates: Sequence[Candidate], weights: dict[str, float], config: MatchConfig) -> bool:
    """Whether a lone, likely candidate is confirmed by more than its name.

    With many existing people the prior of any one pair is tiny, and a person whose name, date of
    birth and place all agree can stay just under ``upper``. Such a candidate links when it is
    the only one with any weight (the runner-up below ``rival_probability``), its probability is
    at least ``corroborated_link``, the names agree at a positive level, the sexes do not
    disagree, and the date of birth and place *on their own* carry ``corroboration_bits`` bits.
    The phone does not count here: relatives share it.
    """
    if not candidates or candidates[0].probability < config.corroborated_link:
        return False
    if len(candidates) > 1 and candidates[1].probability >= config.rival_probability:
        return False
    if weights.get("names", 0.0) <= 0.0 or weights.get("sex", 0.0) < 0.0:
        return False
    return sum(weights.get(name, 0.0) for name in _CORROBORATING_FIELDS) >= config.corroboration_bits


def _deterministic(incoming_id: str, rule: Rule, candidates: list[Candidate]) -> Decision:
    label = "identifier" if rule.kind == "identifier" else "phone and date of birth"
    if len(rule.existing_ids) > 1:
        reason = f"{label} held by {len(rule.existing_ids)} existing people"
        return Decision(incoming_id, "review", rule.existing_ids[0], None, reason, candidates)
    return Decision(incoming_id, "link", rule.existing_ids[0], 1.0, f"deterministic: {label}", candidates)


def _identifiers_disagree(person: Person, existing_id: str, index: DeterministicIndex) -> bool:
    theirs = index.identifiers.get(existing_id)
    return bool(person.identifier and theirs and theirs != person.identifier)


def _rank(
    pairs: Sequence[ScoredPair],
    existing_ids: dict[str, str],
    match_share: float,
    keep: int = MatchConfig.max_candidates,
) -> dict[str, _Ranked]:
    """Best candidates per incoming key, with probabilities that compete.

    Splink scores each pair on its own, so two look-alike candidates can both reach 0.999. An
    incoming person is at most one existing person: each candidate's posterior is its prior
    (``match_share`` over the number of existing people, already in its match weight) times its
    Bayes factor, over the same sum for every candidate plus ``1 - match_share`` for "someone
    new". Two equally good candidates each get about 0.5 and go to review. Also returns the
    probability that the person is any of them (over every candidate, not only the ``keep`` best
    returned), and the best candidate's per-field weights. Ties are broken by existing id. Only
    the ``keep`` candidates returned get their reason and evidence written.
    """
    by_incoming: dict[str, list[ScoredPair]] = defaultdict(list)
    for pair in pairs:
        by_incoming[pair.right].append(pair)
    ranked: dict[str, _Ranked] = {}
    for key, found in by_incoming.items():
        top = max(pair.match_weight for pair in found)
        # Odds relative to the best candidate keep the arithmetic finite for huge weights.
        relative = [2.0 ** (pair.match_weight - top) for pair in found]
        none_of_them = max(1.0 - match_share, 1e-9) * 2.0 ** (-top) if top < 1000 else 0.0
        total = none_of_them + sum(relative)
        probabilities = [odds / total for odds in relative]
        ids = [existing_ids[pair.left] for pair in found]
        order = sorted(range(len(found)), key=lambda i: (-probabilities[i], ids[i]))
        best_first = [
            Candidate(
                ids[i],
                probabilities[i],
                _reason(found[i]),
                tuple(sorted(found[i].evidence, key=lambda item: -abs(item[2]))),
            )
            for i in order[:keep]
        ]
        ranked[key] = _Ranked(best_first, 1.0 - none_of_them / total, dict(found[order[0]].weights))
    return ranked


def _reason(pair: ScoredPair) -> str:
    return "model: " + " ".join(f"{name} {weight:+.1f}" for name, weight in pair.weights if weight)


def _mark_duplicates(
    decisions: list[Decision], incoming: Sequence[Person], within: Sequence[ScoredPair], config: MatchConfig
) -> list[Decision]:
    """Set ``same_as`` for rows naming a person an earlier row of the list already names.

    A later row the model found new follows the earlier row's link; if the two rows link to
    different people, the later one goes to review.
    """
    parent = list(range(len(incoming)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    threshold = config.upper if config.same_as_upper is None else config.same_as_upper
    for pair in within:
        if pair.probability >= threshold:
            join(int(pair.left[1:]), int(pair.right[1:]))
    first_with_identifier: dict[str, int] = {}
    for position, person in enumerate(incoming):
        if person.identifier:
            join(first_with_identifier.setdefault(person.identifier, position), position)

    result = list(decisions)
    for position, decision in enumerate(decisions):
        first = root(position)
        if first == position:
            continue
        earlier = result[first]
        updated = replace(decision, same_as=earlier.incoming_id)
        if earlier.decision == "link" and decision.decision == "new":
            reason = f"same person as incoming {earlier.incoming_id}, which links"
            updated = replace(updated, decision="link", existing_id=earlier.existing_id, reason=reason)
            updated = replace(updated, probability=earlier.probability)
        elif earlier.decision == "link" and decision.existing_id != earlier.existing_id:
            reason = f"same person as incoming {earlier.incoming_id}, which links elsewhere"
            updated = replace(updated, decision="review", reason=reason)
        result[position] = updated
    return result


def _require_unique_ids(people: Sequence[Person], label: str) -> None:
    seen: set[str] = set()
    for person in people:
        if person.id in seen:
            raise ValueError(f"{label} ids must be unique; repeated id {person.id!r}")
        seen.add(person.id)


def _log_summary(decisions: Sequence[Decision]) -> None:
    counts = {kind: sum(1 for d in decisions if d.decision == kind) for kind in ("link", "review", "new")}
    duplicates = sum(1 for d in decisions if d.same_as)
    log.info("matched %d incoming: %s, %d within-list duplicates", len(decisions), counts, duplicates)
