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

from safeknob.envs.vec import vec_env
from safeknob.evaluation.rollout import Agent, PolicyAgent
from safeknob.methods.base import BlendContext, Method
from safeknob.methods.registry import register
from safeknob.rl.airl import absorbing_factory
from safeknob.rl.training import load_ppo, train_ppo
from safeknob.rl.warmstart import demos_warmstart


@register(
    "reward-mix",
    rewards=("airl",),
    needs_rewards=("reckless", "safe"),
    cost=3,
    summary="PPO on alpha r_reck + (1 - alpha) r_safe, the experts' AIRL rewards",
)
class RewardMixMethod(Method):
    learned_promise = "mix"

    def steps(self, ctx: BlendContext) -> int:
        return ctx.run.experiment.blend.steps

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        exp = ctx.run.experiment
        # Optimized without a cost constraint: a reward that passed its gate only under its
        # expert's cost limit is refused (store.require_usable).
        r_reck = ctx.store.reward("reckless", unconstrained=True)
        r_safe = ctx.store.reward("safe", unconstrained=True)

        def mixed(obs, acts, next_obs, dones) -> np.ndarray:
            return alpha * r_reck(obs, acts, next_obs, dones) + (1 - alpha) * r_safe(
                obs, acts, next_obs, dones
            )

        ppo = self.ppo(ctx)
        venv = vec_env(absorbing_factory(exp.env), ppo.n_envs)

        res = train_ppo(
            exp,
            self.steps(ctx),
            ctx.stream("agent", self.name, alpha),
            reward_fn=mixed,
            venv=venv,
            warmstart=demos_warmstart(_both_demos(ctx), ctx.stream("warmstart", self.name, alpha)),
            tb_dir=ctx.tb_dir(self.name, alpha),
            progress=ctx.progress,
            task=ctx.task,
            ppo=ppo,
        )
        res.model.save(folder / "model.zip")
        return {"reward_source": "airl (reckless and safe)", "deterministic": True}

    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        return PolicyAgent(load_ppo(folder / "model.zip"), deterministic=True)


def _both_demos(ctx: BlendContext):
    """Both experts' demonstrations (safe first), read when the warm start runs."""
    return lambda: ctx.store.demos("safe")[0] + ctx.store.demos("reckless")[0]
