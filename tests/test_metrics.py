"""Tests for safeknob.evaluation.metrics: small hand-computed cases and edge cases."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from safeknob.evaluation.metrics import (
    ExpertStats,
    bootstrap_ci,
    calibration,
    chord_gain,
    chord_return,
    cost_std,
    frontier_gap,
    position,
    position_defined,
    spearman,
    summarize_method,
    violations,
)

# C_safe=1, C_reck=5, R_safe=0.6, R_reck=0.9: cost span 4, return span 0.3.
EXPERTS = ExpertStats(return_safe=0.6, cost_safe=1.0, return_reck=0.9, cost_reck=5.0)
EQUAL_COST = ExpertStats(return_safe=0.6, cost_safe=2.0, return_reck=0.9, cost_reck=2.0)
EQUAL_RETURN = ExpertStats(return_safe=0.7, cost_safe=1.0, return_reck=0.7, cost_reck=5.0)


@pytest.fixture
def no_warnings():
    """Turn every warning into an error for the duration of the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------------------------------------
# bootstrap_ci
# ------------------------------------------------------------------------------------------


def test_bootstrap_deterministic_and_contains_mean():
    x = np.random.default_rng(123).exponential(scale=2.0, size=50)
    a = bootstrap_ci(x, seed=7)
    b = bootstrap_ci(x, seed=7)
    assert a == b
    mean, lo, hi = a
    assert all(type(v) is float for v in a)
    assert mean == pytest.approx(float(np.mean(x)))
    assert lo < mean < hi


def test_bootstrap_seed_changes_interval_not_mean():
    x = np.random.default_rng(1).normal(size=30)
    m0, lo0, hi0 = bootstrap_ci(x, seed=0)
    m1, lo1, hi1 = bootstrap_ci(x, seed=1)
    assert m0 == m1
    assert (lo0, hi0) != (lo1, hi1)


def test_bootstrap_width_matches_normal_approximation():
    x = np.random.default_rng(2).normal(loc=3.0, scale=1.0, size=400)
    mean, lo, hi = bootstrap_ci(x, n_boot=4000)
    half = 1.96 * np.std(x) / math.sqrt(x.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert (mean - lo) == pytest.approx(hi - mean, rel=0.3)


def test_bootstrap_level_narrows_interval():
    x = np.arange(20.0)
    _, lo95, hi95 = bootstrap_ci(x, level=0.95)
    _, lo50, hi50 = bootstrap_ci(x, level=0.5)
    assert lo95 < lo50 < hi50 < hi95


@pytest.mark.parametrize("x", [[4.2], [3.0, 3.0, 3.0], np.full(10, -1.5), 2.5])
def test_bootstrap_degenerate_input_gives_point_interval(x, no_warnings):
    mean, lo, hi = bootstrap_ci(x)
    expected = float(np.mean(x))
    assert mean == lo == hi == expected


def test_bootstrap_chunked_draws_are_consistent(monkeypatch):
    import safeknob.evaluation.metrics as metrics

    x = np.random.default_rng(3).normal(size=25)
    full = bootstrap_ci(x, n_boot=500, seed=4)
    monkeypatch.setattr(metrics, "_BOOT_CHUNK_ELEMS", 25 * 7)  # 7 rows per chunk
    chunked = bootstrap_ci(x, n_boot=500, seed=4)
    assert chunked[0] == full[0]
    # Different chunking consumes the generator differently, but still gives a sane CI.
    assert chunked[1] < chunked[0] < chunked[2]
    assert chunked[1] == pytest.approx(full[1], abs=0.15)


@pytest.mark.parametrize(
    "x, kwargs",
    [
        ([], {}),
        (np.zeros((3, 2)), {}),
        ([1.0, np.nan], {}),
        ([1.0, np.inf], {}),
        ([1.0, 2.0], {"n_boot": 0}),
        ([1.0, 2.0], {"level": 1.0}),
        ([1.0, 2.0], {"level": 0.0}),
    ],
)
def test_bootstrap_invalid_input_raises(x, kwargs):
    with pytest.raises(ValueError):
        bootstrap_ci(x, **kwargs)


# ------------------------------------------------------------------------------------------
# cost_std
# ------------------------------------------------------------------------------------------


def test_cost_std_is_population_std():
    # mean 2.5, squared deviations 2.25, 0.25, 0.25, 2.25 -> var 1.25 (ddof=0)
    assert cost_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(1.25))
    assert cost_std([7.0]) == 0.0
    assert type(cost_std([1.0, 2.0])) is float


