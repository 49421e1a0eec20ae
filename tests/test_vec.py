"""The batched numpy VecEnvs give the same episodes as DummyVecEnvs of the single envs."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from safeknob.config import EnvConfig
from safeknob.envs import make_env
from safeknob.envs.vec import BatchedVecEnv, batched_vec_env, core_for_factory
from safeknob.evaluation.rollout import rollout
from safeknob.rl.training import env_factory, make_vec_env

CASES = [
    ("safeknob/HazardGrid-v0", {"slip": 0.1, "horizon": 50}),
    ("safeknob/HazardGrid-v0", {"slip": 0.3, "horizon": 12, "step_penalty": 0.03}),
    ("safeknob/HazardNav-v0", {"horizon": 40, "layout": "fence"}),
    ("safeknob/HazardNav-v0", {"horizon": 30, "action_noise": 0.2, "start_jitter": 0.1}),
]


def _actions(space, n: int, rng: np.random.Generator) -> np.ndarray:
    if space.shape == ():
        return rng.integers(space.n, size=n)
    return rng.uniform(-1.5, 1.5, size=(n, *space.shape)).astype(np.float32)


@pytest.mark.parametrize(("env_id", "kwargs"), CASES)
def test_batched_vec_env_matches_dummy_vec_env(env_id, kwargs):
    n = 5
    dummy = DummyVecEnv([lambda: make_env(env_id, kwargs)] * n)
    batched = batched_vec_env(env_id, kwargs, None, n)
    assert isinstance(batched, BatchedVecEnv)
    assert batched.observation_space == dummy.observation_space
    dummy.seed(3)
    batched.seed(3)
    o1, o2 = dummy.reset(), batched.reset()
    np.testing.assert_array_equal(o1, o2)
    assert o1.dtype == o2.dtype
    rng = np.random.default_rng(0)
    n_done = 0
    for _ in range(400):
        a = _actions(dummy.action_space, n, rng)
        o1, r1, d1, i1 = dummy.step(a)
        o2, r2, d2, i2 = batched.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        assert r1.dtype == r2.dtype
        np.testing.assert_array_equal(d1, d2)
        for a_, b_ in zip(i1, i2, strict=True):
            assert a_["cost"] == b_["cost"]
            assert a_["TimeLimit.truncated"] == b_["TimeLimit.truncated"]
            assert ("terminal_observation" in a_) == ("terminal_observation" in b_)
            if "terminal_observation" in a_:
                np.testing.assert_array_equal(
                    a_["terminal_observation"], b_["terminal_observation"]
                )
        n_done += int(d1.sum())
    assert n_done > 0


def test_make_vec_env_is_batched_for_built_in_envs_only():
    assert isinstance(make_vec_env(EnvConfig(), 2), BatchedVecEnv)
    cfg = EnvConfig(cost_fn="bad_envs:cost_ok")  # any user cost function: no batched core
    assert isinstance(make_vec_env(cfg, 2), DummyVecEnv)
    assert core_for_factory(env_factory(EnvConfig()), 3) is not None
    assert core_for_factory(lambda: make_env("safeknob/HazardGrid-v0"), 3) is None


class _Greedy:
    """A deterministic agent: a fixed function of the observation."""

    def start_episode(self, slot, rng):
        return None

    def act(self, obs, slots):
        obs = np.asarray(obs)
        if obs.ndim == 1:
            return (obs * 7 + 1) % 4
        return np.stack([np.sin(obs[:, 0] * 5), np.cos(obs[:, 1] * 3 + 1)], axis=1).astype(
            np.float32
        )


@pytest.mark.parametrize(("env_id", "kwargs"), CASES)
def test_batched_rollout_gives_the_same_episodes(env_id, kwargs):
    cfg = EnvConfig(id=env_id, kwargs=kwargs)
    fast = rollout(_Greedy(), env_factory(cfg), 60, seed=11, record=True)
    slow = rollout(_Greedy(), lambda: make_env(env_id, kwargs), 60, seed=11, record=True)
    np.testing.assert_array_equal(fast.returns, slow.returns)
    np.testing.assert_array_equal(fast.costs, slow.costs)
    np.testing.assert_array_equal(fast.lengths, slow.lengths)
    for a, b in zip(fast.episodes, slow.episodes, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.acts, b.acts)
        assert a.terminal == b.terminal


@pytest.mark.parametrize(("env_id", "kwargs"), CASES)
def test_batched_absorbing_env_matches_the_wrapper(env_id, kwargs):
    from safeknob.envs.vec import vec_env
    from safeknob.rl.airl import absorbing_factory

    make = absorbing_factory(EnvConfig(id=env_id, kwargs=kwargs))
    n = 4
    dummy = DummyVecEnv([make] * n)
    batched = vec_env(make, n)
    assert isinstance(batched, BatchedVecEnv)
    dummy.seed(5)
    batched.seed(5)
    np.testing.assert_array_equal(dummy.reset(), batched.reset())
    rng = np.random.default_rng(1)
    absorbed = 0
    for _ in range(300):
        a = _actions(dummy.action_space, n, rng)
        o1, r1, d1, i1 = dummy.step(a)
        o2, r2, d2, i2 = batched.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        for a_, b_ in zip(i1, i2, strict=True):
            assert a_["cost"] == b_["cost"]
            assert a_.get("absorbing", False) == b_.get("absorbing", False)
            absorbed += int(a_.get("absorbing", False))
    # Greedy rollouts of the absorbing env: same episodes as single wrapped envs.
    fast = rollout(_Greedy(), make, 30, seed=2, record=True)
    slow = rollout(_Greedy(), lambda: make(), 30, seed=2, record=True)
    np.testing.assert_array_equal(fast.returns, slow.returns)
    np.testing.assert_array_equal(fast.costs, slow.costs)
    np.testing.assert_array_equal(fast.lengths, slow.lengths)
    for a, b in zip(fast.episodes, slow.episodes, strict=True):
        np.testing.assert_array_equal(a.obs, b.obs)
