"""Tests for the exact return-cost frontier (safeknob.envs.frontier)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from safeknob.envs.frontier import (
    Frontier,
    InfeasibleBudgetError,
    frontier_vertices,
    solve,
    value_iteration,
)
from safeknob.envs.hazard_grid import HazardGridEnv
from safeknob.envs.model import evaluate_policy

SMALL_LAYOUT = ["....", ".HH.", "S.HG"]


@pytest.fixture(scope="module")
def default_model():
    return HazardGridEnv().tabular_model()


@pytest.fixture(scope="module")
def default_frontier(default_model):
    return Frontier.compute(default_model)  # exact vertices, ~1 s


@pytest.fixture(scope="module")
def small_model():
    return HazardGridEnv(layout=SMALL_LAYOUT, horizon=15).tabular_model()


@pytest.fixture(scope="module")
def line_model():
    # S . H . G, no slip: the only way to the goal crosses the hazard once (cost 1), in 4 steps.
    return HazardGridEnv(layout=["S.H.G"], slip=0.0, horizon=10).tabular_model()


def assert_monotone_concave(budgets: np.ndarray, values: np.ndarray, tol: float = 1e-6) -> None:
    """Non-decreasing, and every point at or above the chord of its neighbours (within tol)."""
    assert np.all(np.diff(budgets) > 0)
    assert np.all(np.diff(values) >= -tol)
    b0, b1, b2 = budgets[:-2], budgets[1:-1], budgets[2:]
    chord = values[:-2] + (values[2:] - values[:-2]) * (b1 - b0) / (b2 - b0)
    assert np.all(values[1:-1] >= chord - tol)


# ---------------------------------------------------------------- hand-computable case
def test_line_known_answer(line_model):
    m = line_model
    value, policy = value_iteration(m)
    assert value == pytest.approx(1.0 - 4 * 0.02, abs=1e-12)  # 0.92
    assert policy.shape == (10, m.n_states, 4)
    assert np.all(policy.sum(axis=2) == 1.0)

    # Either stay out (cost 0, return -0.02 * 10) or go to the goal (cost 1, return 0.92);
    # in between, mixing: R*(c) = -0.2 + 1.12 c.
    costs, returns = frontier_vertices(m)
    np.testing.assert_allclose(costs, [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(returns, [-0.2, 0.92], atol=1e-12)
    for c in (0.0, 0.25, 0.5, 0.9):
        p = solve(m, c)
        assert p.value == pytest.approx(-0.2 + 1.12 * c, abs=1e-8)
        assert p.cost == pytest.approx(c, abs=1e-8)
        assert evaluate_policy(m, p.policy) == pytest.approx((p.value, p.cost), abs=1e-8)
    top = solve(m, None)
    assert (top.value, top.cost) == pytest.approx((0.92, 1.0), abs=1e-8)

    for method in ("vertices", "lp"):
        fr = Frontier.compute(m, n_points=5, method=method)
        assert (fr.min_cost, fr.max_cost, fr.optimum) == pytest.approx((0.0, 1.0, 0.92), abs=1e-8)
        assert fr(0.25) == pytest.approx(0.08, abs=1e-8)
        assert fr(3.0) == pytest.approx(0.92, abs=1e-12)
        assert np.isnan(fr(-0.1))
        assert fr.exact(0.75) == pytest.approx(-0.2 + 1.12 * 0.75, abs=1e-8)


def test_degenerate_frontier_when_goal_unreachable():
    # Horizon 3 cannot reach the goal 4 steps away: the optimum is to avoid the hazard.
    m = HazardGridEnv(layout=["S.H.G"], slip=0.0, horizon=3).tabular_model()
    for method in ("vertices", "lp"):
        fr = Frontier.compute(m, method=method)
        assert fr.budgets.shape == (1,)
        assert (fr.min_cost, fr.max_cost) == pytest.approx((0.0, 0.0), abs=1e-12)
        assert fr.optimum == pytest.approx(-0.06, abs=1e-12)
        assert fr(0.0) == pytest.approx(-0.06, abs=1e-12)
        assert fr(5.0) == pytest.approx(-0.06, abs=1e-12)
        assert fr.exact(5.0) == pytest.approx(-0.06, abs=1e-12)


# ---------------------------------------------------------------- LP vs backward induction
def test_unconstrained_lp_matches_value_iteration(default_model):
    m = default_model
    value, vi_policy = value_iteration(m)
    assert evaluate_policy(m, vi_policy)[0] == pytest.approx(value, abs=1e-10)
    p = solve(m, None)
    assert p.budget is None
    assert p.value == pytest.approx(value, abs=1e-6)
    assert p.policy.shape == (m.horizon, m.n_states, m.n_actions)
    np.testing.assert_allclose(p.policy.sum(axis=2), 1.0, atol=1e-12)
    np.testing.assert_allclose(p.occupancy.sum(axis=(1, 2)), 1.0, atol=1e-6)


@pytest.mark.parametrize("budget", [5e-3, 1.0])
def test_lp_policy_evaluation_reproduces_lp(default_model, default_frontier, budget):
    # 5e-3 is in the steep part of the default frontier (min cost 0.0017, slope ~130), 1.0 in
    # the flat part.
    m = default_model
    p = solve(m, budget)
    assert p.cost <= budget + 1e-8
    ret, cost = evaluate_policy(m, p.policy)
    assert ret == pytest.approx(p.value, abs=1e-6)
    assert cost == pytest.approx(p.cost, abs=1e-6)
    # ... and agrees with the LP-free vertex frontier.
    assert p.value == pytest.approx(default_frontier(budget), abs=1e-6)


def test_lp_policy_evaluation_small_grid(small_model):
    m = small_model
    fr = Frontier.compute(m)
    for c in np.linspace(fr.min_cost, fr.max_cost, 5)[1:]:
        p = solve(m, float(c))
        assert evaluate_policy(m, p.policy) == pytest.approx((p.value, p.cost), abs=1e-6)
        assert p.value == pytest.approx(fr(c), abs=1e-6)


# ---------------------------------------------------------------- shape of the frontier
def test_default_frontier_monotone_concave(default_model, default_frontier):
    fr = default_frontier
    assert fr.method == "vertices"
    assert fr.optimum == pytest.approx(value_iteration(default_model)[0], abs=1e-9)
    assert 0.0 < fr.min_cost < fr.max_cost
    assert fr.values[0] < fr.optimum
    assert_monotone_concave(fr.budgets, fr.values)
    grid = np.linspace(fr.min_cost, fr.max_cost + 0.5, 201)
    v = fr(grid)
    assert np.all(np.diff(v) >= -1e-6)
    assert np.all(np.diff(v, 2) <= 1e-6)


def test_lp_grid_frontier_small(small_model):
    m = small_model
    fr = Frontier.compute(m, n_points=11, method="lp")
    assert fr.budgets.shape == fr.values.shape == fr.costs.shape == (11,)
    assert fr.budgets[0] == fr.min_cost and fr.budgets[-1] == fr.max_cost
    assert np.all(fr.costs <= fr.budgets + 1e-8)
    assert_monotone_concave(fr.budgets, fr.values)
    assert fr.optimum == pytest.approx(value_iteration(m)[0], abs=1e-6)
    exact = Frontier.compute(m)
    assert fr.min_cost == pytest.approx(exact.min_cost, abs=1e-8)
    np.testing.assert_allclose(fr.values, exact(fr.budgets), atol=1e-6)
    # Interpolating a grid never over-estimates the concave R*.
    c = np.linspace(fr.min_cost, fr.max_cost, 57)
    assert np.all(fr(c) <= exact(c) + 1e-6)


# ---------------------------------------------------------------- infeasibility and API
def test_infeasible_budget_raises(small_model):
    m = small_model
    fr = Frontier.compute(m)
    assert fr.min_cost > 0  # slip makes some hazard risk unavoidable
    with pytest.raises(ValueError, match="infeasible"):
        solve(m, 0.5 * fr.min_cost)
    with pytest.raises(InfeasibleBudgetError, match="minimum achievable"):
        solve(m, -1.0)
    assert np.isnan(fr(0.5 * fr.min_cost))
    assert np.isnan(fr.exact(0.5 * fr.min_cost))


def test_call_shapes(small_model):
    fr = Frontier.compute(small_model)
    assert isinstance(fr(fr.min_cost), float)
    out = fr(np.array([[fr.min_cost - 1.0, fr.min_cost], [fr.max_cost, fr.max_cost + 1.0]]))
    assert out.shape == (2, 2)
    assert np.isnan(out[0, 0])
    assert out[0, 1] == pytest.approx(fr.values[0])
    assert out[1, 0] == out[1, 1] == fr.optimum


def test_json_round_trip_and_determinism(small_model, line_model):
    fr = Frontier.compute(small_model)
    data = json.loads(json.dumps(fr.to_dict()))
    assert data == Frontier.compute(small_model).to_dict()  # deterministic
    loaded = Frontier.from_dict(data)
    for name in ("budgets", "values", "costs"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(fr, name))
    assert (loaded.min_cost, loaded.max_cost, loaded.optimum) == (
        fr.min_cost,
        fr.max_cost,
        fr.optimum,
    )
    c = np.linspace(fr.min_cost, fr.max_cost, 9)
    np.testing.assert_array_equal(loaded(c), fr(c))
    with pytest.raises(ValueError, match="no model"):
        loaded.exact(float(c[3]))
    assert loaded.exact(float(c[3]), model=small_model) == pytest.approx(fr(c[3]), abs=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        Frontier.from_dict(data, model=line_model)
    assert Frontier.from_dict(data, model=small_model).solve(None).value == pytest.approx(
        fr.optimum, abs=1e-6
    )


def test_bad_arguments(small_model):
    with pytest.raises(ValueError, match="method"):
        Frontier.compute(small_model, method="grid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_points"):
        Frontier.compute(small_model, n_points=1, method="lp")
