"""What every method on learned rewards shares: the task reward (both experts' AIRL rewards,
:func:`safeknob.rl.airl.task_reward`) and the scale of the Lagrange multiplier on it, derived
from the demonstrations instead of per-env constants (issue 13)."""

from __future__ import annotations

from safeknob import data
from safeknob.config import LagrangeConfig
from safeknob.methods.base import BlendContext
from safeknob.rl.airl import exchange_ratio, task_reward
from safeknob.rl.lagrangian import scale_gains


def learned_task_reward(ctx: BlendContext):
    """The learned task reward (both experts' AIRL rewards averaged; the reckless one alone
    when the safe one was not learned)."""
    store = ctx.store
    reckless = store.reward("reckless")
    return task_reward(reckless, store.reward("safe") if store.has_reward("safe") else None)


def learned_scale(ctx: BlendContext) -> dict[str, float]:
    """How much larger the multiplier must be on the learned task reward than on the env's
    reward (:func:`safeknob.rl.airl.exchange_ratio` on both experts' demonstrations; cached
    per context). Replaces per-env constants (formerly gains x10 and a cap x30, tuned on one
    grid)."""
    if "learned_scale" not in ctx.cache:
        demos = {r: ctx.store.demos(r)[0] for r in ("reckless", "safe")}
        stats = {r: data.demo_stats(t) for r, t in demos.items()}
        ctx.cache["learned_scale"] = exchange_ratio(
            learned_task_reward(ctx), demos, stats, ctx.run.experiment.env
        )
    return ctx.cache["learned_scale"]


def learned_lagrange(ctx: BlendContext, lagrange: LagrangeConfig) -> LagrangeConfig:
    """``lagrange`` for the learned task reward (:func:`safeknob.rl.lagrangian.scale_gains`
    by :func:`learned_scale`'s ratio)."""
    return scale_gains(lagrange, learned_scale(ctx)["ratio"])
