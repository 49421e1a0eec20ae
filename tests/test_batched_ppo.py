"""The batched PPO / PID PPO-Lagrangian trainer (safeknob.rl.batched_ppo) against SB3 2.2.1's
PPO as safeknob trains it (rl.training.train_ppo), on tiny nets and budgets."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from safeknob.config import EnvConfig, LagrangeConfig, PPOConfig
from safeknob.envs.vec import vec_env
from safeknob.rl.airl import absorbing_factory
from safeknob.rl.batched_ppo import (
    AgentFailure,
    AgentSpec,
    BatchedPPO,
    has_batched_core,
    train_batched,
)
from safeknob.rl.lagrangian import CostPenaltyVecEnv
from safeknob.rl.training import TrainResult, build_ppo, env_factory, load_ppo, train_ppo

GRID = EnvConfig("safeknob/HazardGrid-v0", {"slip": 0.1, "horizon": 30, "step_penalty": 0.02})
NAV = EnvConfig("safeknob/HazardNav-v0", {"horizon": 40, "layout": "fence"})
TINY = PPOConfig(n_envs=4, n_steps=32, batch_size=64, n_epochs=3, net_arch=(16, 16))
LAG = LagrangeConfig(kp=0.2, ki=0.05, kd=0.05, lambda_max=1.0, warmup_rollouts=2)


def _exp(env: EnvConfig, ppo: PPOConfig):
    from safeknob.config import ExperimentConfig

    return ExperimentConfig(name="t", env=env, ppo=ppo, lagrange=LAG)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _weights(res: TrainResult | AgentFailure) -> dict[str, torch.Tensor]:
    assert isinstance(res, TrainResult), res
    return res.model.policy.state_dict()


def test_k1_reproduces_sb3_on_the_grid_episode_for_episode():
    """Same seed: every training episode (return, cost per snapshot rollout), the multiplier's
    history and final value equal SB3's exactly; weights and snapshots to float rounding."""
    steps = 12 * TINY.n_envs * TINY.n_steps
    kw = {"budget": 2.0, "lagrange": LAG, "two_sided": True}
    ref = train_ppo(_exp(GRID, TINY), steps, 11, snapshot_fraction=0.5, ppo=TINY, **kw)
    (got,) = train_batched(
        env_factory(GRID), TINY, steps, [AgentSpec(11, **kw)], snapshot_fraction=0.5
    )
    assert isinstance(got, TrainResult)
    assert sum(n for _, _, n in ref.points) > 10  # episodes finished in the compared rollouts
    assert got.points == ref.points
    assert got.history == ref.history and len(ref.history) > 5
    assert got.final_lambda == ref.final_lambda
    assert any(h["lambda"] != 0.0 for h in ref.history)
    assert _max_diff(_weights(got), _weights(ref)) < 1e-6
    assert len(got.snapshots) == len(ref.snapshots) == 7  # rollouts 6..12
    assert max(_max_diff(a, b) for a, b in zip(got.snapshots, ref.snapshots, strict=True)) < 1e-6
    assert got.model.num_timesteps == ref.model.num_timesteps


def test_k1_episodes_with_a_learned_reward_in_the_absorbing_env():
    """The learned-reward path (reward_fn replaces the env's reward; AbsorbingCore)."""

    def reward_fn(obs, acts, next_obs, dones):
        return (np.asarray(next_obs) % 7 == 3).astype(np.float64) - 0.01 * np.asarray(acts)

    make = absorbing_factory(GRID)
    steps = 6 * TINY.n_envs * TINY.n_steps
    venv = CostPenaltyVecEnv(vec_env(make, TINY.n_envs), reward_fn=reward_fn)
    model = build_ppo(venv, TINY, 3)
    model.learn(steps)
    batch = BatchedPPO(make, TINY, steps, [AgentSpec(3, reward_fn=reward_fn)])
    (got,) = batch.learn()
    stats = batch.agents[0].stats
    assert len(venv.stats.objectives) > 10
    assert stats.objectives == venv.stats.objectives
    assert stats.costs == venv.stats.costs
    assert _max_diff(_weights(got), model.policy.state_dict()) < 1e-6


@pytest.mark.parametrize("env", [GRID, NAV], ids=["grid-discrete", "nav-gaussian"])
def test_one_update_matches_sb3_within_1e6(env):
    """One rollout and one 10-epoch update with the default [64, 64] net: weights and Adam
    state (exported into the SB3 optimizer) within 1e-6 of SB3's."""
    ppo = dataclasses.replace(TINY, n_steps=64, n_epochs=10, net_arch=(64, 64), ent_coef=0.01)
    steps = ppo.n_envs * ppo.n_steps
    ref = train_ppo(_exp(env, ppo), steps, 4, ppo=ppo)
    (got,) = train_batched(env_factory(env), ppo, steps, [AgentSpec(4)])
    w_ref, w_got = _weights(ref), _weights(got)
    assert _max_diff(w_got, w_ref) < 1e-6
    assert any(not torch.equal(w_ref[k], build_ppo_init(env, ppo, 4)[k]) for k in w_ref)
    s_ref = ref.model.policy.optimizer.state_dict()["state"]
    s_got = got.model.policy.optimizer.state_dict()["state"]
    assert s_ref.keys() == s_got.keys()
    for i in s_ref:
        assert (
            float(s_got[i]["step"])
            == float(s_ref[i]["step"])
            == ppo.n_epochs * steps // ppo.batch_size
        )
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(s_got[i][key], s_ref[i][key], atol=1e-6, rtol=0)


