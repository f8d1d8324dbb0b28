"""How much of the trained matcher's review could any method decide from the fields a row has?
An oracle bound per review row, from the generator's truth.

For each run (a population, its seed, the training seed) it trains on the benchmark's own files
(``training.train``, as ``bench.matching_thresholds`` does), decides the list, and grades every
pair it looks at field by field, without the model: names (row tokens with an exact or
one-keystroke partner, exact partners, the candidate's names left over), date of birth (same;
day/month swapped or one part off; same year; 1-2 years apart; unknown on the CHT side; 3-9
years, the model's level; further), sex, phone (same; one digit off; unknown; other), place (same place or a place
of the person's lineage; other village of the same district; unknown; other), identifier. A
field the row does not have is left out. Each row left in review is then put in one class:

* **(a) undecidable from the fields present**: the truth is an existing person T and another CHT
  person agrees with the row on every field the row has at least as well as T does (searched
  over the whole population, not only the scored candidates), or the truth is "new" and a CHT
  person agrees with the row on every field it has (names: every token of the row, exactly);
* **(b) decidable by a rule on the fields present**: T (or, truth "new", no one) is what a rule on
  the grades gives: T is the one candidate whose grades are at least those of every other, and the
  rows of the population's runs whose best candidate has the same grades (and the same frequency
  band of the rarest name shared; all bands, then also any sex, when fewer than ``MIN_ROWS``) were that
  person far more often than the model's own probabilities say (the errors seen are below the
  5 % tail of a Poisson with the mean the model predicts) — the model's comparisons lose what
  these grades show; the row's evidence per comparison is tallied so the comparison can be named;
* **(c) decidable only with another risk budget**: the same rule, but the model's probabilities
  are borne out on those rows (their best candidate was sometimes someone else, mostly a truly
  new relative or namesake, about as often as predicted): deciding them takes accepting that risk;
* **(d) other**: T not among the scored candidates; no candidate at least as good as all others
  on every field (one is better on names, another on the date); another candidate than T best on
  every field; grades seen fewer than ``MIN_ROWS`` times (also with any frequency band and any sex).

(a) + (c) is the review a method that keeps the risk budgets cannot remove on these data. It also
checks each wrong link of the listed runs: is the person linked a namesake no field tells apart
from the true one (or, truth "new", one who agrees on every field the row has)?

``python -m bench.matching_oracle [--existing 5000] [--runs west:11:7 west:12:11 east:7:7
east:11:11] [--wrong east:16:16 east:17:17] [--pool west:13:13 west:14:14 east:13:13 east:14:14]``
(``population:seed:training seed``; ``--pool`` runs only add rows to the rules' counts, the
classified runs' rows count too; ``--cht-dates``: the populations with CHT-form estimated dates and
year typos, as ``bench.matching --cht-dates``). 5,000 × 5,000: about 15 s a run on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from bench.matching import evaluate
from cht_bridge.matching.decisions import Decision, MatchConfig, config_for_model
from cht_bridge.matching.features import e164
from cht_bridge.matching.matcher import Scored, decide_all, score_people
from cht_bridge.matching.records import Person
from cht_bridge.matching.training import train
from standins.populations import Population, population
from standins.populations_west import west_population

#: A rule on the grades is trusted only from this many rows of the pooled runs with the same grades.
MIN_ROWS = 20
#: (b) when the pattern's errors are this unlikely under the model's own probabilities.
SIGNIFICANCE = 0.05
#: Every scored pair is kept while grading, so the true person is found when it was scored at all.
_ALL_CANDIDATES = 100_000
FIELDS = ("names", "date_of_birth", "sex", "phone", "place", "identifier")
_TOP = {"date_of_birth": 6, "sex": 2, "phone": 3, "place": 4, "identifier": 2}
DEFAULT_RUNS = ("west:11:7", "west:12:11", "east:7:7", "east:11:11")
DEFAULT_WRONG = ("east:16:16", "east:17:17")
#: Runs that only add rows to the rules' counts (the rarer grades are seen more often).
DEFAULT_POOL = ("west:13:13", "west:14:14", "east:13:13", "east:14:14")

Grades = dict[str, object]


def one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by one keystroke (insert, delete, replace, swap of neighbours)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k, (x, y) in enumerate(zip(short, long, strict=False)) if x != y), len(short))
    return short[i:] == long[i + 1 :]


def names_grade(row: Sequence[str], other: Sequence[str]) -> tuple[int, int, int]:
    """(row tokens with an exact or one-keystroke partner, exact partners, ``-`` the other side's
    tokens left over); tokens pair one to one, two names written as one pair with both."""
    left = [t for t in row if t not in other]
    rest = [t for t in other if t not in row]
    exact = len(row) - len(left)
    fuzzy = 0
    for token in list(left):
        partner = next((t for t in rest if one_edit(token, t)), None)
        if partner is not None:
            rest.remove(partner)
            fuzzy += 1
            continue
        joined = next(((a, b) for a in rest for b in rest if a != b and a + b == token), None)
        if joined is not None:
            rest.remove(joined[0])
            rest.remove(joined[1])
            fuzzy += 1
    return (exact + fuzzy, exact, -len(rest))


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def dob_grade(row: date, other: date | None) -> int:
    """6 same; 5 day and month swapped, or one part off (day by <= 3, year by <= 2); 4 same year;
    3 one or two years apart; 2 unknown on the CHT side; 1 three to nine years apart (the model's
    level "born 3-9 years apart"); 0 further."""
    if other is None:
        return 2
    if row == other:
        return 6
    years = abs(row.year - other.year)
    swapped = row.year == other.year and row.day == other.month and row.month == other.day
    if swapped or (row.year == other.year and row.month == other.month and abs(row.day - other.day) <= 3):
        return 5
    if (row.month, row.day) == (other.month, other.day) and years <= 2 and (row.month, row.day) != (1, 1):
        return 5
    return 4 if years == 0 else 3 if years <= 2 else 1 if years <= 9 else 0


def place_grade(row: Person, other: Person) -> int | None:
    """4 the row's place is the person's place or one of its lineage (or, the place unknown, its
    area is); 3 another place of an area both name; 2 unknown on the CHT side; 0 other."""
    theirs = {other.place, *other.area} - {None}
    if not row.place and not row.area:
        return None
    if not theirs:
        return 2
    if row.place:
        if row.place in theirs:
            return 4
        return 3 if set(row.area) & theirs else 0
    return 4 if set(row.area) & theirs else 0


def _equal_grade(mine: object, theirs: object) -> int | None:
    if mine is None:
        return None
    return 1 if theirs is None else 2 if mine == theirs else 0


def _phone_grade(mine: str | None, theirs: str | None) -> int | None:
    if mine is None:
        return None
    if theirs is None:
        return 1
    if mine == theirs:
        return 3
    return 2 if len(mine) == len(theirs) and sum(a != b for a, b in zip(mine, theirs, strict=True)) == 1 else 0


@dataclass
class Side:
    """One list's people with what grading needs precomputed."""

    people: Sequence[Person]
    region: str
    tokens: list[list[str]] = field(init=False)
    dates: list[date | None] = field(init=False)
    phones: list[str | None] = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = [p.name_tokens for p in self.people]
        self.dates = [_date(p.date_of_birth) for p in self.people]
        self.phones = [e164(p, self.region) for p in self.people]


