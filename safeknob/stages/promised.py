"""What a reward promises a knob: the optimum of a task reward at each budget, scored with the
env's reward and cost (issue 22's diagnostic; it needs the env's reward, so it measures, it is
never a gate nor an input of a method).

A method on a learned reward (``budget-airl``, ``conditioned-airl``) maximizes the learned task
reward within the budget ``d(alpha) = C_safe + alpha (C_reck - C_safe)`` (the experts' costs in
their demonstrations). If the *exact* optimum of that reward at ``d(alpha)`` is far from the
env's frontier, the reward is what fails; if it is close and the trained agents are far, the
optimizer is. For each alpha this module computes that optimum and scores it like an agent
(position, chord gain, frontier gap against the evaluated experts):

* tabular envs (HazardGrid): exactly, by the occupancy LP on the reward
  (:func:`~safeknob.envs.frontier.constrained_optima` on
  :func:`~safeknob.envs.model.with_state_reward`), the optimal stochastic policy scored on the
  env's exact model;
* HazardNav: by finite-horizon value iteration on the reward over positions for a sweep of
  multipliers (:func:`~safeknob.envs.nav_frontier.reward_points`, scaled by the reward's own
  exchange rate between the experts), each greedy policy rolled out in the real env, and the
  best two-policy mixture of the reward within the budget
  (:func:`~safeknob.envs.nav_frontier.budget_mixture`).

The rewards compared (:data:`SOURCES`): the task reward the knob maximizes (``airl``: the mean
of both experts' standardized AIRL rewards), each expert's reward alone, and the env's reward
(the yardstick: the same solver on the true reward). Results are cached in
``DATA/<name>/cache/promised.json``, keyed by everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from safeknob import data
from safeknob.artifacts import checksum, write_json
from safeknob.config import RunConfig
from safeknob.envs import make_env, nav_frontier, tabular_model
from safeknob.envs.frontier import Frontier, constrained_optima
from safeknob.envs.model import evaluate_policy, with_state_reward
from safeknob.envs.vec import NAV_ID
from safeknob.errors import ArtifactError, UserError
from safeknob.evaluation.metrics import (
    ExpertStats,
    calibration,
    chord_gain,
    frontier_gap,
    position,
    spearman,
)
from safeknob.rl.airl import LearnedReward, exchange_rate, exchange_ratio, task_reward
from safeknob.store import ExperimentStore

__all__ = ["RELATIVE_LAMBDAS", "SOURCES", "Promise", "promised"]

SOURCES: dict[str, str] = {
    "airl": "mean of both learned rewards (what the learned-reward knobs maximize)",
    "airl-reckless": "reckless learned reward alone",
    "airl-safe": "safe learned reward alone",
    "env": "the env's reward",
    "mix": "alpha r_reck + (1 - alpha) r_safe, no budget (what reward-mix maximizes)",
}
"""The task rewards whose promise is computed, and how the tables name them."""

RELATIVE_LAMBDAS = (0.0, 0.03, 0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0)
"""HazardNav's multiplier sweep in units of the reward's exchange rate between the experts
(:func:`safeknob.rl.airl.exchange_rate`): the rate is where the experts' Lagrangians tie, so
the sweep covers the route switches of any reward's scale without a per-env constant."""

_VERSION = 1
"""Bumped when the computation changes, so an old cache is recomputed."""


@dataclass(frozen=True)
class Promise:
    """One reward's promised knob.

    Attributes:
        source: key of :data:`SOURCES`.
        rows: one row per alpha: ``alpha, budget, return_mean, cost_mean, position,
            chord_gain, frontier_gap`` (frontier gap nan without an exact model).
        summary: ``spearman, calibration_error, calibration_max, chord_gain_mean,
            frontier_gap_mean, frontier_gap_max`` over the alphas.
    """

    source: str
    rows: pd.DataFrame
    summary: dict[str, float]

    @property
    def label(self) -> str:
        return SOURCES[self.source]


# ---------------------------------------------------------------------------- rewards
def _rewards(rc: RunConfig, sources: Sequence[str]) -> dict[str, Callable[..., np.ndarray]]:
    """The learned reward functions behind ``sources`` (``env`` needs none).

    The rewards are read without their gate's verdict: the diagnostic is most useful exactly
    when a reward fails it."""
    store = ExperimentStore(rc)
    cache: dict[str, LearnedReward] = {}

    def role(r: str) -> LearnedReward:
        if r not in cache:
            cache[r] = store.reward(r, checked=False)
        return cache[r]

    out: dict[str, Callable[..., np.ndarray]] = {}
    for s in sources:
        if s == "mix":
            out["mix-reckless"], out["mix-safe"] = role("reckless"), role("safe")
        elif s == "airl":
            out[s] = task_reward(role("reckless"), role("safe"))
        elif s in ("airl-reckless", "airl-safe"):
            out[s] = role(s.split("-", 1)[1])
    return out


