"""Why the matcher erred on the synthetic East-African benchmark: each wrong link with its
evidence, each duplicate (a truly existing person decided ``new``) by cause, and the links'
calibration per kind of evidence.

``bench.matching`` counts the errors; this says which they are. A duplicate's true pair is
either among the scored candidates (its probability fell under ``lower``) or not: then it is
scored alone (blocked on its own ids, so blocking cannot hide it) to tell a pair the blocking
rules never made at this size from one under the scoring floor. The calibration table sums
``1 - p`` over the links of each kind (the wrong links the model itself expects) beside the wrong
links seen: a kind whose seen count is far above its expected one is evidence counted twice.

``python -m bench.matching_errors [--existing 100000] [--seed 7] [--model model.json]``
(issue 14's one wrong link at 5,000 x 100,000, seed 7, shipped and trained model alike: a truly
new person who joined an existing household, whose surname, phone and household agree with a
member's and whose date of birth is missing; the household cell is where the seen wrong links
exceed the expected ones).
"""

from __future__ import annotations

import argparse
import copy
from collections import Counter, defaultdict
from dataclasses import replace

from cht_bridge.matching import Decision, MatchConfig
from cht_bridge.matching.decisions import config_for_model
from cht_bridge.matching.features import DATES_BY_KIND, Frequencies, build_table, e164, tf_tables
from cht_bridge.matching.matcher import decide_all, score_people
from cht_bridge.matching.model import BRIDGE_KEY, load_model, load_model_file
from cht_bridge.matching.records import Person
from cht_bridge.matching.scoring import score
from standins.populations import Population, population

# Candidates kept per row while explaining: every scored one, so a true pair that was scored is found.
_ALL_CANDIDATES = 100_000


def pair_alone(incoming: Person, existing: Person, data: Population, config: MatchConfig) -> float | None:
    """The probability of one pair scored on its own (blocked on its ids), with the term
    frequencies and prior of the whole run; ``None`` when it is under the scoring floor."""
    model = copy.deepcopy(config.model or load_model())
    model["blocking_rules_to_generate_predictions"] = [{"blocking_rule": "l.unique_id = r.unique_id"}]
    people = [*data.existing, *data.incoming]
    counts = Frequencies(people, [e164(person, config.region) for person in people])
    left = build_table([existing], ["pair"], [e164(existing, config.region)], counts)
    right = build_table([incoming], ["pair"], [e164(incoming, config.region)], counts)
    by_kind = bool(model.get(BRIDGE_KEY, {}).get(DATES_BY_KIND))
    between, _ = score(
        left,
        right,
        tf_tables([left, right], counts, by_kind),
        prior_between=config.expected_match_share / len(data.existing),
        prior_within=config.duplicate_share / len(data.incoming),
        model=model,
        within_min_probability=1.0,
    )
    return between[0].probability if between else None


def field_pattern(incoming: Person, existing: Person, region: str) -> str:
    """Which fields agree (``=``), partly agree (``~``, names), differ (``!``) or are missing (``-``)."""
    shared = set(incoming.name_tokens) & set(existing.name_tokens)
    names = "=" if set(incoming.name_tokens) == set(existing.name_tokens) else ("~" if shared else "!")

    def compare(a: object, b: object) -> str:
        return "-" if not a or not b else ("=" if a == b else "!")

    places = {existing.place, *existing.area} - {None}
    place = "-" if not incoming.place or not places else ("=" if incoming.place in places else "!")
    phone = compare(e164(incoming, region), e164(existing, region))
    return f"names{names} dob{compare(incoming.date_of_birth, existing.date_of_birth)} phone{phone} place{place}"


