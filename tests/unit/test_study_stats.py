"""forge.study.stats against hand-worked numbers: bootstrap and t intervals, paired gains over the
control arm, and the 2x2x2 factorial effects of a small hand-made design (and one with missing cells)."""

from __future__ import annotations

import math

import pytest

from forge.study.factors import ALL_CELLS, Factors
from forge.study.stats import (
    EFFECTS,
    bootstrap_ci,
    contrast_sign,
    estimate,
    factorial_effects,
    gain_over,
    t_interval,
    t_quantile,
)

NONE, F, A, FA = Factors(0, 0, 0), Factors(1, 0, 0), Factors(0, 1, 0), Factors(1, 1, 0)
R, FR, AR, FAR = Factors(0, 0, 1), Factors(1, 0, 1), Factors(0, 1, 1), Factors(1, 1, 1)


def test_t_quantiles_come_from_the_table():
    assert t_quantile(1) == 12.706 and t_quantile(2) == 4.303 and t_quantile(16) == 2.120
    assert t_quantile(35) == 2.042  # between tabulated dfs: the next smaller one (conservative)
    assert t_quantile(500) == 1.960
    with pytest.raises(ValueError):
        t_quantile(0)


def test_t_interval_by_hand():
    # mean 2, sd 1, n 3: 2 ± 4.303 / √3
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci.lo == pytest.approx(2 - 4.303 / math.sqrt(3)) and ci.hi == pytest.approx(2 + 4.303 / math.sqrt(3))
    assert t_interval([5.0]) is None


def test_bootstrap_of_three_seeds_is_their_range():
    # Each extreme is resampled three times with probability 1/27 > 2.5%: the 95% CI is [min, max].
    ci = bootstrap_ci([0.81, 0.79, 0.86])
    assert (ci.lo, ci.hi) == (pytest.approx(0.79), pytest.approx(0.86))
    # Two values: the resampled means are {a, (a+b)/2, b} with probabilities 1/4, 1/2, 1/4.
    ci = bootstrap_ci([1.0, 3.0])
    assert (ci.lo, ci.hi) == (1.0, 3.0)
    assert bootstrap_ci([1.0]) is None


def test_bootstrap_is_reproducible_and_seeded():
    values = [0.1, 0.4, 0.35, 0.8, 0.52, 0.61, 0.2]
    assert bootstrap_ci(values) == bootstrap_ci(values)
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=2)
    ci = bootstrap_ci(values)
    mean = sum(values) / len(values)
    assert min(values) < ci.lo < mean < ci.hi < max(values)


def test_estimate_summarises_mean_sd_and_both_intervals():
    est = estimate([1.0, 2.0, 3.0])
    assert est.n == 3 and est.mean == 2.0 and est.sd == 1.0
    assert (est.boot.lo, est.boot.hi) == (1.0, 3.0)
    single = estimate([0.7])
    assert single.sd is None and single.boot is None and single.t is None


def test_gain_is_paired_by_seed_over_the_seeds_both_arms_have():
    arm = {1: 0.80, 2: 0.85, 3: 0.83}
    control = {1: 0.78, 2: 0.80, 3: 0.84, 4: 0.90}  # seed 4 has no partner: left out
    gain = gain_over(arm, control)
    assert gain.paired and gain.seeds == (1, 2, 3)
    # differences 0.02, 0.05, -0.01: mean 0.02, sd 0.03
    assert gain.estimate.mean == pytest.approx(0.02)
    assert gain.estimate.boot.lo == pytest.approx(-0.01) and gain.estimate.boot.hi == pytest.approx(0.05)
    half = 4.303 * 0.03 / math.sqrt(3)
    assert gain.estimate.t.lo == pytest.approx(0.02 - half) and gain.estimate.t.hi == pytest.approx(0.02 + half)
    assert not gain.estimate.boot.excludes_zero


def test_gain_without_common_seeds_is_the_difference_of_means():
    gain = gain_over({1: 0.9, 2: 0.8}, {5: 0.7, 6: 0.6})
    assert not gain.paired and gain.estimate.mean == pytest.approx(0.2)
    assert gain.estimate.boot.lo <= 0.2 <= gain.estimate.boot.hi
    # Welch: both variances 0.005, se² = 0.005/2 + 0.005/2, df = 2 -> 0.2 ± 4.303 · √0.005
    half = 4.303 * math.sqrt(0.005)
    assert gain.estimate.t.lo == pytest.approx(0.2 - half) and gain.estimate.t.hi == pytest.approx(0.2 + half)
    assert gain_over({}, {1: 0.5}) is None


