"""``safeknob frontier``: the exact frontier of an experiment and the coin flip's gap below it.

The yardstick of a knob is how much room the experts leave: the coin flip between them (the
``mixture`` method) sits on the chord from the safe to the reckless expert, and a knob can at
best close the gap between that chord and the exact frontier R*(C)
(:mod:`safeknob.envs.frontier`). This stage computes, before anything is trained:

* the exact experts (the unconstrained optimum and the best deterministic policy within the
  cost limit, :func:`~safeknob.envs.frontier.exact_experts`) and the coin flip's frontier gap
  between them at alphas 0.1 .. 0.9 (:func:`~safeknob.envs.frontier.chord_gap`);
* the routes on the frontier (HazardGrid): the slip-free path of each vertex's policy,
  grouped by the hazard cells it enters;
* once ``train-experts`` has run, the same gap with the trained experts' measured means.

With ``min_gap`` it fails (:class:`~safeknob.errors.UserError`) when the exact mean gap is
below it, so ``make bench`` checks the property rather than hoping for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.table import Table

from safeknob.config import ExperimentConfig, RunConfig
from safeknob.envs import make_env, tabular_model
from safeknob.envs.frontier import ChordGap, Frontier, chord_gap, exact_experts, lagrangian_policy
from safeknob.envs.model import TabularModel, evaluate_policy
from safeknob.errors import ArtifactError, UserError
from safeknob.evaluation.figures import expert_stats
from safeknob.evaluation.metrics import ExpertStats
from safeknob.stages.common import console, progress_bar
from safeknob.stages.promised import Promise, promised
from safeknob.store import ExperimentStore

__all__ = [
    "MIN_GAP",
    "FrontierCheck",
    "Route",
    "analyse",
    "expert_reference",
    "frontier_routes",
    "print_promises",
    "run",
    "run_promise",
]

#: The least mean coin-flip gap (fraction of the experts' return range, alphas 0.1 .. 0.9) a
#: default experiment must leave a knob (issue #16); ``make bench`` and the tests check it.
MIN_GAP = 0.15


@dataclass(frozen=True)
class Route:
    """One route on the exact frontier: the frontier vertices whose slip-free path enters the
    same number of hazard cells.

    Attributes:
        hazard_cells: hazard cells entered on the slip-free path.
        steps: length of the slip-free path of the highest-return vertex (steps).
        cost: exact expected episode cost (with slip) of the group's vertices, (lowest, highest).
        ret: exact expected episode return of the group's vertices, (lowest, highest).
        path: state indices of the highest-return vertex's slip-free path, start included.
    """

    hazard_cells: int
    steps: int
    cost: tuple[float, float]
    ret: tuple[float, float]
    path: tuple[int, ...]


@dataclass(frozen=True)
class FrontierCheck:
    """What :func:`analyse` found; see the module docstring.

    Attributes:
        frontier: the exact frontier (vertices).
        cost_limit: the safe expert's cost limit of the experiment.
        exact: the coin flip's gap between the exact experts.
        at_limit: the same with the safe end at the constrained optimum ``(limit, R*(limit))``
            (a stochastic policy; the best any safe expert within the limit can be).
        routes: the frontier's routes, by increasing cost (empty for a non-grid env).
        measured: the gap with the trained experts' measured means, or None if not trained.
    """

    frontier: Frontier
    cost_limit: float
    exact: ChordGap
    at_limit: ChordGap
    routes: list[Route]
    measured: ChordGap | None = None


def frontier_routes(env, model: TabularModel, frontier: Frontier) -> list[Route]:
    """The routes of a HazardGrid's frontier vertices, one per hazard exposure.

    Each vertex's policy is recovered as the Lagrangian optimum at a multiplier between the
    slopes of R* either side of it (:func:`~safeknob.envs.frontier.lagrangian_policy`); its
    slip-free path from the start (``env.nominal_path``) is the route. Vertices are grouped by
    the number of hazard cells their path enters, keeping the highest-return one per group.

    Args:
        env: the unwrapped :class:`~safeknob.envs.hazard_grid.HazardGridEnv`.
        model: its tabular model.
        frontier: its exact frontier (``method="vertices"``).

    Returns:
        The routes, by increasing cost.
    """
    c, r = frontier.costs, frontier.values
    if len(c) < 2:
        lams = np.zeros(len(c))
    else:
        slopes = np.diff(r) / np.diff(c)
        left = np.concatenate([[slopes[0] * 2 + 1.0], slopes])  # steeper than any segment
        right = np.concatenate([slopes, [0.0]])
        lams = (left + right) / 2
    groups: dict[int, list[tuple[float, float, list[int]]]] = {}
    for lam in lams:
        policy = lagrangian_policy(model, float(lam))
        ret, cost = evaluate_policy(model, policy)
        path = env.nominal_path(policy)
        if path[-1] != env.goal_state:
            continue  # a policy that does not head for the goal is no route
        groups.setdefault(int(np.sum(env.hazard[path[1:]])), []).append((cost, ret, path))
    routes = []
    for hazards, pts in groups.items():
        costs, rets = [p[0] for p in pts], [p[1] for p in pts]
        top = pts[int(np.argmax(rets))][2]
        routes.append(
            Route(
                hazard_cells=hazards,
                steps=len(top) - 1,
                cost=(float(min(costs)), float(max(costs))),
                ret=(float(min(rets)), float(max(rets))),
                path=tuple(top),
            )
        )
    return sorted(routes, key=lambda x: x.cost[0])


def analyse(exp: ExperimentConfig) -> FrontierCheck:
    """The exact frontier, the exact experts' coin-flip gap and the routes of an experiment.

    Args:
        exp: the experiment; its env must have an exact tabular model.

    Returns:
        The :class:`FrontierCheck` (``measured`` is None).

    Raises:
        UserError: if the env has no exact model or the cost limit is infeasible.
    """
    env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
    try:
        model = tabular_model(env)
        if model is None:
            raise UserError(
                f"{exp.env.id} has no exact model, so it has no exact frontier; "
                "`safeknob frontier` needs a tabular env such as safeknob/HazardGrid-v0"
            )
        fr = Frontier.compute(model)
        limit = exp.experts.cost_limit
        try:
            safe, reck = exact_experts(fr, limit)
        except ValueError as exc:
            raise UserError(f"{exc}; raise experts.cost_limit in the experiment") from None
        at_limit = (limit, float(fr(limit))) if limit < fr.max_cost else reck
        base = env.unwrapped
        routes = frontier_routes(base, model, fr) if hasattr(base, "nominal_path") else []
    finally:
        env.close()
    if abs(reck[1] - safe[1]) < 1e-12:
        raise UserError(
            "the safe and reckless optima have the same return, so there is no chord to "
            "measure; lower experts.cost_limit in the experiment"
        )
    return FrontierCheck(
        frontier=fr,
        cost_limit=limit,
        exact=chord_gap(fr, safe, reck),
        at_limit=chord_gap(fr, at_limit, reck),
        routes=routes,
    )


def _measured(rc: RunConfig, fr: Frontier) -> ChordGap | None:
    pts = {}
    store = ExperimentStore(rc)
    for role in ("safe", "reckless"):
        try:
            ev = store.expert_meta(role)["evaluation"]
            pts[role] = (float(ev["cost_mean"]), float(ev["return_mean"]))
        except (ArtifactError, KeyError, TypeError, ValueError):
            return None  # no (readable) experts yet: the exact numbers only
    if abs(pts["reckless"][1] - pts["safe"][1]) < 1e-12:
        return None
    return chord_gap(fr, pts["safe"], pts["reckless"])


def _map(env, routes: list[Route]) -> str:
    """The layout with each route's cells marked by its number (later routes on top)."""
    grid = env.grid.copy()
    for k, route in reversed(list(enumerate(routes, 1))):
        for s in route.path[1:-1]:
            r, c = env.cells[s]
            grid[r, c] = str(k) if grid[r, c] != "H" else "x"
    return "\n".join("    " + "".join(row) for row in grid)


