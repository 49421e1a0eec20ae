"""Approximate (cost, return) frontier of a HazardNav layout, by value iteration.

HazardNav has no exact model, so ``safeknob evaluate`` reports no frontier gap for it. This
script estimates the Lagrangian frontier instead: for each multiplier ``lam`` it solves
``min E[step_penalty * T + lam * cost]`` by semi-Lagrangian value iteration on a grid of
positions (bilinear interpolation, ``--headings`` unit moves at full speed), rolls the greedy
policy out in the real env and prints its mean return and cost, then the chord gain of each
point against the two ends (``lam = 0``: the reckless route; the largest ``lam``: the safe
one). The discretisation makes every route slightly worse than a trained agent's (about
0.01-0.03 of return), so read the shape, not the last digit.

    .venv/bin/python experiments/nav_frontier.py                    # the "fence" layout
    .venv/bin/python experiments/nav_frontier.py '{"layout": "disks"}'

Runs in about 15 s per layout on one core.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.ndimage import map_coordinates

from safeknob.envs.hazard_nav import HazardNavEnv

LAMBDAS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.4, 1.0, 3.0)


def moves(env: HazardNavEnv, x, y, dirs: np.ndarray, n: int, lam: float):
    """Grid coordinates, step cost and goal flag of every move from (x, y)."""
    nx = np.clip(np.add.outer(dirs[:, 0], x), -1, 1)
    ny = np.clip(np.add.outer(dirs[:, 1], y), -1, 1)
    goal = (nx - env.goal[0]) ** 2 + (ny - env.goal[1]) ** 2 <= env.goal_radius**2
    step = env.step_penalty + lam * env.hazard_mask(nx, ny)
    return np.stack([(nx + 1) / 2 * (n - 1), (ny + 1) / 2 * (n - 1)]), step, goal


def solve(env: HazardNavEnv, lam: float, n: int, dirs: np.ndarray, iters: int = 400):
    xs = np.linspace(-1, 1, n)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    at_goal = (X - env.goal[0]) ** 2 + (Y - env.goal[1]) ** 2 <= env.goal_radius**2
    coords, step, goal = moves(env, X, Y, dirs, n, lam)
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


def rollout(env: HazardNavEnv, V, dirs, n: int, lam: float, episodes: int):
    rets, costs = [], []
    for seed in range(episodes):
        env.reset(seed=seed)
        ret = cost = 0.0
        while True:
            p = env.pos
            coords, step, goal = moves(env, p[:1], p[1:], dirs, n, lam)
            v = map_coordinates(V, coords.reshape(2, -1), order=1).reshape(step.shape)
            k = int(np.argmin(step + np.where(goal, 0.0, v)))
            _, r, terminated, truncated, info = env.step(dirs[k] / env.max_speed)
            ret, cost = ret + r, cost + info["cost"]
            if terminated or truncated:
                break
        rets.append(ret)
        costs.append(cost)
    return float(np.mean(rets)), float(np.mean(costs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kwargs", nargs="?", default='{"layout": "fence"}', help="env kwargs (JSON)")
    ap.add_argument("--grid", type=int, default=161, help="grid points per axis")
    ap.add_argument("--headings", type=int, default=48, help="move directions")
    ap.add_argument("--episodes", type=int, default=40, help="rollouts per multiplier")
    args = ap.parse_args()
    kwargs = {"horizon": 100, "step_penalty": 0.03, **json.loads(args.kwargs)}
    env = HazardNavEnv(**kwargs)
    ang = np.linspace(0, 2 * np.pi, args.headings, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang)], 1) * env.max_speed
    points = []
    for lam in LAMBDAS:
        V = solve(env, lam, args.grid, dirs)
        points.append((lam, *rollout(env, V, dirs, args.grid, lam, args.episodes)))
    _, r_reck, c_reck = points[0]
    _, r_safe, c_safe = points[-1]
    print(f"HazardNav {kwargs}")
    print(f"{'lambda':>8} {'return':>8} {'cost':>7} {'chord gain':>11}")
    for lam, r, c in points:
        chord = r_safe + (c - c_safe) / max(c_reck - c_safe, 1e-9) * (r_reck - r_safe)
        print(f"{lam:8.3f} {r:8.4f} {c:7.3f} {(r - chord) / (r_reck - r_safe):+11.3f}")


if __name__ == "__main__":
    main()
