"""The report's figures of an evaluation (``eval/results.csv`` as a DataFrame): return vs.
cost with the exact frontier, and the knob's calibration."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from safeknob.envs.drawing import new_figure
from safeknob.envs.frontier import Frontier
from safeknob.evaluation.metrics import ExpertStats, position

COST_LABEL = "mean episode cost (hazard steps)"
RETURN_LABEL = "mean episode return"
METHOD_MARKERS = ("o", "^", "s", "v", "D", "p", "h", "<", ">", "8")
ALPHA_CMAP = "viridis"
SAFE_COLOR = "tab:green"
RECK_COLOR = "tab:red"
#: knob.png draws positions in this range; agents outside it are clipped, marked and captioned.
KNOB_RANGE = (-0.5, 1.5)


# ---------------------------------------------------------------------------- results rows
def expert_row(results: pd.DataFrame, role: str) -> pd.Series | None:
    """The ``expert-<role>`` row of ``results`` or None."""
    rows = results[results.method == f"expert-{role}"]
    return None if rows.empty else rows.iloc[0]


def expert_stats(results: pd.DataFrame) -> ExpertStats:
    """The experts' mean return and cost from ``results`` (nan where an expert is missing)."""
    vals = []
    for role in ("safe", "reckless"):
        row = expert_row(results, role)
        vals += [math.nan, math.nan] if row is None else [row.return_mean, row.cost_mean]
    return ExpertStats(float(vals[0]), float(vals[1]), float(vals[2]), float(vals[3]))


def agent_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of blended agents (every row but the experts')."""
    return results[~results.method.astype(str).str.startswith("expert-")]


def method_names(results: pd.DataFrame) -> list[str]:
    """The blended methods in ``results``, sorted."""
    return sorted(agent_rows(results).method.astype(str).unique())


def training_seeds(agents: pd.DataFrame) -> int:
    """The number of training seeds behind the blended agents ``agents``: the most any method
    has (1 without a ``seed`` column or agents)."""
    if agents.empty or "seed" not in agents.columns:
        return 1
    return max(1, int(agents.groupby(agents.method.astype(str))["seed"].nunique().max()))


def per_alpha(df: pd.DataFrame) -> pd.DataFrame:
    """One row per alpha (seeds averaged), sorted by alpha."""
    cols = ["return_mean", "return_lo", "return_hi", "cost_mean", "cost_lo", "cost_hi"]
    return df.groupby("alpha", as_index=False)[cols].mean().sort_values("alpha")


# ---------------------------------------------------------------------------- frontier.png
def plot_frontier(results: pd.DataFrame, frontier: Frontier | None, name: str) -> Figure:
    """Return vs. cost: frontier (if any), experts' chord, experts and every agent."""
    fig = new_figure()
    ax = fig.add_subplot()
    ex = expert_stats(results)
    agents = agent_rows(results)
    norm = Normalize(0.0, 1.0)
    cmap = _cmap(ALPHA_CMAP)

    # A window around the agents: the frontier itself spans far more (it dives near cost 0).
    c_lo = float(np.nanmin(results.cost_lo.to_numpy(float)))
    c_hi = float(np.nanmax(results.cost_hi.to_numpy(float)))
    span = max(c_hi - c_lo, 0.1 * max(abs(c_hi), 1.0))
    x0, x1 = c_lo - 0.1 * span, c_hi + 0.1 * span
    r_lo = float(np.nanmin(results.return_lo.to_numpy(float)))
    r_hi = float(np.nanmax(results.return_hi.to_numpy(float)))

    if frontier is not None:
        inside = frontier.costs[(frontier.costs > x0) & (frontier.costs < x1)]
        cs = np.unique(np.concatenate([[x0, x1, frontier.min_cost], inside]))
        cs = cs[(cs >= x0) & (cs <= x1)]
        rs = np.asarray(frontier(cs), dtype=float)
        ax.plot(cs, rs, color="black", lw=1.8, label="exact frontier R*(C)", zorder=2)
        if np.isfinite(rs).any():
            r_hi = max(r_hi, float(np.nanmax(rs)))
    if all(math.isfinite(v) for v in (ex.cost_safe, ex.return_safe, ex.cost_reck, ex.return_reck)):
        ax.plot(
            [ex.cost_safe, ex.cost_reck],
            [ex.return_safe, ex.return_reck],
            ls="--",
            color="0.45",
            lw=1.3,
            label="chord: coin flip between experts",
            zorder=2,
        )

    for i, method in enumerate(method_names(results)):
        df = agents[agents.method == method].sort_values("alpha")
        marker = METHOD_MARKERS[i % len(METHOD_MARKERS)]
        mean = per_alpha(df)
        ax.plot(mean.cost_mean, mean.return_mean, color="0.6", lw=0.8, zorder=3)
        for _, r in df.iterrows():
            color = cmap(norm(r.alpha))
            ax.errorbar(
                r.cost_mean,
                r.return_mean,
                xerr=[[max(r.cost_mean - r.cost_lo, 0)], [max(r.cost_hi - r.cost_mean, 0)]],
                yerr=[[max(r.return_mean - r.return_lo, 0)], [max(r.return_hi - r.return_mean, 0)]],
                fmt="none",
                ecolor=color,
                elinewidth=1.2,
                capsize=2.5,
                zorder=4,
            )
        ax.scatter(
            df.cost_mean,
            df.return_mean,
            c=df.alpha,
            cmap=cmap,
            norm=norm,
            marker=marker,
            s=55,
            edgecolors="black",
            linewidths=0.6,
            zorder=5,
        )
        ax.plot([], [], marker=marker, ls="", color="0.75", mec="black", ms=7, label=method)

    for role, marker, color, label in (
        ("safe", "*", SAFE_COLOR, "safe expert"),
        ("reckless", "X", RECK_COLOR, "reckless expert"),
    ):
        row = expert_row(results, role)
        if row is None:
            continue
        ax.errorbar(
            row.cost_mean,
            row.return_mean,
            xerr=[[max(row.cost_mean - row.cost_lo, 0)], [max(row.cost_hi - row.cost_mean, 0)]],
            yerr=[
                [max(row.return_mean - row.return_lo, 0)],
                [max(row.return_hi - row.return_mean, 0)],
            ],
            fmt="none",
            ecolor=color,
            capsize=3,
            zorder=6,
        )
        ax.plot(
            row.cost_mean,
            row.return_mean,
            marker=marker,
            ms=15 if marker == "*" else 12,
            color=color,
            mec="black",
            mew=0.8,
            ls="",
            label=label,
            zorder=7,
        )
        ax.annotate(
            label,
            (row.cost_mean, row.return_mean),
            textcoords="offset points",
            xytext=(-10, -20) if role == "reckless" else (12, -16),
            ha="right" if role == "reckless" else "left",
            fontsize=9,
            color=color,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            zorder=8,
        )

    y_span = max(r_hi - r_lo, 1e-3)
    ax.set_xlim(x0, x1)
    ax.set_ylim(r_lo - 0.25 * y_span, r_hi + 0.12 * y_span)
    ax.set_xlabel(COST_LABEL)
    ax.set_ylabel(RETURN_LABEL)
    n_seeds = training_seeds(agents)
    seeds = f"; every agent of {n_seeds} training seeds, line: their mean" if n_seeds > 1 else ""
    ax.set_title(f"{name}: return vs. cost (95% CIs{seeds})", **({"fontsize": 10} if seeds else {}))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8.5, framealpha=0.9)
    sm = _scalar_mappable(cmap, norm)
    fig.colorbar(sm, ax=ax, label="alpha")
    return fig


