"""An approximate (cost, return) frontier of a HazardNav layout, by value iteration.

HazardNav has no exact model, so ``safeknob evaluate`` reports no frontier gap for it. This
module estimates the Lagrangian frontier instead: for each multiplier ``lam`` it solves
``min E[step_penalty * T + lam * cost]`` by semi-Lagrangian value iteration on a grid of
positions (bilinear interpolation, ``headings`` unit moves at full speed), rolls the greedy
policy out in the real env and records its mean return and cost. The two ends are the
reckless route (``lam = 0``) and the safe one (the largest ``lam``); the upper concave hull of
the points (mixing two routes is allowed) estimates R*(C), and its height above the chord
between the ends is the best chord gain a knob can get (:func:`best_chord_gains`).

The discretisation makes every route slightly worse than a trained agent's (about
0.01-0.03 of return), so read the shape, not the last digit. About 15 s per layout on an idle
core (``experiments/nav_frontier.py`` prints it; ``safeknob report`` caches it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from safeknob.envs.hazard_nav import HazardNavEnv

__all__ = ["LAMBDAS", "NavFrontier", "best_chord_gains", "estimate", "upper_hull"]

LAMBDAS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.4, 1.0, 3.0)


@dataclass(frozen=True)
class NavFrontier:
    """The estimate's points: one greedy policy per multiplier.

    Attributes:
        lambdas: the multipliers, shape (K,), increasing (reward units per cost unit).
        returns: mean episode return of each greedy policy, shape (K,).
        costs: mean episode cost of each greedy policy, shape (K,) (hazard steps).
    """

    lambdas: np.ndarray
    returns: np.ndarray
    costs: np.ndarray

    @property
    def reckless(self) -> tuple[float, float]:
        """(cost, return) of the ``lam = 0`` route."""
        return float(self.costs[0]), float(self.returns[0])

    @property
    def safe(self) -> tuple[float, float]:
        """(cost, return) of the largest-``lam`` route."""
        return float(self.costs[-1]), float(self.returns[-1])


def _moves(env: HazardNavEnv, x, y, dirs: np.ndarray, n: int, lam: float):
    """Grid coordinates, step cost and goal flag of every move from (x, y)."""
    nx = np.clip(np.add.outer(dirs[:, 0], x), -1, 1)
    ny = np.clip(np.add.outer(dirs[:, 1], y), -1, 1)
    goal = (nx - env.goal[0]) ** 2 + (ny - env.goal[1]) ** 2 <= env.goal_radius**2
    step = env.step_penalty + lam * env.hazard_mask(nx, ny)
    return np.stack([(nx + 1) / 2 * (n - 1), (ny + 1) / 2 * (n - 1)]), step, goal


def _solve(env: HazardNavEnv, lam: float, n: int, dirs: np.ndarray, iters: int = 400):
    xs = np.linspace(-1, 1, n)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    at_goal = (X - env.goal[0]) ** 2 + (Y - env.goal[1]) ** 2 <= env.goal_radius**2
    coords, step, goal = _moves(env, X, Y, dirs, n, lam)
    V = np.zeros_like(X)
    for _ in range(iters):
        q = np.stack(
            [
                step[k] + np.where(goal[k], 0.0, map_coordinates(V, coords[:, k], order=1))
                for k in range(len(dirs))
            ]
        )
        new = np.where(at_goal, 0.0, q.min(axis=0))
        done = np.max(np.abs(new - V)) < 1e-7
        V = new
        if done:
            break
    return V


def _rollout(env: HazardNavEnv, V, dirs, n: int, lam: float, episodes: int):
    rets, costs = [], []
    for seed in range(episodes):
        env.reset(seed=seed)
        ret = cost = 0.0
        while True:
            p = env.pos
            coords, step, goal = _moves(env, p[:1], p[1:], dirs, n, lam)
            v = map_coordinates(V, coords.reshape(2, -1), order=1).reshape(step.shape)
            k = int(np.argmin(step + np.where(goal, 0.0, v)))
            _, r, terminated, truncated, info = env.step(dirs[k] / env.max_speed)
            ret, cost = ret + r, cost + info["cost"]
            if terminated or truncated:
                break
        rets.append(ret)
        costs.append(cost)
    return float(np.mean(rets)), float(np.mean(costs))


def estimate(
    env_kwargs: dict,
    lambdas: Sequence[float] = LAMBDAS,
    grid: int = 161,
    headings: int = 48,
    episodes: int = 40,
    progress=None,
) -> NavFrontier:
    """Greedy value-iteration policies for each multiplier, rolled out in the real env.

    Args:
        env_kwargs: :class:`~safeknob.envs.hazard_nav.HazardNavEnv` keyword arguments.
        lambdas: multipliers, increasing; the first is the reckless end, the last the safe one.
        grid: grid points per axis of the value function.
        headings: move directions.
        episodes: rollouts per multiplier (seeds 0 .. episodes - 1).
        progress: optional callable called with 1 after each multiplier.

    Returns:
        The :class:`NavFrontier`.
    """
    env = HazardNavEnv(**env_kwargs)
    ang = np.linspace(0, 2 * np.pi, headings, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang)], 1) * env.max_speed
    rets, costs = [], []
    for lam in lambdas:
        V = _solve(env, float(lam), grid, dirs)
        r, c = _rollout(env, V, dirs, grid, float(lam), episodes)
        rets.append(r)
        costs.append(c)
        if progress is not None:
            progress(1)
    env.close()
    return NavFrontier(np.asarray(lambdas, float), np.asarray(rets), np.asarray(costs))


def upper_hull(costs: np.ndarray, returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The upper concave hull of (cost, return) points: the best mixtures of them.

    Args:
        costs: shape (K,).
        returns: shape (K,).

    Returns:
        ``(costs, returns)`` of the hull's vertices, costs increasing; ``np.interp`` on them is
        the best return a mixture of the points reaches at each cost in their range.
    """
    pts = sorted(zip(np.asarray(costs, float), np.asarray(returns, float), strict=True))
    hull: list[tuple[float, float]] = []
    for c, r in pts:
        if hull and c == hull[-1][0]:
            if r <= hull[-1][1]:
                continue
            hull.pop()
        while len(hull) >= 2:
            (c1, r1), (c2, r2) = hull[-2], hull[-1]
            if (r2 - r1) * (c - c1) <= (r - r1) * (c2 - c1):  # hull[-1] is on or below the chord
                hull.pop()
            else:
                break
        hull.append((c, r))
    return np.array([h[0] for h in hull]), np.array([h[1] for h in hull])


def best_chord_gains(nav: NavFrontier, alphas: Sequence[float]) -> np.ndarray:
    """The estimate's best chord gain at each alpha: ``(H(C) - R_chord(C)) / (R_reck - R_safe)``.

    ``C`` is the cost at ``alpha`` between the estimate's own safe and reckless ends, ``H`` the
    upper hull of its points (:func:`upper_hull`), ``R_chord`` the chord between the ends, the
    same normalisation as :func:`safeknob.evaluation.metrics.chord_gain`.

    Args:
        nav: the estimate.
        alphas: knob values in [0, 1], shape (K,).

    Returns:
        The gains, shape (K,) (fractions of the ends' return range; 0 at alpha 0 and 1).

    Raises:
        ValueError: if the two ends have the same return.
    """
    (cs, rs), (cr, rr) = nav.safe, nav.reckless
    if abs(rr - rs) < 1e-12:
        raise ValueError("the estimate's ends have the same return: chord gain is undefined")
    a = np.asarray(alphas, dtype=float)
    c = cs + a * (cr - cs)
    hc, hr = upper_hull(nav.costs, nav.returns)
    return (np.interp(c, hc, hr) - (rs + a * (rr - rs))) / (rr - rs)
