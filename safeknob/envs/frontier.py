"""The exact return-cost frontier R*(c) of a tabular model.

For a finite-horizon, undiscounted MDP with cost (:class:`~safeknob.envs.model.TabularModel`)
every (possibly time-dependent, stochastic) policy induces an occupancy measure
``x[t, s, a] = Pr(s_t = s, a_t = a)``, shape (horizon, n_states, n_actions). The set of
occupancy measures is the polytope

    x >= 0,
    sum_a x[0, s, a] = mu[s]                                        for every s,
    sum_a x[t + 1, s', a] = sum_{s, a} P[s, a, s'] x[t, s, a]       for t < horizon - 1,

and the expected episode return and cost are linear in it: ``sum(x * R)`` and ``sum(x * C)``
(``R`` and ``C`` broadcast over t). So the best expected return under an expected-cost budget,

    R*(c) = max { sum(x * R) : x in the polytope, sum(x * C) <= c },

is a linear program, and R* is non-decreasing, concave and piecewise-linear in c on
``[min_cost, max_cost]``, constant (the unconstrained optimum) above ``max_cost`` and undefined
(infeasible) below ``min_cost``. Returns and costs are expected sums over one episode, in the
model's reward and cost units.

Two ways to get R*:

* :func:`solve` -- the LP at one budget (scipy/HiGHS, ~1.5-4 s on the default HazardGrid,
  16k variables); also gives the optimal stochastic policy.
* :func:`frontier_vertices` -- all breakpoints of R* by Lagrangian backward induction
  (``max R - lam * C`` for a sequence of ``lam``), ~1 s for the whole frontier on the default
  HazardGrid, exact up to float round-off.

:class:`Frontier` packages either (default: the vertices) with interpolation, an exact
per-budget LP method and a JSON round trip. Note that a uniform budget grid can be badly
wrong: on the default HazardGrid R* rises from -1.0 to 0.48 between costs 0.0017 and 0.013
(slope ~130) and then only to 0.82 over the remaining 5.5 (the first HazardGrid map: slope
~1700 over the first 0.001).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from safeknob.envs.model import TabularModel, evaluate_policy

__all__ = [
    "COIN_FLIP_ALPHAS",
    "ChordGap",
    "Frontier",
    "FrontierPoint",
    "InfeasibleBudgetError",
    "chord_gap",
    "constrained_optima",
    "exact_experts",
    "fingerprint",
    "frontier_vertices",
    "lagrangian_policy",
    "solve",
    "value_iteration",
]

# HiGHS tolerances, tighter than its defaults (1e-7): the frontier is very steep near the
# minimum cost (slope 1e2 - 1e3 on the HazardGrid maps), so a budget overrun of 1e-7 allowed by
# round-off would buy ~1e-4 of return. At 1e-10 the LP agrees with the exact frontier to ~1e-6.
_HIGHS_OPTIONS = {
    "primal_feasibility_tolerance": 1e-10,
    "dual_feasibility_tolerance": 1e-10,
}
# Relative slack used when a constraint is set to a value another solve just attained
# (e.g. solving at exactly the minimum cost), so round-off does not make it infeasible.
_SLACK = 1e-9


class InfeasibleBudgetError(ValueError):
    """The cost budget is below the minimum expected cost any policy can achieve."""


@dataclass(frozen=True, eq=False)
class FrontierPoint:
    """The solution of the constrained LP at one budget.

    Attributes:
        budget: the expected-cost budget c (cost units per episode), or None if unconstrained.
        value: optimal expected episode return R*(c) (reward units per episode).
        cost: expected episode cost of the optimal occupancy (<= budget up to ~1e-9).
        policy: time-dependent stochastic policy, shape (horizon, n_states, n_actions), rows
            summing to 1: ``occupancy`` normalised per (t, s), uniform where it is 0.
        occupancy: the optimal occupancy measure x[t, s, a] >= 0, shape
            (horizon, n_states, n_actions); ``x[t].sum() == 1`` for every t.
    """

    budget: float | None
    value: float
    cost: float
    policy: np.ndarray
    occupancy: np.ndarray


# ---------------------------------------------------------------------------- backward induction
def value_iteration(model: TabularModel) -> tuple[float, np.ndarray]:
    """Finite-horizon backward induction for the unconstrained optimum (cost ignored).

    Args:
        model: the tabular model.

    Returns:
        ``(value, policy)``: the optimal expected episode return ``mu @ V_0`` (reward units
        per episode) and an optimal deterministic time-dependent policy as one-hot action
        probabilities, shape (horizon, n_states, n_actions). Ties go to the lowest action index.
    """
    value, policy = _backward_induction(model, np.asarray(model.R, dtype=float))
    return value, policy


def _backward_induction(
    model: TabularModel, primary: np.ndarray, secondary: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """Deterministic time-dependent policy maximising the expected sum of ``primary``.

    Args:
        model: the tabular model.
        primary: per-step reward to maximise, shape (n_states, n_actions).
        secondary: optional per-step reward, shape (n_states, n_actions), used to break ties
            in ``primary`` (action values within ~1e-12 relative count as tied), i.e. a
            lexicographic optimum.

    Returns:
        ``(mu @ V_0 of primary, one-hot policy of shape (horizon, n_states, n_actions))``.
    """
    H, S, A = model.horizon, model.n_states, model.n_actions
    P = np.asarray(model.P, dtype=float)
    tol = 1e-12 * (1.0 + H * float(np.abs(primary).max()))
    rows = np.arange(S)
    V1 = np.zeros(S)
    V2 = np.zeros(S)
    policy = np.zeros((H, S, A))
    for t in range(H - 1, -1, -1):
        Q1 = primary + P @ V1  # (S, A)
        if secondary is None:
            best = np.argmax(Q1, axis=1)
        else:
            Q2 = secondary + P @ V2
            tied = Q1 >= Q1.max(axis=1, keepdims=True) - tol
            best = np.argmax(np.where(tied, Q2, -np.inf), axis=1)
            V2 = Q2[rows, best]
        policy[t, rows, best] = 1.0
        V1 = Q1[rows, best]
    return float(np.asarray(model.mu, dtype=float) @ V1), policy


def lagrangian_policy(model: TabularModel, lam: float) -> np.ndarray:
    """A deterministic policy maximising ``return - lam * cost`` (ties: the higher return).

    For ``lam`` between the slopes of R* either side of a frontier vertex this is the policy at
    that vertex (see :func:`frontier_vertices`).

    Args:
        model: the tabular model.
        lam: the Lagrange multiplier (reward units per cost unit), >= 0.

    Returns:
        One-hot time-dependent action probabilities, shape (horizon, n_states, n_actions).
    """
    R = np.asarray(model.R, dtype=float)
    C = np.asarray(model.C, dtype=float)
    return _backward_induction(model, R - float(lam) * C, R)[1]


def frontier_vertices(model: TabularModel, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """All breakpoints of R*(c), by Lagrangian backward induction (no LP).

    By LP duality ``R*(c) = min_{lam >= 0} max_pi [R(pi) - lam * (C(pi) - c)]``, so the vertices
    of the concave piecewise-linear R* are (cost, return) pairs of deterministic policies that
    maximise ``R - lam * C`` for some ``lam``. They are traced by the Eisner-Severance hull
    recursion: between two known vertices, maximise with ``lam`` = the slope of their chord
    and keep the result if it lies above the chord. Every vertex is the exact evaluation
    (:func:`~safeknob.envs.model.evaluate_policy`) of a real policy, so interpolating them is
    never above the true R*; it is below by at most ~``tol``.

    Args:
        model: the tabular model.
        tol: a point must lie more than this above a chord (reward units) to count as a vertex.

    Returns:
        ``(costs, returns)``, each shape (n_vertices,), costs increasing from the minimum
        achievable expected cost to the least expected cost of an unconstrained optimum;
        ``np.interp(c, costs, returns)`` is R*(c) on that interval. One backward induction
        and one policy evaluation per vertex tried (about two per vertex).
    """
    R = np.asarray(model.R, dtype=float)
    C = np.asarray(model.C, dtype=float)

    def point(primary: np.ndarray, secondary: np.ndarray | None = None) -> tuple[float, float]:
        ret, cost = evaluate_policy(model, _backward_induction(model, primary, secondary)[1])
        return cost, ret

    left = point(-C, R)  # least cost, then most return
    right = point(R, -C)  # most return, then least cost
    if right[0] <= left[0] + tol:
        return np.array([left[0]]), np.array([max(left[1], right[1])])
    vertices = [left, right]
    stack = [(left, right)]
    while stack:
        (c1, r1), (c2, r2) = stack.pop()
        lam = (r2 - r1) / (c2 - c1)
        c, r = point(R - lam * C)
        if r - lam * c > r1 - lam * c1 + tol and c1 + tol < c < c2 - tol:
            vertices.append((c, r))
            stack += [((c1, r1), (c, r)), ((c, r), (c2, r2))]
    vertices.sort()
    return np.array([v[0] for v in vertices]), np.array([v[1] for v in vertices])


# ---------------------------------------------------------------------------- the LP
@dataclass(frozen=True, eq=False)
class _LP:
    """Sparse LP data over x[t, s, a] flattened in C order (index ``(t * S + s) * A + a``)."""

    A_eq: sp.csr_array  # (H * S, H * S * A)
    b_eq: np.ndarray  # (H * S,)
    reward: np.ndarray  # (H * S * A,)
    cost: np.ndarray  # (H * S * A,)
    shape: tuple[int, int, int]  # (H, S, A)


def _build_lp(model: TabularModel) -> _LP:
    H, S, A = model.horizon, model.n_states, model.n_actions
    P = np.asarray(model.P, dtype=float)
    # E[s, (s2, a)] = [s == s2]: sums a step's occupancy over actions.
    E = sp.kron(sp.eye_array(S, format="csr"), np.ones((1, A)), format="csr")
    # M[s', (s, a)] = P[s, a, s']: the next-state distribution of a step's occupancy.
    M = sp.csr_array(P.reshape(S * A, S).T)
    shift = sp.eye_array(H, k=-1, format="csr")  # ones at (t + 1, t)
    A_eq = sp.kron(sp.eye_array(H, format="csr"), E, format="csr") - sp.kron(shift, M, format="csr")
    b_eq = np.zeros(H * S)
    b_eq[:S] = np.asarray(model.mu, dtype=float)
    return _LP(
        A_eq=sp.csr_array(A_eq),
        b_eq=b_eq,
        reward=np.tile(np.asarray(model.R, dtype=float).ravel(), H),
        cost=np.tile(np.asarray(model.C, dtype=float).ravel(), H),
        shape=(H, S, A),
    )


def _run(lp: _LP, objective: np.ndarray, row: np.ndarray | None = None, bound: float = 0.0):
    """Minimise ``objective @ x`` over the polytope, plus ``row @ x <= bound`` if given.

    Returns:
        The optimal x clipped at 0, shape (H * S * A,), or None if infeasible.
    """
    res = linprog(
        objective,
        A_ub=None if row is None else sp.csr_array(row[None, :]),
        b_ub=None if row is None else np.array([bound]),
        A_eq=lp.A_eq,
        b_eq=lp.b_eq,
        bounds=(0, None),
        method="highs",
        options=_HIGHS_OPTIONS,
    )
    if res.status == 2:  # infeasible
        return None
    if res.status != 0:
        raise RuntimeError(f"occupancy LP failed (status {res.status}): {res.message}")
    return np.clip(res.x, 0.0, None)


def _point(lp: _LP, x: np.ndarray, budget: float | None) -> FrontierPoint:
    H, S, A = lp.shape
    occ = x.reshape(H, S, A)
    mass = occ.sum(axis=2, keepdims=True)
    policy = np.where(mass > 0, occ / np.where(mass > 0, mass, 1.0), 1.0 / A)
    return FrontierPoint(
        budget=None if budget is None else float(budget),
        value=float(lp.reward @ x),
        cost=float(lp.cost @ x),
        policy=policy,
        occupancy=occ,
    )


def _lp_min_cost(lp: _LP) -> float:
    x = _run(lp, lp.cost)
    assert x is not None, "the occupancy polytope is never empty"
    return float(lp.cost @ x)


def _lp_solve(lp: _LP, budget: float | None) -> FrontierPoint:
    if budget is None:
        x = _run(lp, -lp.reward)
    else:
        x = _run(lp, -lp.reward, row=lp.cost, bound=float(budget))
    if x is None:
        raise InfeasibleBudgetError(
            f"cost budget {budget:.6g} is infeasible: the minimum achievable expected "
            f"episode cost is {_lp_min_cost(lp):.6g}"
        )
    return _point(lp, x, budget)


def _lp_knee(lp: _LP) -> tuple[float, float]:
    """``(optimum, least cost of an occupancy within ~1e-9 of the optimum)`` by two LPs."""
    x = _run(lp, -lp.reward)
    assert x is not None, "the occupancy polytope is never empty"
    best = float(lp.reward @ x)
    # Least cost subject to reward >= best - slack, i.e. -reward @ x <= -(best - slack).
    x2 = _run(lp, lp.cost, row=-lp.reward, bound=-(best - _SLACK * max(1.0, abs(best))))
    knee = float(lp.cost @ x) if x2 is None else min(float(lp.cost @ x2), float(lp.cost @ x))
    return best, knee


def solve(model: TabularModel, budget: float | None) -> FrontierPoint:
    """Best expected return under an expected-cost budget, by LP over occupancy measures.

    Args:
        model: the tabular model (horizon H, S states, A actions); H * S * A LP variables.
        budget: upper bound on the expected episode cost (cost units per episode); None for
            no cost constraint.

    Returns:
        The :class:`FrontierPoint` with value R*(budget), its cost and an optimal
        time-dependent stochastic policy of shape (H, S, A).

    Raises:
        InfeasibleBudgetError: (a ValueError) if ``budget`` is below the minimum achievable
            expected cost.
    """
    return _lp_solve(_build_lp(model), budget)


def constrained_optima(model: TabularModel, budgets: np.ndarray) -> list[FrontierPoint]:
    """The optimum of ``model``'s reward at each expected-cost budget, by one LP per budget.

    The constrained knob of a reward: with ``model.R`` replaced by a learned reward
    (:func:`~safeknob.envs.model.with_state_reward`), each point is what maximizing that reward
    within the budget yields; scoring its ``policy`` on the env's own model
    (:func:`~safeknob.envs.model.evaluate_policy`) says what that optimum is worth in the
    env's reward. A budget below the least achievable cost is raised to it (the best any
    method can do there is the least-cost policy of greatest reward).

    Args:
        model: the tabular model whose ``R`` is maximized.
        budgets: expected episode-cost budgets, shape (K,) (cost units per episode).

    Returns:
        One :class:`FrontierPoint` per budget (``value`` in ``model.R``'s units).
    """
    lp = _build_lp(model)
    c_min = _lp_min_cost(lp)
    slack = _SLACK * max(1.0, abs(c_min))
    return [
        _lp_solve(lp, None if not np.isfinite(b) else max(float(b), c_min + slack))
        for b in np.asarray(budgets, float)
    ]


def fingerprint(model: TabularModel) -> str:
    """A short SHA-256 hex digest of the model's arrays and horizon, for cache validation."""
    h = hashlib.sha256()
    for arr in (model.P, model.R, model.C, model.mu):
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.float64))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(str(int(model.horizon)).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------- the frontier
@dataclass(frozen=True, eq=False)
class Frontier:
    """R*(c) as a table of (budget, value) points between the minimum and the knee cost.

    Build with :meth:`compute`; evaluate with ``frontier(c)`` (piecewise-linear interpolation
    of the table; exact with ``method="vertices"``, a lower bound on the concave R* with
    ``method="lp"``) or :meth:`exact` (solves the LP at c).

    Attributes:
        budgets: budgets of the table, shape (n,), increasing from ``min_cost`` to ``max_cost``
            (cost units per episode).
        values: R* at each budget, shape (n,) (reward units per episode).
        costs: expected cost of the optimal solution at each budget, shape (n,) (<= budgets).
        min_cost: the minimum achievable expected episode cost.
        max_cost: the least expected cost at which the unconstrained optimum is attained;
            R*(c) = ``optimum`` for every c >= max_cost. Ill-conditioned when R* is nearly
            flat at the top (the first default HazardGrid: the last 1e-4 of cost bought 3e-10 of return).
        optimum: the unconstrained optimal expected return.
        method: ``"vertices"`` or ``"lp"``, how the table was computed.
        model_id: :func:`fingerprint` of the model the frontier was computed for.
    """

    budgets: np.ndarray
    values: np.ndarray
    costs: np.ndarray
    min_cost: float
    max_cost: float
    optimum: float
    method: str
    model_id: str
    _model: TabularModel | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def compute(
        cls,
        model: TabularModel,
        n_points: int = 41,
        method: Literal["vertices", "lp"] = "vertices",
    ) -> Frontier:
        """Compute the frontier table.

        Args:
            model: the tabular model.
            n_points: number of evenly spaced budgets in [min_cost, max_cost], endpoints
                included (>= 2); used by ``method="lp"`` only.
            method: ``"vertices"`` (default): every breakpoint of R* via
                :func:`frontier_vertices`, so interpolation is exact; about 1 s on the default
                HazardGrid. ``"lp"``: the LP at ``n_points`` evenly spaced budgets (min cost
                and knee by LP too); ``n_points + 3`` LP solves, about a minute on the default
                HazardGrid, and interpolation between grid points can badly under-estimate a
                steep R*.

        Returns:
            The frontier. If ``max_cost - min_cost`` is below ~1e-9 the table has one point.
        """
        if method == "vertices":
            costs, values = frontier_vertices(model)
            return cls(
                budgets=costs,
                values=values,
                costs=costs.copy(),
                min_cost=float(costs[0]),
                max_cost=float(costs[-1]),
                optimum=float(values[-1]),
                method=method,
                model_id=fingerprint(model),
                _model=model,
            )
        if method != "lp":
            raise ValueError(f"method must be 'vertices' or 'lp', got {method!r}")
        if n_points < 2:
            raise ValueError(f"n_points must be >= 2, got {n_points}")
        lp = _build_lp(model)
        c_min = _lp_min_cost(lp)
        best, c_max = _lp_knee(lp)
        c_max = max(c_max, c_min)
        if c_max - c_min <= _SLACK * max(1.0, abs(c_max)):
            budgets = np.array([c_min])
        else:
            budgets = np.linspace(c_min, c_max, n_points)
        slack = _SLACK * max(1.0, abs(c_min))
        points = [
            _lp_solve(lp, float(b) + (slack if i == 0 else 0.0)) for i, b in enumerate(budgets[:-1])
        ]
        values = np.array([p.value for p in points] + [best])
        costs = np.array([p.cost for p in points] + [c_max])
        return cls(
            budgets=budgets,
            values=values,
            costs=costs,
            min_cost=c_min,
            max_cost=float(c_max),
            optimum=best,
            method=method,
            model_id=fingerprint(model),
            _model=model,
        )

    # ------------------------------------------------------------------ evaluation
    def __call__(self, c: float | np.ndarray) -> float | np.ndarray:
        """R*(c) by linear interpolation of the table (reward units per episode).

        Args:
            c: budget(s) in cost units per episode, scalar or array of any shape.

        Returns:
            Same shape as ``c`` (a float for a scalar): ``optimum`` for c >= max_cost, nan for
            c < min_cost (beyond a 1e-9 relative tolerance), the interpolation in between.
        """
        c_arr = np.asarray(c, dtype=float)
        out = np.interp(c_arr, self.budgets, self.values)
        out = np.where(c_arr >= self.max_cost, self.optimum, out)
        out = np.where(c_arr < self.min_cost - _SLACK * max(1.0, abs(self.min_cost)), np.nan, out)
        return float(out) if out.ndim == 0 else out

    def exact(self, c: float, model: TabularModel | None = None) -> float:
        """R*(c) by solving the LP at c directly (~1.5-4 s on the default HazardGrid).

        Args:
            c: the budget (cost units per episode).
            model: the model; needed only for a frontier loaded by :meth:`from_dict` without
                one, and then checked against :attr:`model_id`.

        Returns:
            The optimal expected return (reward units per episode); nan if c < min_cost;
            ``optimum`` if c >= max_cost.
        """
        m = self._check_model(model)
        tol = _SLACK * max(1.0, abs(self.min_cost))
        if c < self.min_cost - tol:
            return float("nan")
        if c >= self.max_cost:
            return self.optimum
        return solve(m, max(float(c), self.min_cost + tol)).value

    def solve(self, c: float | None, model: TabularModel | None = None) -> FrontierPoint:
        """The full LP solution (value, cost and policy) at budget c; see :func:`solve`."""
        return solve(self._check_model(model), c)

    def _check_model(self, model: TabularModel | None) -> TabularModel:
        if model is not None and fingerprint(model) != self.model_id:
            raise ValueError("the model does not match the one this Frontier was computed for")
        m = model if model is not None else self._model
        if m is None:
            raise ValueError("this Frontier has no model attached; pass model=...")
        return m

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the model is not included, only its fingerprint)."""
        return {
            "budgets": [float(b) for b in self.budgets],
            "values": [float(v) for v in self.values],
            "costs": [float(c) for c in self.costs],
            "min_cost": float(self.min_cost),
            "max_cost": float(self.max_cost),
            "optimum": float(self.optimum),
            "method": self.method,
            "model_id": self.model_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], model: TabularModel | None = None) -> Frontier:
        """Inverse of :meth:`to_dict`.

        Args:
            data: the dict from :meth:`to_dict` (e.g. after a JSON round trip).
            model: optionally the model, attached for :meth:`exact` and :meth:`solve`.

        Raises:
            ValueError: if ``model`` does not match the stored fingerprint.
        """
        if model is not None and fingerprint(model) != data["model_id"]:
            raise ValueError("the model does not match the cached Frontier's fingerprint")
        return cls(
            budgets=np.asarray(data["budgets"], dtype=float),
            values=np.asarray(data["values"], dtype=float),
            costs=np.asarray(data["costs"], dtype=float),
            min_cost=float(data["min_cost"]),
            max_cost=float(data["max_cost"]),
            optimum=float(data["optimum"]),
            method=str(data["method"]),
            model_id=str(data["model_id"]),
            _model=model,
        )


# ---------------------------------------------------------------------------- the coin flip's gap
#: The interior knob values over which the coin flip's frontier gap is averaged (issue #16).
COIN_FLIP_ALPHAS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True, eq=False)
class ChordGap:
    """How far the coin flip between two experts falls below the exact frontier.

    The coin flip at knob ``alpha`` runs the reckless expert with probability ``alpha`` and the
    safe one otherwise, so its (cost, return) is the point at ``alpha`` on the chord from the
    safe expert to the reckless one. Its frontier gap is ``(R*(C) - R) / (R_reck - R_safe)``
    (the same normalisation as :func:`safeknob.evaluation.metrics.frontier_gap`): the room a knob has to
    beat the coin flip.

    Attributes:
        safe: the safe expert's (expected cost, expected return) per episode.
        reckless: the reckless expert's (expected cost, expected return) per episode.
        alphas: knob values, shape (K,).
        costs: the coin flip's expected cost at each alpha, shape (K,).
        gaps: the coin flip's frontier gap at each alpha, shape (K,) (fractions of the
            experts' return range).
    """

    safe: tuple[float, float]
    reckless: tuple[float, float]
    alphas: np.ndarray
    costs: np.ndarray
    gaps: np.ndarray

    @property
    def mean(self) -> float:
        """Mean gap over the alphas."""
        return float(np.mean(self.gaps))

    @property
    def max(self) -> float:
        """Largest gap over the alphas."""
        return float(np.max(self.gaps))


def chord_gap(
    frontier: Frontier,
    safe: tuple[float, float],
    reckless: tuple[float, float],
    alphas: tuple[float, ...] | np.ndarray = COIN_FLIP_ALPHAS,
) -> ChordGap:
    """The coin flip's frontier gap at each alpha (see :class:`ChordGap`).

    Args:
        frontier: the exact frontier R*.
        safe: the safe expert's (cost, return), expected per episode.
        reckless: the reckless expert's (cost, return), expected per episode.
        alphas: knob values in [0, 1], shape (K,).

    Returns:
        The :class:`ChordGap`. Costs below the frontier's ``min_cost`` (only reachable by an
        expert measured below it, i.e. sampling noise) are evaluated at ``min_cost``.

    Raises:
        ValueError: if the experts' returns are equal (the gap is normalised by their range).
    """
    a = np.asarray(alphas, dtype=float)
    (cs, rs), (cr, rr) = (float(safe[0]), float(safe[1])), (float(reckless[0]), float(reckless[1]))
    if abs(rr - rs) < 1e-12:
        raise ValueError("the experts' returns are equal: the chord gap is undefined")
    costs = cs + a * (cr - cs)
    chord = rs + a * (rr - rs)
    best = np.asarray(frontier(np.maximum(costs, frontier.min_cost)), dtype=float)
    return ChordGap(
        safe=(cs, rs), reckless=(cr, rr), alphas=a, costs=costs, gaps=(best - chord) / (rr - rs)
    )


def exact_experts(
    frontier: Frontier, cost_limit: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The best experts an exact solver would train: ``(safe, reckless)`` (cost, return) pairs.

    The reckless expert is the unconstrained optimum at its least cost ``(max_cost, optimum)``.
    The safe expert is the best *deterministic* policy on the frontier within the cost limit:
    the frontier vertex of highest return with cost <= ``cost_limit`` (experts are evaluated
    deterministically; between two vertices R* is reached only by randomising between them).

    Args:
        frontier: an exact frontier (``method="vertices"``).
        cost_limit: the safe expert's expected-cost limit per episode.

    Returns:
        ``((cost_safe, return_safe), (cost_reck, return_reck))``, expected per episode.

    Raises:
        InfeasibleBudgetError: if ``cost_limit`` is below the minimum achievable cost.
    """
    ok = frontier.costs <= cost_limit + _SLACK * max(1.0, abs(cost_limit))
    if not ok.any():
        raise InfeasibleBudgetError(
            f"cost limit {cost_limit:.6g} is infeasible: the minimum achievable expected "
            f"episode cost is {frontier.min_cost:.6g}"
        )
    i = int(np.argmax(np.where(ok, frontier.values, -np.inf)))
    safe = (float(frontier.costs[i]), float(frontier.values[i]))
    return safe, (float(frontier.max_cost), float(frontier.optimum))