def _cmap(name: str):
    """The colormap without its palest top end (light yellow error bars vanish on white)."""
    return ListedColormap(colormaps[name](np.linspace(0.0, 0.88, 256)), name=f"{name}-dark")


def _scalar_mappable(cmap, norm):
    sm = ScalarMappable(norm=norm, cmap=cmap)
    sm.set_array([])
    return sm


# ---------------------------------------------------------------------------- knob.png
def _knob_positions(results: pd.DataFrame, method: str, ex: ExpertStats):
    """One method's alphas, shape (A,), its mean position over training seeds at each alpha
    and that position's bounds: the range over seeds of each seed's agent's position when the
    method has several seeds, else the position's 95% CI (from the cost's)."""
    agents = agent_rows(results)
    df = agents[agents.method == method]
    g = per_alpha(df)
    p = np.array([position(c, ex) for c in g.cost_mean])
    if training_seeds(df) > 1:
        pos = df.assign(p=[position(c, ex) for c in df.cost_mean])
        spread = pos.groupby("alpha")["p"].agg(["min", "max"]).reindex(g.alpha)
        return g.alpha.to_numpy(), p, spread["min"].to_numpy(float), spread["max"].to_numpy(float)
    a = np.array([position(c, ex) for c in g.cost_lo])
    b = np.array([position(c, ex) for c in g.cost_hi])
    return g.alpha.to_numpy(), p, np.fmin(a, b), np.fmax(a, b)  # a reversed span swaps bounds


