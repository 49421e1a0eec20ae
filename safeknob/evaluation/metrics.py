"""Evaluation metrics for a one-knob blend of a safe and a reckless expert.

An agent evaluated at knob value ``alpha`` over N episodes has a mean episode return ``R`` and a
mean episode cost ``C`` (each with a 95% bootstrap confidence interval, see `bootstrap_ci`).
The experts' statistics ``R_safe, C_safe, R_reck, C_reck`` are held in `ExpertStats`.

Definitions (the contract):

* position ``p = (C - C_safe) / (C_reck - C_safe)``: where the agent's cost sits between the
  experts (0 = safe expert's cost, 1 = reckless expert's cost). Undefined (nan) when the experts'
  costs differ by less than `SPAN_EPS`.
* monotonicity: `spearman` rank correlation between alpha and C over the alpha grid, and
  `violations`, the number of adjacent alpha pairs (sorted by alpha) whose cost goes the wrong way
  (decreases as alpha increases) with non-overlapping confidence intervals.
* calibration error: mean over the grid of ``|p - alpha|``, and its max (`calibration`).
* frontier gap: ``(R*(C) - R) / (R_reck - R_safe)`` for environments with an exact model, where
  ``R*`` is the best achievable return at cost C (`frontier_gap`).
* chord gain: ``(R - R_chord(C)) / (R_reck - R_safe)``, where ``R_chord`` is the straight line
  through ``(C_safe, R_safe)`` and ``(C_reck, R_reck)``, i.e. the return of the coin-flip
  mixture of the experts at the same cost (`chord_gain`).
* cost dispersion: population standard deviation (``ddof=0``) of per-episode cost
  (`cost_std`).

Every public function returns plain Python ``float``/``int`` values. Undefined quantities are
``float('nan')``; they are produced without dividing by zero and without emitting warnings.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

RESULT_COLUMNS = [
    "experiment", "env_id", "method", "alpha", "seed", "episodes",
    "return_mean", "return_lo", "return_hi", "cost_mean", "cost_lo", "cost_hi", "cost_std",
    "position", "chord_gain", "frontier_return", "frontier_gap", "train_seconds",
]  # fmt: skip
"""Columns of ``eval/results.csv`` (one row per method, alpha, seed)."""
SUMMARY_COLUMNS = [
    "experiment", "method", "n_alphas", "n_seeds", "spearman", "spearman_lo", "spearman_hi",
    "violations", "calibration_error", "calibration_error_lo", "calibration_error_hi",
    "calibration_max", "calibration_max_lo", "calibration_max_hi", "chord_gain_mean",
    "chord_gain_mean_lo", "chord_gain_mean_hi", "frontier_gap_mean", "frontier_gap_mean_lo",
    "frontier_gap_mean_hi", "frontier_gap_max", "cost_std_mean", "train_seconds",
]  # fmt: skip
"""Columns of ``eval/summary.csv`` (one row per method): the metrics of ``SEED_METRICS``
(``evaluation.metrics``) as the mean over training seeds with a 95% stratified bootstrap
interval over seeds (``_lo``/``_hi``, ``seed_interval``) and ``n_seeds``; the rest on the
seed-averaged grid (``summarize_method``)."""


__all__ = [
    "SPAN_EPS",
    "ExpertStats",
    "bootstrap_ci",
    "calibration",
    "chord_gain",
    "chord_return",
    "cost_std",
    "frontier_gap",
    "position",
    "position_defined",
    "spearman",
    "summarize_method",
    "violations",
]

#: Expert spans (|C_reck - C_safe|, |R_reck - R_safe|) below this are treated as zero, making
#: the quantities normalized by them undefined (nan).
SPAN_EPS = 1e-9

# Upper bound on the number of resampled elements drawn at once by `bootstrap_ci` (memory cap).
_BOOT_CHUNK_ELEMS = 1 << 22

_NAN = float("nan")


def _as_1d(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _pair(x: ArrayLike, y: ArrayLike, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Two one-dimensional float arrays of the same shape (ValueError otherwise)."""
    a, b = _as_1d(x, x_name), _as_1d(y, y_name)
    if a.shape != b.shape:
        raise ValueError(f"{x_name} and {y_name} differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _nanmean(x: np.ndarray) -> float:
    """Mean ignoring nan; nan (and no warning) when nothing is left."""
    x = x[~np.isnan(x)]
    return float(np.mean(x)) if x.size else _NAN


def _nanmax(x: np.ndarray) -> float:
    """Max ignoring nan; nan (and no warning) when nothing is left."""
    x = x[~np.isnan(x)]
    return float(np.max(x)) if x.size else _NAN


def _span_defined(span: float) -> bool:
    return math.isfinite(span) and abs(span) >= SPAN_EPS


# --------------------------------------------------------------------------------------------
# Per-agent statistics
# --------------------------------------------------------------------------------------------


def bootstrap_ci(
    x: ArrayLike, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of the mean over episodes
    (``scipy.stats.bootstrap``, ``method="percentile"``).

    Resamples the episodes with replacement ``n_boot`` times (drawn from
    ``np.random.default_rng(seed)``, so the result is deterministic for a given seed) and takes
    the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled means. The
    interval is widened, if needed, to contain the sample mean (this only matters for
    floating-point rounding in near-degenerate samples).

    Args:
        x: per-episode values (e.g. returns or costs), shape (N,). Must be finite.
        n_boot: number of bootstrap resamples (>= 1).
        level: confidence level in (0, 1).
        seed: seed for ``np.random.default_rng``.

    Returns:
        ``(mean, lo, hi)`` in the units of ``x``. With a single element or constant input,
        ``lo == hi == mean``.

    Raises:
        ValueError: if ``x`` is empty, not one-dimensional or not finite, or if ``n_boot`` or
            ``level`` is out of range.
    """
    arr = _as_1d(x, "x")
    n = arr.size
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError("bootstrap_ci needs finite values")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")

    mean = float(np.mean(arr))
    if n == 1 or np.ptp(arr) == 0.0:
        return mean, mean, mean

    res = stats.bootstrap(
        (arr,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=level,
        method="percentile",
        vectorized=True,
        batch=max(1, _BOOT_CHUNK_ELEMS // n),
        rng=np.random.default_rng(seed),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return mean, float(min(lo, mean)), float(max(hi, mean))


def cost_std(costs: ArrayLike) -> float:
    """Cost dispersion: population standard deviation (``ddof=0``) of per-episode cost.

    Args:
        costs: per-episode costs, shape (N,).

    Returns:
        The standard deviation, in cost units; nan for empty input (no warning).
    """
    arr = _as_1d(costs, "costs")
    return float(np.std(arr, ddof=0)) if arr.size else _NAN


# --------------------------------------------------------------------------------------------
# Normalization against the experts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpertStats:
    """Mean episode return and cost of the two experts.

    Attributes:
        return_safe: mean episode return of the safe expert (R_safe).
        cost_safe: mean episode cost of the safe expert (C_safe).
        return_reck: mean episode return of the reckless expert (R_reck).
        cost_reck: mean episode cost of the reckless expert (C_reck).
    """

    return_safe: float
    cost_safe: float
    return_reck: float
    cost_reck: float

    def __post_init__(self) -> None:
        for name in ("return_safe", "cost_safe", "return_reck", "cost_reck"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def cost_span(self) -> float:
        """``C_reck - C_safe`` (cost units)."""
        return self.cost_reck - self.cost_safe

    @property
    def return_span(self) -> float:
        """``R_reck - R_safe`` (return units)."""
        return self.return_reck - self.return_safe


def position_defined(experts: ExpertStats) -> bool:
    """Whether the position is defined, i.e. ``|C_reck - C_safe| >= SPAN_EPS`` (and finite)."""
    return _span_defined(experts.cost_span)


def position(cost: float, experts: ExpertStats) -> float:
    """Position of a cost between the experts' costs.

    ``p = (C - C_safe) / (C_reck - C_safe)``; 0 at the safe expert's cost, 1 at the reckless
    expert's. Values outside [0, 1] are returned as is (not clipped).

    Args:
        cost: mean episode cost C of the agent.
        experts: the experts' statistics.

    Returns:
        The position (dimensionless), or nan when ``position_defined(experts)`` is False.
    """
    if not position_defined(experts):
        return _NAN
    return (float(cost) - experts.cost_safe) / experts.cost_span


def chord_return(cost: float, experts: ExpertStats) -> float:
    """Return of the coin-flip mixture of the experts at a given cost.

    ``R_chord(C) = R_safe + p * (R_reck - R_safe)`` with ``p = position(C)``: the straight line
    through ``(C_safe, R_safe)`` and ``(C_reck, R_reck)``. Outside ``[C_safe, C_reck]`` the line
    is extrapolated (no mixture reaches such costs, but the line is still the reference).

    Args:
        cost: mean episode cost C.
        experts: the experts' statistics.

    Returns:
        The chord's return at C (return units), or nan when the experts' costs coincide.
    """
    p = position(cost, experts)
    if math.isnan(p):
        return _NAN
    return experts.return_safe + p * experts.return_span


def chord_gain(ret: float, cost: float, experts: ExpertStats) -> float:
    """Return gained over the coin-flip mixture at the same cost, in units of the return span.

    ``(R - R_chord(C)) / (R_reck - R_safe)``. Positive means better than mixing the experts.

    Args:
        ret: mean episode return R of the agent.
        cost: mean episode cost C of the agent.
        experts: the experts' statistics.

    Returns:
        The chord gain (dimensionless), or nan when the experts' costs or returns coincide
        (within `SPAN_EPS`).
    """
    if not _span_defined(experts.return_span):
        return _NAN
    r_chord = chord_return(cost, experts)
    if math.isnan(r_chord):
        return _NAN
    return (float(ret) - r_chord) / experts.return_span


def frontier_gap(
    ret: float,
    cost: float,
    experts: ExpertStats,
    frontier_fn: Callable[[float], float],
) -> float:
    """Distance below the exact return-cost frontier, in units of the return span.

    ``(R*(C) - R) / (R_reck - R_safe)``; 0 means the agent is on the frontier.

    Args:
        ret: mean episode return R of the agent.
        cost: mean episode cost C of the agent.
        experts: the experts' statistics.
        frontier_fn: ``R*``, mapping a cost budget to the best achievable mean return.

    Returns:
        The frontier gap (dimensionless), or nan when the experts' returns coincide (within
        `SPAN_EPS`); ``frontier_fn`` is then not called.
    """
    if not _span_defined(experts.return_span):
        return _NAN
    return (float(frontier_fn(float(cost))) - float(ret)) / experts.return_span


# --------------------------------------------------------------------------------------------
# Metrics over the alpha grid
# --------------------------------------------------------------------------------------------


def spearman(alphas: ArrayLike, costs: ArrayLike) -> float:
    """Spearman rank correlation between alpha and cost over the grid.

    Pairs where either value is nan are dropped first. Repeated alphas (several seeds per
    alpha) are allowed; ties get average ranks.

    Args:
        alphas: knob values, shape (K,).
        costs: mean episode costs at those alphas, shape (K,).

    Returns:
        The correlation in [-1, 1], or nan with fewer than 2 distinct alphas or constant costs.
        scipy/numpy warnings are suppressed.

    Raises:
        ValueError: if the shapes differ.
    """
    a, c = _pair(alphas, costs, "alphas", "costs")
    keep = ~(np.isnan(a) | np.isnan(c))
    a, c = a[keep], c[keep]
    if np.unique(a).size < 2 or np.unique(c).size < 2:
        return _NAN
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        rho, _ = stats.spearmanr(a, c)
    return float(rho)


def violations(
    alphas: ArrayLike, cost_lo: ArrayLike, cost_hi: ArrayLike, cost_mean: ArrayLike
) -> int:
    """Count monotonicity violations between adjacent alphas.

    After sorting by alpha, the pair ``(i, i + 1)`` is a violation when the cost decreases
    (``cost_mean[i + 1] < cost_mean[i]``) and the confidence intervals do not overlap
    (``cost_hi[i + 1] < cost_lo[i]``, strictly: touching intervals overlap). Comparisons with
    nan are false, so pairs with a nan bound are not counted.

    Args:
        alphas: distinct knob values, shape (K,), any order.
        cost_lo: lower CI bounds of the mean cost, shape (K,).
        cost_hi: upper CI bounds of the mean cost, shape (K,).
        cost_mean: mean costs, shape (K,).

    Returns:
        The number of violating adjacent pairs, in ``[0, K - 1]``.

    Raises:
        ValueError: if the shapes differ or alphas repeat (average per alpha first).
    """
    a = _as_1d(alphas, "alphas")
    lo = _as_1d(cost_lo, "cost_lo")
    hi = _as_1d(cost_hi, "cost_hi")
    mean = _as_1d(cost_mean, "cost_mean")
    if not (a.shape == lo.shape == hi.shape == mean.shape):
        raise ValueError("alphas, cost_lo, cost_hi and cost_mean must have the same shape")
    if np.unique(a).size != a.size:
        raise ValueError("alphas must be distinct; average rows per alpha first")
    order = np.argsort(a, kind="stable")
    lo, hi, mean = lo[order], hi[order], mean[order]
    wrong = (mean[1:] < mean[:-1]) & (hi[1:] < lo[:-1])
    return int(np.count_nonzero(wrong))


def calibration(alphas: ArrayLike, positions: ArrayLike) -> tuple[float, float]:
    """Calibration error of the knob: how far the position is from alpha.

    Args:
        alphas: knob values, shape (K,).
        positions: positions at those alphas, shape (K,); nan entries are ignored.

    Returns:
        ``(mean, max)`` of ``|p - alpha|`` over the grid (dimensionless), or ``(nan, nan)``
        when no position is defined.

    Raises:
        ValueError: if the shapes differ.
    """
    a, p = _pair(alphas, positions, "alphas", "positions")
    err = np.abs(p - a)
    return _nanmean(err), _nanmax(err)


_REQUIRED_COLUMNS = (
    "alpha",
    "cost_mean",
    "cost_lo",
    "cost_hi",
    "position",
    "chord_gain",
    "cost_std",
    "train_seconds",
)
_AVERAGED_COLUMNS = (
    "cost_mean",
    "cost_lo",
    "cost_hi",
    "position",
    "chord_gain",
    "frontier_gap",
    "cost_std",
)


def summarize_method(df: pd.DataFrame) -> dict[str, Any]:
    """Summarize one method's evaluation rows over the alpha grid.

    Rows are first averaged per alpha (over seeds; nan entries skipped, CI bounds averaged like
    the other columns), then the grid metrics are computed on the per-alpha averages.

    Args:
        df: one method's rows with columns ``alpha, cost_mean, cost_lo, cost_hi, position,
            chord_gain, cost_std, train_seconds`` and optionally ``frontier_gap`` (absent or all
            nan for environments without an exact model). Rows with a nan alpha are ignored.

    Returns:
        A dict of plain Python values:

        * ``n_alphas`` (int): number of distinct alphas.
        * ``spearman`` (float): `spearman` of alpha vs. averaged cost_mean.
        * ``violations`` (int): `violations` on the averaged cost_mean/cost_lo/cost_hi.
        * ``calibration_error``, ``calibration_max`` (float): `calibration` of the averaged
          positions.
        * ``chord_gain_mean`` (float): mean over the grid of the averaged chord gain.
        * ``frontier_gap_mean``, ``frontier_gap_max`` (float): mean and max over the grid of
          the averaged frontier gap; nan if absent or all nan.
        * ``cost_std_mean`` (float): mean over the grid of the averaged cost dispersion.
        * ``train_seconds`` (float): total over all rows (seeds and alphas).

        Means skip nan and are nan when nothing is left.

    Raises:
        ValueError: if a required column is missing.
    """
    missing = [name for name in _REQUIRED_COLUMNS if name not in df.columns]
    if missing:
        raise ValueError(f"summarize_method: missing columns {missing}")
    data = df.copy()
    if "frontier_gap" not in data.columns:
        data["frontier_gap"] = _NAN
    data = data.loc[~data["alpha"].isna()].copy()
    for name in ("alpha", *_AVERAGED_COLUMNS, "train_seconds"):
        data[name] = pd.to_numeric(data[name], errors="coerce").astype(float)

    per_alpha = data.groupby("alpha", sort=True)[list(_AVERAGED_COLUMNS)].mean()
    alphas = per_alpha.index.to_numpy(dtype=float)

    def col(name: str) -> np.ndarray:
        return per_alpha[name].to_numpy(dtype=float)

    cal_mean, cal_max = calibration(alphas, col("position"))
    return {
        "n_alphas": int(alphas.size),
        "spearman": spearman(alphas, col("cost_mean")),
        "violations": violations(alphas, col("cost_lo"), col("cost_hi"), col("cost_mean")),
        "calibration_error": cal_mean,
        "calibration_max": cal_max,
        "chord_gain_mean": _nanmean(col("chord_gain")),
        "frontier_gap_mean": _nanmean(col("frontier_gap")),
        "frontier_gap_max": _nanmax(col("frontier_gap")),
        "cost_std_mean": _nanmean(col("cost_std")),
        "train_seconds": float(data["train_seconds"].sum()),
    }


def episode_stats(
    returns: np.ndarray, costs: np.ndarray, seed: int = 0, n_boot: int = 2000
) -> dict[str, float]:
    """Mean and 95% bootstrap CI of episode return and cost, plus the cost's population std.

    Args:
        returns: per-episode returns, shape (episodes,).
        costs: per-episode costs, shape (episodes,).
        seed: bootstrap seed (the same for both, as everywhere in safeknob).
        n_boot: bootstrap resamples.

    Returns:
        ``return_mean/lo/hi``, ``cost_mean/lo/hi`` and ``cost_std`` as floats.
    """
    r = bootstrap_ci(np.asarray(returns, dtype=float), n_boot=n_boot, seed=seed)
    c = bootstrap_ci(np.asarray(costs, dtype=float), n_boot=n_boot, seed=seed)
    return {
        "return_mean": r[0],
        "return_lo": r[1],
        "return_hi": r[2],
        "cost_mean": c[0],
        "cost_lo": c[1],
        "cost_hi": c[2],
        "cost_std": float(np.std(np.asarray(costs, dtype=float))),
    }


# --------------------------------------------------------------------------------------------
# Across training seeds
# --------------------------------------------------------------------------------------------

SEED_METRICS = (
    "spearman",
    "calibration_error",
    "calibration_max",
    "frontier_gap_mean",
    "chord_gain_mean",
)
"""Metrics summarized over training seeds (mean over seeds and a 95% interval)."""

_GRID_COLUMNS = ("cost_mean", "position", "chord_gain", "frontier_gap")


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks along axis -2 (the alpha axis), as Spearman uses them."""
    return stats.rankdata(x, axis=-2)


def _grid_metrics(alphas: np.ndarray, grids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-replicate grid metrics, vectorized. ``grids[name]`` has shape (..., A, S): values
    at each of the A alphas for S seed replicates; returns arrays of shape (..., S)."""
    cost = grids["cost_mean"]
    ra = _rank(np.broadcast_to(alphas[:, None], cost.shape[-2:]).astype(float))
    rc = _rank(cost)
    ra = ra - ra.mean(axis=-2, keepdims=True)
    rc = rc - rc.mean(axis=-2, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=-2) * (rc * rc).sum(axis=-2))
    with np.errstate(all="ignore"):
        rho = np.where(den > 0, (ra * rc).sum(axis=-2) / np.where(den > 0, den, 1.0), np.nan)
        err = np.abs(grids["position"] - alphas[:, None])
        out = {
            "spearman": rho,
            "calibration_error": _nanreduce(err, np.nanmean),
            "calibration_max": _nanreduce(err, np.nanmax),
            "frontier_gap_mean": _nanreduce(grids["frontier_gap"], np.nanmean),
            "chord_gain_mean": _nanreduce(grids["chord_gain"], np.nanmean),
        }
    return out


def _nanreduce(x: np.ndarray, fn: Callable[..., np.ndarray]) -> np.ndarray:
    """``fn`` over the alpha axis (-2), nan where a column is all nan, without warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(fn(x, axis=-2), dtype=float)


def seed_interval(
    df: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Each of `SEED_METRICS` as the mean over training seeds of the per-seed metric, with a
    stratified bootstrap interval over seeds.

    The per-seed metric is computed on that seed's agents over the alpha grid (as
    `summarize_method` does for one seed). The interval is a percentile bootstrap
    (``scipy.stats.bootstrap``) stratified by alpha: each resample draws, independently at
    every alpha, ``S`` of the ``S`` seeds' agents with replacement, forms ``S`` replicate
    grids and averages their metric (rliable's stratified bootstrap, Agarwal et al. 2021,
    with the alphas as strata). Not an average of per-seed interval bounds.

    Args:
        df: one method's rows (``alpha``, ``seed``, ``cost_mean``, ``position``,
            ``chord_gain``, optional ``frontier_gap``).
        n_boot: bootstrap resamples.
        level: confidence level.
        seed: seed of the resampling (``np.random.default_rng``).

    Returns:
        ``n_seeds`` (seeds with an agent at every alpha of the grid) and, per metric ``m``,
        ``m`` (mean over seeds), ``m_lo``, ``m_hi``. With one seed (or identical per-seed
        values) ``lo == hi == mean``; nan where the metric is undefined.
    """
    data = df.loc[~df["alpha"].isna()].copy()
    if "frontier_gap" not in data.columns:
        data["frontier_gap"] = _NAN
    for name in ("alpha", "seed", *_GRID_COLUMNS):
        data[name] = pd.to_numeric(data[name], errors="coerce").astype(float)
    # Average duplicate (alpha, seed) rows, then keep seeds present at every alpha.
    table = data.groupby(["alpha", "seed"], sort=True)[list(_GRID_COLUMNS)].mean()
    wide = {c: table[c].unstack("seed") for c in _GRID_COLUMNS}
    complete = wide["cost_mean"].notna().all(axis=0)
    seeds = complete.index[complete.to_numpy()]
    out: dict[str, Any] = {"n_seeds": int(len(seeds))}
    if len(seeds) == 0:
        for m in SEED_METRICS:
            out[m] = out[f"{m}_lo"] = out[f"{m}_hi"] = _NAN
        return out
    alphas = wide["cost_mean"].index.to_numpy(dtype=float)
    grids = {c: wide[c][seeds].to_numpy(dtype=float) for c in _GRID_COLUMNS}  # (A, S)
    per_seed = _grid_metrics(alphas, grids)
    n_s = len(seeds)

    def statistic_for(metric: str):
        def stat(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
            # idx[a]: resampled seed indices at alpha a, shape (..., S).
            ix = np.stack([np.asarray(i, dtype=np.int64) for i in idx], axis=-2)  # (..., A, S)
            rows = np.arange(len(alphas))[:, None]
            g = {c: v[rows, ix] for c, v in grids.items()}
            per_replicate = _grid_metrics(alphas, g)[metric]  # (..., S)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return np.nanmean(per_replicate, axis=-1)

        return stat

    strata = tuple(np.arange(n_s, dtype=float) for _ in alphas)
    for m in SEED_METRICS:
        vals = per_seed[m]
        mean = _nanmean(vals)
        out[m] = mean
        finite = vals[np.isfinite(vals)]
        if math.isnan(mean) or finite.size < 2 or np.ptp(finite) == 0.0:
            out[f"{m}_lo"] = out[f"{m}_hi"] = mean
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                strata,
                statistic_for(m),
                n_resamples=n_boot,
                confidence_level=level,
                method="percentile",
                vectorized=True,
                paired=False,
                rng=np.random.default_rng(seed),
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        out[f"{m}_lo"] = min(lo, mean) if math.isfinite(lo) else _NAN
        out[f"{m}_hi"] = max(hi, mean) if math.isfinite(hi) else _NAN
    return out


def separated(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two intervals ``(lo, hi)`` do not overlap (nan bounds: not separated)."""
    (alo, ahi), (blo, bhi) = a, b
    if any(math.isnan(x) for x in (alo, ahi, blo, bhi)):
        return False
    return ahi < blo or bhi < alo
