"""The report's yardstick: the coin flip's room, noise intervals, the HazardNav estimate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from safeknob.config import RunConfig, load_experiment
from safeknob.envs import nav_frontier
from safeknob.envs.frontier import Frontier
from safeknob.envs.nav_frontier import NavFrontier, best_chord_gains, upper_hull
from safeknob.evaluation.metrics import ExpertStats
from safeknob.stages import report, yardstick

EXPERTS = ExpertStats(return_safe=0.0, cost_safe=0.0, return_reck=1.0, cost_reck=4.0)
# R*: (0, 0) -> (1, 0.8) -> (4, 1.0); the chord from (0, 0) to (4, 1).
KINKED = Frontier(
    budgets=np.array([0.0, 1.0, 4.0]),
    values=np.array([0.0, 0.8, 1.0]),
    costs=np.array([0.0, 1.0, 4.0]),
    min_cost=0.0,
    max_cost=4.0,
    optimum=1.0,
    method="vertices",
    model_id="x",
)


def _agents(points: dict[str, list[tuple[float, float, float]]], half: float = 0.01):
    """Rows (method, alpha, return, cost) with +-half intervals on return and cost."""
    rows = []
    for method, pts in points.items():
        for a, r, c in pts:
            rows.append(
                {"method": method, "alpha": a, "seed": 0, "return_mean": r,
                 "return_lo": r - half, "return_hi": r + half, "cost_mean": c,
                 "cost_lo": c - half, "cost_hi": c + half}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_coin_flip_room_and_method_intervals():
    flip = yardstick.coin_flip(KINKED, EXPERTS, [0.25])
    assert flip.gaps == pytest.approx([0.55])
    agents = _agents(
        {
            "onfrontier": [(0.25, 0.8, 1.0)],
            "chord": [(0.25, 0.25, 1.0)],
            "near": [(0.25, 0.795, 1.0)],
        }
    )
    gaps = yardstick.method_intervals(agents, EXPERTS, "frontier_gap", KINKED)
    assert [m.method for m in gaps] == ["onfrontier", "near", "chord"]
    best, near, chord = gaps
    assert best.mean == pytest.approx(0.0, abs=1e-12)
    # Return +-0.01 and cost +-0.01 around the kink (slope 0.8 left, 0.2 / 3 right):
    # lo = R*(0.99) - 0.81, hi = R*(1.01) - 0.79.
    assert best.lo == pytest.approx(0.792 - 0.81, abs=1e-9)
    assert best.hi == pytest.approx(0.8 + 0.01 * 0.2 / 3 - 0.79, abs=1e-9)
    assert not yardstick.separated(best, near)  # 0.005 apart: within the noise
    assert yardstick.separated(best, chord)
    assert chord.mean == pytest.approx(0.55)
    gains = yardstick.method_intervals(agents, EXPERTS, "chord_gain")
    assert [m.method for m in gains] == ["onfrontier", "near", "chord"]
    assert gains[0].mean == pytest.approx(0.55) and gains[-1].mean == pytest.approx(0.0)
    with pytest.raises(ValueError):
        yardstick.method_intervals(agents, EXPERTS, "spearman")


def test_findings_call_a_method_better_only_beyond_the_noise():
    nan = math.nan

    def row(method, gap):
        return {
            "experiment": "x", "method": method, "n_alphas": 3, "spearman": 1.0,
            "violations": 0, "calibration_error": 0.05, "calibration_max": 0.1,
            "chord_gain_mean": nan, "frontier_gap_mean": gap, "frontier_gap_max": gap,
            "cost_std_mean": 1.0, "train_seconds": 3.0,
        }  # fmt: skip

    summary = pd.DataFrame([row("a", 0.010), row("b", 0.015), row("c", 0.20)])
    tied = [
        yardstick.MethodInterval("a", 0.010, 0.0, 0.02),
        yardstick.MethodInterval("b", 0.015, 0.005, 0.025),
        yardstick.MethodInterval("c", 0.20, 0.19, 0.21),
    ]
    text = " ".join(report.findings(summary, True, tied))
    assert "not beyond the noise" in text and "closest to the exact frontier" not in text
    assert "b is as good within the noise" in text
    apart = [yardstick.MethodInterval("a", 0.010, 0.0, 0.012), *tied[1:]]
    apart[1] = yardstick.MethodInterval("b", 0.015, 0.013, 0.025)
    text = " ".join(report.findings(summary, True, apart))
    assert "**a** is closest to the exact frontier" in text and "within the noise" not in text


def test_upper_hull_and_best_chord_gains():
    c, r = upper_hull(np.array([0.0, 1.0, 2.0, 4.0, 1.0]), np.array([0.0, 0.8, 0.7, 1.0, 0.5]))
    assert c.tolist() == [0.0, 1.0, 4.0] and r.tolist() == [0.0, 0.8, 1.0]
    nav = NavFrontier(
        np.array([0.0, 0.1, 1.0]), np.array([1.0, 0.8, 0.0]), np.array([4.0, 1.0, 0.0])
    )
    assert nav.reckless == (4.0, 1.0) and nav.safe == (0.0, 0.0)
    assert best_chord_gains(nav, [0.0, 0.25, 1.0]) == pytest.approx([0.0, 0.55, 0.0])


def test_nav_best_gain_is_computed_once_and_cached(tmp_path, monkeypatch):
    calls = []

    def fake_estimate(kwargs, **_):
        calls.append(kwargs)
        return NavFrontier(
            np.array([0.0, 0.1, 1.0]), np.array([1.0, 0.8, 0.0]), np.array([4.0, 1.0, 0.0])
        )

    monkeypatch.setattr(nav_frontier, "estimate", fake_estimate)
    rc = RunConfig(load_experiment("hazard-nav"), tmp_path, quiet=True)
    alphas = [0.0, 0.25, 1.0]
    best, _ = yardstick.nav_best_gain(rc, alphas)
    assert best == pytest.approx(0.55 / 3)
    assert yardstick.nav_best_gain(rc, alphas)[0] == pytest.approx(best)
    assert len(calls) == 1 and (rc.paths.cache / "nav_frontier.json").is_file()
    # Another layout is another estimate.
    env = rc.experiment.env
    import dataclasses

    other = rc.experiment.replace(
        env=dataclasses.replace(env, kwargs={**env.kwargs, "layout": "disks"})
    )
    yardstick.nav_best_gain(RunConfig(other, tmp_path / "other", quiet=True), alphas)
    assert len(calls) == 2
    assert (
        yardstick.nav_best_gain(RunConfig(load_experiment("hazard-grid"), tmp_path), alphas) is None
    )

    # The report prints it beside each method's measured gain.
    results = pd.concat(
        [
            _agents({"expert-safe": [(nan_alpha := float("nan"), 0.0, 0.0)]}),
            _agents({"expert-reckless": [(nan_alpha, 1.0, 4.0)]}),
            _agents({"budget-env": [(0.0, 0.0, 0.0), (0.25, 0.5, 1.0), (1.0, 1.0, 4.0)]}),
        ]
    )
    doc = report.Document("x")
    gains = report.yardstick_section(doc, rc, results, None, EXPERTS)
    md = doc.markdown()
    assert f"**{best:+.3f}**" in md and "estimated best" in md and "budget-env" in md
    assert [m.method for m in gains] == ["budget-env"]
    assert len(calls) == 2  # from the cache


def test_calibration_intervals():
    # Experts at cost 0 and 4: position = cost / 4. Cost 2.04 +- 0.01 at alpha 0.5:
    # position 0.51 in [0.5075, 0.5125], error 0.01 in [0.0075, 0.0125].
    agents = _agents({"a": [(0.5, 0.5, 2.04)], "b": [(0.5, 0.5, 2.0)]})
    cal = yardstick.method_intervals(agents, EXPERTS, "calibration")
    assert [m.method for m in cal] == ["b", "a"]
    b, a = cal
    assert (a.mean, a.lo, a.hi) == pytest.approx((0.01, 0.0075, 0.0125))
    assert (b.mean, b.lo, b.hi) == pytest.approx((0.0, 0.0, 0.0025))  # alpha inside the CI
    assert yardstick.separated(a, b)


def test_yardstick_without_experts_on_a_tabular_env(tmp_path):
    rc = RunConfig(load_experiment("hazard-grid"), tmp_path, quiet=True)
    nan = float("nan")
    doc = report.Document("x")
    agents = _agents({"budget-env": [(0.5, 0.5, 1.0)]})
    assert report.yardstick_section(doc, rc, agents, KINKED, ExpertStats(nan, nan, nan, nan)) == []
    md = doc.markdown()
    assert "missing" in md and "no exact model" not in md


def test_intervals_over_seeds_replace_per_agent_ones():
    agents = _agents({"a": [(0.25, 0.8, 1.0)], "b": [(0.25, 0.25, 1.0)]})
    summary = pd.DataFrame(
        [
            {"method": "a", "n_seeds": 3, "frontier_gap_mean": 0.02,
             "frontier_gap_mean_lo": 0.01, "frontier_gap_mean_hi": 0.03},
            {"method": "b", "n_seeds": 1, "frontier_gap_mean": 0.55,
             "frontier_gap_mean_lo": 0.55, "frontier_gap_mean_hi": 0.55},
        ]
    )  # fmt: skip
    a, b = yardstick.method_intervals(agents, EXPERTS, "frontier_gap", KINKED, summary)
    assert (a.method, a.mean, a.lo, a.hi, a.seeds) == ("a", 0.02, 0.01, 0.03, 3)
    per_agent = yardstick.method_intervals(agents, EXPERTS, "frontier_gap", KINKED)[1]
    assert b == per_agent and b.seeds == 1  # one seed: the per-agent interval
    # An older summary.csv without the columns: per-agent intervals throughout.
    old = summary[["method", "frontier_gap_mean"]]
    assert yardstick.method_intervals(agents, EXPERTS, "frontier_gap", KINKED, old)[0].seeds == 1