def _state_reward(fn: Callable[..., np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``g(next_obs)`` of a state-only ``reward_fn(obs, acts, next_obs, dones)``."""

    def g(next_obs: np.ndarray) -> np.ndarray:
        n = len(next_obs)
        return np.asarray(fn(next_obs, np.zeros(n), next_obs, np.zeros(n, dtype=bool)), float)

    return g


# ---------------------------------------------------------------------------- solvers
def _tabular(model, fn, budgets: np.ndarray) -> list[tuple[float, float]]:
    """(return, cost) under the env's model of the reward's exact optimum at each budget."""
    if fn is None:
        points = constrained_optima(model, budgets)
    else:
        g = _state_reward(fn)(np.arange(model.n_states))
        points = constrained_optima(with_state_reward(model, g), budgets)
    return [evaluate_policy(model, p.policy) for p in points]


def _demo_stats(rc: RunConfig):
    """Both roles' demonstrations and their mean env return and cost."""
    store = ExperimentStore(rc)
    demos = {r: store.demos(r)[0] for r in ("reckless", "safe")}
    return demos, {r: data.demo_stats(t) for r, t in demos.items()}


def _nav(
    rc: RunConfig, fn, budgets: np.ndarray, progress, demos, stats
) -> list[tuple[float, float]]:
    """(return, cost) of the reward's best mixture of Lagrangian policies at each budget."""
    exp = rc.experiment
    if fn is None:
        terms = nav_frontier.env_reward_terms
        rate = exchange_rate(
            {r: v["return_mean"] for r, v in stats.items()},
            {r: v["cost_mean"] for r, v in stats.items()},
        )
    else:
        g = _state_reward(fn)

        def terms(env):
            return nav_frontier.state_reward_terms(env, g)

        rate = exchange_ratio(fn, demos, stats, exp.env)["exchange_rate_learned"]
    pts = nav_frontier.reward_points(
        dict(exp.env.kwargs), terms, [rate * x for x in RELATIVE_LAMBDAS], progress=progress
    )
    out = []
    for d in budgets:
        mix = nav_frontier.budget_mixture(pts.costs, pts.objectives, float(d))
        out.append(
            (
                float(sum(w * pts.returns[i] for i, w in mix)),
                float(sum(w * pts.costs[i] for i, w in mix)),
            )
        )
    return out


def _mix(rc: RunConfig, model, fns, alphas: np.ndarray) -> list[tuple[float, float]]:
    """(return, cost) of the unconstrained optimum of ``alpha r_reck + (1 - alpha) r_safe``
    at each alpha (``reward-mix``'s objective)."""
    reck, safe = _state_reward(fns["mix-reckless"]), _state_reward(fns["mix-safe"])
    out = []
    if model is not None:
        states = np.arange(model.n_states)
        g_r, g_s = reck(states), safe(states)
        for a in alphas:
            mixed = with_state_reward(model, a * g_r + (1 - a) * g_s)
            out.append(evaluate_policy(model, constrained_optima(mixed, [np.inf])[0].policy))
        return out
    for a in alphas:

        def g(obs, a=float(a)):
            return a * reck(obs) + (1 - a) * safe(obs)

        pts = nav_frontier.reward_points(
            dict(rc.experiment.env.kwargs),
            lambda env, g=g: nav_frontier.state_reward_terms(env, g),
            [0.0],
        )
        out.append((float(pts.returns[0]), float(pts.costs[0])))
    return out


# ---------------------------------------------------------------------------- scoring
def _score(
    source: str,
    alphas: np.ndarray,
    budgets: np.ndarray,
    points: list[tuple[float, float]],
    experts: ExpertStats,
    frontier: Frontier | None,
) -> Promise:
    rows = []
    for a, d, (ret, cost) in zip(alphas, budgets, points, strict=True):
        gap = math.nan if frontier is None else frontier_gap(ret, cost, experts, frontier)
        rows.append(
            {
                "alpha": float(a),
                "budget": float(d),
                "return_mean": ret,
                "cost_mean": cost,
                "position": position(cost, experts),
                "chord_gain": chord_gain(ret, cost, experts),
                "frontier_gap": gap,
            }
        )
    df = pd.DataFrame(rows)
    cal, cal_max = calibration(df.alpha.to_numpy(), df.position.to_numpy())
    gaps = df.frontier_gap.to_numpy(dtype=float)
    has_gap = bool(np.isfinite(gaps).any())
    summary = {
        "spearman": spearman(df.alpha.to_numpy(), df.cost_mean.to_numpy()),
        "calibration_error": cal,
        "calibration_max": cal_max,
        "chord_gain_mean": float(np.nanmean(df.chord_gain.to_numpy(dtype=float))),
        "frontier_gap_mean": float(np.nanmean(gaps)) if has_gap else math.nan,
        "frontier_gap_max": float(np.nanmax(gaps)) if has_gap else math.nan,
    }
    return Promise(source, df, summary)


def _key(rc: RunConfig, sources, alphas, budgets, experts: ExpertStats) -> str:
    files = {
        f"{r}/{name}": rc.paths.rewards(r) / name
        for r in ("reckless", "safe")
        for name in ("reward_net.pt", "standardize.json")
    }
    rewards = {k: checksum(f) if f.is_file() else None for k, f in files.items()}
    blob = {
        "version": _VERSION,
        "env": str(rc.experiment.env),
        "gamma": rc.experiment.ppo.gamma,
        "sources": list(sources),
        "alphas": [float(a) for a in alphas],
        "budgets": [float(b) for b in budgets],
        "experts": [experts.return_safe, experts.cost_safe, experts.return_reck, experts.cost_reck],
        "rewards": rewards,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_cache(path, key: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text())
        if not isinstance(cached, dict) or cached.get("key") != key:
            return None
        pts = cached["points"]
        return {
            s: [(float(r), float(c)) for r, c in v] for s, v in pts.items() if isinstance(v, list)
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def promised(
    rc: RunConfig,
    experts: ExpertStats,
    alphas: Sequence[float],
    sources: Sequence[str] = tuple(SOURCES),
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Promise]:
    """Each reward's optimum at every budget ``d(alpha)``, scored with the env's reward and cost.

    Args:
        rc: the run configuration (trained demonstrations, and learned rewards for the
            ``airl*`` sources, in its data folder).
        experts: the evaluated experts (what positions, chord gains and frontier gaps are
            relative to).
        alphas: knob values, shape (K,).
        sources: keys of :data:`SOURCES`.
        progress: optional ``(source, total)`` callable returning a per-step advance callable
            (HazardNav only: one step per multiplier).

    Returns:
        ``{source: Promise}``.

    Raises:
        UserError: an unknown source, or an env that is neither tabular nor HazardNav.
        ArtifactError: demonstrations or learned rewards missing (names the command).
    """
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise UserError(f"unknown reward source(s) {unknown}; choose from {sorted(SOURCES)}")
    exp = rc.experiment
    c_safe, c_reck = ExperimentStore(rc).demo_costs()
    a = np.asarray(alphas, dtype=float)
    budgets = c_safe + a * (c_reck - c_safe)
    env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
    model = tabular_model(env)
    env.close()
    if model is None and exp.env.id != NAV_ID:
        raise UserError(
            f"{exp.env.id} has neither an exact model nor a value-iteration solver, so what a "
            "reward promises cannot be computed; it is available on safeknob/HazardGrid-v0 "
            "and safeknob/HazardNav-v0"
        )
    frontier = Frontier.compute(model) if model is not None else None
    cache = rc.paths.cache / "promised.json"
    key = _key(rc, sources, a, budgets, experts)
    points = _read_cache(cache, key)
    if points is None or set(points) != set(sources):
        fns = _rewards(rc, sources)
        demos, stats = _demo_stats(rc) if model is None else (None, None)
        points = {}
        for s in sources:
            fn = fns.get(s)
            if s == "mix":
                points[s] = _mix(rc, model, fns, a)
            elif model is not None:
                points[s] = _tabular(model, fn, budgets)
            else:
                step = progress(s, len(RELATIVE_LAMBDAS)) if progress is not None else None
                points[s] = _nav(rc, fn, budgets, step, demos, stats)
        try:
            write_json(cache, {"key": key, "points": points})
        except OSError as exc:
            raise ArtifactError(f"cannot write {cache}: {exc}") from None
    return {s: _score(s, a, budgets, points[s], experts, frontier) for s in sources}