def evidence_kind(decision: Decision) -> str:
    """A link's kind for the calibration table: household evidence (same place or phone) or not,
    and whether the date of birth supports it."""
    evidence = {field: (words, weight) for field, words, weight in decision.candidates[0].evidence}
    home = evidence.get("place", ("", 0.0))[0].startswith(("same place", "same household")) or evidence.get(
        "phone", ("", 0.0)
    )[0].startswith("same phone")
    supported = evidence.get("date_of_birth", ("", 0.0))[1] > 0
    return f"{'household' if home else 'no household'}, date of birth {'supports' if supported else 'missing/against'}"


def explain(data: Population, config: MatchConfig) -> None:
    """Print the wrong links, the duplicates by cause and the calibration of the links."""
    scored = score_people(data.incoming, data.existing, replace(config, max_candidates=_ALL_CANDIDATES))
    decisions = [
        replace(d, candidates=d.candidates[: config.max_candidates])
        for d in decide_all(scored, replace(config, max_candidates=_ALL_CANDIDATES))
    ]
    existing = {person.id: person for person in data.existing}
    incoming = {person.id: person for person in data.incoming}
    wrong = [d for d in decisions if d.decision == "link" and data.truth[d.incoming_id] != d.existing_id]
    print(f"wrong links: {len(wrong)} (upper {config.upper}, lower {config.lower})")
    for d in wrong:
        truth = data.truth[d.incoming_id]
        print(f"  {d.incoming_id} -> {d.existing_id} p {d.probability:.6f}; truly {truth or 'new'}; {d.reason}")
        print(f"    fields: {field_pattern(incoming[d.incoming_id], existing[d.existing_id], config.region)}")
        for field, words, weight in d.candidates[0].evidence:
            print(f"    {field:<14} {weight:+6.1f}  {words}")
    duplicates = [d for d in decisions if d.decision == "new" and data.truth[d.incoming_id] is not None]
    known = sum(value is not None for value in data.truth.values())
    print(f"duplicates: {len(duplicates)} of {known} truly existing ({len(duplicates) / known:.2%})")
    causes: Counter = Counter()
    ranked = dict(zip(scored.keys, (scored.ranked.get(key) for key in scored.keys), strict=True))
    positions = {person.id: key for key, person in zip(scored.keys, scored.incoming, strict=True)}
    for d in duplicates:
        truth = data.truth[d.incoming_id]
        found = ranked.get(positions[d.incoming_id])
        candidate = next((c for c in (found.candidates if found else []) if c.existing_id == truth), None)
        if candidate is not None:
            cause, probability = "scored, under lower", candidate.probability
        else:
            probability = pair_alone(incoming[d.incoming_id], existing[truth], data, config)
            cause = "not scored, under the floor" if probability is None else "not scored (not blocked at this size)"
        pattern = field_pattern(incoming[d.incoming_id], existing[truth], config.region)
        causes[(cause, pattern)] += 1
        shown = "under floor" if probability is None else f"{probability:.4f}"
        print(f"  {d.incoming_id} (truly {truth}): {cause}, true pair p {shown}; {pattern}")
    for (cause, pattern), count in sorted(causes.items(), key=lambda item: (-item[1], item[0])):
        print(f"  {count:>3}  {cause:<38} {pattern}")
    cells: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for d in decisions:
        if d.decision == "link" and d.candidates and not d.reason.startswith("deterministic"):
            cell = cells[evidence_kind(d)]
            cell[0] += 1
            cell[1] += data.truth[d.incoming_id] != d.existing_id
            cell[2] += 1.0 - (d.probability or 0.0)
    print("probabilistic links by evidence: links, wrong seen, wrong the model expects (sum of 1 - p)")
    for kind, (links, seen, expected) in sorted(cells.items()):
        print(f"  {kind:<46} {links:>6} {seen:>4} {expected:>8.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.matching_errors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--existing", type=int, default=100_000)
    parser.add_argument("--incoming", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", help="a trained model file (default: the shipped model)")
    args = parser.parse_args(argv)
    config = config_for_model(load_model_file(args.model)) if args.model else MatchConfig()
    explain(population(args.existing, args.incoming, seed=args.seed), config)


if __name__ == "__main__":
    main()