def grades(rows: Side, r: int, cht: Side, x: int) -> Grades:
    """The grade of each field row ``r`` has, against CHT person ``x``."""
    row, other = rows.people[r], cht.people[x]
    found: Grades = {}
    if rows.tokens[r]:
        found["names"] = names_grade(rows.tokens[r], cht.tokens[x])
    if rows.dates[r] is not None:
        found["date_of_birth"] = dob_grade(rows.dates[r], cht.dates[x])
    for name, value in (
        ("sex", _equal_grade(row.sex, other.sex)),
        ("phone", _phone_grade(rows.phones[r], cht.phones[x])),
        ("place", place_grade(row, other)),
        ("identifier", _equal_grade(row.identifier, other.identifier)),
    ):
        if value is not None:
            found[name] = value
    return found


def at_least(mine: Grades, theirs: Grades) -> bool:
    """Whether ``mine`` agrees with the row at least as well as ``theirs`` on every field."""
    return all(mine[f] >= theirs[f] for f in theirs)  # type: ignore[operator]


def agrees_fully(mine: Grades, n_tokens: int) -> bool:
    """Every field the row has agrees at its best (names: every row token, exactly)."""
    return all(
        (value[1] == n_tokens) if f == "names" else value == _TOP[f]  # type: ignore[index]
        for f, value in mine.items()
    )


