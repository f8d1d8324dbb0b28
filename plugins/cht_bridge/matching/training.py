"""Estimate the matcher's model from a deployment's own data, with Splink's estimators on DuckDB.

The shipped model (``model.json``) was set by hand for one synthetic population; a deployment's
names, places and EMR habits differ. Training keeps the shipped model's comparisons (fitted to
the columns present, ``columns.py``) and re-estimates their parameters:

* u (how often two *different* people agree at a level) from random pairs
  (``estimate_u_using_random_sampling``, seeded), which needs no labels: pairs of a list row and
  a CHT person when a list is given (they have the shapes scored later: an EMR row names one
  village, a CHT person a whole lineage), else pairs of the CHT population. A list names its
  population, so a random pair of the two is the same person with probability ``share /
  existing`` (1.6e-4 at 5,000 x 5,000), and at a rare agreeing level those pairs are most of what
  the sample sees ("same name tokens" 1.12e-4 at 5k x 5k, <= 1e-5 at 100k). They are taken out:
  u = (observed - prior * m) / (1 - prior), with the start's m before Splink's EM and with each
  round's m and share in the one-to-one EM (``one_to_one.corrected_u``), floored at the sample's
  resolution as a rare level is (``MIN_U_PAIRS``). Not pairs of the CHT population instead: they
  would need two samples and differ in shape for places and areas; the subtraction keeps one
  sample, for every comparison, and needs only what the EM estimates anyway;
* m (how often the *same* person agrees at a level) by expectation maximisation over blocked pairs
  of the incoming list and the population (two sessions, each blocked on a field the other one
  estimates; Splink keeps the median), starting from the shipped values; then refined by an EM
  in which a list row is at most one existing person (``one_to_one.py``: candidates compete, as
  they do when the matcher decides), smoothed towards the shipped m by a few pairs' worth; a
  level with fewer than ``MIN_PAIRS_PER_LEVEL`` expected true pairs (none reaches it, or the list
  is small) keeps the shipped m and the others share the rest; reviewers' answers fix the posteriors of
  their rows' pairs in that EM (1 for the person linked, 0 for the others and for rows answered
  "new"), so a few hundred answers correct the hard cases without outweighing what thousands of
  pairs showed;
* every level keeps the shipped m when there is no incoming list; a list of fewer than
  ``MIN_INCOMING_ROWS`` rows is refused (the model is returned with the shipped m and a failed
  check, so the training DAG stores it as failed and keeps the one in use);
* the share of incoming people who already exist, and the two thresholds (``thresholds.py``),
  from the trained model's own probabilities on the list and from the labels.

A trained model also scores with the claims of a list's other rows (``exclusive.py``, marked
``exclusive_claims`` in its ``cht_bridge`` block): a person another row names beyond doubt is a
poor candidate, and a row is likelier one of the people the others leave.

Term frequencies are not frozen into the model: every run counts them over its own people, as
the shipped model does, so a name common in one area weighs less there.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from cht_bridge.matching.columns import AND_SAME_AREA, Profile, adapt, profile, reads_columns
from cht_bridge.matching.decisions import MatchConfig, config_for_model
from cht_bridge.matching.exclusive import EXCLUSIVE_CLAIMS
from cht_bridge.matching.features import DATES_BY_KIND, Frequencies, build_table, e164, tf_tables
from cht_bridge.matching.labels import Label, ruled_out, truth_of
from cht_bridge.matching.matcher import decide_all, score_people
from cht_bridge.matching.model import BRIDGE_KEY, CUTS, SPLIT_RESTS, WEIGHT_GAP, load_model
from cht_bridge.matching.one_to_one import MIN_PAIRS_PER_LEVEL, corrected_u, levels, refine
from cht_bridge.matching.records import Person
from cht_bridge.matching.scoring import exploded as _exploded
from cht_bridge.matching.thresholds import DUPLICATE_RISK, WRONG_LINK_RISK, choose, confusion

log = logging.getLogger(__name__)

#: Random pairs sampled to estimate u.
U_PAIRS = 500_000
#: A level seen in fewer of the sampled random pairs than this: the sample says only that its u
#: is below this many pairs' worth, not how far below (2 pairs of 500,000, u 4e-6, made "every
#: name the same or one letter apart" worth 13.3 bits, more than the same names). Its u is then
#: the start's, or that bound where the start's is above it (a level seen in none keeps the
#: start's, as Splink leaves it).
MIN_U_PAIRS = 10
#: An incoming list shorter than this is refused: a few true pairs cannot say which levels they
#: reach, and thresholds chosen on a few rows mean nothing.
MIN_INCOMING_ROWS = 100
#: A level of the start worth this many bits for a match must still count for one once trained.
STRONG_LEVEL_BITS = 5.0
#: A level of the start worth this many bits *against* a match must still count against one once
#: trained. The shipped model's levels that count against fall in two groups: -4.25 bits or less,
#: each saying "another person" on its own (names differ -6.6, 10+ years apart -7.2, sex differs
#: -5.6, places differ -4.3, one token shared with the same phone -4.3), and -3.3 bits or more,
#: hints a deployment's noise may rightly turn (an O-/A- pair of the other sex -3.3, numbers
#: differ -2.8: phones change; 3-9 years apart -1.9: ages re-estimated; one token shared -1.0: a
#: family name). Four bits lies in the gap. The 24 models the benchmark trained (East seeds 7, 11,
#: 16, 17, 20-25, second population 11 and 12, with and without 200 answers) keep each level of
#: the first group they estimated at -4.0 bits or less.
AGAINST_LEVEL_BITS = 4.0
#: The check a refused list fails (``checks``).
LIST_LARGE_ENOUGH = "list large enough to train on"
ESTIMATE_WITHOUT_TF = False
#: The block's list of the levels the data did not estimate (``_kept_start_m``).
KEPT_START_M = "kept_start_m"
#: A blocking rule that makes more candidate pairs than this per person of the larger list (on the
#: training data; pairs grow with both lists, and so may the budget) is
#: left out of the trained model: a place that is a village, not a household, would make every
#: run compare everyone in it, for little gain (narrower rules remain).
MAX_PAIRS_PER_ROW = 20
#: Blocked pairs one EM session reads at most (a deterministic sample beyond): bounds the time.
EM_MAX_PAIRS = 200_000
#: Pairs below this match weight are left out of the one-to-one EM (they cannot win a row).
ONE_TO_ONE_MIN_WEIGHT = -20.0
#: EM sessions: each blocks on a column whose comparison the other one estimates; the first two
#: that find pairs run. Phone is the last resort: a household shares one, and EM would take
#: relatives for the same person.
_EM_BLOCKS = (
    # Not on 1 January dates: estimated ages heap there, and relatives who share one would be
    # taken for the same person.
    ("date_of_birth", 'l."date_of_birth" = r."date_of_birth" AND NOT (l."birth_month" = 1 AND l."birth_day" = 1)'),
    # Same names in the same place: common names alone would bring in many namesakes, whom EM would
    # take for the same person born years apart.
    ("names", 'l."name_key" = r."name_key" AND l."place" = r."place"'),
    ("names", 'l."name_key" = r."name_key" AND l."birth_year" = r."birth_year"'),
    ("phone", 'l."phone" = r."phone"'),
)
_LAMBDA_SYNTAX = "SET lambda_syntax='ENABLE_SINGLE_ARROW'"
_MATCH_SHARE_BOUNDS = (0.05, 0.95)


def train(
    existing: Sequence[Person],
    incoming: Sequence[Person] = (),
    labels: Sequence[Label] = (),
    *,
    region: str = "KE",
    seed: int = 42,
    threads: int | None = None,
    wrong_link_risk: float = WRONG_LINK_RISK,
    duplicate_risk: float = DUPLICATE_RISK,
    lists: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Train a model; returns the model file's content (Splink settings plus a ``cht_bridge`` block).

    Deterministic for a seed (threads fixed to one while sampling).

    :param existing: the CHT population (required, at least two people).
    :param incoming: an EMR list (or several, concatenated); without it m stays the shipped model's.
    :param labels: reviewers' answers (``labels.py``); their ids are ``Person.id`` of the lists.
    :param lists: per incoming person, its list (pipeline) when ``incoming`` joins several: rows
        of different lists may name the same person and do not compete for it (``exclusive.py``).
    :raises ValueError: with fewer than two existing people or no field with values.
    """
    if len(existing) < 2:
        raise ValueError("training needs at least two existing people")
    started = time.perf_counter()
    existing_phones = [e164(p, region) for p in existing]
    incoming_phones = [e164(p, region) for p in incoming]
    found = profile([*existing, *incoming], [*existing_phones, *incoming_phones])
    # The shipped model fitted to the columns: the level set, the start, the prior, the fallback, and
    # what each level means to the checks. There is no other start: EM ended within 0.04 bits of
    # this one from a reversed model or another population's (README, "the checks see levels").
    shipped = adapt(load_model(), found)
    settings = copy.deepcopy(shipped)
    if 0 < len(incoming) < MIN_INCOMING_ROWS:
        return _refused(settings, found, len(existing), len(incoming), len(labels), seed, started)
    counts = Frequencies([*existing, *incoming], [*existing_phones, *incoming_phones])
    existing_table = build_table(existing, [f"e{i}" for i in range(len(existing))], existing_phones, counts)
    incoming_table = build_table(incoming, [f"i{i}" for i in range(len(incoming))], incoming_phones, counts)
    lookups = tf_tables([existing_table, incoming_table], counts, dates_by_kind=True)
    answers = _answers(labels, existing, incoming)
    share = 0.75
    estimated = _estimate(settings, shipped, existing_table, incoming_table, lookups, answers, seed, share)
    kept = _kept_start_m(estimated, shipped)
    trained = _normalised(_unestimated_cuts_as_their_rest(estimated, kept))
    model = dict(trained, **{BRIDGE_KEY: {"profile": found.as_dict(), DATES_BY_KIND: True, EXCLUSIVE_CLAIMS: True}})

    # The share of the list that already exists, then the thresholds, from the model's own view.
    config = MatchConfig(region=region, threads=threads, model=model, corroborated_link=1.0)
    scored = score_people(incoming, existing, config, lists) if incoming else None
    if scored is not None:
        measured = sum(scored.any_match(i) for i in range(len(incoming))) / len(incoming)
        share = min(max(measured, _MATCH_SHARE_BOUNDS[0]), _MATCH_SHARE_BOUNDS[1])
        if abs(share - config.expected_match_share) > 0.02:
            config = replace(config, expected_match_share=share)
            scored = score_people(incoming, existing, config, lists)
    block: dict[str, Any] = {
        "profile": found.as_dict(),
        DATES_BY_KIND: True,
        EXCLUSIVE_CLAIMS: True,
        "trained_on": {"existing": len(existing), "incoming": len(incoming), "labels": len(labels), "seed": seed},
        "expected_match_share": round(share, 4),
        "corroborated_link": 1.0,
        "risks": {"wrong_link": wrong_link_risk, "duplicate": duplicate_risk},
        KEPT_START_M: [list(key) for key in sorted(kept)],
    }
    if scored is not None:
        chosen = choose(scored, config, labels, wrong_link_risk, duplicate_risk)
        block.update(upper=chosen.upper, lower=chosen.lower)
        before_config = config_for_model(load_model(), region=region, threads=threads)
        before_scored = score_people(incoming, existing, before_config, lists) if labels else None
        after = decide_all(scored, replace(config, upper=chosen.upper, lower=chosen.lower))
        block["metrics"] = _metrics(after, labels, chosen)
        if before_scored is not None:
            block["metrics"]["confusion_before"] = confusion(decide_all(before_scored, before_config), labels)
        block["probabilities"] = [round(d.probability, 6) for d in after if d.probability is not None]
    block["checks"] = checks(trained, block, start=shipped)
    block["seconds"] = round(time.perf_counter() - started, 2)
    model[BRIDGE_KEY] = block
    return model