def knob_outliers(results: pd.DataFrame) -> list[tuple[str, float, float]]:
    """Agents whose position lies outside ``KNOB_RANGE``: ``(method, alpha, position)``."""
    ex = expert_stats(results)
    out = []
    for method in method_names(results):
        alphas, p, _, _ = _knob_positions(results, method, ex)
        for a, x in zip(alphas, p, strict=True):
            if np.isfinite(x) and not KNOB_RANGE[0] <= x <= KNOB_RANGE[1]:
                out.append((method, float(a), float(x)))
    return out


def plot_knob(results: pd.DataFrame, name: str) -> Figure:
    """Requested alpha vs. realized position per method, with the identity line.

    With one training seed a method's bars are the 95% CI of its position (from the cost's);
    with several, its marker is the mean position over seeds, a dot shows each seed's agent
    and the bars their range (a range, not an interval: 3 seeds give no useful 95% CI per
    alpha). Positions outside ``KNOB_RANGE`` (one badly calibrated method would squash every other
    curve to a line) are drawn at the edge of the range with an arrow pointing off the plot
    and their value; :func:`knob_outliers` lists them for the caption."""
    fig = new_figure()
    ax = fig.add_subplot()
    ex = expert_stats(results)
    methods = method_names(results)
    agents = agent_rows(results)
    n_seeds = training_seeds(agents)
    ax.plot([0, 1], [0, 1], ls="--", color="0.4", lw=1.2, label="ideal: position = alpha")
    for y in (0.0, 1.0):
        ax.axhline(y, color="0.85", lw=0.8, zorder=0)
    ax.text(1.04, 0.0, "safe\nexpert", va="center", fontsize=8, color=SAFE_COLOR)
    ax.text(1.04, 1.0, "reckless\nexpert", va="center", fontsize=8, color=RECK_COLOR)
    ok = clipped = False
    width = 0.012
    bottom, top = KNOB_RANGE
    for i, method in enumerate(methods):
        alphas, p, lo, hi = _knob_positions(results, method, ex)
        if np.isfinite(p).any():
            ok = True
        x = alphas + (i - (len(methods) - 1) / 2) * width
        pc, loc, hic = (np.clip(v, bottom, top) for v in (p, lo, hi))
        color = f"C{i}"
        df = agents[agents.method == method]
        if training_seeds(df) > 1:  # each training seed's agent
            ax.scatter(
                df.alpha.to_numpy(float) + (i - (len(methods) - 1) / 2) * width,
                np.clip([position(c, ex) for c in df.cost_mean], bottom, top),
                s=12,
                color=color,
                alpha=0.45,
                zorder=2,
                label="_nolegend_",
            )
        ax.errorbar(
            x,
            pc,
            yerr=[np.clip(pc - loc, 0, None), np.clip(hic - pc, 0, None)],
            marker=METHOD_MARKERS[i % len(METHOD_MARKERS)],
            color=color,
            ms=7,
            lw=1.4,
            capsize=3,
            label=method,
        )
        for xi, yi in zip(x, p, strict=True):
            if not np.isfinite(yi) or bottom <= yi <= top:
                continue
            clipped = True
            edge, back = (top, -0.22) if yi > top else (bottom, 0.22)
            ax.annotate(
                f"{yi:.2f}",
                xy=(xi, edge + (0.08 if yi > top else -0.08)),
                xytext=(xi, edge + back),
                ha="center",
                va="center",
                fontsize=8,
                color=color,
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.2},
                annotation_clip=False,
            )
    if methods and not ok:
        ax.text(
            0.5,
            0.5,
            "position undefined: the experts' costs are equal",
            ha="center",
            transform=ax.transAxes,
            color="tab:red",
        )
    if clipped:
        ax.set_ylim(bottom - 0.1, top + 0.1)
        for y in KNOB_RANGE:
            ax.axhline(y, color="0.6", lw=0.8, ls=":", zorder=0)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("requested alpha")
    ax.set_ylabel("realized position  (C - C_safe) / (C_reck - C_safe)")
    spread = (
        f"mean over {n_seeds} training seeds; dots: each seed, bars: their range"
        if n_seeds > 1
        else "95% CIs of cost"
    )
    if n_seeds > 1 and any(training_seeds(agents[agents.method == m]) == 1 for m in methods):
        spread += "; one-seed methods: 95% CIs of cost"
    title = f"{name}: knob calibration" + (f"\n({spread})" if n_seeds > 1 else f" ({spread})")
    if clipped:
        title += f"\npositions outside [{bottom:g}, {top:g}] clipped; arrows give the value"
    ax.set_title(title, **({"fontsize": 10} if n_seeds > 1 else {}))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    return fig