class Index:
    """CHT people by name token, by one-deletion keys, and by two of their names written as one
    (``names_grade`` pairs a row's "adeolaolu" with "adeola" + "olu"), to find whoever shares a name."""

    def __init__(self, cht: Side) -> None:
        self.by_token: dict[str, set[int]] = defaultdict(set)
        self.by_key: dict[str, set[int]] = defaultdict(set)
        self.count: Counter = Counter()
        for x, tokens in enumerate(cht.tokens):
            for token in tokens:
                self.by_token[token].add(x)
                self.count[token] += 1
                for key in _deletions(token):
                    self.by_key[key].add(x)
            for a in tokens:
                for b in tokens:
                    if a != b:
                        self.by_key[a + b].add(x)
        self.everyone = range(len(cht.tokens))

    def sharing(self, tokens: Sequence[str]) -> Iterable[int]:
        """People with a name one keystroke or less from one of ``tokens``, or two names that written as
        one are one of ``tokens`` (a superset of those ``names_grade`` gives a partner)."""
        found: set[int] = set()
        for token in tokens:
            for key in _deletions(token):
                found |= self.by_key.get(key, set())
        return found

    def sharing_at_least(self, tokens: Sequence[str], needed: int) -> Iterable[int]:
        """People with such a name for at least ``needed`` of ``tokens`` (a rival as good as the true
        person on names has a partner for as many of the row's tokens): at 5,000 x 100,000 a common
        name alone is held by thousands, and grading each of them for every row is what made the
        search over the whole population intractable."""
        per_token: Counter = Counter()
        for token in tokens:
            found: set[int] = set()
            for key in _deletions(token):
                found |= self.by_key.get(key, set())
            per_token.update(found)
        return [x for x, n in per_token.items() if n >= needed]

    def with_all(self, tokens: Sequence[str]) -> Iterable[int]:
        sets = [self.by_token.get(t, set()) for t in tokens]
        return set.intersection(*sets) if sets else set()


def _deletions(token: str) -> set[str]:
    return {token, *(token[:i] + token[i + 1 :] for i in range(len(token)))}


def frequency_band(count: int) -> str:
    """How common the rarest name a pair shares exactly is among the CHT people."""
    return "none shared" if count == 0 else "rare" if count <= 3 else "common" if count > 30 else "some"


@dataclass(frozen=True)
class RowView:
    """One incoming row as the oracle sees it."""

    decision: Decision
    truth: str | None
    candidates: list[tuple[str, float, Grades]]  # (existing id, p, grades), model's order
    best: str | None  # the candidate at least as good as every other on every field (None: none, or a tie)
    key: tuple | None  # the best's grades and the frequency band of the rarest name it shares exactly


def _coarse(f: str, value: object, row: Person, other: Person) -> object:
    """A grade in the rule's classes: names coarser (a rule needs rows enough per class to be
    judged), a date known only as a year (1 January, on either side) and a place met only through the wider area
    apart from the exact ones, since they tell a person apart far less."""
    if value is None:
        return None
    if f == "names":
        matched, exact, _ = value  # type: ignore[misc]
        n_tokens = len(row.name_tokens)
        return "none" if matched == 0 else "part" if matched < n_tokens else "exact" if exact == matched else "typo"
    if f == "date_of_birth":
        estimated = any((p.date_of_birth or "").endswith("-01-01") for p in (row, other))
        named = {6: "same", 5: "near", 4: "same year", 3: "1-2y", 2: "unknown"}.get(value, "far")  # type: ignore[arg-type]
        return f"{named}{' (year only)' if estimated else ''}"
    if f == "phone":
        return {3: "same", 2: "same", 1: "unknown"}.get(value, "other")  # type: ignore[arg-type]
    if f == "place" and value == 4 and row.place != other.place:
        return "wider area"
    return value