def checks(settings: dict[str, Any], block: dict[str, Any], start: dict[str, Any] | None = None) -> dict[str, bool]:
    """The checks a trained model must pass before a reverse DAG uses it.

    * each comparison's first level, and every level that ``start`` holds strong (at least
      ``STRONG_LEVEL_BITS`` for a match: the same name, date, phone or place), still counts *for*
      a match (m > u), or the model learnt nonsense (a strong level at weight 0 sends its true
      pairs to new); a weak level ("same year", "1-2 years apart") may turn with the data;
    * every level that ``start`` holds strongly against a match (``AGAINST_LEVEL_BITS``: names
      differ, other sex, 10+ years apart, places differ) still counts *against* one (m < u): a
      reviewer swapped the m of two levels, one of them such a level, and every check passed, yet
      such a model counts the difference as evidence of the same person;
    * neither holds a level the data did not estimate (``block[KEPT_START_M]``: too few true pairs
      reached it, ``one_to_one.MIN_PAIRS_PER_LEVEL``): its m is the start's by design, and only its
      u, measured on this data, moved its weight;
    * every m and u is a probability and each comparison's m sum to 1;
    * no labelled pair is linked wrongly with the chosen thresholds;
    * the thresholds were chosen (there was a list to choose them on);
    * the list was large enough to train on (``MIN_INCOMING_ROWS``; absent from the block: it was).
    """
    kept = {tuple(key) for key in block.get(KEPT_START_M, [])}
    strong = _strong_levels(start) - kept if start is not None else set()
    against = _strong_levels(start, against=True) - kept if start is not None else set()
    same_levels_agree = all(
        level["m_probability"] > level["u_probability"]
        for comparison in settings["comparisons"]
        for position, level in enumerate(lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level"))
        if position == 0 or (comparison["output_column_name"], level.get("label_for_charts", "")) in strong
    )
    differences_disagree = all(
        level["m_probability"] < level["u_probability"]
        for comparison in settings["comparisons"]
        for level in comparison["comparison_levels"]
        if not level.get("is_null_level")
        and (comparison["output_column_name"], level.get("label_for_charts", "")) in against
    )
    sums_to_one = all(
        abs(sum(lv["m_probability"] for lv in c["comparison_levels"] if not lv.get("is_null_level")) - 1) < 1e-4
        and all(
            0 < lv[key] <= 1
            for lv in c["comparison_levels"]
            if not lv.get("is_null_level")
            for key in ("m_probability",)
        )
        for c in settings["comparisons"]
    )
    confusion_after = block.get("metrics", {}).get("confusion_after", {})
    no_wrong = all(row.get("linked wrong", 0) == 0 for row in confusion_after.values())
    return {
        "agreement counts for a match": same_levels_agree,
        "disagreement counts against a match": differences_disagree,
        "m-probabilities are a distribution": sums_to_one,
        "no labelled pair linked wrongly": no_wrong,
        "thresholds chosen on a list": "upper" in block,
        LIST_LARGE_ENOUGH: not block.get("refused"),
    }


def _strong_levels(settings: dict[str, Any], against: bool = False) -> set[tuple[str, str]]:
    """(comparison, label) of the levels that count ``STRONG_LEVEL_BITS`` or more for a match
    (``against``: ``AGAINST_LEVEL_BITS`` or more against one),
    but for the rest of a split level (``model.SPLIT_RESTS``), whose weight was the wider level's,
    and the rest of a place level split by an independent area (``columns.AND_SAME_AREA``: "same
    place" with another postcode may rightly weigh little where suburbs are few)."""
    labels = [
        (c["output_column_name"], lv.get("label_for_charts", ""))
        for c in settings["comparisons"]
        for lv in c["comparison_levels"]
    ]
    rests = SPLIT_RESTS | {
        (name, label.removesuffix(AND_SAME_AREA)) for name, label in labels if label.endswith(AND_SAME_AREA)
    }
    return {
        (comparison["output_column_name"], level.get("label_for_charts", ""))
        for comparison in settings["comparisons"]
        for level in comparison["comparison_levels"]
        if not level.get("is_null_level")
        and (
            level["m_probability"] <= level["u_probability"] * 2**-AGAINST_LEVEL_BITS
            if against
            else level["m_probability"] >= level["u_probability"] * 2**STRONG_LEVEL_BITS
        )
        and (comparison["output_column_name"], level.get("label_for_charts", "")) not in rests
    }


def _unestimated_cuts_as_their_rest(estimated: dict[str, Any], kept: set[tuple[str, str]]) -> dict[str, Any]:
    """``estimated`` with each narrower level the data could not estimate (``kept``: its m is the
    start's) weighed as the rest of the level it was cut from (``model.CUTS``; that rest's own rest
    where it was not estimated either), a hair above it so that the two keep their names
    (``scoring._level_of``).

    Its u is measured on random pairs either way, and a start m over a measured u is no weight:
    the start gives a narrower level the wider one's weight by giving it the same share of m and u,
    but strangers reach it far more rarely than that share ("same birthday, last digit of the year
    off": 1/10 of the wider u at the start, about 1/400 measured), so where the data held no year
    typos that level became +3.5 bits and linked newcomers of the household born years apart on the
    same day and month, where the level it was cut from weighs -10 bits.
    """
    result = copy.deepcopy(estimated)
    for comparison in result["comparisons"]:
        name = comparison["output_column_name"]
        levels = {
            lv.get("label_for_charts"): lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")
        }
        for label, level in levels.items():
            if (name, label) not in kept:
                continue
            rest = CUTS.get((name, label))
            while rest is not None and (name, rest) in kept:
                rest = CUTS.get((name, rest))
            if rest in levels:
                weight = levels[rest]["m_probability"] / levels[rest]["u_probability"]
                level["m_probability"] = level["u_probability"] * weight * WEIGHT_GAP
    return result


def _kept_start_m(estimated: dict[str, Any], start: dict[str, Any]) -> set[tuple[str, str]]:
    """(comparison, label) of the levels whose m training left at the start's (``one_to_one``:
    too few expected true pairs; every level when there was no list)."""
    before = {key: found.get("m_probability") for key, found in _values(start).items()}
    return {key for key, found in _values(estimated).items() if found.get("m_probability") == before.get(key)}


def _refused(
    settings: dict[str, Any], found: Profile, existing: int, incoming: int, labels: int, seed: int, started: float
) -> dict[str, Any]:
    """The shipped model fitted to the columns, marked failed: the list is too short to train on."""
    message = f"training refused: {incoming} incoming rows, at least {MIN_INCOMING_ROWS} needed"
    log.warning("%s; the model in use is kept", message)
    model = _normalised(settings)
    block: dict[str, Any] = {
        "profile": found.as_dict(),
        "trained_on": {"existing": existing, "incoming": incoming, "labels": labels, "seed": seed},
        "refused": message,
    }
    block["checks"] = checks(model, block, start=settings)
    block["seconds"] = round(time.perf_counter() - started, 2)
    model[BRIDGE_KEY] = block
    return model


def passed(model: dict[str, Any]) -> bool:
    """Whether a trained model passed every check (``checks``)."""
    found = model.get(BRIDGE_KEY, {}).get("checks") or {}
    return bool(found) and all(found.values())


def _metrics(decisions: Sequence[Any], labels: Sequence[Label], chosen: Any) -> dict[str, Any]:
    n = max(len(decisions), 1)
    counts = {kind: sum(1 for d in decisions if d.decision == kind) for kind in ("link", "review", "new")}
    return {
        "incoming": len(decisions),
        **counts,
        "review_share": round(counts["review"] / n, 4),
        "expected_wrong_links": chosen.expected_wrong_links,
        "expected_duplicates": chosen.expected_duplicates,
        "confusion_after": confusion(decisions, labels),
    }


def _estimate(
    settings: dict[str, Any],
    shipped: dict[str, Any],
    existing: Any,
    incoming: Any,
    lookups: dict[str, Any],
    answers: tuple[dict[str, str | None], set[tuple[str, str]]],
    seed: int,
    share: float,
) -> dict[str, Any]:
    """Run Splink's estimators from ``settings``; returns them with estimated m and u. ``shipped``
    (the shipped model fitted to the columns) is what the one-to-one EM smooths towards and what a
    level too few true pairs reach keeps.

    On one DuckDB thread: the seeded sample and EM's sums are then repeatable to the last digit.
    """
    import duckdb
    from splink import DuckDBAPI, Linker

    connection = duckdb.connect(":memory:")
    try:
        connection.execute(_LAMBDA_SYNTAX)
        connection.execute("SET threads=1")
        db_api = DuckDBAPI(connection)
        existing_df = db_api.register(existing, table_name="existing_people")
        frames = {column: db_api.register(table, table_name=f"tf_{column}") for column, table in lookups.items()}
        prior = share / max(existing.num_rows, 1)
        if incoming.num_rows == 0:
            population = Linker(existing_df, _with_prior(settings, prior), log_level=None)
            _register_tf(population, settings, frames)
            population.training.estimate_u_using_random_sampling(max_pairs=U_PAIRS, seed=seed)
            sampled = existing.num_rows * (existing.num_rows - 1) // 2
            # pairs of one population hold no true pair (but its duplicates): nothing to take out
            return _merged(
                settings, _without_true_pairs(_sampled_u(population), settings, 0.0, sampled), "u_probability"
            )
        incoming_df = db_api.register(incoming, table_name="incoming_people")
        start_comparisons = shipped["comparisons"]
        settings = _narrow_blocking(connection, settings, max(incoming.num_rows, existing.num_rows))
        linker = Linker(
            [existing_df, incoming_df], dict(_with_prior(settings, prior), link_type="link_only"), log_level=None
        )
        _register_tf(linker, settings, frames)
        linker.training.estimate_u_using_random_sampling(max_pairs=U_PAIRS, seed=seed)
        sampled = existing.num_rows * incoming.num_rows
        observed = _sampled_u(linker)
        # Splink's EM starts from u with the true pairs the start's m expects taken out; the
        # one-to-one EM then takes out those its own m finds (``one_to_one.corrected_u``).
        result = _merged(settings, _without_true_pairs(observed, settings, prior, sampled), "u_probability")
        compared = {c["output_column_name"] for c in settings["comparisons"]}
        usable = [
            rule
            for field, rule in _EM_BLOCKS
            if field in compared and _leaves_a_comparison(rule, settings) and _block_has_pairs(connection, rule)
        ]
        for rule in usable[:2]:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule,
                fix_u_probabilities=True,
                estimate_without_term_frequencies=ESTIMATE_WITHOUT_TF,
                max_pairs=EM_MAX_PAIRS,
            )
        estimated = _merged(result, _values(linker.misc.save_model_to_json()), "m_probability")
        estimated = _one_to_one(
            connection,
            existing.column_names,
            estimated,
            existing_df,
            incoming_df,
            frames,
            prior,
            share,
            existing.num_rows,
            answers,
            start_comparisons,
            (observed, _resolution(sampled)),
        )
        return estimated
    finally:
        connection.close()


