"""The exact return-cost frontier R*(c) of a tabular model, by linear programming.

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
(infeasible) below ``min_cost``. Rewards and costs are in the model's units per episode.

Main entry points: :func:`value_iteration` (the unconstrained optimum by backward induction),
:func:`solve` (one LP at one budget) and :class:`Frontier` (R* on a grid of budgets, with
interpolation, an exact per-budget method and a JSON round trip).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from safeknob.envs.model import TabularModel

__all__ = [
    "Frontier",
    "FrontierPoint",
    "InfeasibleBudgetError",
    "fingerprint",
    "solve",
    "value_iteration",
]

# HiGHS tolerances: tighter than the defaults (1e-7) so the LP's numbers agree with exact
# policy evaluation to ~1e-9.
_HIGHS_OPTIONS = {
    "primal_feasibility_tolerance": 1e-9,
    "dual_feasibility_tolerance": 1e-9,
}
# Relative slack used when a constraint is set to a value another LP just attained
# (e.g. solving at exactly the minimum cost), so solver round-off does not make it infeasible.
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
            summing to 1; ``occupancy`` normalised per (t, s), uniform where it is 0.
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
        ``(value, policy)``: the optimal expected episode return ``mu @ V_0`` (float, reward
        units) and an optimal deterministic time-dependent policy as one-hot action
        probabilities, shape (horizon, n_states, n_actions). Ties go to the lowest action index.
    """
    H, S, A = model.horizon, model.n_states, model.n_actions
    P = np.asarray(model.P, dtype=float)
    R = np.asarray(model.R, dtype=float)
    V = np.zeros(S)  # value-to-go with 0 steps left
    policy = np.zeros((H, S, A))
    for t in range(H - 1, -1, -1):
        Q = R + P @ V  # (S, A)
        best = np.argmax(Q, axis=1)
        policy[t, np.arange(S), best] = 1.0
        V = Q[np.arange(S), best]
    return float(np.asarray(model.mu, dtype=float) @ V), policy


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
    # E[s, (s2, a)] = [s == s2]: sums occupancy over actions.
    E = sp.kron(sp.eye_array(S, format="csr"), np.ones((1, A)), format="csr")
    # M[s', (s, a)] = P[s, a, s']: next-state distribution from a step's occupancy.
    M = sp.csr_array(P.reshape(S * A, S).T)
    shift = sp.eye_array(H, k=-1, format="csr")  # ones at (t + 1, t)
    A_eq = sp.kron(sp.eye_array(H, format="csr"), E, format="csr") - sp.kron(
        shift, M, format="csr"
    )
    b_eq = np.zeros(H * S)
    b_eq[:S] = np.asarray(model.mu, dtype=float)
    reward = np.tile(np.asarray(model.R, dtype=float).ravel(), H)
    cost = np.tile(np.asarray(model.C, dtype=float).ravel(), H)
    return _LP(A_eq=sp.csr_array(A_eq), b_eq=b_eq, reward=reward, cost=cost, shape=(H, S, A))


