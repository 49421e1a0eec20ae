"""The shipped default grid leaves a knob room to beat the coin flip (issue #16), checked
exactly with ``safeknob.envs.frontier`` before anything is trained."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from safeknob.cli import app
from safeknob.config import load_experiment
from safeknob.envs.frontier import Frontier, InfeasibleBudgetError, chord_gap, exact_experts
from safeknob.envs.hazard_grid import HazardGridEnv
from safeknob.stages import frontier as stage


@pytest.fixture(scope="module")
def shipped():
    return stage.analyse(load_experiment("hazard-grid"))


def test_shipped_grid_coin_flip_is_far_below_the_frontier(shipped):
    assert stage.MIN_GAP == 0.15
    assert shipped.exact.mean >= stage.MIN_GAP
    # The same with the safe end at the constrained optimum (the best any safe expert can be).
    assert shipped.at_limit.mean >= stage.MIN_GAP
    assert list(shipped.exact.alphas) == pytest.approx([0.1 * k for k in range(1, 10)])
    assert np.all(shipped.exact.gaps >= -1e-9)  # nothing is above the exact frontier


def test_shipped_grid_keeps_three_routes_slip_and_a_fixed_horizon(shipped):
    exp = load_experiment("hazard-grid")
    env = HazardGridEnv(**exp.env.kwargs)
    assert env.slip > 0 and env.horizon == exp.env.kwargs["horizon"]
    routes = shipped.routes
    assert len(routes) >= 3
    exposure = [r.hazard_cells for r in routes]
    assert exposure == sorted(exposure) and len(set(exposure)) == len(exposure)
    assert exposure[0] == 0  # a cost-free detour exists
    # Longer routes are the safer ones: fewer hazard cells, more steps.
    assert [r.steps for r in routes] == sorted((r.steps for r in routes), reverse=True)
    # The safe expert's limit admits the detour only; the reckless optimum takes the most hazard.
    safe, reck = shipped.exact.safe, shipped.exact.reckless
    assert safe[0] <= exp.experts.cost_limit < routes[1].cost[0]
    assert reck == pytest.approx((routes[-1].cost[1], routes[-1].ret[1]))


def test_chord_gap_known_answer():
    # A frontier with a kink: (0, 0) -> (1, 0.8) -> (4, 1.0). The chord from (0, 0) to (4, 1)
    # at alpha 0.25 is (1, 0.25): the gap there is (0.8 - 0.25) / 1.
    fr = Frontier(
        budgets=np.array([0.0, 1.0, 4.0]),
        values=np.array([0.0, 0.8, 1.0]),
        costs=np.array([0.0, 1.0, 4.0]),
        min_cost=0.0,
        max_cost=4.0,
        optimum=1.0,
        method="vertices",
        model_id="x",
    )
    g = chord_gap(fr, (0.0, 0.0), (4.0, 1.0), alphas=(0.0, 0.25, 0.5, 1.0))
    assert g.gaps == pytest.approx([0.0, 0.55, 0.8 + 0.2 / 3 - 0.5, 0.0])
    assert g.costs == pytest.approx([0.0, 1.0, 2.0, 4.0])
    assert g.mean == pytest.approx(np.mean(g.gaps)) and g.max == pytest.approx(0.55)
    assert exact_experts(fr, 2.0) == ((1.0, 0.8), (4.0, 1.0))
    with pytest.raises(InfeasibleBudgetError):
        exact_experts(fr, -1.0)
    with pytest.raises(ValueError, match="returns are equal"):
        chord_gap(fr, (0.0, 1.0), (4.0, 1.0))


def test_straight_frontier_has_no_gap():
    # One route through one hazard cell, no slip: R* is a straight line, the coin flip optimal.
    env = HazardGridEnv(layout=["S.H.G"], slip=0.0, horizon=10)
    fr = Frontier.compute(env.tabular_model())
    safe, reck = exact_experts(fr, 0.5)
    assert chord_gap(fr, safe, reck).gaps == pytest.approx(np.zeros(9), abs=1e-9)


def test_frontier_command(tmp_path, tiny_experiment_file):
    runner = CliRunner()
    res = runner.invoke(app, ["frontier", "--data", str(tmp_path), "--min-gap", "0.15"])
    assert res.exit_code == 0, res.output
    assert "Coin flip's frontier gap" in res.output and "mean" in res.output
    # The tiny grid's frontier is nearly straight: the check stops it, with one clear line.
    res = runner.invoke(
        app,
        ["frontier", "-e", str(tiny_experiment_file), "--data", str(tmp_path), "--min-gap", "0.15"],
    )
    assert res.exit_code == 2
    assert "below the required 0.15" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["frontier", "-e", "hazard-nav", "--data", str(tmp_path)])
    assert res.exit_code == 2 and "has no exact model" in res.output