def _one_to_one(
    connection: Any,
    feature_columns: Sequence[str],
    settings: dict[str, Any],
    existing_df: Any,
    incoming_df: Any,
    frames: dict[str, Any],
    prior: float,
    share: float,
    n_existing: int,
    answers: tuple[dict[str, str | None], set[tuple[str, str]]],
    start: Sequence[dict[str, Any]],
    sample: tuple[dict[tuple[str, str], float], float],
) -> dict[str, Any]:
    """EM's m refined by the one-to-one EM over the pairs the model will score (``one_to_one.py``),
    smoothed towards the start's comparisons (``start``), with the reviewers' answers fixing their
    rows' pairs; u re-estimated with it from the random sample's shares and resolution (``sample``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from splink import Linker

    linker = Linker(
        [existing_df, incoming_df], dict(_with_prior(settings, prior), link_type="link_only"), log_level=None
    )
    _register_tf(linker, settings, frames)
    scored = linker.inference.predict(threshold_match_weight=ONE_TO_ONE_MIN_WEIGHT).as_pyarrow_table()
    # Splink may put either list on the left of a pair.
    swapped = pc.equal(scored.column("source_dataset_l"), "incoming_people")
    pairs = pa.table(
        {
            "existing": pc.if_else(swapped, scored.column("unique_id_r"), scored.column("unique_id_l")),
            "incoming": pc.if_else(swapped, scored.column("unique_id_l"), scored.column("unique_id_r")),
            **{name: scored.column(name) for name in scored.column_names if name.startswith("mw_tf_adj_")},
        }
    )
    connection.register("one_to_one_pairs", pairs)
    table = levels(connection, "one_to_one_pairs", settings["comparisons"], feature_columns)
    comparisons, _ = refine(
        table,
        settings["comparisons"],
        start,
        share=share,
        n_existing=n_existing,
        bounds=_MATCH_SHARE_BOUNDS,
        known=answers[0],
        excluded=answers[1],
        observed=sample[0],
        resolution=sample[1],
    )
    return dict(settings, comparisons=comparisons)


def _narrow_blocking(connection: Any, settings: dict[str, Any], rows: int) -> dict[str, Any]:
    """The settings without blocking rules that make more than ``MAX_PAIRS_PER_ROW`` pairs per
    person of the larger list (``rows``)."""
    kept = []
    for rule in settings["blocking_rules_to_generate_predictions"]:
        explode = rule.get("arrays_to_explode", [])
        sides = [_exploded(table, explode) for table in ("existing_people", "incoming_people")]
        sql = (
            f"SELECT count(*) FROM (SELECT DISTINCT l.unique_id, r.unique_id FROM {sides[0]} l "  # noqa: S608
            f"JOIN {sides[1]} r ON {rule['blocking_rule']})"
        )
        pairs = connection.execute(sql).fetchall()[0][0]
        if pairs <= MAX_PAIRS_PER_ROW * max(rows, 1):
            kept.append(rule)
        else:
            log.info("blocking rule left out: %d pairs for %d rows (%s)", pairs, rows, rule["blocking_rule"])
    return dict(
        settings, blocking_rules_to_generate_predictions=kept or settings["blocking_rules_to_generate_predictions"]
    )


def _leaves_a_comparison(rule: str, settings: dict[str, Any]) -> bool:
    """Whether EM blocked on ``rule`` has a comparison left to estimate. Splink leaves out every
    comparison reading a column the rule reads, and with none left its SQL fails: data with names
    and places only (no date of birth, no phone) had no other comparison for "same names in the
    same place", and ``train`` stopped with a DuckDB parser error."""
    columns = re.findall(r'[lr]\."(\w+)"', rule)
    return any(
        not any(reads_columns(level["sql_condition"], columns, '"{}_l"') for level in comparison["comparison_levels"])
        for comparison in settings["comparisons"]
    )