def expert_reference(rc: RunConfig) -> ExpertStats:
    """The experts a knob is measured against: their rows of ``eval/results.csv`` when
    ``evaluate`` has run, else ``train-experts``' own evaluation in their meta.json.

    Raises:
        ArtifactError: the experts are not trained (names ``safeknob train-experts``).
    """
    store = ExperimentStore(rc)
    try:
        ref = expert_stats(store.results()[0])
        if all(np.isfinite([ref.return_safe, ref.cost_safe, ref.return_reck, ref.cost_reck])):
            return ref
    except ArtifactError:
        pass
    vals = []
    for role in ("safe", "reckless"):
        ev = store.expert_meta(role).get("evaluation")
        if not isinstance(ev, dict) or "return_mean" not in ev or "cost_mean" not in ev:
            raise ArtifactError(
                f"experts/{role}/meta.json has no evaluation; re-run "
                "`safeknob train-experts --force`"
            )
        vals += [float(ev["return_mean"]), float(ev["cost_mean"])]
    return ExpertStats(*vals)


def print_promises(rc: RunConfig, promises: dict[str, Promise]) -> None:
    """The table of what each reward promises the knob (:mod:`safeknob.stages.promised`)."""
    exact = any(np.isfinite(p.summary["frontier_gap_mean"]) for p in promises.values())
    how = "exact optimum (occupancy LP)" if exact else "value-iteration optimum"
    t = Table(
        title=f"What each task reward promises: its {how} at the budget d(alpha), scored with "
        "the env's reward and cost"
    )
    cols = ["task reward"]
    cols += ["frontier gap mean / max"] if exact else []
    cols += ["calibration", "chord gain", "spearman"]
    for col in cols:
        t.add_column(col, justify="right" if col != "task reward" else "left")
    for p in promises.values():
        s = p.summary
        row = [p.label]
        if exact:
            row.append(f"{s['frontier_gap_mean']:.3f} / {s['frontier_gap_max']:.3f}")
        row += [
            f"{s['calibration_error']:.3f}",
            f"{s['chord_gain_mean']:+.3f}",
            f"{s['spearman']:.3f}",
        ]
        t.add_row(*row)
    console.print(t)
    alphas = next(iter(promises.values())).rows.alpha
    t = Table(title="Per alpha: position (chord gain) of each reward's optimum")
    t.add_column("alpha", justify="right")
    for p in promises.values():
        t.add_column(p.source, justify="right")
    for i, a in enumerate(alphas):
        t.add_row(
            f"{a:.2f}",
            *(
                f"{p.rows.position.iloc[i]:.2f} ({p.rows.chord_gain.iloc[i]:+.3f})"
                for p in promises.values()
            ),
        )
    console.print(t)
    console.print(
        "A diagnostic that needs the env's reward (no method sees it): a learned reward close "
        "to the env's row promises a knob as good as the env's; trained agents far below "
        "their reward's promise point at the optimizer, not the reward."
    )


