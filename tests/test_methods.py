"""Every blend method trains, saves, reloads and evaluates on the tiny grid (mechanics only;
quality is measured by `safeknob evaluate` on the real experiments, see experiments/NOTES.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from safeknob.artifacts import ArtifactError
from safeknob.errors import UserError
from safeknob.methods import get_method
from safeknob.methods.bc_mix import mix_transitions
from safeknob.rl.snapshots import dual_mixture
from safeknob.stages import blend, calibrate, evaluate
from safeknob.stages import learn_rewards as rewards
from safeknob.store import ExperimentStore


@pytest.mark.parametrize(
    ("method", "reward", "column"),
    [
        ("bc-mix", None, "bc-mix"),
        ("budget", "env", "budget-env"),
        ("conditioned", None, "conditioned"),
    ],
)
def test_method_trains_and_evaluates(run_config, method, reward, column):
    out = blend.run(blend.BlendRunConfig(run_config, method, (0.0, 0.5, 1.0), reward))
    assert out.name == column
    for a in ("0.00", "0.50", "1.00"):
        meta = json.loads((out / f"alpha-{a}" / "meta.json").read_text())
        assert meta["stage"] == "blend" and meta["method"] == column
    res = pd.read_csv(evaluate.run(run_config) / "results.csv")
    rows = res[res.method == column]
    assert sorted(rows.alpha) == [0.0, 0.5, 1.0]
    assert rows[["return_mean", "cost_mean", "position"]].notna().all().all()


def test_budget_airl_learns_reward_and_blends(run_config):
    rewards.run(run_config, ("reckless",))
    meta = json.loads((run_config.paths.rewards("reckless") / "meta.json").read_text())
    assert meta["stage"] == "learn-rewards" and "check" in meta
    std = json.loads((run_config.paths.rewards("reckless") / "standardize.json").read_text())
    assert std["std"] > 0
    out = blend.run(blend.BlendRunConfig(run_config, "budget", (0.5,), "airl"))
    assert (out / "alpha-0.50" / "model.zip").is_file()


def test_budget_airl_learns_missing_rewards_first(run_config):
    assert not run_config.paths.rewards("reckless").exists()
    blend.run(blend.BlendRunConfig(run_config, "budget", (0.5,), "airl"))
    for role in ("reckless", "safe"):
        assert (run_config.paths.rewards(role) / "meta.json").is_file()


def test_corrupt_learned_reward_names_the_command(run_config):
    rewards.run(run_config, ("reckless", "safe"))
    (run_config.paths.rewards("reckless") / "reward_net.pt").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="safeknob learn-rewards"):
        blend.run(blend.BlendRunConfig(run_config, "budget", (0.5,), "airl"))


def test_unknown_method_and_reward_are_user_errors():
    with pytest.raises(UserError, match="unknown method"):
        get_method("bugdet")
    with pytest.raises(UserError, match="unknown reward"):
        get_method("budget", "gail")


def test_mix_transitions_ratio_is_exact():
    rng = np.random.default_rng(0)
    safe = (np.zeros(300), np.zeros(300), np.zeros(300))
    reck = (np.ones(100), np.ones(100), np.ones(100))
    (obs, _, _), m_r, m_s = mix_transitions(safe, reck, 0.25, rng)
    assert m_r / (m_r + m_s) == pytest.approx(0.25, abs=0.01)
    assert obs.sum() == m_r
    (_, _, _), m_r, m_s = mix_transitions(safe, reck, 0.0, rng)
    assert m_r == 0 and m_s == 300


@pytest.mark.parametrize(
    ("points", "budget", "expected"),
    [
        # Two snapshots bracket the budget: weights make the expected cost equal it.
        ([(0.5, 1.0, 50), (0.9, 3.0, 50)], 2.0, [(0, 0.5), (1, 0.5)]),
        # A dominated snapshot is ignored in favour of the better pair.
        ([(0.5, 1.0, 50), (0.4, 1.5, 50), (0.9, 3.0, 50)], 2.0, [(0, 0.5), (2, 0.5)]),
        # All under budget: the best one alone.
        ([(0.5, 1.0, 50), (0.7, 1.5, 50)], 2.0, [(1, 1.0)]),
        # All over budget: the cheapest one alone; among equally cheap ones the best.
        ([(0.5, 3.0, 50), (0.7, 4.0, 50)], 2.0, [(0, 1.0)]),
        ([(0.5, 3.0, 50), (0.6, 3.0, 50), (0.7, 4.0, 50)], 2.0, [(1, 1.0)]),
    ],
)
def test_dual_mixture(points, budget, expected):
    got = dual_mixture(points, budget)
    assert [i for i, _ in got] == [i for i, _ in expected]
    np.testing.assert_allclose([w for _, w in got], [w for _, w in expected])


@pytest.mark.parametrize(("lam", "expected"), [(1.0, 1), (5.0, 0)])
def test_dual_mixture_all_over_budget_uses_the_final_multiplier(lam, expected):
    """Every snapshot overspends: deploy the best Lagrangian objective - lam * cost."""
    points = [(0.5, 3.0, 50), (0.9, 3.2, 50)]
    assert dual_mixture(points, 2.0, lam=lam) == [(expected, 1.0)]


def test_calibration_map_is_monotone_and_refuses_foreign_maps(run_config):
    blend.run(blend.BlendRunConfig(run_config, "mixture", (0.0, 0.25, 0.5, 0.75, 1.0)))
    evaluate.run(run_config)
    path = calibrate.run(calibrate.CalibrateConfig(run_config, "mixture"))
    cmap = ExperimentStore(run_config).calibration_map("mixture")
    assert cmap is not None
    assert np.all(np.diff(cmap.positions) >= 0)
    assert 0.0 <= cmap.internal(0.6) <= 1.0
    meta = json.loads(path.read_text())
    meta["experiment"] = "another-experiment"
    path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="another-experiment"):
        ExperimentStore(run_config).calibration_map("mixture")


def test_isotonic_pools_violators():
    np.testing.assert_allclose(calibrate.isotonic(np.array([0.0, 0.5, 0.3, 1.0])), [0, 0.4, 0.4, 1])


def test_mix_transitions_are_nested_across_alphas():
    """Every alpha takes prefixes of the same permutations: more reckless transitions and
    fewer safe ones as alpha grows, never a fresh draw (so the response curve is smooth)."""
    safe = tuple(np.arange(300) for _ in range(3))
    reck = tuple(1000 + np.arange(100) for _ in range(3))
    sets = {}
    for a in (0.2, 0.5, 0.8):
        (obs, _, _), _, _ = mix_transitions(safe, reck, a, np.random.default_rng(3))
        sets[a] = (set(obs[obs >= 1000].tolist()), set(obs[obs < 1000].tolist()))
    assert sets[0.2][0] < sets[0.5][0] <= sets[0.8][0]
    assert sets[0.2][1] > sets[0.5][1] > sets[0.8][1]


def test_blend_ppo_is_wider_with_the_same_rollout_size():
    import dataclasses

    from safeknob.config import ExperimentConfig

    exp = ExperimentConfig()
    assert exp.blend_ppo == exp.ppo  # 0 = the experiment's PPO settings
    wide = dataclasses.replace(
        exp, blend=dataclasses.replace(exp.blend, n_envs=32, batch_size=512, n_epochs=4)
    )
    ppo = wide.blend_ppo
    assert (ppo.n_envs, ppo.batch_size, ppo.n_epochs) == (32, 512, 4)
    assert ppo.n_envs * ppo.n_steps == exp.ppo.n_envs * exp.ppo.n_steps
    assert wide.ppo == exp.ppo  # the experts keep theirs
    huge = dataclasses.replace(exp, blend=dataclasses.replace(exp.blend, batch_size=10**6))
    assert huge.blend_ppo.batch_size == exp.ppo.n_envs * exp.ppo.n_steps  # one rollout


def test_budget_agents_train_with_the_blend_ppo_settings(run_config):
    """``blend.n_envs`` / ``batch_size`` / ``n_epochs`` reach the PPO of a budget agent."""
    import dataclasses

    from safeknob.methods.base import BlendContext
    from safeknob.methods.registry import get_method
    from safeknob.rl.training import load_ppo

    exp = run_config.experiment
    assert (exp.ppo.n_envs, exp.ppo.batch_size, exp.ppo.n_epochs) != (8, 128, 2)
    b = dataclasses.replace(exp.blend, n_envs=8, batch_size=128, n_epochs=2, steps=512)
    rc = run_config.replace(experiment=exp.replace(blend=b))
    method = get_method("budget", reward="env")
    folder = rc.paths.blends / "probe"
    folder.mkdir(parents=True)
    method.train(BlendContext.create(rc, 0), 0.5, folder)
    model = load_ppo(folder / "model.zip")
    assert (model.n_envs, model.batch_size, model.n_epochs) == (8, 128, 2)
    assert model.n_steps == exp.ppo.n_envs * exp.ppo.n_steps // 8
    # On a learned reward: [ppo], the settings the reward's gate certified it for.
    ctx = BlendContext(rc, 0, 0.0, 1.0)
    for name, reward in (("budget", "airl"), ("conditioned", "airl"), ("reward-mix", "airl")):
        assert get_method(name, reward).ppo(ctx) == exp.ppo, name
    assert get_method("conditioned", "env").ppo(ctx).n_envs == 8


def test_conditioned_warmstart_clones_each_expert_at_its_own_end_of_the_knob(run_config):
    """With ``blend.warmstart`` the conditioned policy starts as BC of the safe expert at
    alpha 0 and of the reckless expert at alpha 1, before any PPO step."""
    from safeknob.methods.base import BlendContext
    from safeknob.methods.conditioned import (
        ConditionedVecEnv,
        augmenter,
        conditioned_warmstart,
    )
    from safeknob.rl.training import build_ppo, make_vec_env
    from safeknob.store import ExperimentStore

    exp = run_config.experiment
    ppo = exp.blend_ppo
    venv = ConditionedVecEnv(make_vec_env(exp.env, ppo.n_envs), np.array([0.0, 1.0]), 0)
    model = build_ppo(venv, ppo, 0)
    conditioned_warmstart(BlendContext(run_config, 0, 0.0, 1.0), model, epochs=100)
    aug, _ = augmenter(make_vec_env(exp.env, 1).observation_space)

    def agreement(role: str, alpha: float) -> float:
        trajs = ExperimentStore(run_config).demos(role)[0]
        obs = np.concatenate([np.asarray(t.obs)[:-1] for t in trajs])
        acts = np.concatenate([np.asarray(t.acts) for t in trajs])
        pred, _ = model.predict(aug(obs, np.full(len(obs), alpha)), deterministic=True)
        return float(np.mean(pred == acts))

    assert agreement("safe", 0.0) > 0.9 and agreement("reckless", 1.0) > 0.9
    # The label matters: each end of the knob imitates its own expert better than the other's.
    assert agreement("safe", 0.0) > agreement("safe", 1.0)
    assert agreement("reckless", 1.0) > agreement("reckless", 0.0)


def test_budget_batched_trains_a_seeds_alphas_in_one_batch_and_resumes_per_agent(run_config):
    """``[blend] batched``: one batched call per seed, each agent's meta.json records its
    batch; an alpha added later trains alone, the finished agents are not retrained; agents
    load and act as ordinary budget agents. Off (the default) the record is as before."""
    import dataclasses

    from safeknob.methods import BlendContext, load_blend
    from safeknob.stages.blend import agent_config

    exp = run_config.experiment
    on = exp.replace(blend=dataclasses.replace(exp.blend, batched=True))
    rc = run_config.replace(experiment=on)
    method = get_method("budget", "env")
    assert "batched" not in agent_config(exp, method, 0)["blend"]
    assert agent_config(on, method, 0)["blend"]["batched"] is True

    out = blend.run(blend.BlendRunConfig(rc, "budget", (0.0, 1.0), "env"))
    first = {a: (out / f"alpha-{a}" / "meta.json").read_text() for a in ("0.00", "1.00")}
    for k, a in enumerate(("0.00", "1.00")):
        meta = json.loads(first[a])
        assert meta["batch"]["alphas"] == [0.0, 1.0] and meta["batch"]["index"] == k
        assert meta["config"]["blend"]["batched"] is True
        assert len(meta["candidates"]) > 1 and meta["mixture"]
    blend.run(blend.BlendRunConfig(rc, "budget", (0.0, 0.5, 1.0), "env"))
    for a in ("0.00", "1.00"):  # up to date: not retrained
        assert (out / f"alpha-{a}" / "meta.json").read_text() == first[a]
    assert json.loads((out / "alpha-0.50" / "meta.json").read_text())["batch"]["alphas"] == [0.5]
    ctx = BlendContext.create(rc, 0)
    _, meta, agent = load_blend(ctx, out / "alpha-0.50")
    assert meta["alpha"] == 0.5 and agent is not None
    # The unbatched default sees these agents as made with another config.
    with pytest.raises(ArtifactError, match="different config"):
        blend.run(blend.BlendRunConfig(run_config, "budget", (0.0,), "env"))


def test_budget_batched_on_two_workers_trains_one_batch_per_seed(run_config):
    import dataclasses

    exp = run_config.experiment
    on = exp.replace(blend=dataclasses.replace(exp.blend, batched=True, seeds=(0, 1)))
    rc = run_config.replace(experiment=on)
    out = blend.run(blend.BlendRunConfig(rc, "budget", (0.0, 1.0), "env", workers=2))
    for folder in ("alpha-0.00", "alpha-1.00", "alpha-0.00_seed-1", "alpha-1.00_seed-1"):
        meta = json.loads((out / folder / "meta.json").read_text())
        assert meta["batch"]["alphas"] == [0.0, 1.0], folder