def _block_has_pairs(connection: Any, rule: str) -> bool:
    sql = f"SELECT count(*) FROM existing_people l JOIN incoming_people r ON {rule}"  # noqa: S608 (fixed rules)
    return connection.execute(sql).fetchall()[0][0] >= 2 * MIN_PAIRS_PER_LEVEL


def _register_tf(linker: Any, settings: dict[str, Any], frames: dict[str, Any]) -> None:
    used = {
        level.get("tf_adjustment_column")
        for comparison in settings["comparisons"]
        for level in comparison["comparison_levels"]
    }
    for column, frame in frames.items():
        if column in used:
            linker.table_management.register_term_frequency_lookup(frame, column)


def _with_prior(settings: dict[str, Any], prior: float) -> dict[str, Any]:
    return dict(settings, probability_two_random_records_match=min(max(prior, 1e-9), 0.5))


def _values(saved: dict[str, Any]) -> dict[tuple[str, str], dict[str, float]]:
    """(comparison, level label) → the m and u Splink holds after training."""
    return {
        (comparison["output_column_name"], level.get("label_for_charts", "")): {
            key: level[key] for key in ("m_probability", "u_probability") if level.get(key) is not None
        }
        for comparison in saved["comparisons"]
        for level in comparison["comparison_levels"]
        if not level.get("is_null_level")
    }