def _key(g: Grades, band: str, row: Person, other: Person) -> tuple:
    return (*(_coarse(f, g.get(f), row, other) for f in FIELDS), band)


def describe_key(key: tuple) -> str:
    parts = []
    for f, value in zip(FIELDS, key[:-1], strict=True):
        if value is not None:
            parts.append(f"{f}={value}")
    return " ".join(parts) + f" names-freq={key[-1]}"


@dataclass
class Run:
    label: str
    data: Population
    config: MatchConfig
    rows: Side
    cht: Side
    index: Index
    decisions: list[Decision]
    views: list[RowView]
    position: dict[str, int]
    #: CHT person id -> its position in ``cht`` (a scan per row is 100,000 steps at 5,000 x 100,000)
    where: dict[str, int] = field(default_factory=dict)


def prepare(
    kind: str,
    seed: int,
    training_seed: int,
    n_existing: int,
    n_incoming: int,
    models: str | None = None,
    cht_dates: bool = False,
) -> Run:
    """Train (or read the model ``models`` keeps for this run), decide and grade every row's
    scored candidates (``cht_dates``: the generators' switch)."""
    data = (population if kind == "east" else west_population)(n_existing, n_incoming, seed=seed, cht_dates=cht_dates)
    model = trained_model(data, f"{kind}-cht-dates" if cht_dates else kind, seed, training_seed, models)
    config = config_for_model(model)
    decisions = decide_all(score_people(data.incoming, data.existing, config), config)
    wide: Scored = score_people(data.incoming, data.existing, replace(config, max_candidates=_ALL_CANDIDATES))
    rows, cht = Side(data.incoming, config.region), Side(data.existing, config.region)
    index = Index(cht)
    where = {p.id: x for x, p in enumerate(data.existing)}
    views = []
    for r, (decision, key) in enumerate(zip(decisions, wide.keys, strict=True)):
        ranked = wide.ranked.get(key)
        graded = [
            (c.existing_id, c.probability, grades(rows, r, cht, where[c.existing_id]))
            for c in (ranked.candidates if ranked else [])
        ]
        best, row_key = _field_best(graded, rows.people[r], cht, where, index)
        views.append(RowView(decision, data.truth[decision.incoming_id], graded, best, row_key))
    return Run(
        f"{'East' if kind == 'east' else 'second'} {seed} (trained with {training_seed})",
        data,
        config,
        rows,
        cht,
        index,
        decisions,
        views,
        {p.id: i for i, p in enumerate(data.incoming)},
        where,
    )


def trained_model(data: Population, kind: str, seed: int, training_seed: int, models: str | None) -> dict:
    """``training.train`` on the run's own files; with ``models`` (a folder) the model is kept there
    and read back by later runs of the same population, size and seeds (training at 5,000 x 100,000
    takes 35-60 s, and the analyses of ``bench.matching_scale`` score one model many ways)."""
    path = None
    if models:
        name = f"{kind}-{seed}-{training_seed}-{len(data.existing)}x{len(data.incoming)}.json"
        path = Path(models) / name
        if path.exists():
            return json.loads(path.read_text())
    model = train(data.existing, data.incoming, seed=training_seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(model))
    return model


def _field_best(
    graded: list[tuple[str, float, Grades]], row: Person, cht: Side, where: dict[str, int], index: Index
) -> tuple[str | None, tuple | None]:
    tokens = row.name_tokens
    for existing_id, _, g in graded:
        others = [o for e, _, o in graded if e != existing_id]
        if all(at_least(g, o) for o in others) and not any(at_least(o, g) for o in others):
            shared = set(tokens) & set(cht.tokens[where[existing_id]])
            rarest = min((index.count[t] for t in shared), default=0)
            return existing_id, _key(g, frequency_band(rarest), row, cht.people[where[existing_id]])
    return None, None


