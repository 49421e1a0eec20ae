"""Safety-Gymnasium through safeknob.envs.safety_gymnasium (optional: `make
install-safety-gymnasium`; CI installs it, so this runs there)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import numpy as np
import pytest

if (
    importlib.util.find_spec("safety_gymnasium") is None
    or importlib.util.find_spec("mujoco") is None
):
    pytest.skip(
        "safety-gymnasium not installed (make install-safety-gymnasium)", allow_module_level=True
    )

from safeknob.envs import make_env  # noqa: E402

ENV_ID = "safeknob.envs.safety_gymnasium:SafetyPointGoal1Gymnasium-v0"


def _episode(env, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(123)
    all_obs, rews, costs, kinds = [obs], [], [], []
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, 2))
        all_obs.append(obs)
        rews.append(r)
        costs.append(info["cost"])
        kinds.append(type(info["cost"]))
        if term or trunc:
            break
    return np.array(all_obs), np.array(rews), np.array(costs), kinds


def test_point_goal_makes_resets_and_steps():
    env = make_env(ENV_ID)
    assert env.observation_space.shape == (60,)
    assert env.action_space.shape == (2,)
    assert env.spec is not None and env.spec.max_episode_steps == 1000
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["cost"] == 0.0
    o1, r1, c1, kinds = _episode(env, 7, 100)
    assert set(kinds) == {float}
    assert np.all(c1 >= 0)
    # Same seed, same episode (observations, rewards, costs) -- also in a fresh env.
    o2, r2, c2, _ = _episode(env, 7, 100)
    fresh = make_env(ENV_ID)
    o3, r3, c3, _ = _episode(fresh, 7, 100)
    for o, r, c in ((o2, r2, c2), (o3, r3, c3)):
        np.testing.assert_array_equal(o, o1)
        np.testing.assert_array_equal(r, r1)
        np.testing.assert_array_equal(c, c1)
    # Another seed, another layout.
    o4, _, _, _ = _episode(env, 8, 5)
    assert not np.array_equal(o4[0], o1[0])
    env.close()
    fresh.close()


def test_point_goal_truncates_at_1000_with_live_costs():
    """A full random episode is truncated (not terminated) after 1000 steps; seed 3's
    random walk runs into a hazard (measured: cost 41 from step 959), so the cost channel is
    live, not a constant 0."""
    env = make_env(ENV_ID)
    _, rews, costs, _ = _episode(env, 3, 2000)
    assert len(rews) == 1000
    assert costs.sum() > 0 and set(np.unique(costs)) <= {0.0, 1.0}
    env.close()


def test_the_compatibility_measure_is_contained():
    """The dataclass patch is gone after the import, and Safety-Gymnasium's array defaults
    are per-instance copies with the original values."""
    import safety_gymnasium  # noqa: F401  (already imported through the env id)
    from safety_gymnasium.assets.color import COLOR
    from safety_gymnasium.assets.geoms.hazards import Hazards

    assert dataclasses.dataclass.__module__ == "dataclasses"
    if importlib.util.find_spec("gymnasium_robotics") is None:  # the stand-in is gone again
        assert not any(m.startswith("gymnasium_robotics") for m in sys.modules)
        from safety_gymnasium.tasks.safe_multi_agent import safe_mujoco_multi

        with pytest.raises(ModuleNotFoundError, match="multi-agent tasks need gymnasium-robotics"):
            safe_mujoco_multi.MultiAgentMujocoEnv()
    a, b = Hazards(num=1), Hazards(num=1)
    np.testing.assert_array_equal(a.color, COLOR["hazard"])
    assert a.color is not b.color

    @dataclasses.dataclass
    class Mine:
        x: int = 0

    with pytest.raises(ValueError, match="mutable default"):

        @dataclasses.dataclass
        class Bad:
            x: np.ndarray = np.zeros(2)  # noqa: RUF009


def test_missing_package_is_one_line(monkeypatch):
    """Without the package, make_env names the make target."""
    from safeknob.envs import EnvError

    for mod in [
        m
        for m in sys.modules
        if m.startswith(("safety_gymnasium", "safeknob.envs.safety_gymnasium"))
    ]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "safety_gymnasium", None)  # import raises ModuleNotFoundError
    import gymnasium as gym

    for env_id in [k for k in gym.registry if k.startswith("Safety")]:
        monkeypatch.delitem(gym.registry, env_id)
    with pytest.raises(EnvError, match="make install-safety-gymnasium"):
        make_env(ENV_ID)