def test_cost_std_empty_is_nan(no_warnings):
    assert math.isnan(cost_std([]))


# ------------------------------------------------------------------------------------------
# ExpertStats, position, chord
# ------------------------------------------------------------------------------------------


def test_expert_stats_spans_and_frozen():
    assert EXPERTS.cost_span == pytest.approx(4.0)
    assert EXPERTS.return_span == pytest.approx(0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        EXPERTS.cost_safe = 0.0  # type: ignore[misc]


def test_expert_stats_coerces_to_python_float():
    e = ExpertStats(np.float32(0.5), np.int64(1), 1, np.float64(3.0))
    assert all(type(v) is float for v in dataclasses.astuple(e))


@pytest.mark.parametrize(
    "cost, expected",
    [(1.0, 0.0), (5.0, 1.0), (3.0, 0.5), (2.0, 0.25), (7.0, 1.5), (0.0, -0.25)],
)
def test_position(cost, expected):
    p = position(cost, EXPERTS)
    assert type(p) is float
    assert p == pytest.approx(expected)


def test_position_with_reversed_experts():
    # A "reckless" expert cheaper than the safe one: the formula still applies as written.
    e = ExpertStats(return_safe=0.6, cost_safe=5.0, return_reck=0.9, cost_reck=1.0)
    assert position(4.0, e) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "cost, expected",
    [(1.0, 0.6), (5.0, 0.9), (3.0, 0.75), (2.0, 0.675), (7.0, 1.05)],
)
def test_chord_return(cost, expected):
    assert chord_return(cost, EXPERTS) == pytest.approx(expected)


@pytest.mark.parametrize(
    "ret, cost, expected",
    [
        (0.75, 3.0, 0.0),  # on the chord
        (0.81, 3.0, 0.2),  # (0.81 - 0.75) / 0.3
        (0.60, 3.0, -0.5),  # (0.60 - 0.75) / 0.3
        (0.90, 1.0, 1.0),  # reckless return at safe cost
        (0.60, 1.0, 0.0),  # the safe expert itself
    ],
)
def test_chord_gain(ret, cost, expected):
    assert chord_gain(ret, cost, EXPERTS) == pytest.approx(expected)


@pytest.mark.parametrize("span", [0.0, 1e-12, -5e-10])
def test_equal_cost_experts_give_nan_without_warnings(span, no_warnings):
    e = ExpertStats(return_safe=0.6, cost_safe=2.0, return_reck=0.9, cost_reck=2.0 + span)
    assert position_defined(e) is False
    assert math.isnan(position(2.0, e))
    assert math.isnan(position(3.0, e))
    assert math.isnan(chord_return(2.0, e))
    assert math.isnan(chord_gain(0.8, 2.0, e))
    # The frontier gap only needs the return span, which is fine here.
    assert frontier_gap(0.8, 2.0, e, lambda c: 0.9) == pytest.approx(1 / 3)


def test_position_defined_true_for_normal_experts():
    assert position_defined(EXPERTS) is True
    assert position_defined(ExpertStats(0.0, 1.0, 1.0, 1.0 + 1e-6)) is True


def test_nonfinite_experts_give_nan_without_warnings(no_warnings):
    e = ExpertStats(return_safe=0.6, cost_safe=1.0, return_reck=0.9, cost_reck=float("nan"))
    assert position_defined(e) is False
    assert math.isnan(position(3.0, e))
    assert math.isnan(chord_gain(0.8, 3.0, e))


def test_equal_return_experts_give_nan_without_warnings(no_warnings):
    assert math.isnan(chord_gain(0.8, 3.0, EQUAL_RETURN))
    calls = []
    gap = frontier_gap(0.8, 3.0, EQUAL_RETURN, lambda c: calls.append(c) or 1.0)
    assert math.isnan(gap)
    assert calls == []
    # Position and chord return are still defined (cost span 4).
    assert position(3.0, EQUAL_RETURN) == pytest.approx(0.5)
    assert chord_return(3.0, EQUAL_RETURN) == pytest.approx(0.7)


# ------------------------------------------------------------------------------------------
# frontier_gap
# ------------------------------------------------------------------------------------------


def _sqrt_frontier(c: float) -> float:
    """A concave frontier through both experts: R*(1) = 0.6, R*(5) = 0.9."""
    return 0.6 + 0.3 * math.sqrt(max(0.0, min(1.0, (c - 1.0) / 4.0)))