@dataclass
class Pattern:
    """The rows of the pooled runs whose best candidate (on every field) had one grades key."""

    rows: int = 0
    right: int = 0  # the best candidate was the person
    new: int = 0  # the row was truly new
    p_best: float = 0.0  # the model's probability of the best candidate, summed

    def add(self, view: RowView) -> None:
        self.rows += 1
        self.right += view.truth == view.best
        self.new += view.truth is None
        self.p_best += next(p for e, p, _ in view.candidates if e == view.best)


def pooled_rules(runs: Sequence[Run]) -> dict[tuple, Pattern]:
    """Per grades key (and per key in any frequency band of the names): the rows, the truth, and
    what the model predicted for them."""
    rules: dict[tuple, Pattern] = defaultdict(Pattern)
    for run in runs:
        for view in run.views:
            if view.key is None or view.decision.reason.startswith("deterministic"):
                continue
            for key in _coarser(view.key):
                rules[key].add(view)
    return rules


def _coarser(key: tuple) -> list[tuple]:
    """The key, then any frequency band of the names, then also any sex: where a rule looks
    when the finer key was seen too rarely."""
    sex = FIELDS.index("sex")
    return [key, (*key[:-1], "any"), (*key[:sex], "any", *key[sex + 1 : -1], "any")]


