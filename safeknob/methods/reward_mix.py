"""``reward-mix``: PPO on ``alpha * r_reck + (1 - alpha) * r_safe``, the two experts' AIRL
rewards, each standardized on the union of both demonstration sets.

Reward-level mixing only ever lands on corners of the frontier (cost is a step function
of alpha, DESIGN section 3); ``safeknob calibrate`` reports how far a monotone map can go.
The agent trains in the absorbing fixed-horizon env the rewards were learned in, starts from
behavioural cloning of both experts' demonstrations (from scratch PPO often never found the
goal under a learned reward) and acts greedily (the optimum of a fixed reward is
deterministic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from safeknob.artifacts import alpha_dir
from safeknob.methods.base import BlendContext
from safeknob.rollout import Agent, PolicyAgent
from safeknob.stages.common import tb_dir
from safeknob.training import load_ppo, train_ppo


class RewardMixMethod:
    name = "reward-mix"
    trains = True
    needs_rewards = ("reckless", "safe")

    def __init__(self, reward: str | None = None) -> None:
        self.reward = "airl"

    def steps(self, ctx: BlendContext) -> int:
        return ctx.run.experiment.blend.steps

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        from safeknob.rewards import absorbing_factory, demos_warmstart, learned_reward_fn

        exp = ctx.run.experiment
        r_reck = learned_reward_fn(ctx.run, "reckless")
        r_safe = learned_reward_fn(ctx.run, "safe")

        def mixed(obs, acts, next_obs, dones) -> np.ndarray:
            return alpha * r_reck(obs, acts, next_obs, dones) + (1 - alpha) * r_safe(
                obs, acts, next_obs, dones
            )

        venv = DummyVecEnv([absorbing_factory(exp.env)] * exp.ppo.n_envs)

        res = train_ppo(
            exp,
            self.steps(ctx),
            ctx.seed,
            reward_fn=mixed,
            venv=venv,
            warmstart=demos_warmstart(ctx.run, ctx.seed),
            tb_dir=tb_dir(ctx.run, "blend", self.name, alpha_dir(alpha)),
            progress=ctx.progress,
            task=ctx.task,
        )
        res.model.save(folder / "model.zip")
        return {"reward_source": "airl (reckless and safe)", "deterministic": True}

    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        return PolicyAgent(load_ppo(folder / "model.zip"), deterministic=True)