def _sampled_u(linker: Any) -> dict[tuple[str, str], float]:
    """Each level's share of the random pairs Splink sampled (its raw u)."""
    return {
        key: found["u_probability"]
        for key, found in _values(linker.misc.save_model_to_json()).items()
        if "u_probability" in found
    }


def _resolution(pairs: int) -> float:
    """The smallest u the random sample tells from "rarer still": ``MIN_U_PAIRS`` of the pairs
    sampled (``U_PAIRS``, or every pair of ``pairs`` when fewer)."""
    return MIN_U_PAIRS / min(U_PAIRS, max(pairs, 1))


def _without_true_pairs(
    observed: dict[tuple[str, str], float], start: dict[str, Any], prior: float, pairs: int
) -> dict[tuple[str, str], dict[str, float]]:
    """u of random pairs with the true pairs the m of ``start`` expects among them (``prior``: a
    pair's chance of being one person) taken out (``one_to_one.corrected_u``), each level seen in
    fewer than ``MIN_U_PAIRS`` of the pairs sampled floored at the smaller of the start's u and
    that resolution."""
    import numpy as np

    before = _values(start)
    keys = [key for key in observed if key in before]
    m = np.array([before[key].get("m_probability", 0.0) for key in keys])
    start_u = np.array([before[key].get("u_probability", _resolution(pairs)) for key in keys])
    found = corrected_u(np.array([observed[key] for key in keys]), m, prior, _resolution(pairs), start_u)
    return {key: {"u_probability": float(u)} for key, u in zip(keys, found, strict=True)}


