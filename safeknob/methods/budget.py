"""``budget``: PPO-Lagrangian at the cost budget d(alpha) = C_safe + alpha (C_reck - C_safe).

The reward is the env's own (``--reward env``) or the reckless expert's AIRL reward learned
from its demonstrations (``--reward airl``, standardized on the union of demonstrations).
The multiplier is two-sided (an equality constraint): the frontier rises all the way to the
reckless expert's cost, so the best policy at budget d spends exactly d, and a one-sided
multiplier cannot push a policy stuck below its budget back up. The deployed agent is the
dual mixture of the iterates of the second half of training (see ``snapshots``): at most
two snapshots bracketing the budget, weighted so their expected cost is d(alpha).

With ``--reward airl`` the agent trains in the absorbing fixed-horizon env the reward was
learned in (``safeknob.rewards``); the PID gains are scaled up by ``AIRL_GAIN`` because a
standardized learned reward has a larger scale per episode than the env's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from safeknob.artifacts import alpha_dir
from safeknob.methods.base import BlendContext
from safeknob.methods.snapshots import (
    dual_mixture,
    policy_from_state,
    save_weighted,
    snapshot_agent,
)
from safeknob.rollout import Agent
from safeknob.stages.common import tb_dir
from safeknob.training import load_ppo, train_ppo

AIRL_GAIN = 10.0
AIRL_LAMBDA_CAP = 30.0
"""Multiplier cap (x lambda_max) on a learned reward: agents switched routes at lambda ~8."""
CANDIDATES = 16
"""Iterates (evenly spaced over the second half of training) measured for the mixture."""


def measure_snapshots(
    ctx: BlendContext, model: Any, snapshots: list[dict[str, Any]], learned: bool
) -> list[tuple[float, float, int]]:
    """(mean objective, mean cost, episodes) of each snapshot acting greedily over fresh
    episodes (the optimum of a constrained problem mixes two deterministic policies; the
    mixture, not each policy, supplies the randomness interior frontier points need).

    The objective is the reward the method maximizes: the env's, or with ``learned`` the
    standardized learned reward summed over the absorbing fixed-horizon episode."""
    from safeknob.rollout import PolicyAgent, rollout
    from safeknob.training import env_factory

    exp = ctx.run.experiment
    fn = None
    if learned:
        from safeknob.rewards import absorbing_factory, task_reward_fn

        make = absorbing_factory(exp.env)
        fn = task_reward_fn(ctx.run)
    else:
        make = env_factory(exp.env)
    episodes = exp.blend.candidate_episodes
    out = []
    for sd in snapshots:
        policy = policy_from_state(model, sd)
        res = rollout(
            PolicyAgent(policy, deterministic=True),
            make,
            episodes,
            seed=7_000_000 + ctx.seed,
            record=learned,
        )
        if fn is None:
            obj = float(np.mean(res.returns))
        else:
            sums = []
            for ep in res.episodes:
                done = np.zeros(len(ep.acts), dtype=bool)
                sums.append(float(np.sum(fn(ep.obs[:-1], ep.acts, ep.obs[1:], done))))
            obj = float(np.mean(sums))
        out.append((obj, float(np.mean(res.costs)), episodes))
    return out


class BudgetMethod:
    trains = True

    def __init__(self, reward: str | None = None) -> None:
        self.reward = reward or "airl"
        self.name = f"budget-{self.reward}"
        self.needs_rewards: tuple[str, ...] = ("reckless", "safe") if self.reward == "airl" else ()

    def steps(self, ctx: BlendContext) -> int:
        return ctx.run.experiment.blend.steps

    def reward_fn(self, ctx: BlendContext):
        if self.reward == "env":
            return None
        from safeknob.rewards import task_reward_fn

        return task_reward_fn(ctx.run)

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        exp = ctx.run.experiment
        g = exp.blend.gain_scale
        lagrange = dataclasses.replace(
            exp.lagrange, kp=exp.lagrange.kp * g, ki=exp.lagrange.ki * g, kd=exp.lagrange.kd * g
        )
        venv = None
        if self.reward == "airl":
            from stable_baselines3.common.vec_env import DummyVecEnv

            from safeknob.rewards import absorbing_factory

            venv = DummyVecEnv([absorbing_factory(exp.env)] * exp.ppo.n_envs)
            lagrange = dataclasses.replace(
                lagrange,
                kp=lagrange.kp * AIRL_GAIN,
                ki=lagrange.ki * AIRL_GAIN,
                kd=lagrange.kd * AIRL_GAIN,
                lambda_max=lagrange.lambda_max * AIRL_LAMBDA_CAP,
            )
        budget = ctx.budget(alpha)
        warmstart = None
        if self.reward == "airl" or exp.blend.warmstart:
            from safeknob.rewards import demos_warmstart

            warmstart = demos_warmstart(ctx.run, ctx.seed)

        res = train_ppo(
            exp,
            self.steps(ctx),
            ctx.seed,
            budget=budget,
            lagrange=lagrange,
            two_sided=True,
            reward_fn=self.reward_fn(ctx),
            venv=venv,
            progress=ctx.progress,
            task=ctx.task,
            snapshot_fraction=0.5,
            warmstart=warmstart,
            tb_dir=tb_dir(ctx.run, "blend", self.name, alpha_dir(alpha)),
        )
        res.model.save(folder / "model.zip")
        # Measure candidate iterates with fresh episodes (training-time estimates are too
        # noisy to choose from), then deploy the best mixture that meets the budget.
        idx = np.unique(np.linspace(0, len(res.snapshots) - 1, CANDIDATES).round().astype(int))
        cands = [res.snapshots[i] for i in idx]
        points = measure_snapshots(ctx, res.model, cands, self.reward == "airl")
        weights = dual_mixture(points, budget, lam=res.final_lambda)
        save_weighted(folder, cands, weights)
        return {
            "reward_source": self.reward,
            "final_lambda": res.final_lambda,
            "candidates": [{"objective": o, "cost": c} for o, c, _ in points],
            "mixture": [
                {"objective": points[i][0], "cost": points[i][1], "weight": w} for i, w in weights
            ],
            "lagrange_history": res.history,
        }

    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        model = load_ppo(folder / "model.zip")
        return snapshot_agent(folder, model, deterministic=True)
