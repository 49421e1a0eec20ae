"""Approximate (cost, return) frontier of a HazardNav layout, by value iteration.

HazardNav has no exact model, so ``safeknob evaluate`` reports no frontier gap for it. This
script prints the estimate of :mod:`safeknob.envs.nav_frontier`: for each multiplier ``lam``
the greedy value-iteration policy's mean return and cost in the real env, the chord gain of
each point against the two ends (``lam = 0``: the reckless route; the largest ``lam``: the safe
one), and the best mean chord gain over a grid of alphas (what ``safeknob report`` prints
beside each method's measured gain). The discretisation makes every route slightly worse
than a trained agent's (about 0.01-0.03 of return), so read the shape, not the last digit.

    .venv/bin/python experiments/nav_frontier.py                    # the "fence" layout
    .venv/bin/python experiments/nav_frontier.py '{"layout": "disks"}'

Runs in about 15 s per layout on one core.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from safeknob.envs.nav_frontier import best_chord_gains, estimate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kwargs", nargs="?", default='{"layout": "fence"}', help="env kwargs (JSON)")
    ap.add_argument("--grid", type=int, default=161, help="grid points per axis")
    ap.add_argument("--headings", type=int, default=48, help="move directions")
    ap.add_argument("--episodes", type=int, default=40, help="rollouts per multiplier")
    ap.add_argument(
        "--alphas", default="0,0.2,0.4,0.6,0.8,1", help="alphas of the best mean chord gain"
    )
    args = ap.parse_args()
    kwargs = {"horizon": 100, "step_penalty": 0.03, **json.loads(args.kwargs)}
    nav = estimate(kwargs, grid=args.grid, headings=args.headings, episodes=args.episodes)
    (c_safe, r_safe), (c_reck, r_reck) = nav.safe, nav.reckless
    print(f"HazardNav {kwargs}")
    print(f"{'lambda':>8} {'return':>8} {'cost':>7} {'chord gain':>11}")
    for lam, r, c in zip(nav.lambdas, nav.returns, nav.costs, strict=True):
        chord = r_safe + (c - c_safe) / max(c_reck - c_safe, 1e-9) * (r_reck - r_safe)
        print(f"{lam:8.3f} {r:8.4f} {c:7.3f} {(r - chord) / (r_reck - r_safe):+11.3f}")
    alphas = [float(a) for a in args.alphas.split(",")]
    gains = best_chord_gains(nav, alphas)
    print(
        "best chord gain per alpha: "
        + ", ".join(f"{a:g}: {g:+.3f}" for a, g in zip(alphas, gains, strict=True))
    )
    print(f"best mean chord gain over {len(alphas)} alphas: {np.mean(gains):+.3f}")


if __name__ == "__main__":
    main()
