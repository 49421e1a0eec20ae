"""Envs and cost functions as users really bring them, each wrong in one way (tests only).

``BadEnv-v0`` takes a ``mode`` naming what is wrong; the ids register on import, so an
experiment can name them as ``"bad_envs:BadEnv-v0"`` (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

COSTS: dict[str, Any] = {
    "cost-array1": np.array([0.5]),  # Safety-Gymnasium style: fine
    "cost-vector": np.array([0.5, 0.5]),
    "cost-none": None,
    "cost-str": "0.5",
    "cost-nan": float("nan"),
    "cost-inf": float("inf"),
    "cost-negative": -1.0,
    "cost-list": [0.1, 0.2],
}


class BadEnv(gym.Env):
    """A 4-state chain with Discrete(2) actions, wrong in the way ``mode`` says."""

    def __init__(self, mode: str = "ok", length: int = 8) -> None:
        self.mode = mode
        self.length = length
        self.observation_space: gym.Space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        if mode == "dict-obs":
            self.observation_space = gym.spaces.Dict({"x": gym.spaces.Discrete(3)})
        elif mode == "tuple-obs":
            self.observation_space = gym.spaces.Tuple((gym.spaces.Discrete(3),))
        elif mode == "multidiscrete-act":
            self.action_space = gym.spaces.MultiDiscrete([2, 2])
        if mode != "multidiscrete-act":
            self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / 1000.0 % 1.0, 0.5], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        done = self.mode != "never-ends" and self.t >= self.length
        cost = COSTS.get(self.mode, 0.1 * int(action))
        reward = float("nan") if self.mode == "reward-nan" else float(action)
        if self.mode == "old-step":
            return self._obs(), reward, done, {"cost": cost}
        return self._obs(), reward, done, False, {"cost": cost}


class OldResetEnv(BadEnv):
    """The old Gym API: ``reset()`` takes no seed and returns only the observation."""

    def reset(self):  # type: ignore[override]
        self.t = 0
        return self._obs()


def cost_ok(obs, action, next_obs, info) -> float:
    return 0.1 * float(action)


def cost_two_args(obs, action) -> float:
    return 0.0


def cost_list(obs, action, next_obs, info):
    return [0.1, 0.2]


def cost_nan(obs, action, next_obs, info) -> float:
    return float("nan")


def cost_str(obs, action, next_obs, info) -> str:
    return "cheap"


not_a_function = 3

if "bad_envs/BadEnv-v0" not in gym.registry:
    gym.register(id="bad_envs/BadEnv-v0", entry_point="bad_envs:BadEnv")
    gym.register(id="bad_envs/OldReset-v0", entry_point="bad_envs:OldResetEnv")
