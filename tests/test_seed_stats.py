"""Across-seed statistics, and the scipy versions of the bootstrap and isotonic fits giving
the numbers of the hand-written versions they replaced."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from safeknob import seeding
from safeknob.evaluation.metrics import (
    SEED_METRICS,
    bootstrap_ci,
    seed_interval,
    separated,
    summarize_method,
)
from safeknob.stages.calibrate import isotonic


def _old_bootstrap_ci(x, n_boot=2000, level=0.95, seed=0):
    """The hand-written percentile bootstrap safeknob used before scipy.stats.bootstrap."""
    arr = np.asarray(x, dtype=float)
    n = arr.size
    mean = float(np.mean(arr))
    if n == 1 or np.ptp(arr) == 0.0:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    rows = max(1, (1 << 22) // n)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        boot[start:stop] = arr[idx].mean(axis=1)
    a = 1.0 - level
    lo, hi = np.quantile(boot, [a / 2.0, 1.0 - a / 2.0])
    return mean, float(min(lo, mean)), float(max(hi, mean))


def _old_isotonic(y):
    blocks: list[list[float]] = []
    for v in y:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2 = blocks.pop()
            v1, w1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2])
    return np.concatenate([[v] * int(w) for v, w in blocks])


@pytest.mark.parametrize("n", [2, 7, 200, 501])
@pytest.mark.parametrize("seed", [0, 10_000])
def test_scipy_bootstrap_gives_the_old_numbers(n, seed):
    x = np.random.default_rng(n).exponential(size=n)
    new = bootstrap_ci(x, n_boot=1000, seed=seed)
    old = _old_bootstrap_ci(x, n_boot=1000, seed=seed)
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-12)


def test_scipy_isotonic_gives_the_old_numbers():
    rng = np.random.default_rng(1)
    for _ in range(50):
        y = np.cumsum(rng.normal(0.05, 0.2, size=11))
        np.testing.assert_allclose(isotonic(y), _old_isotonic(y), atol=1e-12)


def _rows(n_seeds: int, noise: float = 0.05) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for s in range(n_seeds):
        for a in np.linspace(0, 1, 6):
            p = a + rng.normal(0, noise)
            rows.append(
                {
                    "alpha": a, "seed": s, "cost_mean": 1 + 2 * p, "cost_lo": 0.9 + 2 * p,
                    "cost_hi": 1.1 + 2 * p, "position": p, "chord_gain": rng.normal(0.02, 0.01),
                    "frontier_gap": abs(rng.normal(0.03, 0.01)), "cost_std": 1.0,
                    "train_seconds": 1.0,
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_seed_interval_is_the_mean_of_per_seed_metrics_with_an_interval():
    df = _rows(3)
    out = seed_interval(df, n_boot=500)
    assert out["n_seeds"] == 3
    per_seed = [summarize_method(df[df.seed == s]) for s in range(3)]
    for m in SEED_METRICS:
        expect = float(np.mean([p[m] for p in per_seed]))
        assert out[m] == pytest.approx(expect, abs=1e-12)
        assert out[f"{m}_lo"] <= out[m] <= out[f"{m}_hi"]
    assert out["calibration_error_lo"] < out["calibration_error_hi"]
    # Same seed, same interval.
    assert seed_interval(df, n_boot=500) == out


def test_seed_interval_one_seed_and_missing_frontier():
    df = _rows(1).drop(columns="frontier_gap")
    out = seed_interval(df, n_boot=200)
    assert out["n_seeds"] == 1
    assert out["spearman_lo"] == out["spearman"] == out["spearman_hi"]
    assert math.isnan(out["frontier_gap_mean"]) and math.isnan(out["frontier_gap_mean_hi"])


def test_seed_interval_drops_seeds_missing_an_alpha():
    df = _rows(3)
    df = df[~((df.seed == 2) & (df.alpha == 1.0))]
    assert seed_interval(df, n_boot=100)["n_seeds"] == 2


def test_separated():
    assert separated((0.0, 0.1), (0.2, 0.3))
    assert not separated((0.0, 0.25), (0.2, 0.3))
    assert not separated((0.0, math.nan), (0.2, 0.3))


def test_seed_streams_are_distinct_and_stable():
    keys = [
        ("experts", "reckless", "", None, 0),
        ("experts", "safe", "", None, 0),
        *[("blend", "agent", m, a, s) for m in ("budget-env", "bc-mix") for a in (0.0, 0.5, 1.0)
          for s in range(3)],
        ("blend", "agent", "conditioned", None, 1),
    ]  # fmt: skip
    seeds = [seeding.derive(0, *k) for k in keys]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**31 for s in seeds)
    assert seeding.derive(0, "blend", "agent", "budget-env", 0.5, 1) == seeding.derive(
        0, "blend", "agent", "budget-env", 0.5, 1
    )
    assert seeding.derive(1, "experts", "safe") != seeding.derive(0, "experts", "safe")
    with pytest.raises(ValueError):
        seeding.derive(-1, "experts")
