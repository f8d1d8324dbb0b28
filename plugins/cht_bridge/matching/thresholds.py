"""Choose the two thresholds from the data a model was trained on, and from reviewers' labels.

The thresholds are a policy over risks, not constants fitted to one population: ``upper`` is the
lowest probability at which linking keeps the *expected* wrong links of the training list under
``wrong_link_risk`` per incoming person (a candidate at p is wrong with chance 1 - p), and no
labelled pair is linked wrongly; ``lower`` is the highest probability under which calling people
new keeps the expected duplicates (a person "new" with chance 1 - any_match) under
``duplicate_risk``. Between them a person reviews, so choosing the lowest ``upper`` and the
highest ``lower`` that the risks allow is the least review.

A labelled wrong link is never accepted: the thresholds must agree with every answer that says
two people differ. Otherwise answered rows spend the budgets as every other row does, by what the
model makes of them (1 - p for a link, the chance of being anyone for "new"): the thresholds are a
policy for the rows to come, and the answered rows are a sample of them — the hardest one, since
reviewers answer the most uncertain rows. The budgets themselves are per *unanswered* row: the
training list keeps every earlier month's answers (``reverse/learning.train_for``), and counted
among the budget's rows they enlarged it for the rows nobody answered (1,000 open rows and 9,000
old answers at 0.5: rows at 0.99 were linked, 0.3 expected wrong links, six times the budget).
Two other ways failed:

* counting each answered existing person the thresholds would call new as a whole duplicate spent
  the budget on a handful of people the model could not see: ``lower`` fell under them and the
  review share of the rows nobody answered *rose* with answers (second population, 5,000 x 5,000,
  seed 11: 180 -> 185 rows);
* leaving answered rows out of the budgets (they are decided by their answers) took the review
  band out of the sample: once reviewers had answered the rows between the thresholds, nothing
  unanswered was left there, ``lower`` rose to ``upper`` and the model called every uncertain
  row new (East, 5,000 x 5,000, 200 answers, seed 16: upper = lower = 0.9697 and 1.49 % of the
  existing people decided new; seeds 7, 17 and 20 the same, 2.2-3.0 %), which is what it does on
  the next list, whose uncertain rows nobody has answered yet; ``upper`` fell the same way (seed
  22: 0.9954 without answers, 0.8498 with them).

Answers inform the thresholds through the model too: training fixes the answered rows' posteriors
in its EM (``training.py``), which moves the probabilities the budgets are spent on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from cht_bridge.matching.decisions import Decision, MatchConfig
from cht_bridge.matching.labels import Label, ruled_out, truth_of
from cht_bridge.matching.matcher import Scored, decide_all

#: Expected wrong links accepted per incoming person (one in 20,000: a quarter of one in a list of
#: 5,000). One in 10,000 was spent in full once the other rows' claims (``exclusive.py``) put
#: many more people just above ``upper``: on the synthetic benchmarks at 5,000 x 5,000 it gave
#: 1, 2, 0 and 1 real wrong links in four runs; one in 20,000 gave none, for 0.4-2.4 points more review.
WRONG_LINK_RISK = 5e-5
#: Expected duplicates (existing people created again) accepted per incoming person. The people
#: no candidate was found for (a common name with a typo, no date of birth, another village)
#: are duplicates the expectation cannot see, 0.1-0.3 % of the rows on the benchmarks: one in
#: 1,000 keeps the total under 0.5 % of the existing people (0.25 % gave 0.51-0.68 %).
DUPLICATE_RISK = 1e-3
# Candidate thresholds: probabilities at match weights from -12 to +16 bits in quarter bits.
_GRID = sorted({round(1.0 / (1.0 + 2.0 ** (-w / 4)), 9) for w in range(-48, 65)} | {1.0})

CONFUSION_ROWS = ("labelled same person", "labelled new")
CONFUSION_COLUMNS = ("linked right", "linked wrong", "review", "new")


@dataclass(frozen=True)
class Choice:
    """The thresholds chosen and what they give on the training list."""

    upper: float
    lower: float
    expected_wrong_links: float
    expected_duplicates: float
    review_share: float


def choose(
    scored: Scored,
    config: MatchConfig,
    labels: Sequence[Label] = (),
    wrong_link_risk: float = WRONG_LINK_RISK,
    duplicate_risk: float = DUPLICATE_RISK,
) -> Choice:
    """The thresholds with the least review whose risks stay in budget (see the module docstring)."""
    truth = truth_of(labels)
    excluded = ruled_out(labels)
    # Every row spends what the model expects of it; the budgets are per unanswered row, so old
    # answers kept in the training list do not enlarge them (module docstring).
    n = max(sum(1 for person in scored.incoming if person.id not in truth), 1)

    def upper_ok(candidate: float) -> bool:
        decisions = decide_all(scored, replace(config, upper=candidate, lower=0.0))
        return _wrong_links(decisions, truth, excluded) == 0 and _expected_wrong(decisions) <= wrong_link_risk * n

    upper = _first(_GRID, upper_ok, default=1.0)

    def lower_ok(candidate: float) -> bool:
        decisions = decide_all(scored, replace(config, upper=upper, lower=candidate))
        return _expected_duplicates(decisions, scored) <= duplicate_risk * n

    lower = _first(list(reversed([v for v in _GRID if v <= upper])), lower_ok, default=0.0)
    final = decide_all(scored, replace(config, upper=upper, lower=lower))
    # The review people will do: answered rows are decided by their answers.
    reviews = sum(1 for d in final if d.decision == "review" and d.incoming_id not in truth)
    return Choice(
        upper,
        lower,
        round(_expected_wrong(final), 3),
        round(_expected_duplicates(final, scored), 3),
        reviews / n,
    )


def _first(values: Sequence[float], ok: Callable[[float], bool], default: float) -> float:
    """The first of ``values`` that is ``ok``, by bisection: along ``values`` the risks only
    shrink (a higher ``upper`` links fewer people, a lower ``lower`` calls fewer people new)."""
    low, high = 0, len(values)
    while low < high:
        middle = (low + high) // 2
        if ok(values[middle]):
            high = middle
        else:
            low = middle + 1
    return values[low] if low < len(values) else default


def confusion(decisions: Sequence[Decision], labels: Sequence[Label]) -> dict[str, dict[str, int]]:
    """Labelled people by what their label says (rows) and what the matcher decided (columns)."""
    truth = truth_of(labels)
    excluded = ruled_out(labels)
    table = {row: dict.fromkeys(CONFUSION_COLUMNS, 0) for row in CONFUSION_ROWS}
    for decision in decisions:
        if decision.incoming_id not in truth:
            continue
        real = truth[decision.incoming_id]
        row = table[CONFUSION_ROWS[0] if real else CONFUSION_ROWS[1]]
        if decision.decision == "link":
            right = real is not None and decision.existing_id == real
            wrong = not right or (decision.incoming_id, decision.existing_id) in excluded
            row["linked wrong" if wrong else "linked right"] += 1
        else:
            row[decision.decision] += 1
    return table


def _wrong_links(decisions: Sequence[Decision], truth: dict[str, str | None], excluded: set) -> int:
    wrong = 0
    for d in decisions:
        if d.decision != "link":
            continue
        if (
            (d.incoming_id, d.existing_id) in excluded
            or d.incoming_id in truth
            and truth[d.incoming_id] != d.existing_id
        ):
            wrong += 1
    return wrong


def _expected_wrong(decisions: Sequence[Decision]) -> float:
    return sum(1.0 - d.probability for d in decisions if d.decision == "link" and d.probability is not None)


def _expected_duplicates(decisions: Sequence[Decision], scored: Scored) -> float:
    return sum(scored.any_match(position) for position, d in enumerate(decisions) if d.decision == "new")
