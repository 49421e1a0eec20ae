"""PPO-Lagrangian on stable-baselines3: a VecEnv wrapper that penalizes the reward by the
current multiplier, and a callback that updates the PID multiplier
(:class:`safeknob.rl.multiplier.LagrangeMultiplier`; Stooke, Achiam & Abbeel 2020) from measured
episode costs after every rollout. ``scale_gains`` and ``LEARNED_CAP`` live in
``rl.multiplier`` and are importable from here as before.

The penalized reward is ``(r - lambda * c) / (1 + |lambda|)``: the division keeps the reward
scale bounded as lambda grows. With ``two_sided=True`` lambda may go negative, which pushes
the cost *up* towards the budget (an equality constraint), useful when the best policy at a
budget spends all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from safeknob.config import LagrangeConfig
from safeknob.rl.multiplier import LEARNED_CAP, CostWindow, LagrangeMultiplier, scale_gains

__all__ = [
    "LEARNED_CAP",
    "CostPenaltyVecEnv",
    "EpisodeStats",
    "LagrangeCallback",
    "LagrangeMultiplier",
    "PIDLagrangian",
    "scale_gains",
]


@dataclass
class EpisodeStats:
    """Finished episodes' true return and cost (undiscounted), in order of completion."""

    returns: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    env_index: list[int] = field(default_factory=list)
    objectives: list[float] = field(default_factory=list)
    """Episode sums of the reward being maximized (the learned one, if any), unpenalized."""


class CostPenaltyVecEnv(VecEnvWrapper):
    """Replaces the reward by ``(r - lam[i] * c) / (1 + |lam[i]|)`` per env ``i``.

    ``reward_fn`` (optional) maps (obs, actions, next_obs, dones) to a learned reward that
    replaces the env's own before the penalty (used with AIRL rewards); the env's reward is
    still what ``stats.returns`` records.
    """

    def __init__(
        self,
        venv: VecEnv,
        reward_fn: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
        | None = None,
    ) -> None:
        super().__init__(venv)
        self.lam = np.zeros(self.num_envs)
        self.reward_fn = reward_fn
        self.stats = EpisodeStats()
        self._ret = np.zeros(self.num_envs)
        self._cost = np.zeros(self.num_envs)
        self._obj = np.zeros(self.num_envs)
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None

    def reset(self):
        self._obs = self.venv.reset()
        self._ret[:] = 0
        self._cost[:] = 0
        self._obj[:] = 0
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rew, dones, infos = self.venv.step_wait()
        cost = np.array([float(info.get("cost", 0.0)) for info in infos])
        self._ret += rew
        self._cost += cost
        base = rew
        if self.reward_fn is not None:
            next_obs = obs.copy()
            for i, d in enumerate(dones):
                if d and "terminal_observation" in infos[i]:
                    next_obs[i] = infos[i]["terminal_observation"]
            base = self.reward_fn(self._obs, self._actions, next_obs, dones)
        self._obj += base
        shaped = (base - self.lam * cost) / (1.0 + np.abs(self.lam))
        for i, d in enumerate(dones):
            if d:
                self.stats.returns.append(float(self._ret[i]))
                self.stats.costs.append(float(self._cost[i]))
                self.stats.objectives.append(float(self._obj[i]))
                self.stats.env_index.append(i)
                self._ret[i] = 0.0
                self._cost[i] = 0.0
                self._obj[i] = 0.0
        self._obs = obs
        return obs, shaped.astype(np.float32), dones, infos


PIDLagrangian = LagrangeMultiplier
"""The multiplier's former name (same constructor and ``update``): :class:`LagrangeMultiplier`."""


class LagrangeCallback(BaseCallback):
    """After each rollout, averages the episode costs that finished over the last
    ``cost_window`` rollouts (:class:`~safeknob.rl.multiplier.CostWindow`) and updates the
    multiplier (:class:`~safeknob.rl.multiplier.LagrangeMultiplier`, held at 0 during
    warm-up).

    ``history`` records, per rollout with at least one episode in the window: multiplier,
    mean episode cost and return.
    """

    def __init__(
        self,
        wrapper: CostPenaltyVecEnv,
        budget: float,
        cfg: LagrangeConfig,
        two_sided: bool = False,
    ) -> None:
        super().__init__()
        self.wrapper = wrapper
        self.multiplier = LagrangeMultiplier(budget, cfg, two_sided)
        self.cfg = cfg
        self._seen = 0
        self._window = CostWindow(cfg.cost_window)
        self.history: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        stats = self.wrapper.stats
        new_costs = stats.costs[self._seen :]
        new_rets = stats.returns[self._seen :]
        self._seen = len(stats.costs)
        mean_cost = self._window.add(new_costs)
        lam = self.multiplier.rollout_end(mean_cost)
        if mean_cost is None:
            return
        if not self.multiplier.holding:
            self.wrapper.lam[:] = lam
        self.logger.record("lagrange/lambda", float(self.wrapper.lam[0]))
        self.logger.record("lagrange/episode_cost", mean_cost)
        self.history.append(
            {
                "lambda": float(self.wrapper.lam[0]),
                "cost": mean_cost,
                "return": float(np.mean(new_rets)) if new_rets else float("nan"),
            }
        )
