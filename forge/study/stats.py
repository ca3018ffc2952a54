"""Small-sample statistics for a seeds-as-replicates study: means with 95% intervals, gains over the
control arm, and the 2x2x2 factorial effects. numpy only (no scipy).

Two intervals are given for every mean, because neither is good alone at 3 seeds:

- the percentile bootstrap (resample the seeds with replacement, `N_BOOT` times, from a fixed RNG
  seed so that a regenerated report prints the same numbers). It assumes nothing about the
  distribution, but with n = 3 it is coarse: there are only 10 distinct resamples, and each extreme
  value is drawn three times with probability 1/27 > 2.5%, so the 95% interval of a mean of 3 is
  exactly [min, max] of the three values. It under-covers (too narrow) at small n.
- the t interval, mean ± t(0.975, n−1) · sd / √n, exact if the seeds' values are normal; at n = 3
  t = 4.303, so it is much wider. The quantiles are a hard-coded table (`T_975`).

A difference whose intervals both exclude 0 is unlikely to be seed noise; one that only the
bootstrap excludes is weak evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from forge.study.factors import ALL_CELLS, Factors

LEVEL = 0.95
N_BOOT = 10_000
RNG_SEED = 0

# Two-sided 95% quantiles of Student's t, t(0.975, df). Beyond the table the next smaller tabulated df
# is used (slightly conservative); 1.960 is the normal limit.
T_975: dict[int, float] = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
    20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
    29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}
Z_975 = 1.960

EFFECTS: tuple[str, ...] = ("F", "A", "R", "FxA", "FxR", "AxR", "FxAxR")


def t_quantile(df: int) -> float:
    """t(0.975, df) from the table (df >= 1)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    if df in T_975:
        return T_975[df]
    below = [d for d in T_975 if d < df]
    return T_975[max(below)] if df <= 120 else Z_975


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


@dataclass(frozen=True)
class Estimate:
    """A mean (or difference of means) over seeds with its two 95% intervals (None when n < 2)."""

    n: int
    mean: float
    sd: Optional[float]
    boot: Optional[Interval]
    t: Optional[Interval]


def _percentiles(draws: np.ndarray) -> Interval:
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Interval(float(lo), float(hi))


def _resampled_means(values: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """n_boot bootstrap means of values (each row: len(values) draws with replacement)."""
    return values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)


def bootstrap_ci(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = RNG_SEED) -> Optional[Interval]:
    """Percentile bootstrap 95% interval of the mean; None for fewer than 2 values."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return None
    return _percentiles(_resampled_means(data, np.random.default_rng(seed), n_boot))


def t_interval(values: Sequence[float]) -> Optional[Interval]:
    """mean ± t(0.975, n−1) · sd / √n; None for fewer than 2 values."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return None
    half = t_quantile(len(data) - 1) * float(data.std(ddof=1)) / math.sqrt(len(data))
    return Interval(float(data.mean()) - half, float(data.mean()) + half)


def estimate(values: Sequence[float], *, n_boot: int = N_BOOT, seed: int = RNG_SEED) -> Estimate:
    """Mean, sd and both intervals of values (at least one)."""
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        raise ValueError("estimate() needs at least one value")
    return Estimate(n=len(data), mean=float(data.mean()), sd=float(data.std(ddof=1)) if len(data) > 1 else None,
                    boot=bootstrap_ci(data, n_boot=n_boot, seed=seed), t=t_interval(data))


@dataclass(frozen=True)
class Gain:
    """An arm minus the control arm. paired: differences taken seed by seed over `seeds` (the seeds
    both have); otherwise (no common seed) the difference of the two means."""

    paired: bool
    seeds: tuple[int, ...]
    estimate: Estimate


def _welch(a: np.ndarray, b: np.ndarray) -> Optional[Interval]:
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    diff = float(a.mean() - b.mean())
    if se == 0:
        return Interval(diff, diff)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = t_quantile(max(1, int(df))) * se
    return Interval(diff - half, diff + half)