def _merged(settings: dict[str, Any], values: dict[tuple[str, str], dict[str, float]], key: str) -> dict[str, Any]:
    merged = copy.deepcopy(settings)
    for comparison in merged["comparisons"]:
        for level in comparison["comparison_levels"]:
            value = values.get((comparison["output_column_name"], level.get("label_for_charts", "")), {}).get(key)
            if value is not None and not level.get("is_null_level") and math.isfinite(value) and value > 0:
                level[key] = float(value)
    return merged


def _normalised(estimated: dict[str, Any]) -> dict[str, Any]:
    """Each comparison's m summing to one again, rounded for a readable, stable file. Levels with
    too few expected true pairs already hold the start's m (``one_to_one.MIN_PAIRS_PER_LEVEL``,
    judged on the pairs the data puts at a level, not on its estimated m: resetting a *small*
    estimate made on many true pairs, the shipped 3 % for "one token shared" where the data showed
    0.05 %, made every relative sharing a family name a candidate worth review)."""
    result = copy.deepcopy(estimated)
    for comparison in result["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        total = sum(level["m_probability"] for level in levels)
        for level in levels:
            level["m_probability"] = _round(level["m_probability"] / total)
            level["u_probability"] = _round(level["u_probability"])
    return result


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _answers(
    labels: Sequence[Label], existing: Sequence[Person], incoming: Sequence[Person]
) -> tuple[dict[str, str | None], set[tuple[str, str]]]:
    """The labels in the training tables' keys: what each answered row is (an existing key, or
    ``None`` for new), and the (existing, incoming) pairs reviewers ruled out."""
    existing_keys = {p.id: f"e{i}" for i, p in enumerate(existing)}
    incoming_keys = {p.id: f"i{i}" for i, p in enumerate(incoming)}
    known = {
        incoming_keys[row]: existing_keys.get(person) if person else None
        for row, person in truth_of(labels).items()
        if row in incoming_keys and (person is None or person in existing_keys)
    }
    excluded = {
        (existing_keys[person], incoming_keys[row])
        for row, person in ruled_out(labels)
        if row in incoming_keys and person in existing_keys
    }
    return known, excluded


def profile_of(model: dict[str, Any]) -> Profile | None:
    """The column profile a trained model was fitted to, if it is a trained model."""
    found = model.get(BRIDGE_KEY, {}).get("profile")
    return Profile(**found) if found else None