def poisson_at_most(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean): how likely so few errors are if the model is right."""
    if mean <= 0:
        return 1.0
    logs = [-mean + i * math.log(mean) - math.lgamma(i + 1) for i in range(k + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(value - top) for value in logs))


def _pattern(rules: dict[tuple, Pattern], key: tuple, min_rows: int = MIN_ROWS) -> Pattern:
    found = Pattern()
    for coarser in _coarser(key):
        found = rules.get(coarser, Pattern())
        if found.rows >= min_rows:
            break
    return found


def namesake(run: Run, r: int, truth: str | None) -> str | None:
    """A CHT person other than the truth that no field of row ``r`` tells apart from it (module
    docstring, class (a)), or ``None``."""
    tokens = run.rows.tokens[r]
    if truth is None:
        for x in sorted(run.index.with_all(tokens)):
            if agrees_fully(grades(run.rows, r, run.cht, x), len(tokens)):
                return run.cht.people[x].id
        return None
    t = run.where[truth]
    mine = grades(run.rows, r, run.cht, t)
    needed = mine.get("names", (1,))[0]  # type: ignore[index]
    pool = run.index.sharing_at_least(tokens, needed) if needed > 0 else run.index.everyone
    for x in sorted(pool):
        if x != t and at_least(grades(run.rows, r, run.cht, x), mine):
            return run.cht.people[x].id
    return None


def classify(
    run: Run, rules: dict[tuple, Pattern], min_rows: int = MIN_ROWS, significance: float = SIGNIFICANCE
) -> list[tuple[RowView, str, str]]:
    """(row, class, detail) for every row in review."""
    found = []
    for r, view in enumerate(run.views):
        if view.decision.decision != "review":
            continue
        offered = {e for e, _, _ in view.candidates}
        if view.truth is not None and view.truth not in offered:
            found.append((view, "d", "true person not scored"))
            continue
        rival = namesake(run, r, view.truth)
        if rival is not None:
            found.append((view, "a", "namesake of the true person" if view.truth else "a CHT person agrees on all"))
            continue
        if view.key is None:
            found.append((view, "d", "no candidate best on every field"))
            continue
        seen = _pattern(rules, view.key, min_rows)
        if seen.rows < min_rows:
            found.append((view, "d", f"grades seen {seen.rows} times"))
            continue
        if view.truth is not None and view.best != view.truth:
            found.append((view, "d", "another candidate best on every field"))
            continue
        # The rule decides every row of the pattern one way (link the best, or new); the model's
        # probabilities predict how often that is wrong. Far fewer errors than predicted: the
        # model's comparisons lose what the fields show (b); else the risk is real (c).
        if view.truth is not None:
            errors, predicted, what = seen.rows - seen.right, seen.rows - seen.p_best, "not that person"
        else:
            errors, predicted, what = seen.right, seen.p_best, "that person"
        cls = "b" if poisson_at_most(errors, predicted) < significance else "c"
        detail = f"{describe_key(view.key)}: {errors} of {seen.rows} {what}, model predicted {predicted:.1f}"
        found.append((view, cls, detail))
    return found


def report(run: Run, found: list[tuple[RowView, str, str]]) -> Counter:
    n = len(run.decisions)
    metrics = evaluate(run.decisions, run.data)
    by_class = Counter(c for _, c, _ in found)
    print(
        f"\n{run.label}: wrong links / duplicates / review {metrics['wrong links']} / {metrics['duplicate rate']:.2%} / "
        f"{metrics['review share']:.2%} ({metrics['reviews']} rows)"
    )
    for name in "abcd":
        rows = [(v, d) for v, c, d in found if c == name]
        print(
            f"  ({name}) {len(rows):>4} rows, {len(rows) / n:.2%} of the list; "
            f"truth new {sum(v.truth is None for v, _ in rows)}"
        )
        details = Counter(d for _, d in rows)
        for detail, count in details.most_common(8):
            print(f"        {count:>4}  {detail}")
    kept = [run.rows.people[run.position[v.decision.incoming_id]] for v, c, _ in found if c in "ac"]
    print(
        f"  of (a) + (c): no date of birth {sum(p.date_of_birth is None for p in kept)}, a year only "
        f"{sum((p.date_of_birth or '').endswith('-01-01') for p in kept)}, no place or area "
        f"{sum(not p.place and not p.area for p in kept)}, no phone {sum(p.phone is None for p in kept)}"
    )
    print(
        f"  bound: (a) + (c) = {(by_class['a'] + by_class['c']) / n:.2%} of the list stays in review without "
        f"another risk budget; (a) alone {by_class['a'] / n:.2%}"
    )
    return by_class


def causes(run: Run) -> list[tuple[RowView, str]]:
    """(row, cause) for every row in review, from the truth and the scored candidates (all of them,
    not only the three kept): truly new, with the look-alike the model offered; the true person not
    among the scored candidates (why: ``missing_causes``); a rival at least as likely as the true
    person, or within ``ambiguity_margin`` of it; the true person best with no close rival but its
    probability under ``upper``; a rule outside the thresholds (identifier, shared phone)."""
    margin = run.config.ambiguity_margin
    found = []
    missing = [v for v in run.views if v.decision.decision == "review" and v.truth and not _offered(v, v.truth)]
    why = missing_causes(run, [run.position[v.decision.incoming_id] for v in missing])
    for view in run.views:
        d = view.decision
        if d.decision != "review":
            continue
        if not d.reason.startswith(("ambiguous", "between thresholds", "model")):
            found.append((view, f"other rule ({d.reason.split(';')[0].split(' held')[0]})"))
            continue
        if view.truth is None:
            best = view.candidates[0][1] if view.candidates else 0.0
            found.append((view, f"truly new, look-alike p {'>= 0.5' if best >= 0.5 else '< 0.5'}"))
            continue
        if not _offered(view, view.truth):
            found.append((view, f"true person not scored: {why[d.incoming_id]}"))
            continue
        p_true = next(p for e, p, _ in view.candidates if e == view.truth)
        rivals = [p for e, p, _ in view.candidates if e != view.truth]
        top_rival = max(rivals, default=0.0)
        if top_rival >= p_true:
            found.append((view, "rival at least as likely as the true person"))
        elif p_true - top_rival <= margin:
            found.append((view, f"rival within {margin:g} of the true person"))
        else:
            found.append((view, "true person best, no close rival, p under upper"))
    return found


def _offered(view: RowView, existing_id: str) -> bool:
    return any(e == existing_id for e, _, _ in view.candidates)


def missing_causes(run: Run, rows: Sequence[int]) -> dict[str, str]:
    """Why each of ``rows`` (positions in the list) was never scored against its true person:
    scored again on their own with the name-and-letter rules' budget lifted (``blocking budget``
    if the true pair appears), then also with no scoring floor (``below the -10 bit floor``), else
    no blocking rule pairs them (``not blocked``). The rows alone make no claims on each other, so
    a weight here may differ from the full run's by the claims term (at 100,000 people, little)."""
    from cht_bridge.matching import scoring

    if not rows:
        return {}
    people = [run.rows.people[r] for r in rows]
    truth = {p.id: run.data.truth[p.id] for p in people}
    wide = replace(run.config, max_candidates=_ALL_CANDIDATES)
    found: dict[str, str] = {}
    saved = scoring.PAIRS_PER_INCOMING_ROW, scoring._MIN_WEIGHT
    try:
        for label, budget, floor in (
            ("blocking budget (name-and-letter rule narrowed or left out)", 10**9, saved[1]),
            ("below the -10 bit scoring floor", 10**9, -1e6),
        ):
            scoring.PAIRS_PER_INCOMING_ROW, scoring._MIN_WEIGHT = budget, floor
            scored = score_people(people, run.data.existing, wide)
            for key, person in zip(scored.keys, people, strict=True):
                ranked = scored.ranked.get(key)
                if (
                    person.id not in found
                    and ranked
                    and any(c.existing_id == truth[person.id] for c in ranked.candidates)
                ):
                    found[person.id] = label
    finally:
        scoring.PAIRS_PER_INCOMING_ROW, scoring._MIN_WEIGHT = saved
    return {p.id: found.get(p.id, "not blocked by any rule") for p in people}