@pytest.mark.parametrize(
    "ret, cost, frontier, expected",
    [
        (0.9, 3.0, lambda c: 1.0, 1 / 3),  # (1.0 - 0.9) / 0.3
        (1.0, 3.0, lambda c: 1.0, 0.0),
        (0.75, 3.0, _sqrt_frontier, math.sqrt(0.5) - 0.5),  # (0.6 + 0.3*sqrt(.5) - 0.75)/0.3
        (0.6, 1.0, _sqrt_frontier, 0.0),
        (0.9, 5.0, _sqrt_frontier, 0.0),
    ],
)
def test_frontier_gap(ret, cost, frontier, expected):
    gap = frontier_gap(ret, cost, EXPERTS, frontier)
    assert type(gap) is float
    assert gap == pytest.approx(expected)


def test_frontier_gap_accepts_numpy_returning_frontier():
    gap = frontier_gap(0.9, 3.0, EXPERTS, lambda c: np.float64(1.2))
    assert type(gap) is float
    assert gap == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------
# spearman
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alphas, costs, expected",
    [
        ([0.0, 0.5, 1.0], [1.0, 2.0, 5.0], 1.0),
        ([0.0, 0.5, 1.0], [5.0, 2.0, 1.0], -1.0),
        # ranks (1,3,2,4) vs (1,2,3,4): sum d^2 = 2 -> 1 - 6*2/(4*15) = 0.8
        ([0.0, 1 / 3, 2 / 3, 1.0], [1.0, 3.0, 2.0, 4.0], 0.8),
        # unsorted input gives the same answer
        ([1.0, 0.0, 2 / 3, 1 / 3], [4.0, 1.0, 2.0, 3.0], 0.8),
        # repeated alphas (several seeds) are fine
        ([0.0, 0.0, 1.0, 1.0], [1.0, 1.5, 3.0, 4.0], pytest.approx(0.894427, abs=1e-6)),
    ],
)
def test_spearman(alphas, costs, expected, no_warnings):
    rho = spearman(alphas, costs)
    assert type(rho) is float
    assert rho == pytest.approx(expected)


@pytest.mark.parametrize(
    "alphas, costs",
    [
        ([0.5], [2.0]),  # single alpha
        ([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]),  # one distinct alpha
        ([0.0, 0.5, 1.0], [2.0, 2.0, 2.0]),  # constant costs
        ([], []),
        ([0.0, 0.5, 1.0], [1.0, np.nan, np.nan]),  # one pair left after dropping nan
    ],
)
def test_spearman_undefined_is_nan_without_warnings(alphas, costs, no_warnings):
    assert math.isnan(spearman(alphas, costs))


def test_spearman_drops_nan_pairs(no_warnings):
    assert spearman([0.0, 0.5, 1.0, 2.0], [1.0, np.nan, 2.0, 3.0]) == pytest.approx(1.0)


def test_spearman_shape_mismatch_raises():
    with pytest.raises(ValueError):
        spearman([0.0, 1.0], [1.0])


# ------------------------------------------------------------------------------------------
# violations
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alphas, lo, hi, mean, expected",
    [
        # increasing costs: never a violation
        ([0.0, 0.5, 1.0], [0.9, 1.9, 2.9], [1.1, 2.1, 3.1], [1.0, 2.0, 3.0], 0),
        # decrease 0.5 -> 1.0 with overlapping CIs ([1.5, 2.5] vs [1.4, 1.9]): not counted
        ([0.0, 0.5, 1.0], [0.9, 1.5, 1.4], [1.1, 2.5, 1.9], [1.0, 2.0, 1.7], 0),
        # decrease 0.5 -> 1.0 with disjoint CIs ([1.9, 2.1] vs [1.0, 1.4]): counted
        ([0.0, 0.5, 1.0], [0.9, 1.9, 1.0], [1.1, 2.1, 1.4], [1.0, 2.0, 1.2], 1),
        # touching intervals (hi == lo) overlap: not counted
        ([0.0, 1.0], [1.9, 1.0], [2.1, 1.9], [2.0, 1.5], 0),
        # strictly decreasing, all disjoint: K - 1 violations
        ([0.0, 0.5, 1.0], [2.9, 1.9, 0.9], [3.1, 2.1, 1.1], [3.0, 2.0, 1.0], 2),
        # same as the previous but given out of order
        ([1.0, 0.0, 0.5], [0.9, 2.9, 1.9], [1.1, 3.1, 2.1], [1.0, 3.0, 2.0], 2),
        # only adjacent pairs count: 0 -> 1 is a disjoint drop, but 0 -> 0.5 and
        # 0.5 -> 1 overlap
        ([0.0, 0.5, 1.0], [2.0, 1.2, 0.5], [2.4, 2.2, 1.3], [2.2, 1.7, 0.9], 0),
        # nan bounds are not counted
        ([0.0, 1.0], [1.9, np.nan], [2.1, np.nan], [2.0, 1.0], 0),
        # single alpha and empty grid
        ([0.5], [1.0], [2.0], [1.5], 0),
        ([], [], [], [], 0),
    ],
)
def test_violations(alphas, lo, hi, mean, expected, no_warnings):
    n = violations(alphas, lo, hi, mean)
    assert type(n) is int
    assert n == expected


