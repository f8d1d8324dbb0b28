"""Training's u from random list x population pairs, with the true pairs among them taken out.

A list names its population: 1,000 rows of which about 80 % are among 1,000 CHT people put one
true pair in ~1,250 random pairs, and at a rare agreeing level those pairs are most of what the
sample sees. u must be what two *different* people show, as on pairs of the population alone."""

from __future__ import annotations

import numpy as np
import pytest

from cht_bridge.matching.one_to_one import corrected_u
from cht_bridge.matching.training import train
from standins.populations import population
from standins.populations_west import west_population


def _u(model: dict, comparison: str, label: str) -> float:
    for found in model["comparisons"]:
        if found["output_column_name"] == comparison:
            for level in found["comparison_levels"]:
                if level.get("label_for_charts") == label:
                    return level["u_probability"]
    raise KeyError((comparison, label))


@pytest.mark.parametrize(
    ("make", "levels"),
    [
        (population, [("names", "same name tokens"), ("date_of_birth", "same date"), ("phone", "same E.164 number")]),
        (west_population, [("names", "same name tokens"), ("date_of_birth", "same date")]),
    ],
)
def test_u_of_an_agreeing_level_is_not_inflated_by_the_true_pairs(make, levels) -> None:
    data = make(1000, 1000, seed=21)
    with_list = train(data.existing, data.incoming, seed=3)
    alone = train(data.existing, seed=3)  # u from pairs of the CHT population, none of them true
    for comparison, label in levels:
        # before: "same name tokens" 5.7e-4 against 1e-5 on East, 8.7e-4 against 3.1e-4 on the second population
        assert _u(with_list, comparison, label) <= 2 * _u(alone, comparison, label), (comparison, label)


def test_corrected_u_takes_the_true_pairs_out_and_stops_at_the_samples_resolution() -> None:
    observed = np.array([0.5, 1e-3, 1.2e-4, 3e-5])
    m = np.array([0.1, 0.5, 0.7, 0.2])
    start = np.array([0.5, 1e-3, 1e-6, 1e-2])
    found = corrected_u(observed, m, prior=1e-4, resolution=2e-5, start=start)
    assert found[0] == pytest.approx((0.5 - 1e-5) / (1 - 1e-4))
    assert found[1] == pytest.approx((1e-3 - 5e-5) / (1 - 1e-4))
    # 1.2e-4 - 0.7e-4 = 5e-5 left: measured
    assert found[2] == pytest.approx((1.2e-4 - 7e-5) / (1 - 1e-4))
    # 3e-5 - 2e-5 = 1e-5 left, below what the sample can tell: the smaller of the start and the bound
    assert found[3] == pytest.approx(2e-5)
    assert corrected_u(np.array([1e-5]), np.array([0.9]), 1e-4, 2e-5, np.array([1e-6]))[0] == pytest.approx(1e-6)
    # no true pairs expected: the observed share, as before
    assert corrected_u(observed[:2], m[:2], 0.0, 2e-5, start[:2]) == pytest.approx(observed[:2])