def test_contrast_signs_follow_the_2k_table():
    assert [contrast_sign("F", c) for c in ALL_CELLS] == [-1, 1, -1, 1, -1, 1, -1, 1]
    assert [contrast_sign("A", c) for c in ALL_CELLS] == [-1, -1, 1, 1, -1, -1, 1, 1]
    assert [contrast_sign("R", c) for c in ALL_CELLS] == [-1, -1, -1, -1, 1, 1, 1, 1]
    assert [contrast_sign("FxA", c) for c in ALL_CELLS] == [1, -1, -1, 1, 1, -1, -1, 1]
    assert [contrast_sign("FxAxR", c) for c in ALL_CELLS] == [-1, 1, 1, -1, 1, -1, -1, 1]


# Hand-made design: cell means none 1, F 3, A 2, FA 6, R 1, FR 3, AR 2, FAR 8. Worked by hand:
#   F     = (3+6+3+8 − 1−2−1−2)/4 = 3.5      FxA   = (1+6+1+8 − 3−2−3−2)/4 = 1.5
#   A     = (2+6+2+8 − 1−3−1−3)/4 = 2.5      FxR   = (1+2+3+8 − 3−6−1−2)/4 = 0.5
#   R     = (1+3+2+8 − 1−3−2−6)/4 = 0.5      AxR   = (1+3+2+8 − 2−6−1−3)/4 = 0.5
#   FxAxR = (3+2+1+8 − 1−6−3−2)/4 = 0.5
CELL_MEANS = {NONE: 1.0, F: 3.0, A: 2.0, FA: 6.0, R: 1.0, FR: 3.0, AR: 2.0, FAR: 8.0}
HAND_EFFECTS = {"F": 3.5, "A": 2.5, "R": 0.5, "FxA": 1.5, "FxR": 0.5, "AxR": 0.5, "FxAxR": 0.5}


def test_factorial_effects_match_the_hand_worked_design():
    # Three seeds per cell; only FAR varies (7, 8, 9), so every other cell's mean is exact.
    cells = {cell: [m, m, m] for cell, m in CELL_MEANS.items()}
    cells[FAR] = [7.0, 8.0, 9.0]
    result = factorial_effects(cells)
    assert result.computable and result.missing == () and result.df == 16
    assert [e.name for e in result.effects] == list(EFFECTS)
    for effect in result.effects:
        assert effect.estimate == pytest.approx(HAND_EFFECTS[effect.name]), effect.name
        # FAR enters every contrast with +1/4, and its bootstrap mean's 95% CI is [7, 9] (three seeds):
        assert effect.boot.lo == pytest.approx(HAND_EFFECTS[effect.name] - 0.25)
        assert effect.boot.hi == pytest.approx(HAND_EFFECTS[effect.name] + 0.25)
        # pooled s² = (1 + 0 + 1) / 16; SE² = s² · 8 / (16 · 3); t(0.975, 16) = 2.120
        half = 2.120 * math.sqrt((2 / 16) * 8 / 48)
        assert effect.t.lo == pytest.approx(HAND_EFFECTS[effect.name] - half)
        assert effect.t.hi == pytest.approx(HAND_EFFECTS[effect.name] + half)


def test_factorial_weights_cells_equally_whatever_their_seed_counts():
    cells = {cell: [m] for cell, m in CELL_MEANS.items()}
    cells[F] = [2.0, 4.0]  # mean 3, as before
    result = factorial_effects(cells)
    assert {e.name: e.estimate for e in result.effects} == pytest.approx(HAND_EFFECTS)
    assert result.df == 1 and result.cell_n[F] == 2


def test_factorial_with_one_seed_per_cell_has_estimates_but_no_intervals():
    result = factorial_effects({cell: [m] for cell, m in CELL_MEANS.items()})
    assert result.df == 0
    assert all(e.boot is None and e.t is None for e in result.effects)
    assert {e.name: e.estimate for e in result.effects} == pytest.approx(HAND_EFFECTS)


def test_factorial_with_missing_cells_is_reported_not_computed():
    cells = {cell: [m, m + 1] for cell, m in CELL_MEANS.items() if cell not in (FA, FAR)}
    cells[FR] = []  # a cell whose runs all failed counts as missing too
    result = factorial_effects(cells)
    assert not result.computable and result.effects == ()
    assert result.missing == (FA, FR, FAR)
    assert [c.label for c in result.missing] == ["FA", "FR", "FAR"]
    assert result.cell_means[NONE] == pytest.approx(1.5)