def gain_over(arm: Mapping[int, float], control: Mapping[int, float], *, n_boot: int = N_BOOT,
              seed: int = RNG_SEED) -> Optional[Gain]:
    """arm − control, paired by seed when they share seeds (seed -> value maps); None if either is empty.

    Pairing removes what a seed does to both arms (data order, init, subset), which is most of the
    seed-to-seed spread. Seeds only one arm has are left out of the paired difference.
    """
    if not arm or not control:
        return None
    common = tuple(sorted(set(arm) & set(control)))
    if common:
        return Gain(True, common, estimate([arm[s] - control[s] for s in common], n_boot=n_boot, seed=seed))
    a, b = np.asarray(list(arm.values()), float), np.asarray(list(control.values()), float)
    boot = None
    if len(a) > 1 or len(b) > 1:
        rng = np.random.default_rng(seed)
        boot = _percentiles(_resampled_means(a, rng, n_boot) - _resampled_means(b, rng, n_boot))
    est = Estimate(n=min(len(a), len(b)), mean=float(a.mean() - b.mean()), sd=None, boot=boot, t=_welch(a, b))
    return Gain(False, (), est)


def contrast_sign(effect: str, cell: Factors) -> int:
    """+1/−1 coefficient of a cell in an effect's contrast: the product over the effect's factors of
    +1 (factor on) or −1 (off). E.g. FxA is +1 on cells where F and A are both on or both off."""
    on = {"F": cell.F, "A": cell.A, "R": cell.R}
    sign = 1
    for factor in effect.split("x"):
        sign *= 1 if on[factor] else -1
    return sign


@dataclass(frozen=True)
class Effect:
    """A factorial effect: (mean of the +1 cells) − (mean of the −1 cells), with a bootstrap interval
    (seeds resampled within each cell) and a t interval from the pooled within-cell variance."""

    name: str
    estimate: float
    boot: Optional[Interval]
    t: Optional[Interval]


@dataclass(frozen=True)
class Factorial:
    """The 2x2x2 analysis; `missing` lists empty cells (then `effects` is empty: not computable)."""

    cell_means: dict[Factors, float]
    cell_n: dict[Factors, int]
    effects: tuple[Effect, ...]
    missing: tuple[Factors, ...]
    df: int

    @property
    def computable(self) -> bool:
        return not self.missing


def factorial_effects(cells: Mapping[Factors, Sequence[float]], *, n_boot: int = N_BOOT,
                      seed: int = RNG_SEED) -> Factorial:
    """Main effects and interactions of F, A, R from the values (one per seed) of each cell.

    effect = Σ_cells sign · mean / 4, the usual 2^3 estimate from cell means (each cell weighs the
    same whatever its number of seeds). Its t interval uses the pooled within-cell variance s²:
    SE² = s² · Σ_cells 1 / (16 · n_cell), df = Σ (n_cell − 1).
    """
    data = {cell: np.asarray(cells.get(cell, ()), dtype=float) for cell in ALL_CELLS}
    missing = tuple(cell for cell in ALL_CELLS if len(data[cell]) == 0)
    cell_n = {cell: len(v) for cell, v in data.items()}
    cell_means = {cell: float(v.mean()) for cell, v in data.items() if len(v)}
    df = sum(max(n - 1, 0) for n in cell_n.values())
    if missing:
        return Factorial(cell_means, cell_n, (), missing, df)
    signs = np.array([[contrast_sign(e, cell) for cell in ALL_CELLS] for e in EFFECTS], dtype=float)
    means = np.array([cell_means[cell] for cell in ALL_CELLS])
    estimates = signs @ means / 4.0

    boot_ci: list[Optional[Interval]] = [None] * len(EFFECTS)
    if df > 0:
        rng = np.random.default_rng(seed)
        draws = np.stack([_resampled_means(data[cell], rng, n_boot) for cell in ALL_CELLS])  # 8 x n_boot
        boot_effects = signs @ draws / 4.0
        boot_ci = [_percentiles(row) for row in boot_effects]

    t_ci: list[Optional[Interval]] = [None] * len(EFFECTS)
    if df > 0:
        pooled = sum(float(((v - v.mean()) ** 2).sum()) for v in data.values()) / df
        se = math.sqrt(pooled * sum(1.0 / (16.0 * n) for n in cell_n.values()))
        half = t_quantile(df) * se
        t_ci = [Interval(float(e) - half, float(e) + half) for e in estimates]

    effects = tuple(Effect(name, float(est), b, t) for name, est, b, t in zip(EFFECTS, estimates, boot_ci, t_ci))
    return Factorial(cell_means, cell_n, effects, (), df)
