"""What a reward promises a knob (issue 22's diagnostic): the solvers on any reward, the
two-policy mixture within a budget, and ``safeknob frontier --reward airl`` end to end."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_config
from typer.testing import CliRunner

from safeknob.cli import app
from safeknob.envs import make_env, nav_frontier, tabular_model
from safeknob.envs.frontier import Frontier, constrained_optima
from safeknob.envs.model import TabularModel, evaluate_policy, with_state_reward
from safeknob.evaluation.metrics import ExpertStats
from safeknob.stages import learn_rewards, promised


def _chain() -> TabularModel:
    """Three states: 0 -> (a0: 1, a1: 2), 1 and 2 absorb; cost 1 for entering 2."""
    P = np.zeros((3, 2, 3))
    P[0, 0, 1] = P[0, 1, 2] = 1.0
    P[1, :, 1] = P[2, :, 2] = 1.0
    C = np.zeros((3, 2))
    C[0, 1] = 1.0
    R = np.zeros((3, 2))
    return TabularModel(P=P, R=R, C=C, mu=np.array([1.0, 0, 0]), horizon=3,
                        terminal=np.array([False, True, True]))  # fmt: skip


def test_state_reward_pays_the_entered_state_also_while_absorbed():
    m = with_state_reward(_chain(), np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(m.R, [[1.0, 2.0], [1.0, 1.0], [2.0, 2.0]])
    # Going to state 2 pays 2 per step for all three steps (the absorbing env's semantics).
    assert evaluate_policy(m, np.array([[0.0, 1.0], [1, 0], [1, 0]])) == (6.0, 1.0)
    with pytest.raises(ValueError, match="shape"):
        with_state_reward(_chain(), np.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        with_state_reward(_chain(), np.array([0.0, np.nan, 1.0]))


def test_constrained_optima_mix_within_the_budget_and_raise_an_infeasible_one():
    m = with_state_reward(_chain(), np.array([0.0, 1.0, 2.0]))
    # Budget 0.25: a quarter of the mass may take the costly, better branch: 3 + 0.25 * 3.
    pts = constrained_optima(m, np.array([0.25, -1.0, np.inf]))
    assert pts[0].value == pytest.approx(3.75) and pts[0].cost == pytest.approx(0.25)
    assert pts[1].cost == pytest.approx(0.0, abs=1e-8)  # raised to the least cost
    assert pts[2].value == pytest.approx(6.0)  # unconstrained


def test_constrained_optima_of_the_env_reward_lie_on_the_frontier():
    cfg = tiny_config()
    env = make_env(cfg.env.id, dict(cfg.env.kwargs))
    model = tabular_model(env)
    env.close()
    fr = Frontier.compute(model)
    budgets = np.linspace(fr.min_cost, fr.max_cost, 4)
    for b, p in zip(budgets, constrained_optima(model, budgets), strict=True):
        ret, cost = evaluate_policy(model, p.policy)
        assert cost <= b + 1e-6
        assert ret == pytest.approx(float(fr(b)), abs=1e-6)


def test_budget_mixture_by_hand():
    costs = np.array([0.0, 1.0, 2.0, 4.0, 3.0])
    objs = np.array([0.0, 2.0, 2.5, 3.0, 1.0])  # (3, 1) is below the hull, (4, 3) its top
    assert nav_frontier.budget_mixture(costs, objs, -1.0) == [(0, 1.0)]
    assert nav_frontier.budget_mixture(costs, objs, 9.0) == [(3, 1.0)]
    (i, wi), (j, wj) = nav_frontier.budget_mixture(costs, objs, 0.25)
    assert (i, j) == (0, 1) and wi == pytest.approx(0.75) and wj == pytest.approx(0.25)
    # (2, 2.5) is on the hull (slopes 2, 0.5, 0.25 decrease): budget 3 mixes it with (4, 3).
    mix = nav_frontier.budget_mixture(costs, objs, 3.0)
    assert [k for k, _ in mix] == [2, 3]
    assert sum(w * costs[k] for k, w in mix) == pytest.approx(3.0)


def test_nav_value_iteration_on_the_env_reward_scores_its_own_objective():
    kw = {"horizon": 40, "step_penalty": 0.03, "layout": "fence", "start_jitter": 0.0}
    pts = nav_frontier.reward_points(
        kw, nav_frontier.env_reward_terms, [0.0, 10.0], grid=41, headings=16, episodes=2
    )
    # The env's reward maximized and measured: the objective is the return, and a large
    # multiplier buys cost with return.
    np.testing.assert_allclose(pts.objectives, pts.returns, atol=1e-9)
    assert pts.costs[1] <= pts.costs[0]


def test_nav_state_reward_terms_pay_the_absorbing_goal():
    kw = {"horizon": 30, "layout": "fence", "start_jitter": 0.0}

    def goal_x(obs):  # a state-only reward: the agent's x coordinate
        return obs[:, 0].astype(float)

    pts = nav_frontier.reward_points(
        kw, lambda env: nav_frontier.state_reward_terms(env, goal_x), [0.0], grid=41,
        headings=16, episodes=1,
    )  # fmt: skip
    # Moving right pays every step; the objective must count the absorbed steps at the goal
    # (x ~ 0.8 for the remaining steps), far more than the env's own return.
    assert pts.objectives[0] > 10.0


@pytest.fixture(scope="module")
def rewarded_root(trained_root, tmp_path_factory):
    """The tiny experiment with both learned rewards (built once for this module)."""
    import shutil

    from safeknob.config import RunConfig

    dest = tmp_path_factory.mktemp("promised") / "data"
    shutil.copytree(trained_root, dest)
    rc = RunConfig(experiment=tiny_config(), data_dir=dest, quiet=True)
    learn_rewards.run(rc, ("reckless", "safe"))
    return dest


def test_promise_of_the_env_reward_is_the_frontier_and_learned_ones_are_scored(rewarded_root):
    from safeknob.config import RunConfig

    rc = RunConfig(experiment=tiny_config(), data_dir=rewarded_root, quiet=True)
    experts = ExpertStats(return_safe=0.5, cost_safe=0.05, return_reck=0.9, cost_reck=1.0)
    out = promised.promised(rc, experts, [0.0, 0.5, 1.0])
    assert list(out) == list(promised.SOURCES)
    env = out["env"]
    np.testing.assert_allclose(env.rows.frontier_gap, 0.0, atol=1e-6)
    for p in out.values():
        assert p.rows[["return_mean", "cost_mean", "position"]].notna().all().all()
        assert len(p.rows) == 3
    # Cached: the same call reads cache/promised.json, a changed alpha grid recomputes.
    assert (rc.paths.cache / "promised.json").is_file()
    again = promised.promised(rc, experts, [0.0, 0.5, 1.0])
    assert again["airl"].rows.equals(out["airl"].rows)
    other = promised.promised(rc, experts, [0.0, 1.0], sources=["env"])
    assert len(other["env"].rows) == 2


def test_frontier_reward_airl_prints_the_promise(rewarded_root, tiny_experiment_file):
    from safeknob.stages.common import console

    old = console.width
    console.width = 250  # no wrapping of the tables' cells
    res = CliRunner().invoke(
        app, ["frontier", "-e", str(tiny_experiment_file), "--data", str(rewarded_root),
              "--reward", "airl"],
    )  # fmt: skip
    console.width = old
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # rich wraps cells to the terminal's width
    assert "What each task reward promises" in text
    for p in promised.SOURCES:
        assert p in text  # every reward's column of the per-alpha table


def test_frontier_reward_airl_without_rewards_is_one_line(pipeline_root, tiny_experiment_file):
    res = CliRunner().invoke(
        app, ["frontier", "-e", str(tiny_experiment_file), "--data", str(pipeline_root),
              "--reward", "airl"],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "learn-rewards" in res.output and "Traceback" not in res.output
    bad = CliRunner().invoke(app, ["frontier", "-e", str(tiny_experiment_file), "--reward", "gail"])
    assert bad.exit_code == 2 and "--reward must be airl" in bad.output


def test_report_sets_promised_beside_delivered(rewarded_root):
    import pandas as pd

    from safeknob.config import RunConfig
    from safeknob.evaluation.page import Document
    from safeknob.stages.report import promise_section

    rc = RunConfig(experiment=tiny_config(), data_dir=rewarded_root, quiet=True)
    experts = ExpertStats(return_safe=0.5, cost_safe=0.05, return_reck=0.9, cost_reck=1.0)
    results = pd.DataFrame({"method": ["budget-airl"] * 2, "alpha": [0.0, 1.0]})
    summary = pd.DataFrame(
        {"method": ["budget-env", "budget-airl", "reward-mix"],
         "frontier_gap_mean": [0.0, 0.2, 0.3], "frontier_gap_mean_lo": [0.0, 0.1, 0.2],
         "frontier_gap_mean_hi": [0.0, 0.3, 0.4], "chord_gain_mean": [0.1, 0.0, -0.1],
         "calibration_error": [0.0, 0.1, 0.2]}
    )  # fmt: skip
    doc = Document("t")
    promise_section(doc, rc, results, summary, experts)
    text = doc.markdown()
    assert "What the learned reward promises" in text
    assert "| budget-airl" in text and "| reward-mix" in text and "budget-env |" not in text
    assert "0.200 [0.100, 0.300]" in text  # delivered, with its interval over seeds
    assert promised.SOURCES["mix"] in text and promised.SOURCES["env"] in text
    # Nothing on learned rewards: no section.
    doc = Document("t")
    promise_section(doc, rc, results, summary[summary.method == "budget-env"], experts)
    assert "promises" not in doc.markdown()