def build_ppo_init(env: EnvConfig, ppo: PPOConfig, seed: int) -> dict[str, torch.Tensor]:
    return build_ppo(vec_env(env_factory(env), ppo.n_envs), ppo, seed).policy.state_dict()


@pytest.mark.parametrize("env", [GRID, NAV], ids=["grid-discrete", "nav-gaussian"])
def test_agent_alone_equals_the_same_agent_in_a_batch_of_3(env):
    steps = 2 * TINY.n_envs * TINY.n_steps  # two rollouts, two updates
    spec = AgentSpec(21, budget=1.0, lagrange=dataclasses.replace(LAG, warmup_rollouts=0))
    others = [AgentSpec(5, budget=3.0, lagrange=LAG, two_sided=True), AgentSpec(9)]
    (alone,) = train_batched(env_factory(env), TINY, steps, [spec])
    batch = train_batched(env_factory(env), TINY, steps, [others[0], spec, others[1]])
    assert _max_diff(_weights(batch[1]), _weights(alone)) < 1e-6
    assert _max_diff(_weights(batch[0]), _weights(alone)) > 1e-3  # other agents differ
    assert batch[1].history == alone.history or env is NAV  # nav costs may move a rounding


def test_a_nan_stays_in_its_agent_and_is_reported_as_its_failure():
    steps = 3 * TINY.n_envs * TINY.n_steps

    def bad_reward(obs, acts, next_obs, dones):
        return np.full(len(obs), np.nan)

    def zero_reward(obs, acts, next_obs, dones):
        return np.zeros(len(obs))

    def run(middle):
        specs = [AgentSpec(1, budget=2.0, lagrange=LAG), middle, AgentSpec(3)]
        return train_batched(env_factory(GRID), TINY, steps, specs)

    bad = run(AgentSpec(2, reward_fn=bad_reward))
    good = run(AgentSpec(2, reward_fn=zero_reward))
    assert isinstance(bad[1], AgentFailure)
    assert bad[1].agent == 1 and bad[1].rollout == 1 and "non-finite" in bad[1].reason
    assert isinstance(good[1], TrainResult)
    for k in (0, 2):  # the other agents: bit for bit what they are next to a healthy agent
        w_bad, w_good = _weights(bad[k]), _weights(good[k])
        assert all(torch.equal(w_bad[n], w_good[n]) for n in w_good)
        assert all(torch.isfinite(v).all() for v in w_bad.values())
        assert bad[k].history == good[k].history


def test_same_seeds_twice_same_weights():
    steps = 2 * TINY.n_envs * TINY.n_steps
    specs = [AgentSpec(7, budget=1.5, lagrange=LAG, two_sided=True), AgentSpec(8)]
    a = train_batched(env_factory(NAV), TINY, steps, specs)
    b = train_batched(env_factory(NAV), TINY, steps, specs)
    for x, y in zip(a, b, strict=True):
        wx, wy = _weights(x), _weights(y)
        assert all(torch.equal(wx[n], wy[n]) for n in wx)
        assert x.history == y.history


def test_returns_ordinary_sb3_models_that_save_and_load(tmp_path):
    steps = TINY.n_envs * TINY.n_steps
    (res,) = train_batched(env_factory(GRID), TINY, steps, [AgentSpec(0)])
    assert isinstance(res, TrainResult)
    res.model.save(tmp_path / "model.zip")
    loaded = load_ppo(tmp_path / "model.zip")
    w = _weights(res)
    assert all(torch.equal(w[n], v) for n, v in loaded.policy.state_dict().items())
    obs = np.arange(5)
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], res.model.predict(obs, deterministic=True)[0]
    )


def test_envs_without_a_batched_core_are_refused():
    other = EnvConfig("CartPole-v1")
    assert has_batched_core(env_factory(GRID)) and has_batched_core(absorbing_factory(NAV))
    assert not has_batched_core(env_factory(other))
    assert not has_batched_core(env_factory(dataclasses.replace(GRID, cost_fn="m:f")))
    with pytest.raises(ValueError, match="no batched core"):
        BatchedPPO(env_factory(other), TINY, 128, [AgentSpec(0)])
    with pytest.raises(ValueError, match="at least one agent"):
        BatchedPPO(env_factory(GRID), TINY, 128, [])
    with pytest.raises(ValueError, match="LagrangeConfig"):
        BatchedPPO(env_factory(GRID), TINY, 128, [AgentSpec(0, budget=1.0)])