def report_causes(run: Run, found: list[tuple[RowView, str]]) -> Counter:
    n = len(run.decisions)
    counted = Counter(cause for _, cause in found)
    print(f"  review by cause ({len(found)} rows):")
    for cause, count in counted.most_common():
        print(f"        {count:>4}  {count / n:6.2%}  {cause}")
    return counted


def losing_comparisons(found: Iterable[tuple[RowView, str, str]]) -> None:
    """For the rows of class (b): the true candidate's evidence per comparison, tallied."""
    words: Counter = Counter()
    weights: dict[tuple[str, str], list[float]] = defaultdict(list)
    probabilities = []
    for view, c, _ in found:
        if c != "b" or view.truth is None:
            continue
        candidate = next((k for k in view.decision.candidates if k.existing_id == view.truth), None)
        if candidate is None:
            continue
        probabilities.append(candidate.probability)
        for comparison, said, weight in candidate.evidence:
            words[(comparison, said)] += 1
            weights[(comparison, said)].append(weight)
    if not probabilities:
        print("  (b) with an existing truth: none")
        return
    bits = sorted(math.log2(p / (1 - p)) if p < 1 else 50.0 for p in probabilities)
    print(f"  (b) rows, true candidate's weight: median {bits[len(bits) // 2]:.1f} bits; evidence per comparison:")
    for (comparison, said), count in words.most_common(14):
        w = weights[(comparison, said)]
        print(f"        {count:>4}  {comparison:<14} {sum(w) / len(w):+6.1f}  {said}")