def run_promise(rc: RunConfig) -> dict[str, Promise]:
    """``safeknob frontier --reward airl``: compute and print :func:`promised` for the
    experiment's alphas and every reward of :data:`~safeknob.stages.promised.SOURCES`."""
    experts = expert_reference(rc)
    alphas = rc.experiment.blend.alphas
    with progress_bar(rc.quiet) as bar:

        def progress(source: str, total: int):
            task = bar.add_task(f"value iteration on {source}", total=total)
            return lambda k: bar.advance(task, k)

        promises = promised(rc, experts, alphas, progress=progress)
    if not rc.quiet:
        print_promises(rc, promises)
    return promises


def run(rc: RunConfig, min_gap: float | None = None) -> FrontierCheck:
    """Compute and print the check (see the module docstring).

    Args:
        rc: the run configuration; trained experts in its data folder are used if present.
        min_gap: fail when the exact experts' mean coin-flip gap is below this (None: never).

    Returns:
        The :class:`FrontierCheck`, with ``measured`` filled in when the experts exist.

    Raises:
        UserError: no exact model, an infeasible cost limit, or a mean gap below ``min_gap``.
    """
    exp = rc.experiment
    check = analyse(exp)
    measured = _measured(rc, check.frontier)
    check = FrontierCheck(**{**check.__dict__, "measured": measured})
    fr = check.frontier
    if not rc.quiet:
        console.print(
            f"[bold]{exp.name}[/]: exact frontier R*(C), {len(fr.costs)} vertices, cost "
            f"{fr.min_cost:.4f} .. {fr.max_cost:.4f}, optimum {fr.optimum:.4f}"
        )
        if check.routes:
            t = Table(title="Routes on the frontier (slip-free paths of its vertices' policies)")
            for col in ("route", "hazard cells", "steps", "exact cost", "exact return"):
                t.add_column(col, justify="right")
            for k, route in enumerate(check.routes, 1):
                t.add_row(
                    str(k),
                    str(route.hazard_cells),
                    str(route.steps),
                    f"{route.cost[0]:.3f} .. {route.cost[1]:.3f}",
                    f"{route.ret[0]:.4f} .. {route.ret[1]:.4f}",
                )
            console.print(t)
            env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
            console.print(_map(env.unwrapped, check.routes), highlight=False, markup=False)
            env.close()
        rows = [
            ("exact", check.exact),
            (f"R*({check.cost_limit:g})", check.at_limit),
        ]
        if measured is not None:
            rows.append(("trained", measured))
        t = Table(title="The experts (cost, return per episode)")
        for col in ("experts", "safe", "reckless"):
            t.add_column(col, justify="right")
        for name, g in rows:
            t.add_row(
                name,
                f"{g.safe[0]:.4f}, {g.safe[1]:.4f}",
                f"{g.reckless[0]:.4f}, {g.reckless[1]:.4f}",
            )
        console.print(t)
        console.print(
            "exact: the best deterministic policy within the cost limit and the optimum; "
            f"R*({check.cost_limit:g}): the safe end at the constrained optimum (stochastic)"
            + ("; trained: train-experts' measured means" if measured is not None else "")
        )
        t = Table(title="Coin flip's frontier gap (R*(C) - R) / (R_reck - R_safe)")
        t.add_column("alpha", justify="right")
        for name, _ in rows:
            t.add_column(name, justify="right")
        for i, a in enumerate(check.exact.alphas):
            t.add_row(f"{a:.1f}", *(f"{g.gaps[i]:.3f}" for _, g in rows))
        t.add_row("[bold]mean[/]", *(f"[bold]{g.mean:.3f}[/]" for _, g in rows))
        t.add_row("max", *(f"{g.max:.3f}" for _, g in rows))
        console.print(t)
    if min_gap is not None and not check.exact.mean >= min_gap:
        raise UserError(
            f"the coin flip's mean frontier gap on {exp.name} is {check.exact.mean:.3f}, below "
            f"the required {min_gap:g}: the experiment cannot tell a good knob from a coin flip; "
            "change its map or cost limit (`safeknob frontier` prints the frontier)"
        )
    return check
