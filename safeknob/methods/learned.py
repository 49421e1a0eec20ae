"""What every method on learned rewards shares: the task reward (both experts' AIRL rewards,
:func:`safeknob.rl.airl.task_reward`) and the scale of the Lagrange multiplier on it, derived
from the demonstrations instead of per-env constants (issue 13)."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np

from safeknob import data
from safeknob.config import LagrangeConfig
from safeknob.envs import make_env
from safeknob.methods.base import BlendContext
from safeknob.rl.airl import env_horizon, pad, task_reward


def learned_task_reward(ctx: BlendContext):
    """The learned task reward (both experts' AIRL rewards averaged; the reckless one alone
    when the safe one was not learned)."""
    store = ctx.store
    reckless = store.reward("reckless")
    return task_reward(reckless, store.reward("safe") if store.has_reward("safe") else None)


LEARNED_CAP = 3.0
"""Headroom of the multiplier's cap on a learned reward beyond the exchange-rate ratio
(:func:`learned_scale`): a learned objective is not the env's, so its route switches need
not sit where they do under the env's reward."""


def exchange_rate(objectives: dict[str, float], costs: dict[str, float]) -> float:
    """``|G_reck - G_safe| / |C_reck - C_safe|``: the Lagrange multiplier at which the two
    experts' Lagrangians ``G - lambda C`` tie, in objective units per unit of episode cost:
    the scale at which a multiplier turns the knob between the experts, whatever the env or
    the reward's units."""
    dg = abs(objectives["reckless"] - objectives["safe"])
    dc = abs(costs["reckless"] - costs["safe"])
    return dg / max(dc, 1e-9)


def learned_scale(ctx: BlendContext) -> dict[str, float]:
    """How much larger the multiplier must be on the learned objective than on the env's
    reward: the ratio of the experts' exchange rates (:func:`exchange_rate`) measured on
    their demonstrations, the learned objective summed over each absorbing fixed-horizon
    episode (:func:`safeknob.rl.airl.pad`). Replaces per-env constants (session 5 had gains
    x10 and a cap x30, tuned on one grid). Returns ``exchange_rate_learned``,
    ``exchange_rate_env`` and their ``ratio`` (dimensionless)."""
    if "learned_scale" in ctx.cache:
        return ctx.cache["learned_scale"]
    exp = ctx.run.experiment
    env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
    horizon = env_horizon(env)
    space = env.action_space
    noop = 0 if isinstance(space, gym.spaces.Discrete) else np.zeros(space.shape or ())
    env.close()
    fn = learned_task_reward(ctx)
    learned, true, costs = {}, {}, {}
    for role in ("reckless", "safe"):
        trajs = ctx.store.demos(role)[0]
        sums = []
        for t in trajs:
            pt = pad(t, horizon, noop)
            obs = np.asarray(pt.obs)
            done = np.zeros(len(pt.acts), dtype=bool)
            sums.append(float(np.sum(fn(obs[:-1], np.asarray(pt.acts), obs[1:], done))))
        learned[role] = float(np.mean(sums))
        true[role] = float(np.mean([np.sum(t.rews) for t in trajs]))
        costs[role] = float(np.mean([np.sum(data.costs(t)) for t in trajs]))
    rate_learned, rate_env = exchange_rate(learned, costs), exchange_rate(true, costs)
    out = {
        "exchange_rate_learned": rate_learned,
        "exchange_rate_env": rate_env,
        "ratio": rate_learned / max(rate_env, 1e-9),
    }
    ctx.cache["learned_scale"] = out
    return out


def learned_lagrange(ctx: BlendContext, lagrange: LagrangeConfig) -> LagrangeConfig:
    """``lagrange`` for the learned objective: PID gains x the exchange-rate ratio of
    :func:`learned_scale`, and the cap x that ratio x ``LEARNED_CAP``."""
    k = learned_scale(ctx)["ratio"]
    return dataclasses.replace(
        lagrange,
        kp=lagrange.kp * k,
        ki=lagrange.ki * k,
        kd=lagrange.kd * k,
        lambda_max=lagrange.lambda_max * k * LEARNED_CAP,
    )