def wrong_links(run: Run, rules: dict[tuple, Pattern]) -> None:
    """Each wrong link: a namesake no field tells apart, or not; and what the rows whose best
    candidate had the linked person's grades truly were (``rules``)."""
    for r, view in enumerate(run.views):
        d = view.decision
        if d.decision != "link" or d.existing_id == view.truth:
            continue
        x = run.where[d.existing_id]
        linked = grades(run.rows, r, run.cht, x)
        if view.truth is None:
            verdict = (
                "agrees on every field the row has"
                if agrees_fully(linked, len(run.rows.tokens[r]))
                else "does not agree on every field"
            )
            shown = ""
        else:
            t = run.where[view.truth]
            true = grades(run.rows, r, run.cht, t)
            verdict = (
                "at least as good as the true person on every field"
                if at_least(linked, true)
                else "worse than the true person on a field"
            )
            shown = f"; true person {true}"
        print(
            f"  {d.incoming_id} -> {d.existing_id} p {d.probability:.5f}, truly {view.truth or 'new'}: linked {verdict}"
        )
        print(f"      linked {linked}{shown}")
        row, other = run.rows.people[r], run.cht.people[x]
        rarest = min((run.index.count[t] for t in set(run.rows.tokens[r]) & set(run.cht.tokens[x])), default=0)
        key = _key(linked, frequency_band(rarest), row, other)
        seen = _pattern(rules, key)
        print(
            f"      rows whose best had these grades ({describe_key(key)}): {seen.rows}, the best was the person in "
            f"{seen.right}, the model predicted {seen.p_best:.1f}"
        )
        for comparison, said, weight in d.candidates[0].evidence:
            print(f"      {comparison:<14} {weight:+6.1f}  {said}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.matching_oracle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--existing", type=int, default=5000)
    parser.add_argument("--incoming", type=int, default=5000)
    parser.add_argument("--runs", nargs="*", default=list(DEFAULT_RUNS), help="population:seed:training seed")
    parser.add_argument("--wrong", nargs="*", default=list(DEFAULT_WRONG), help="runs whose wrong links to explain")
    parser.add_argument("--pool", nargs="*", default=list(DEFAULT_POOL), help="more runs, for the rules' counts only")
    parser.add_argument("--min-rows", type=int, default=MIN_ROWS, help="rows a pattern needs to be judged")
    parser.add_argument(
        "--floors-as-shares",
        action="store_true",
        help="score (and train) as before scoring.floors_for_population: frequency floors as shares",
    )
    parser.add_argument("--models", help="a folder keeping each run's trained model (read back when there)")
    parser.add_argument("--significance", type=float, default=SIGNIFICANCE, help="Poisson tail that makes (b)")
    parser.add_argument(
        "--cht-dates", action="store_true", help="populations with CHT-form estimated dates, year typos"
    )
    args = parser.parse_args(argv)
    if args.floors_as_shares:
        from cht_bridge.matching import scoring

        scoring.FLOOR_PEOPLE = 10**15

    def parse(text: str) -> tuple[str, int, int]:
        kind, seed, training_seed = text.split(":")
        if kind not in {"east", "west"}:
            raise SystemExit(f"{text}: population must be east or west")
        return kind, int(seed), int(training_seed)

    by_kind: dict[str, list[Run]] = defaultdict(list)
    for text in args.runs:
        kind, seed, training_seed = parse(text)
        by_kind[kind].append(
            prepare(kind, seed, training_seed, args.existing, args.incoming, args.models, args.cht_dates)
        )
    pool: dict[str, list[Run]] = defaultdict(list)
    for text in args.pool:
        kind, seed, training_seed = parse(text)
        pool[kind].append(prepare(kind, seed, training_seed, args.existing, args.incoming, args.models, args.cht_dates))
    for kind, runs in by_kind.items():
        rules = pooled_rules([*runs, *pool[kind]])
        print(
            f"\n== {'East African' if kind == 'east' else 'second population'}: rules pooled over "
            f"{len(runs) + len(pool[kind])} runs, "
            f"{len(rules)} grade patterns, {sum(c.rows >= args.min_rows for c in rules.values())} seen >= {args.min_rows} times"
        )
        for run in runs:
            found = classify(run, rules, args.min_rows, args.significance)
            report(run, found)
            report_causes(run, causes(run))
            losing_comparisons(found)
            wrong_links(run, rules)
    for text in args.wrong:
        kind, seed, training_seed = parse(text)
        run = prepare(kind, seed, training_seed, args.existing, args.incoming, args.models, args.cht_dates)
        metrics = evaluate(run.decisions, run.data)
        print(f"\n{run.label}: wrong links {metrics['wrong links']} (grades pooled with the runs above and this one)")
        wrong_links(run, pooled_rules([*by_kind.get(kind, []), *pool[kind], run]))


if __name__ == "__main__":
    main()
