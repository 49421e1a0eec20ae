"""The report's yardstick: how much room the experts leave a knob, and which differences
between methods exceed the noise.

* Exact model (HazardGrid): the coin flip between the measured experts sits on their chord;
  its exact frontier gap over the run's alphas (:func:`~safeknob.envs.frontier.chord_gap`) is
  the room a knob has. A method with gap 0 took all of it; one with the coin flip's gap took
  none.
* HazardNav (no exact model): the value-iteration estimate of the best mean chord gain over
  the run's alphas (:mod:`safeknob.envs.nav_frontier`), computed once per env and cached in
  ``DATA/<name>/cache/nav_frontier.json``, is printed beside each method's measured gain.
* Noise (with 2+ training seeds, issue #14's intervals over seeds from ``summary.csv``;
  otherwise per agent): each agent's frontier gap and chord gain get an interval from its 95% bootstrap
  intervals of return and cost (the extremes over the interval's corners; R* and the chord are
  monotone in cost). A method's interval is the mean of its agents' lower and upper bounds
  over the alphas, i.e. the agents' errors are treated as fully correlated: conservative,
  until issue #14's across-seed intervals replace it. Two methods differ only when their
  intervals are disjoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from safeknob.artifacts import write_json
from safeknob.config import RunConfig
from safeknob.envs import nav_frontier
from safeknob.envs.frontier import ChordGap, Frontier, chord_gap
from safeknob.envs.nav_frontier import NavFrontier, best_chord_gains
from safeknob.evaluation.metrics import ExpertStats
from safeknob.stages.common import console

__all__ = [
    "MethodInterval",
    "coin_flip",
    "method_intervals",
    "nav_best_gain",
    "separated",
]


@dataclass(frozen=True)
class MethodInterval:
    """A method's mean over the alphas of one metric, with the interval of :func:`method_intervals`.

    Attributes:
        method: the method's name.
        mean: mean over the alphas of the per-agent values (seeds averaged first).
        lo: mean over the alphas of the per-agent lower bounds.
        hi: mean over the alphas of the per-agent upper bounds.
        seeds: training seeds behind the interval: 1 for the per-agent interval above, 2+ for
            the 95% interval over seeds from ``summary.csv`` (then ``mean`` is its mean).
    """

    method: str
    mean: float
    lo: float
    hi: float
    seeds: int = 1


def coin_flip(frontier: Frontier, experts: ExpertStats, alphas: Sequence[float]) -> ChordGap | None:
    """The coin flip's exact frontier gap between the measured experts at ``alphas``.

    Returns:
        The :class:`~safeknob.envs.frontier.ChordGap`, or None when the experts' statistics are
        missing or their returns coincide.
    """
    vals = (experts.cost_safe, experts.return_safe, experts.cost_reck, experts.return_reck)
    if not all(math.isfinite(v) for v in vals) or abs(experts.return_span) < 1e-12:
        return None
    if len(alphas) == 0:
        return None
    return chord_gap(
        frontier,
        (experts.cost_safe, experts.return_safe),
        (experts.cost_reck, experts.return_reck),
        alphas,
    )


def _bounds(
    f: Callable[[float, float], float], r_lo: float, r_hi: float, c_lo: float, c_hi: float
) -> tuple[float, float]:
    vals = [f(r, c) for r in (r_lo, r_hi) for c in (c_lo, c_hi)]
    vals = [v for v in vals if math.isfinite(v)]
    return (min(vals), max(vals)) if vals else (math.nan, math.nan)


#: summary.csv columns holding each metric's mean over seeds (``_lo``/``_hi``: its interval).
SUMMARY_COLUMN = {
    "frontier_gap": "frontier_gap_mean",
    "chord_gain": "chord_gain_mean",
    "calibration": "calibration_error",
}


def method_intervals(
    agents: pd.DataFrame,
    experts: ExpertStats,
    metric: str,
    frontier: Frontier | None = None,
    summary: pd.DataFrame | None = None,
) -> list[MethodInterval]:
    """Per-method mean of ``"frontier_gap"``, ``"chord_gain"`` or ``"calibration"`` (the
    calibration error ``|position - alpha|``) with its noise interval.

    Args:
        agents: the blended agents' rows of ``eval/results.csv`` (columns method, alpha,
            return_mean/lo/hi, cost_mean/lo/hi).
        experts: the experts' measured means.
        metric: ``"frontier_gap"`` (needs ``frontier``), ``"chord_gain"`` or ``"calibration"``.
        frontier: the exact frontier.
        summary: ``eval/summary.csv``; a method with ``n_seeds >= 2`` there gets its interval
            over training seeds (issue #14: ``<column>_lo``/``_hi``) instead of the per-agent
            one, and :attr:`MethodInterval.seeds` says so.

    Returns:
        One :class:`MethodInterval` per method (nan when undefined), sorted best first (lowest
        gap or calibration error / highest gain).
    """
    span = experts.return_span
    if not math.isfinite(span) or abs(span) < 1e-12 or agents.empty:
        return []
    if metric == "frontier_gap":
        if frontier is None:
            return []
        fr = frontier

        def f(r: float, c: float) -> float:
            return (float(fr(max(c, fr.min_cost))) - r) / span

    elif metric == "chord_gain":
        c_span = experts.cost_span
        if not math.isfinite(c_span) or abs(c_span) < 1e-12:
            return []

        def f(r: float, c: float) -> float:
            chord = experts.return_safe + (c - experts.cost_safe) / c_span * span
            return (r - chord) / span

    elif metric == "calibration":
        c_span = experts.cost_span
        if not math.isfinite(c_span) or abs(c_span) < 1e-12:
            return []
    else:
        raise ValueError(
            f"metric must be 'frontier_gap', 'chord_gain' or 'calibration', got {metric!r}"
        )
    cols = ["return_mean", "return_lo", "return_hi", "cost_mean", "cost_lo", "cost_hi"]
    out = []
    for method, df in agents.groupby(agents.method.astype(str), sort=True):
        per_alpha = df.groupby("alpha", as_index=False)[cols].mean()
        mids, los, his = [], [], []
        for _, r in per_alpha.iterrows():
            if metric == "calibration":
                mid, lo, hi = _calibration(r, experts)
            else:
                mid = f(r.return_mean, r.cost_mean)
                lo, hi = _bounds(f, r.return_lo, r.return_hi, r.cost_lo, r.cost_hi)
            mids.append(mid)
            los.append(lo)
            his.append(hi)
        out.append(
            MethodInterval(
                str(method), float(np.mean(mids)), float(np.mean(los)), float(np.mean(his))
            )
        )
    if summary is not None and not summary.empty:
        out = [_over_seeds(m, summary, SUMMARY_COLUMN[metric]) for m in out]
    sign = -1.0 if metric == "chord_gain" else 1.0
    return sorted(out, key=lambda m: (math.isnan(m.mean), sign * m.mean if m.mean == m.mean else 0))


def _over_seeds(m: MethodInterval, summary: pd.DataFrame, column: str) -> MethodInterval:
    """``m`` with the interval over training seeds from ``summary`` when it has 2+ seeds."""
    cols = {"method", "n_seeds", column, f"{column}_lo", f"{column}_hi"}
    if not cols <= set(summary.columns):
        return m
    rows = summary[summary.method.astype(str) == m.method]
    if rows.empty:
        return m
    r = rows.iloc[0]
    vals = [float(r[column]), float(r[f"{column}_lo"]), float(r[f"{column}_hi"])]
    if not (float(r.n_seeds) >= 2 and all(math.isfinite(v) for v in vals)):
        return m
    return MethodInterval(m.method, vals[0], vals[1], vals[2], seeds=int(r.n_seeds))


def _calibration(r: pd.Series, experts: ExpertStats) -> tuple[float, float, float]:
    """``|position - alpha|`` of one agent and its range over the cost interval."""
    a = float(r.alpha)
    ends = [(float(c) - experts.cost_safe) / experts.cost_span for c in (r.cost_lo, r.cost_hi)]
    p_lo, p_hi = min(ends), max(ends)
    mid = abs((float(r.cost_mean) - experts.cost_safe) / experts.cost_span - a)
    lo = 0.0 if p_lo <= a <= p_hi else min(abs(p_lo - a), abs(p_hi - a))
    return mid, lo, max(abs(p_lo - a), abs(p_hi - a))


def separated(a: MethodInterval, b: MethodInterval) -> bool:
    """Whether two methods' intervals are disjoint (their difference exceeds the noise)."""
    return a.hi < b.lo or b.hi < a.lo


# ---------------------------------------------------------------------------- HazardNav estimate
def nav_best_gain(rc: RunConfig, alphas: Sequence[float]) -> tuple[float, dict[str, Any]] | None:
    """The value-iteration estimate of the best mean chord gain over ``alphas`` on HazardNav.

    The estimate's points depend only on the env's keyword arguments; they are computed once
    (about 15 s on an idle core) and cached in ``DATA/<name>/cache/nav_frontier.json``.

    Args:
        rc: the run configuration (its env must be ``safeknob/HazardNav-v0``).
        alphas: knob values, shape (K,).

    Returns:
        ``(best mean chord gain, the cached estimate as a dict)``, or None for another env.
    """
    env_cfg = rc.experiment.env
    if env_cfg.id != "safeknob/HazardNav-v0" or len(alphas) == 0:
        return None
    kwargs = dict(env_cfg.kwargs)
    key = json.dumps(kwargs, sort_keys=True, default=str)
    cache = rc.paths.cache / "nav_frontier.json"
    data: dict[str, Any] | None = None
    if cache.is_file():
        try:
            data = json.loads(cache.read_text())
            if data.get("env_kwargs") != key:
                data = None
        except (json.JSONDecodeError, AttributeError):
            data = None
    if data is None:
        if not rc.quiet:
            console.print("estimating the HazardNav frontier by value iteration (once, ~15 s)")
        nav = nav_frontier.estimate(kwargs)  # a module attribute: tests replace it
        data = {
            "env_kwargs": key,
            "lambdas": nav.lambdas.tolist(),
            "returns": nav.returns.tolist(),
            "costs": nav.costs.tolist(),
        }
        write_json(cache, data)
    nav = NavFrontier(
        np.asarray(data["lambdas"], float),
        np.asarray(data["returns"], float),
        np.asarray(data["costs"], float),
    )
    return float(np.mean(best_chord_gains(nav, alphas))), data