def test_violations_rejects_repeated_alphas_and_bad_shapes():
    with pytest.raises(ValueError, match="distinct"):
        violations([0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [1.5, 1.5])
    with pytest.raises(ValueError):
        violations([0.0, 1.0], [1.0], [2.0, 2.0], [1.5, 1.5])


# ------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alphas, positions, expected_mean, expected_max",
    [
        ([0.0, 0.5, 1.0], [0.0, 0.5, 1.0], 0.0, 0.0),
        # errors 0.1, 0.0, 0.3
        ([0.0, 0.5, 1.0], [0.1, 0.5, 0.7], 0.4 / 3, 0.3),
        # overshooting counts as much as undershooting: errors 0.2, 0.2
        ([0.0, 1.0], [-0.2, 1.2], 0.2, 0.2),
        # nan positions are ignored: errors 0.1, 0.3
        ([0.0, 0.5, 1.0], [0.1, np.nan, 0.7], 0.2, 0.3),
        # a single alpha is still calibrated
        ([0.25], [0.75], 0.5, 0.5),
    ],
)
def test_calibration(alphas, positions, expected_mean, expected_max, no_warnings):
    mean, mx = calibration(alphas, positions)
    assert type(mean) is float and type(mx) is float
    assert mean == pytest.approx(expected_mean)
    assert mx == pytest.approx(expected_max)


@pytest.mark.parametrize("positions", [[np.nan, np.nan], []])
def test_calibration_all_nan_without_warnings(positions, no_warnings):
    alphas = [0.0, 1.0][: len(positions)]
    mean, mx = calibration(alphas, positions)
    assert math.isnan(mean) and math.isnan(mx)


def test_calibration_from_equal_cost_experts_is_nan(no_warnings):
    alphas = [0.0, 0.5, 1.0]
    positions = [position(c, EQUAL_COST) for c in (2.0, 2.0, 2.0)]
    mean, mx = calibration(alphas, positions)
    assert math.isnan(mean) and math.isnan(mx)


# ------------------------------------------------------------------------------------------
# summarize_method
# ------------------------------------------------------------------------------------------


def _method_rows() -> pd.DataFrame:
    """Two seeds per alpha; per-alpha means are written in the comments."""
    rows = [
        # alpha, cost_mean, lo, hi, position, chord_gain, frontier_gap, cost_std, seconds
        (0.0, 1.0, 0.9, 1.1, 0.0, 0.0, 0.1, 0.5, 10.0),
        (0.0, 1.2, 1.1, 1.3, 0.1, 0.2, 0.3, 0.7, 20.0),
        # -> 1.1, 1.0, 1.2, 0.05, 0.1, 0.2, 0.6
        (0.5, 3.0, 2.8, 3.2, 0.5, 0.1, 0.0, 1.0, 10.0),
        (0.5, 3.0, 2.6, 3.4, 0.5, 0.3, 0.2, 1.0, 20.0),
        # -> 3.0, 2.7, 3.3, 0.5, 0.2, 0.1, 1.0
        (1.0, 2.0, 1.9, 2.1, 0.3, 0.3, 0.4, 0.8, 10.0),
        (1.0, 2.4, 2.1, 2.5, 0.3, 0.3, 0.6, 1.2, 20.0),
        # -> 2.2, 2.0, 2.3, 0.3, 0.3, 0.5, 1.0  (drop from 3.0, CI [2.0, 2.3] below [2.7, 3.3])
    ]
    cols = [
        "alpha",
        "cost_mean",
        "cost_lo",
        "cost_hi",
        "position",
        "chord_gain",
        "frontier_gap",
        "cost_std",
        "train_seconds",
    ]
    df = pd.DataFrame(rows, columns=cols)
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)  # order must not matter