def _run(
    lp: _LP,
    objective: np.ndarray,
    A_ub: np.ndarray | None = None,
    b_ub: np.ndarray | None = None,
) -> np.ndarray | None:
    """Minimise ``objective @ x`` over the occupancy polytope (+ optional rows); None if infeasible."""
    res = linprog(
        objective,
        A_ub=None if A_ub is None else sp.csr_array(A_ub),
        b_ub=b_ub,
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


def _min_cost(lp: _LP) -> FrontierPoint:
    """The minimum achievable expected cost, with the best return among cost-minimal policies."""
    x = _run(lp, lp.cost)
    assert x is not None, "the occupancy polytope is never empty"
    c_min = float(lp.cost @ x)
    return _solve_lp(lp, c_min + _SLACK * max(1.0, abs(c_min)), label=c_min)


def _max_cost(lp: _LP) -> tuple[float, FrontierPoint]:
    """The unconstrained optimum and the least-cost occupancy attaining it.

    Returns:
        ``(optimum, knee)``: the unconstrained optimal return and the LP solution minimising
        cost among occupancies whose return is within ~1e-9 of the optimum (its ``budget`` is
        its own cost).
    """
    x = _run(lp, -lp.reward)
    assert x is not None, "the occupancy polytope is never empty"
    best = float(lp.reward @ x)
    # Minimise cost subject to reward >= best - slack, i.e. -reward @ x <= -(best - slack).
    floor = best - _SLACK * max(1.0, abs(best))
    x2 = _run(lp, lp.cost, A_ub=-lp.reward[None, :], b_ub=np.array([-floor]))
    if x2 is None or lp.cost @ x2 > lp.cost @ x:  # solver round-off: keep the plain optimum
        x2 = x
    return best, _point(lp, x2, float(lp.cost @ x2))


def _solve_lp(lp: _LP, budget: float | None, label: float | None = None) -> FrontierPoint:
    if budget is None:
        x = _run(lp, -lp.reward)
    else:
        x = _run(lp, -lp.reward, A_ub=lp.cost[None, :], b_ub=np.array([float(budget)]))
    if x is None:
        c_min = float(lp.cost @ _run(lp, lp.cost))
        raise InfeasibleBudgetError(
            f"cost budget {budget:.6g} is infeasible: the minimum achievable expected cost "
            f"is {c_min:.6g}"
        )
    return _point(lp, x, budget if label is None else label)


def solve(model: TabularModel, budget: float | None) -> FrontierPoint:
    """Best expected return under an expected-cost budget, by LP over occupancy measures.

    Args:
        model: the tabular model (horizon H, S states, A actions).
        budget: upper bound on the expected episode cost (cost units per episode); None for
            no cost constraint.

    Returns:
        The :class:`FrontierPoint` with value R*(budget), its cost and an optimal
        time-dependent stochastic policy of shape (H, S, A).

    Raises:
        InfeasibleBudgetError: (a ValueError) if ``budget`` is below the minimum achievable
            expected cost.
    """
    return _solve_lp(_build_lp(model), budget)


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
    """R*(c) on a grid of budgets between the minimum cost and the unconstrained optimum's cost.

    Build with :meth:`compute`; evaluate with ``frontier(c)`` (piecewise-linear interpolation of
    the solved points, a lower bound on the concave R* that is exact at the grid points) or
    :meth:`exact` (re-solves the LP at c).

    Attributes:
        budgets: the grid of budgets, shape (n,), increasing from ``min_cost`` to ``max_cost``.
        values: R* at each budget, shape (n,) (reward units per episode).
        costs: expected cost of the optimal occupancy at each budget, shape (n,) (<= budgets).
        min_cost: the minimum achievable expected episode cost.
        max_cost: the least expected cost at which the unconstrained optimum is attained;
            R*(c) = ``optimum`` for every c >= max_cost.
        optimum: the unconstrained optimal expected return.
        model_id: :func:`fingerprint` of the model the frontier was computed for.
    """

    budgets: np.ndarray
    values: np.ndarray
    costs: np.ndarray
    min_cost: float
    max_cost: float
    optimum: float
    model_id: str
    _model: TabularModel | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def compute(cls, model: TabularModel, n_points: int = 41) -> Frontier:
        """Solve the LP at ``n_points`` evenly spaced budgets in [min_cost, max_cost].

        Args:
            model: the tabular model.
            n_points: number of grid budgets (>= 2), endpoints included. Costs about
                ``n_points + 3`` LP solves.

        Returns:
            The frontier. If ``max_cost - min_cost`` is below ~1e-9 the grid collapses to
            the single budget ``min_cost``.
        """
        if n_points < 2:
            raise ValueError(f"n_points must be >= 2, got {n_points}")
        lp = _build_lp(model)
        lo = _min_cost(lp)
        best, knee = _max_cost(lp)
        c_min = float(lo.budget)  # type: ignore[arg-type]
        c_max = max(float(knee.budget), c_min)  # type: ignore[arg-type]
        if c_max - c_min <= _SLACK * max(1.0, abs(c_max)):
            budgets = np.array([c_min])
            points = [lo]
            c_max = c_min
        else:
            budgets = np.linspace(c_min, c_max, n_points)
            points = [lo] + [_solve_lp(lp, float(b)) for b in budgets[1:-1]] + [knee]
        values = np.array([p.value for p in points])
        # The knee LP's return may fall short of the optimum by the ~1e-9 slack; use the optimum.
        values[-1] = best
        return cls(
            budgets=budgets,
            values=values,
            costs=np.array([p.cost for p in points]),
            min_cost=c_min,
            max_cost=float(c_max),
            optimum=float(best),
            model_id=fingerprint(model),
            _model=model,
        )

    # ------------------------------------------------------------------ evaluation
    def __call__(self, c: float | np.ndarray) -> float | np.ndarray:
        """R*(c) by linear interpolation of the grid (reward units per episode).

        Args:
            c: budget(s), scalar or array of any shape.

        Returns:
            Same shape as ``c``: ``optimum`` for c >= max_cost, nan for c < min_cost (beyond a
            1e-9 relative tolerance), the interpolated value in between.
        """
        c_arr = np.asarray(c, dtype=float)
        out = np.interp(c_arr, self.budgets, self.values)
        out = np.where(c_arr >= self.max_cost, self.optimum, out)
        tol = _SLACK * max(1.0, abs(self.min_cost))
        out = np.where(c_arr < self.min_cost - tol, np.nan, out)
        return float(out) if out.ndim == 0 else out

    def exact(self, c: float, model: TabularModel | None = None) -> float:
        """R*(c) by solving the LP at c directly.

        Args:
            c: the budget (cost units per episode).
            model: the model; needed only for a frontier loaded with :meth:`from_dict` without
                one. Must match :attr:`model_id`.

        Returns:
            The optimal expected return, or nan if c < min_cost.
        """
        m = self._check_model(model)
        if c < self.min_cost - _SLACK * max(1.0, abs(self.min_cost)):
            return float("nan")
        if c >= self.max_cost:
            return self.optimum
        return solve(m, max(float(c), self.min_cost + _SLACK * max(1.0, abs(self.min_cost)))).value

    def solve(self, c: float | None, model: TabularModel | None = None) -> FrontierPoint:
        """The full LP solution (including the policy) at budget c; see :func:`solve`."""
        return solve(self._check_model(model), c)

    def _check_model(self, model: TabularModel | None) -> TabularModel:
        m = model if model is not None else self._model
        if m is None:
            raise ValueError("this Frontier has no model attached; pass model=...")
        if model is not None and fingerprint(model) != self.model_id:
            raise ValueError("the model does not match the one this Frontier was computed for")
        return m

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the model itself is not included, only its fingerprint)."""
        return {
            "budgets": [float(b) for b in self.budgets],
            "values": [float(v) for v in self.values],
            "costs": [float(c) for c in self.costs],
            "min_cost": float(self.min_cost),
            "max_cost": float(self.max_cost),
            "optimum": float(self.optimum),
            "model_id": self.model_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], model: TabularModel | None = None) -> Frontier:
        """Inverse of :meth:`to_dict`.

        Args:
            data: the dict from :meth:`to_dict` (e.g. after a JSON round trip).
            model: optionally the model, attached for :meth:`exact`; it is checked against the
                stored fingerprint.

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
            model_id=str(data["model_id"]),
            _model=model,
        )
