"""``budget``: PPO-Lagrangian at the cost budget d(alpha) = C_safe + alpha (C_reck - C_safe).

The reward is the env's own (``--reward env``) or the reckless expert's AIRL reward learned
from its demonstrations (``--reward airl``, standardized on the union of demonstrations).
The multiplier is two-sided (an equality constraint): the frontier rises all the way to the
reckless expert's cost, so the best policy at budget d spends exactly d, and a one-sided
multiplier cannot push a policy stuck below its budget back up. The deployed agent is the
average of the last 10% of policy iterates (an episode-level mixture of snapshots).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeknob.methods.base import BlendContext
from safeknob.methods.snapshots import save_snapshots, snapshot_agent
from safeknob.rollout import Agent
from safeknob.training import load_ppo, train_ppo


class BudgetMethod:
    trains = True

    def __init__(self, reward: str | None = None) -> None:
        self.reward = reward or "airl"
        self.name = f"budget-{self.reward}"

    def steps(self, ctx: BlendContext) -> int:
        return ctx.run.experiment.blend.steps

    def reward_fn(self, ctx: BlendContext):
        if self.reward == "env":
            return None
        from safeknob.rewards import learned_reward_fn

        return learned_reward_fn(ctx.run, "reckless")

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        exp = ctx.run.experiment
        res = train_ppo(
            exp,
            self.steps(ctx),
            ctx.seed,
            budget=ctx.budget(alpha),
            two_sided=True,
            reward_fn=self.reward_fn(ctx),
            progress=ctx.progress,
            task=ctx.task,
            snapshot_fraction=0.1,
        )
        res.model.save(folder / "model.zip")
        n = save_snapshots(folder, res.snapshots)
        return {
            "reward_source": self.reward,
            "final_lambda": res.final_lambda,
            "snapshots": n,
            "lagrange_history": res.history,
        }

    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        model = load_ppo(folder / "model.zip")
        return snapshot_agent(folder, model)
