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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from safeknob.envs.hazard_nav import HazardNavEnv

__all__ = [
    "LAMBDAS",
    "NavFrontier",
    "RewardPoints",
    "best_chord_gains",
    "budget_mixture",
    "env_reward_terms",
    "estimate",
    "reward_points",
    "state_reward_terms",
    "upper_hull",
]

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


# ---------------------------------------------------------------------------- any reward
StepReward = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(x, y, nx, ny, goal) -> reward`` of the moves from ``(x, y)`` to ``(nx, ny)`` (arrays of
one shape; ``goal``: the move enters the goal disk), in the reward's units per step."""
AbsorbReward = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(nx, ny) -> reward`` of each step spent absorbed at the goal entered at ``(nx, ny)``."""


@dataclass(frozen=True)
class RewardPoints:
    """Lagrangian-optimal policies of one reward, rolled out in the real env.

    Attributes:
        lambdas: the multipliers, shape (K,), increasing (reward units per cost unit).
        objectives: mean episode sum of the maximized reward (absorbing steps included),
            shape (K,).
        returns: mean episode return under the env's reward, shape (K,).
        costs: mean episode cost, shape (K,) (hazard steps).
    """

    lambdas: np.ndarray
    objectives: np.ndarray
    returns: np.ndarray
    costs: np.ndarray


def env_reward_terms(env: HazardNavEnv) -> tuple[StepReward, AbsorbReward]:
    """The env's own reward as :data:`StepReward` (progress, step penalty, goal bonus) and
    zero while absorbed."""
    gx, gy = env.goal

    def step(x, y, nx, ny, goal):
        d0 = np.hypot(x - gx, y - gy)
        d1 = np.hypot(nx - gx, ny - gy)
        return env.progress_coef * (d0 - d1) - env.step_penalty + env.goal_reward * goal

    return step, lambda nx, ny: np.zeros(np.broadcast(nx, ny).shape)


def state_reward_terms(
    env: HazardNavEnv, g: Callable[[np.ndarray], np.ndarray]
) -> tuple[StepReward, AbsorbReward]:
    """A state-only reward ``g(next_obs)`` (a learned AIRL reward) as :data:`StepReward`, paid
    again for every absorbed step at the goal (the absorbing env repeats the goal's
    observation, :class:`safeknob.rl.airl.AbsorbingWrapper`).

    Args:
        env: the env (its observation is an affine function of the position).
        g: maps observations, shape (m, obs_dim) float32, to rewards, shape (m,).
    """
    mat, base = env._obs_mat, env._obs_base

    def at(nx, ny):
        pos = np.stack([np.ravel(nx), np.ravel(ny)], 1)
        obs = (pos @ mat.T + base).astype(np.float32)
        return np.asarray(g(obs), dtype=float).reshape(np.shape(nx))

    return (lambda x, y, nx, ny, goal: at(nx, ny)), at


class _Lattice:
    """Every full-speed move from every grid point: targets, cost, goal flags, rewards."""

    def __init__(self, env: HazardNavEnv, step: StepReward, absorb: AbsorbReward, n: int,
                 headings: int) -> None:  # fmt: skip
        ang = np.linspace(0, 2 * np.pi, headings, endpoint=False)
        self.dirs = np.stack([np.cos(ang), np.sin(ang)], 1) * env.max_speed
        self.env, self.n, self.step, self.absorb = env, n, step, absorb
        xs = np.linspace(-1, 1, n)
        X, Y = np.meshgrid(xs, xs, indexing="ij")
        self.coords, self.cost, self.goal, self.reward, self.absorbed = self.moves(X, Y)

    def moves(self, x: np.ndarray, y: np.ndarray):
        env, n = self.env, self.n
        nx = np.clip(np.add.outer(self.dirs[:, 0], x), -1, 1)
        ny = np.clip(np.add.outer(self.dirs[:, 1], y), -1, 1)
        goal = (nx - env.goal[0]) ** 2 + (ny - env.goal[1]) ** 2 <= env.goal_radius**2
        cost = env.hazard_mask(nx, ny).astype(float)
        xb, yb = np.broadcast_to(x, nx.shape), np.broadcast_to(y, ny.shape)
        reward = np.asarray(self.step(xb, yb, nx, ny, goal), dtype=float)
        absorbed = np.asarray(self.absorb(nx, ny), dtype=float)
        coords = np.stack([(nx + 1) / 2 * (n - 1), (ny + 1) / 2 * (n - 1)])
        return coords, cost, goal, reward, absorbed

    def q(self, V_next: np.ndarray, left: int, lam: float, at=None) -> np.ndarray:
        """Action values of every move with ``left`` steps after it (``at``: one position's
        moves from :meth:`moves` instead of the lattice's)."""
        coords, cost, goal, reward, absorbed = self.moves(*at) if at is not None else (
            self.coords, self.cost, self.goal, self.reward, self.absorbed)  # fmt: skip
        cont = map_coordinates(V_next, coords.reshape(2, -1), order=1).reshape(cost.shape)
        return reward - lam * cost + np.where(goal, left * absorbed, cont)


def _solve_finite(lat: _Lattice, lam: float, horizon: int) -> np.ndarray:
    """Finite-horizon values ``V[t]`` of ``max E[sum reward - lam * cost]``, shape
    (horizon + 1, n, n); ``V[horizon] = 0``."""
    V = np.zeros((horizon + 1, lat.n, lat.n))
    for t in range(horizon - 1, -1, -1):
        V[t] = lat.q(V[t + 1], horizon - t - 1, lam).max(axis=0)
    return V


def _rollout_finite(lat: _Lattice, V: np.ndarray, lam: float, episodes: int):
    env, horizon = lat.env, V.shape[0] - 1
    objs, rets, costs = [], [], []
    for seed in range(episodes):
        env.reset(seed=seed)
        obj = ret = cost = 0.0
        for t in range(horizon):
            p = env.pos
            at = (p[:1], p[1:])
            k = int(np.argmax(lat.q(V[t + 1], horizon - t - 1, lam, at=at)[:, 0]))
            _, r, terminated, truncated, info = env.step(lat.dirs[k] / env.max_speed)
            q = env.pos
            qx, qy = q[:1], q[1:]
            obj += float(lat.step(p[:1], p[1:], qx, qy, np.array([terminated]))[0])
            ret, cost = ret + r, cost + info["cost"]
            if terminated:
                obj += (horizon - t - 1) * float(lat.absorb(qx, qy)[0])
            if terminated or truncated:
                break
        objs.append(obj)
        rets.append(ret)
        costs.append(cost)
    return float(np.mean(objs)), float(np.mean(rets)), float(np.mean(costs))


def reward_points(
    env_kwargs: dict,
    terms: Callable[[HazardNavEnv], tuple[StepReward, AbsorbReward]],
    lambdas: Sequence[float],
    grid: int = 121,
    headings: int = 48,
    episodes: int = 40,
    progress=None,
) -> RewardPoints:
    """Greedy finite-horizon value-iteration policies of ``reward - lam * cost`` for each
    multiplier, rolled out in the real env (seeds 0 .. episodes - 1).

    The generalization of :func:`estimate` to any reward (a learned one included): the
    horizon is the env's and reaching the goal absorbs (the reward's absorbing term is paid
    for every step left), so a reward that pays for loitering is optimized as the absorbing
    env a learned reward is trained in does.

    Args:
        env_kwargs: :class:`~safeknob.envs.hazard_nav.HazardNavEnv` keyword arguments.
        terms: builds the reward's ``(step, absorb)`` terms for the env
            (:func:`env_reward_terms`, :func:`state_reward_terms`).
        lambdas: multipliers, increasing (the reward's units per unit of cost).
        grid: grid points per axis of the value function.
        headings: move directions.
        episodes: rollouts per multiplier.
        progress: optional callable called with 1 after each multiplier.

    Returns:
        The :class:`RewardPoints`.
    """
    env = HazardNavEnv(**env_kwargs)
    step, absorb = terms(env)
    lat = _Lattice(env, step, absorb, grid, headings)
    objs, rets, costs = [], [], []
    for lam in lambdas:
        V = _solve_finite(lat, float(lam), env.horizon)
        o, r, c = _rollout_finite(lat, V, float(lam), episodes)
        objs.append(o)
        rets.append(r)
        costs.append(c)
        if progress is not None:
            progress(1)
    env.close()
    arr = np.asarray
    return RewardPoints(arr(lambdas, float), arr(objs), arr(rets), arr(costs))


def budget_mixture(
    costs: np.ndarray, objectives: np.ndarray, budget: float
) -> list[tuple[int, float]]:
    """The best mixture of points within an expected-cost budget: at most two points of the
    upper hull of ``(cost, objective)`` (:func:`upper_hull`) weighted so the mixture's cost is
    ``budget``; the least-cost point when the budget is below every cost, the best point when
    the budget exceeds its cost.

    Args:
        costs: shape (K,).
        objectives: shape (K,).
        budget: the expected episode-cost budget.

    Returns:
        ``[(index, weight), ...]`` into the inputs, weights summing to 1.
    """
    costs, objectives = np.asarray(costs, float), np.asarray(objectives, float)
    hc, ho = upper_hull(costs, objectives)
    top = int(np.argmax(ho))
    hc, ho = hc[: top + 1], ho[: top + 1]

    def index(c: float, o: float) -> int:
        return int(np.flatnonzero((costs == c) & (objectives == o))[0])

    if budget <= hc[0] or len(hc) == 1:
        return [(index(hc[0], ho[0]), 1.0)]
    if budget >= hc[-1]:
        return [(index(hc[-1], ho[-1]), 1.0)]
    j = int(np.searchsorted(hc, budget))
    w = (budget - hc[j - 1]) / (hc[j] - hc[j - 1])
    return [(index(hc[j - 1], ho[j - 1]), 1.0 - float(w)), (index(hc[j], ho[j]), float(w))]