EXPECTED_SUMMARY = {
    "n_alphas": 3,
    "spearman": 0.5,  # ranks (1,3,2) vs (1,2,3): 1 - 6*2/(3*8)
    "violations": 1,
    "calibration_error": 0.25,  # (0.05 + 0.0 + 0.7) / 3
    "calibration_max": 0.7,
    "chord_gain_mean": 0.2,
    "frontier_gap_mean": 0.8 / 3,
    "frontier_gap_max": 0.5,
    "cost_std_mean": 2.6 / 3,
    "train_seconds": 90.0,
}


def test_summarize_method_hand_computed(no_warnings):
    out = summarize_method(_method_rows())
    assert set(out) == set(EXPECTED_SUMMARY)
    for key, expected in EXPECTED_SUMMARY.items():
        assert out[key] == pytest.approx(expected), key
    assert type(out["n_alphas"]) is int
    assert type(out["violations"]) is int
    for key in set(out) - {"n_alphas", "violations"}:
        assert type(out[key]) is float, key
    assert not any(isinstance(v, float) and math.isnan(v) for v in out.values())


@pytest.mark.parametrize("how", ["nan", "missing"])
def test_summarize_method_without_frontier(how, no_warnings):
    df = _method_rows()
    if how == "nan":
        df["frontier_gap"] = np.nan
    else:
        df = df.drop(columns="frontier_gap")
    out = summarize_method(df)
    assert math.isnan(out["frontier_gap_mean"])
    assert math.isnan(out["frontier_gap_max"])
    assert out["calibration_error"] == pytest.approx(0.25)
    assert out["violations"] == 1


def test_summarize_method_single_alpha(no_warnings):
    df = _method_rows()
    out = summarize_method(df[df["alpha"] == 0.5])
    assert out["n_alphas"] == 1
    assert math.isnan(out["spearman"])
    assert out["violations"] == 0
    assert out["calibration_error"] == pytest.approx(0.0)
    assert out["train_seconds"] == pytest.approx(30.0)


def test_summarize_method_equal_cost_experts(no_warnings):
    df = _method_rows()
    df["position"] = np.nan
    df["chord_gain"] = np.nan
    out = summarize_method(df)
    assert math.isnan(out["calibration_error"]) and math.isnan(out["calibration_max"])
    assert math.isnan(out["chord_gain_mean"])
    assert out["spearman"] == pytest.approx(0.5)


def test_summarize_method_empty(no_warnings):
    df = _method_rows().iloc[0:0]
    out = summarize_method(df)
    assert out["n_alphas"] == 0
    assert out["violations"] == 0
    assert out["train_seconds"] == 0.0
    assert math.isnan(out["spearman"]) and math.isnan(out["calibration_error"])


def test_summarize_method_missing_column_raises():
    with pytest.raises(ValueError, match="cost_lo"):
        summarize_method(_method_rows().drop(columns="cost_lo"))


# ------------------------------------------------------------------------------------------
# End to end: per-episode data -> per-alpha rows -> summary
# ------------------------------------------------------------------------------------------


def test_pipeline_is_nan_free_for_normal_inputs(no_warnings):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(2):
        for alpha in np.linspace(0.0, 1.0, 5):
            c_true = EXPERTS.cost_safe + alpha * EXPERTS.cost_span
            costs = rng.normal(c_true, 0.5, size=40)
            rets = rng.normal(chord_return(c_true, EXPERTS) + 0.02, 0.05, size=40)
            c, c_lo, c_hi = bootstrap_ci(costs, n_boot=300, seed=seed)
            r, _, _ = bootstrap_ci(rets, n_boot=300, seed=seed)
            rows.append(
                {
                    "alpha": float(alpha),
                    "cost_mean": c,
                    "cost_lo": c_lo,
                    "cost_hi": c_hi,
                    "position": position(c, EXPERTS),
                    "chord_gain": chord_gain(r, c, EXPERTS),
                    "frontier_gap": frontier_gap(r, c, EXPERTS, _sqrt_frontier),
                    "cost_std": cost_std(costs),
                    "train_seconds": 1.5,
                }
            )
    out = summarize_method(pd.DataFrame(rows))
    assert not any(math.isnan(float(v)) for v in out.values())
    assert out["n_alphas"] == 5
    assert out["spearman"] == pytest.approx(1.0)
    assert out["violations"] == 0
    assert out["calibration_error"] < 0.1
    assert out["chord_gain_mean"] > 0
    assert out["train_seconds"] == pytest.approx(15.0)
