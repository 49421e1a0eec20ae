"""``budget``: PPO-Lagrangian at the cost budget d(alpha) = C_safe + alpha (C_reck - C_safe).

The reward is the env's own (``--reward env``) or the reckless expert's AIRL reward learned
from its demonstrations (``--reward airl``, standardized on the union of demonstrations).
The multiplier is two-sided (an equality constraint): the frontier rises all the way to the
reckless expert's cost, so the best policy at budget d spends exactly d, and a one-sided
multiplier cannot push a policy stuck below its budget back up. The deployed agent is the
dual mixture of the iterates of the second half of training (see ``snapshots``): at most
two snapshots bracketing the budget, weighted so their expected cost is d(alpha).

With ``--reward airl`` the agent trains in the absorbing fixed-horizon env the reward was
learned in (``safeknob.rl.airl``); the PID gains and the multiplier's cap are scaled by the
ratio of the experts' exchange rates under the learned objective and under the env's reward
(:func:`learned_scale`, measured on the demonstrations), not by per-env constants.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from safeknob.envs.vec import vec_env
from safeknob.evaluation.rollout import Agent, PolicyAgent, rollout
from safeknob.methods.base import BlendContext, Method
from safeknob.methods.learned import learned_lagrange, learned_scale, learned_task_reward
from safeknob.methods.registry import register
from safeknob.rl.airl import absorbing_factory
from safeknob.rl.batched_ppo import AgentFailure, AgentSpec, has_batched_core, train_batched
from safeknob.rl.snapshots import (
    dual_mixture,
    policy_from_state,
    save_weighted,
    snapshot_agent,
)
from safeknob.rl.training import TrainResult, env_factory, load_ppo, train_ppo
from safeknob.rl.warmstart import demos_warmstart

CANDIDATES = 16
"""Iterates (evenly spaced over the second half of training) measured for the mixture."""


def measure_snapshots(
    ctx: BlendContext,
    model: Any,
    snapshots: list[dict[str, Any]],
    learned: bool,
    method: str = "budget",
    alpha: float | None = None,
) -> list[tuple[float, float, int]]:
    """(mean objective, mean cost, episodes) of each snapshot acting greedily over fresh
    episodes (the optimum of a constrained problem mixes two deterministic policies; the
    mixture, not each policy, supplies the randomness interior frontier points need).

    The objective is the reward the method maximizes: the env's, or with ``learned`` the
    standardized learned reward summed over the absorbing fixed-horizon episode."""
    exp = ctx.run.experiment
    fn = None
    if learned:
        make = absorbing_factory(exp.env)
        fn = learned_task_reward(ctx)
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
            seed=ctx.stream("candidates", method, alpha),
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


@register(
    "budget",
    rewards=("env", "airl"),
    default_reward="airl",
    needs_rewards=("reckless", "safe"),
    cost=3,
    summary="PPO-Lagrangian at the cost budget d(alpha) between the experts' costs",
)
class BudgetMethod(Method):
    def steps(self, ctx: BlendContext) -> int:
        return ctx.run.experiment.blend.steps

    def reward_fn(self, ctx: BlendContext):
        if self.reward == "env":
            return None
        return learned_task_reward(ctx)

    def _lagrange(self, ctx: BlendContext):
        exp = ctx.run.experiment
        g = exp.blend.gain_scale
        lagrange = dataclasses.replace(
            exp.lagrange, kp=exp.lagrange.kp * g, ki=exp.lagrange.ki * g, kd=exp.lagrange.kd * g
        )
        return learned_lagrange(ctx, lagrange) if self.reward == "airl" else lagrange

    def _warmstart(self, ctx: BlendContext, alpha: float):
        if self.reward == "airl" or ctx.run.experiment.blend.warmstart:
            store = ctx.store
            return demos_warmstart(
                lambda: store.demos("safe")[0] + store.demos("reckless")[0],
                ctx.stream("warmstart", self.name, alpha),
            )
        return None

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        exp = ctx.run.experiment
        ppo = self.ppo(ctx)
        venv = None
        if self.reward == "airl":
            venv = vec_env(absorbing_factory(exp.env), ppo.n_envs)
        res = train_ppo(
            exp,
            self.steps(ctx),
            ctx.stream("agent", self.name, alpha),
            budget=ctx.budget(alpha),
            lagrange=self._lagrange(ctx),
            two_sided=True,
            reward_fn=self.reward_fn(ctx),
            venv=venv,
            progress=ctx.progress,
            task=ctx.task,
            snapshot_fraction=0.5,
            warmstart=self._warmstart(ctx, alpha),
            tb_dir=ctx.tb_dir(self.name, alpha),
            ppo=ppo,
        )
        return self.finish(ctx, alpha, folder, res)

    def batches(self, ctx: BlendContext) -> bool:
        """``[blend] batched`` on the env's reward, when the env has a batched core."""
        exp = ctx.run.experiment
        return exp.blend.batched and self.reward == "env" and has_batched_core(env_factory(exp.env))

    def train_batch(
        self, ctx: BlendContext, alphas: list[float], progress: Any = None
    ) -> list[TrainResult | AgentFailure]:
        """The agents at ``alphas`` as :meth:`train` makes them (same seeds, budgets, gains,
        warm starts), trained in one batched computation (``rl.batched_ppo``)."""
        lagrange = self._lagrange(ctx)
        specs = [
            AgentSpec(
                ctx.stream("agent", self.name, a),
                budget=ctx.budget(a),
                lagrange=lagrange,
                two_sided=True,
                warmstart=self._warmstart(ctx, a),
            )
            for a in alphas
        ]
        exp = ctx.run.experiment
        return train_batched(
            env_factory(exp.env), self.ppo(ctx), self.steps(ctx), specs, 0.5, progress
        )

    def finish(self, ctx: BlendContext, alpha: float, folder: Path, result: Any) -> dict[str, Any]:
        """Save the trained agent, measure its candidate iterates on fresh episodes and
        deploy the best mixture that meets the budget (training-time estimates are too noisy
        to choose from)."""
        res: TrainResult = result
        budget = ctx.budget(alpha)
        res.model.save(folder / "model.zip")
        idx = np.unique(np.linspace(0, len(res.snapshots) - 1, CANDIDATES).round().astype(int))
        cands = [res.snapshots[i] for i in idx]
        points = measure_snapshots(ctx, res.model, cands, self.reward == "airl", self.name, alpha)
        weights = dual_mixture(points, budget, lam=res.final_lambda)
        save_weighted(folder, cands, weights)
        return {
            "reward_source": self.reward,
            "learned_scale": learned_scale(ctx) if self.reward == "airl" else None,
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
