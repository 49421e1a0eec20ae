"""Stage ``report``: figures and a self-contained summary of an evaluated experiment.

Reads ``eval/results.csv`` and ``eval/summary.csv`` and writes ``report/`` atomically:

* ``frontier.png``: mean episode cost vs. mean episode return of every agent (95% CIs), the
  experts, the chord between them and, where the env has an exact model, the exact frontier.
* ``knob.png``: requested alpha vs. realized position, per method, against the identity line.
* ``trajectories.png``: state-visitation heat maps (HazardGrid) or paths (HazardNav) of the
  experts and of one method at alpha 0.25, 0.5 and 0.75; skipped (and said so) for other envs.
* ``report.md`` and ``report.html``: the findings, tables, figures and the experiment config;
  the HTML embeds its images, so it is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize, PowerNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from safeknob.artifacts import ArtifactError, atomic_dir
from safeknob.config import RunConfig
from safeknob.envs.frontier import COIN_FLIP_ALPHAS, Frontier
from safeknob.envs.hazard_grid import HazardGridEnv
from safeknob.envs.hazard_nav import HazardNavEnv
from safeknob.evaluation.metrics import ExpertStats, position
from safeknob.evaluation.rollout import Agent, PolicyAgent, Rollouts, rollout
from safeknob.methods import BlendContext, load_blend
from safeknob.rl.training import env_factory
from safeknob.stages import evaluate, yardstick
from safeknob.stages.common import console, toml_dumps
from safeknob.store import SUMMARY_COLUMNS, ExperimentStore

STAGE = "report"
DPI = 120
COST_LABEL = "mean episode cost (hazard steps)"
RETURN_LABEL = "mean episode return"
METHOD_MARKERS = ("o", "^", "s", "v", "D", "p", "h", "<", ">", "8")
ALPHA_CMAP = "viridis"
SAFE_COLOR = "tab:green"
RECK_COLOR = "tab:red"
TRAJECTORY_ALPHAS = (0.25, 0.5, 0.75)
GRID_EPISODES = 100
NAV_EPISODES = 20
SUMMARY_TABLE_COLUMNS = [
    c for c in SUMMARY_COLUMNS if c != "experiment" and not c.endswith(("_lo", "_hi"))
]
"""The summary table (the intervals over training seeds stay in ``summary.csv``)."""
INT_COLUMNS = {"n_alphas", "violations", "n_seeds"}
#: knob.png draws positions in this range; agents outside it are clipped, marked and captioned.
KNOB_RANGE = (-0.5, 1.5)


# ---------------------------------------------------------------------------- entry point
def run(rc: RunConfig) -> Path:
    """Write ``report/`` from the evaluation results; returns the path of ``report.md``."""
    results, summary = ExperimentStore(rc).results()
    frontier = evaluate.exact_frontier(rc)
    exp = rc.experiment
    experts = expert_stats(results)

    with atomic_dir(rc.paths.report) as tmp:
        _save(plot_frontier(results, frontier, exp.name), tmp / "frontier.png")
        _save(plot_knob(results, exp.name), tmp / "knob.png")
        try:
            fig, traj_note = trajectory_figure(rc)
        except ArtifactError as exc:
            fig, traj_note = (
                None,
                f"Trajectory figure skipped: the agents cannot be loaded ({exc}).",
            )
        if fig is not None:
            _save(fig, tmp / "trajectories.png")
        doc = build_document(rc, results, summary, frontier, experts, traj_note, fig is not None)
        (tmp / "report.md").write_text(doc.markdown())
        images = {p.name: p.read_bytes() for p in sorted(tmp.glob("*.png"))}
        (tmp / "report.html").write_text(doc.html(images))
    out = rc.paths.report / "report.md"
    if not rc.quiet:
        console.print(f"report written to {out}", markup=False)
    return out


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)


def _figure(width: float = 7.0, height: float = 5.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# ---------------------------------------------------------------------------- data helpers
def _expert_row(results: pd.DataFrame, role: str) -> pd.Series | None:
    rows = results[results.method == f"expert-{role}"]
    return None if rows.empty else rows.iloc[0]


def expert_stats(results: pd.DataFrame) -> ExpertStats:
    """The experts' mean return and cost from ``results`` (nan where an expert is missing)."""
    vals = []
    for role in ("safe", "reckless"):
        row = _expert_row(results, role)
        vals += [math.nan, math.nan] if row is None else [row.return_mean, row.cost_mean]
    return ExpertStats(float(vals[0]), float(vals[1]), float(vals[2]), float(vals[3]))


def _agents(results: pd.DataFrame) -> pd.DataFrame:
    return results[~results.method.astype(str).str.startswith("expert-")]


def _methods(results: pd.DataFrame) -> list[str]:
    return sorted(_agents(results).method.astype(str).unique())


def _per_alpha(df: pd.DataFrame) -> pd.DataFrame:
    """One row per alpha (seeds averaged), sorted by alpha."""
    cols = ["return_mean", "return_lo", "return_hi", "cost_mean", "cost_lo", "cost_hi"]
    return df.groupby("alpha", as_index=False)[cols].mean().sort_values("alpha")


# ---------------------------------------------------------------------------- frontier.png
def plot_frontier(results: pd.DataFrame, frontier: Frontier | None, name: str) -> Figure:
    """Return vs. cost: frontier (if any), experts' chord, experts and every agent."""
    fig = _figure()
    ax = fig.add_subplot()
    ex = expert_stats(results)
    agents = _agents(results)
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

    for i, method in enumerate(_methods(results)):
        df = agents[agents.method == method].sort_values("alpha")
        marker = METHOD_MARKERS[i % len(METHOD_MARKERS)]
        mean = _per_alpha(df)
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
        row = _expert_row(results, role)
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
    ax.set_title(f"{name}: return vs. cost (95% CIs)")
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
    """Per-alpha (seeds averaged) alphas, positions and their CI bounds of one method."""
    g = _per_alpha(_agents(results)[_agents(results).method == method])
    p = np.array([position(c, ex) for c in g.cost_mean])
    a = np.array([position(c, ex) for c in g.cost_lo])
    b = np.array([position(c, ex) for c in g.cost_hi])
    return g.alpha.to_numpy(), p, np.fmin(a, b), np.fmax(a, b)  # a reversed span swaps bounds


def knob_outliers(results: pd.DataFrame) -> list[tuple[str, float, float]]:
    """Agents whose position lies outside ``KNOB_RANGE``: ``(method, alpha, position)``."""
    ex = expert_stats(results)
    out = []
    for method in _methods(results):
        alphas, p, _, _ = _knob_positions(results, method, ex)
        for a, x in zip(alphas, p, strict=True):
            if np.isfinite(x) and not KNOB_RANGE[0] <= x <= KNOB_RANGE[1]:
                out.append((method, float(a), float(x)))
    return out


def plot_knob(results: pd.DataFrame, name: str) -> Figure:
    """Requested alpha vs. realized position per method, with the identity line.

    Positions outside ``KNOB_RANGE`` (one badly calibrated method would squash every other
    curve to a line) are drawn at the edge of the range with an arrow pointing off the plot
    and their value; :func:`knob_outliers` lists them for the caption."""
    fig = _figure()
    ax = fig.add_subplot()
    ex = expert_stats(results)
    methods = _methods(results)
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
    title = f"{name}: knob calibration (95% CIs of cost)"
    if clipped:
        title += f"\npositions outside [{bottom:g}, {top:g}] clipped; arrows give the value"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    return fig


# ---------------------------------------------------------------------------- trajectories.png
def trajectory_figure(rc: RunConfig) -> tuple[Figure | None, str]:
    """The trajectory figure and a caption, or (None, why it was skipped).

    Raises:
        ArtifactError: an expert or blend cannot be loaded.
    """
    make = env_factory(rc.experiment.env)
    env = make()
    base = env.unwrapped
    env.close()
    if not isinstance(base, HazardGridEnv | HazardNavEnv):
        return None, (
            f"Trajectory figure skipped: it is drawn for HazardGrid and HazardNav only, and "
            f"this experiment's env is `{rc.experiment.env.id}`."
        )
    grid = isinstance(base, HazardGridEnv)
    agents, method = trajectory_agents(rc)
    episodes = GRID_EPISODES if grid else NAV_EPISODES
    seed = rc.experiment.eval.seed
    runs = [
        (label, rollout(agent, make, episodes, seed=seed, record=True)) for label, agent in agents
    ]
    title = (
        f"{rc.experiment.name}: "
        + ("state visitation" if grid else "paths")
        + f" ({episodes} episodes per agent)"
    )
    if isinstance(base, HazardGridEnv):
        fig = plot_grid_visits(base, runs, title)
    else:
        fig = plot_nav_paths(base, runs, title)
    what = "State visitation (mean visits per episode)" if grid else f"Paths of {episodes} episodes"
    who = (
        f"the two experts and `{method}` at alpha "
        if method
        else "the two experts (no blends found)"
    )
    if method:
        who += ", ".join(lbl.split("alpha=")[-1] for lbl, _ in agents if "alpha=" in lbl)
    return fig, f"{what} of {who}; evaluation seed {seed}."


def _blend_method(rc: RunConfig) -> tuple[str | None, list[Path]]:
    """The method shown in the trajectory figure and its alpha folders."""
    root = rc.paths.blends
    found: dict[str, list[Path]] = {}
    if root.is_dir():
        for m in sorted(root.iterdir()):
            if m.is_dir() and not m.name.startswith("."):
                folders = sorted(
                    p for p in m.iterdir() if p.is_dir() and p.name.startswith("alpha-")
                )
                if folders:
                    found[m.name] = folders
    if not found:
        return None, []
    default = rc.experiment.blend.method
    names = [default] if default in found else [n for n in found if n.startswith(default + "-")]
    name = names[0] if names else next(iter(found))
    return name, found[name]


def nearest_alphas(available: Sequence[float], targets: Sequence[float] = TRAJECTORY_ALPHAS):
    """For each target the nearest available alpha (interior ones preferred), deduplicated."""
    interior = [a for a in available if 0.0 < a < 1.0] or list(available)
    out: list[float] = []
    for t in targets:
        if not interior:
            break
        a = min(interior, key=lambda x: (abs(x - t), x))
        if a not in out:
            out.append(a)
    return sorted(out)


def trajectory_agents(rc: RunConfig) -> tuple[list[tuple[str, Agent]], str | None]:
    """[(label, agent)]: safe expert, the picked alphas of one method, reckless expert."""
    store = ExperimentStore(rc)

    def expert(role: str) -> Agent:
        model, meta = store.expert(role)
        return PolicyAgent(model, bool(meta.get("deterministic", True)))

    out: list[tuple[str, Agent]] = [("safe expert", expert("safe"))]
    method, folders = _blend_method(rc)
    if method is not None:
        by_alpha: dict[float, Path] = {}
        for f in folders:
            try:
                by_alpha[round(float(f.name.removeprefix("alpha-")), 6)] = f
            except ValueError:
                continue
        ctx = BlendContext.create(rc)
        for a in nearest_alphas(sorted(by_alpha)):
            _, meta, agent = load_blend(ctx, by_alpha[a])
            out.append((f"{meta.get('method', method)} alpha={a:g}", agent))
    out.append(("reckless expert", expert("reckless")))
    return out, method


def _panel_title(label: str, res: Rollouts) -> str:
    return f"{label}\ncost {res.costs.mean():.2f}, return {res.returns.mean():.2f}"


def plot_grid_visits(
    env: HazardGridEnv, runs: Sequence[tuple[str, Rollouts]], title: str = "state visitation"
) -> Figure:
    """One heat map of mean visits per episode per agent, over the map."""
    rows, cols = env.grid.shape
    maps = []
    for _, res in runs:
        counts = np.zeros((rows, cols))
        for ep in res.episodes:
            for s in np.asarray(ep.obs).reshape(-1):
                r, c = env.cell_of(int(s))
                counts[r, c] += 1
        maps.append(counts / max(len(res.episodes), 1))
    vmax = max((float(m.max()) for m in maps), default=1.0) or 1.0
    n = max(len(runs), 1)
    panel_w = 2.9  # inches per panel; the height follows the map's aspect ratio
    img_h = min(max(panel_w * rows / cols, 0.9), 3.6)
    fig = _figure(panel_w * n + 1.2, img_h + 1.5)
    axes = fig.subplots(1, n, squeeze=False)[0]
    norm = PowerNorm(0.5, vmin=0.0, vmax=vmax)
    im = None
    walls = env.grid == "#"
    for ax, (label, res), m in zip(axes, runs, maps, strict=False):
        im = ax.imshow(np.ma.masked_where(walls, m), cmap="Blues", norm=norm, origin="upper")
        for r, c in np.argwhere(walls):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color="0.25"))
        for r, c in np.argwhere(env.grid == "H"):
            ax.add_patch(
                Rectangle(
                    (c - 0.5, r - 0.5), 1, 1, fill=False, ec="tab:red", hatch="///", lw=0, alpha=0.7
                )
            )
            ax.add_patch(Rectangle((c - 0.45, r - 0.45), 0.9, 0.9, fill=False, ec="tab:red", lw=1))
        for ch, color in (("S", "tab:blue"), ("G", "tab:green")):
            r, c = np.argwhere(env.grid == ch)[0]
            ax.text(
                c,
                r,
                ch,
                ha="center",
                va="center",
                fontsize=11,
                fontweight="bold",
                color="white",
                bbox={"boxstyle": "circle,pad=0.2", "fc": color, "ec": "black", "lw": 0.6},
            )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(_panel_title(label, res), fontsize=9.5)
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="mean visits per episode", shrink=0.85)
    handles = [
        Rectangle((0, 0), 1, 1, fill=False, ec="tab:red", hatch="///", label="hazard (cost 1)"),
        Line2D([], [], marker="o", ls="", mfc="tab:blue", mec="black", ms=9, label="start S"),
        Line2D([], [], marker="o", ls="", mfc="tab:green", mec="black", ms=9, label="goal G"),
    ]
    if walls.any():
        handles.append(Rectangle((0, 0), 1, 1, color="0.25", label="wall"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    fig.suptitle(title)
    return fig


def plot_nav_paths(
    env: HazardNavEnv, runs: Sequence[tuple[str, Rollouts]], title: str = "paths"
) -> Figure:
    """Positions of every recorded episode per agent, over the arena."""
    n = max(len(runs), 1)
    fig = _figure(2.9 * n + 0.6, 4.5)
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, (ax, (label, res)) in enumerate(zip(axes, runs, strict=False)):
        env.draw(ax)
        for ep in res.episodes:
            xy = np.asarray(ep.obs, dtype=float)[:, :2]
            ax.plot(xy[:, 0], xy[:, 1], color="tab:blue", lw=0.7, alpha=0.55)
        ax.set_title(_panel_title(label, res), fontsize=9.5)
        ax.set_xticks([-0.5, 0.0, 0.5])  # no +-1 labels colliding between panels
        ax.set_yticks([-0.5, 0.0, 0.5])
        ax.set_xlabel("x")
        if i == 0:
            ax.set_ylabel("y")
        else:
            ax.set_yticklabels([])
    handles = [
        Rectangle((0, 0), 1, 1, color="tab:red", alpha=0.4, label="hazard (cost 1 per step)"),
        Rectangle((0, 0), 1, 1, color="tab:green", alpha=0.5, label="goal"),
        Line2D([], [], marker="o", ls="", color="tab:blue", label="start"),
        Line2D([], [], color="tab:blue", lw=0.9, label="episode path"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------- the document
@dataclass
class Document:
    """A small block structure rendered both as Markdown and as self-contained HTML.

    Inline markup in text: ``**bold**`` and ```code```."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def code(self, text: str, lang: str = "") -> None:
        self.blocks.append(("code", (lang, text)))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))

    def image(self, name: str, alt: str) -> None:
        self.blocks.append(("img", (name, alt)))

    # ------------------------------------------------------------------ Markdown
    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, val in self.blocks:
            if kind == "h":
                out += ["#" * val[0] + " " + val[1], ""]
            elif kind == "p":
                out += [val, ""]
            elif kind == "ul":
                out += [f"- {x}" for x in val] + [""]
            elif kind == "code":
                fence = "````" if "```" in val[1] else "```"
                out += [fence + val[0], val[1].rstrip("\n"), fence, ""]
            elif kind == "table":
                header, rows = val

                def cells(xs):
                    return "| " + " | ".join(str(x).replace("|", "\\|") for x in xs) + " |"

                out += [cells(header), "|" + "|".join("---" for _ in header) + "|"]
                out += [cells(r) for r in rows] + [""]
            elif kind == "img":
                out += [f"![{val[1]}]({val[0]})", ""]
        return "\n".join(out).rstrip("\n") + "\n"

    # ------------------------------------------------------------------ HTML
    def html(self, images: dict[str, bytes]) -> str:
        body: list[str] = [f"<h1>{_inline(self.title)}</h1>"]
        for kind, val in self.blocks:
            if kind == "h":
                body.append(f"<h{val[0]}>{_inline(val[1])}</h{val[0]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(val)}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in val) + "</ul>")
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(val[1].rstrip())}</code></pre>")
            elif kind == "table":
                header, rows = val
                head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                trs = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                    for r in rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "img":
                data = images.get(val[0])
                if data is None:
                    continue
                b64 = base64.b64encode(data).decode("ascii")
                body.append(
                    f'<figure><img src="data:image/png;base64,{b64}" '
                    f'alt="{html.escape(val[1], quote=True)}"></figure>'
                )
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body)
            + "\n</body>\n</html>\n"
        )


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; border-radius: 4px; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .92em; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def _inline(text: str) -> str:
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)


def fmt(x: Any, digits: int = 3) -> str:
    """A number to ``digits`` decimals, "n/a" for nan/None, ints as ints."""
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}"


def _fmt_int(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "n/a" if math.isnan(v) else str(int(round(v)))


def _ci(mean: float, lo: float, hi: float) -> str:
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def summary_rows(summary: pd.DataFrame) -> list[list[str]]:
    return [
        [
            str(r[c]) if c == "method" else _fmt_int(r[c]) if c in INT_COLUMNS else fmt(r[c])
            for c in SUMMARY_TABLE_COLUMNS
        ]
        # A summary.csv from before n_seeds existed: one seed.
        for _, r in summary.assign(n_seeds=summary.get("n_seeds", 1)).iterrows()
    ]


def _ties(best: str, intervals: Sequence[yardstick.MethodInterval] | None) -> list[str]:
    """Methods whose interval overlaps ``best``'s (no difference beyond the noise)."""
    if not intervals:
        return []
    by = {m.method: m for m in intervals}
    if best not in by or not math.isfinite(by[best].lo):
        return []
    return [
        m.method
        for m in intervals
        if m.method != best and math.isfinite(m.lo) and not yardstick.separated(by[best], m)
    ]


def findings(
    summary: pd.DataFrame,
    has_frontier: bool,
    intervals: Sequence[yardstick.MethodInterval] | None = None,
    calibration: Sequence[yardstick.MethodInterval] | None = None,
) -> list[str]:
    """Short generated statements about the methods (with numbers).

    ``intervals`` (:func:`yardstick.method_intervals` of the frontier gap, or of the chord gain
    without an exact model) and ``calibration`` (of the calibration error) decide when one
    method is called better than another: only when their intervals are disjoint."""
    if summary.empty:
        return ["No blended method was evaluated yet; only the experts appear below."]
    s = summary.copy()
    s["method"] = s["method"].astype(str)
    out: list[str] = []
    single = len(s) == 1

    cal = s.dropna(subset=["calibration_error"]).sort_values("calibration_error", kind="stable")
    if cal.empty:
        out.append("Calibration error is undefined for every method (equal expert costs).")
    else:
        b = cal.iloc[0]
        lead = "Only one method was evaluated, " if single else ""
        ties = _ties(str(b.method), calibration)
        best = (
            " is best calibrated, with"
            if not ties
            else f" has the lowest calibration error, within the noise of {', '.join(ties)}:"
        )
        text = (
            f"{lead}**{b.method}**"
            + (":" if single else best)
            + f" calibration error {fmt(b.calibration_error)} (mean |position - alpha| over "
            f"{_fmt_int(b.n_alphas)} alphas; max {fmt(b.calibration_max)})"
        )
        others = [f"{r.method} {fmt(r.calibration_error)}" for _, r in cal.iloc[1:].iterrows()]
        out.append(text + (f"; others: {', '.join(others)}." if others else "."))

    gap = s.dropna(subset=["frontier_gap_mean"]).sort_values("frontier_gap_mean", kind="stable")
    if not gap.empty:
        b = gap.iloc[0]
        ties = _ties(str(b.method), intervals)
        if single:
            lead = "Its"
        elif ties:
            lead = (
                f"**{b.method}** has the smallest frontier gap, but not beyond the noise "
                f"(its interval overlaps {', '.join(ties)}'s): the data do not rank them. Its"
            )
        else:
            lead = f"**{b.method}** is closest to the exact frontier, with"
        text = (
            f"{lead} mean frontier gap {'is ' if single or ties else ''}"
            f"{fmt(b.frontier_gap_mean)} (max {fmt(b.frontier_gap_max)}), as a fraction of the "
            "experts' return range"
        )
        others = [f"{r.method} {fmt(r.frontier_gap_mean)}" for _, r in gap.iloc[1:].iterrows()]
        out.append(text + (f"; others: {', '.join(others)}." if others else "."))
    else:
        why = "this env has no exact model" if not has_frontier else "no gap could be computed"
        chord = s.dropna(subset=["chord_gain_mean"]).sort_values(
            "chord_gain_mean", ascending=False, kind="stable"
        )
        text = f"There is no frontier gap ({why})"
        if not chord.empty:
            b = chord.iloc[0]
            ties = _ties(str(b.method), intervals)
            if single:
                who = "its mean chord gain is"
            elif ties:
                who = (
                    f"**{b.method}** has the largest mean chord gain, not beyond the noise "
                    f"(its interval overlaps {', '.join(ties)}'s),"
                )
            else:
                who = f"**{b.method}** has the best mean chord gain,"
            text += (
                f"; {who} {fmt(b.chord_gain_mean)} (return above the coin-flip "
                "mixture at equal cost, as a fraction of the experts' return range)"
            )
        out.append(text + ".")

    mono, non, undef = [], [], []
    for _, r in s.iterrows():
        sp = float(r.spearman) if pd.notna(r.spearman) else math.nan
        if math.isnan(sp):
            undef.append(str(r.method))
        elif sp >= 1.0 - 1e-9:
            mono.append(str(r.method))
        else:
            non.append(f"{r.method} (Spearman {fmt(sp)}, {_fmt_int(r.violations)} violations)")
    parts = []
    if mono:
        parts.append(f"Monotone in alpha (Spearman = 1): {', '.join(mono)}.")
    if non:
        parts.append(f"Not monotone: {', '.join(non)}.")
    if undef:
        parts.append(f"Monotonicity undefined (fewer than 2 alphas): {', '.join(undef)}.")
    out.append(" ".join(parts))
    out.extend(recommendation(s, intervals))
    return out


def recommendation(
    s: pd.DataFrame, intervals: Sequence[yardstick.MethodInterval] | None = None
) -> list[str]:
    """Which trained method to use: monotone (Spearman >= 0.95) and calibrated (error <= 0.1),
    then the smallest frontier gap (or the largest chord gain without an exact model).
    ``mixture`` is the baseline and is not recommended: it stays on the chord. Other eligible
    methods whose ``intervals`` overlap the choice's are named as tied within the noise."""
    ok = s[
        (s.method != "mixture")
        & (s.spearman.fillna(-1) >= 0.95)
        & (s.calibration_error.fillna(math.inf) <= 0.1)
    ]
    if ok.empty:
        return ["No trained method is both monotone (Spearman >= 0.95) and calibrated "
                "(error <= 0.1) here; see the table."]  # fmt: skip
    if ok.frontier_gap_mean.notna().any():
        b = ok.sort_values("frontier_gap_mean", kind="stable").iloc[0]
        why = f"frontier gap {fmt(b.frontier_gap_mean)}"
    else:
        b = ok.sort_values("chord_gain_mean", ascending=False, kind="stable").iloc[0]
        why = f"chord gain {fmt(b.chord_gain_mean)}"
    eligible = set(ok.method.astype(str))
    ties = [m for m in _ties(str(b.method), intervals) if m in eligible]
    text = (
        f"Recommendation: **{b.method}**, the trained method that is monotone and calibrated "
        f"(Spearman {fmt(b.spearman)}, calibration error {fmt(b.calibration_error)}) with "
        f"the best {why}"
    )
    if ties:
        text += (
            f"; {', '.join(ties)} {'is' if len(ties) == 1 else 'are'} as good within the noise "
            "(overlapping per-agent 95% intervals), so calibration or cost may decide"
        )
    return [text + "."]


def _run_alphas(results: pd.DataFrame, rc: RunConfig) -> list[float]:
    alphas = sorted({float(a) for a in _agents(results).alpha.dropna()})
    return alphas or [float(a) for a in rc.experiment.blend.alphas]


def yardstick_section(
    doc: Document,
    rc: RunConfig,
    results: pd.DataFrame,
    frontier: Frontier | None,
    experts: ExpertStats,
    summary: pd.DataFrame | None = None,
) -> list[yardstick.MethodInterval]:
    """The report's opening: how much room the experts leave a knob (the coin flip's exact
    frontier gap, or on HazardNav the estimated best chord gain) and each method's share of it,
    with noise intervals (:mod:`safeknob.stages.yardstick`). Returns the intervals the findings
    rank methods by (frontier gap, or chord gain without an exact model)."""
    doc.heading("Yardstick")
    agents = _agents(results)
    alphas = _run_alphas(results, rc)
    gains = yardstick.method_intervals(agents, experts, "chord_gain", summary=summary)
    by_gain = {m.method: m for m in gains}
    noise = (
        "A method is called better than another only when their intervals are disjoint: for a "
        "method with 2+ training seeds the 95% interval over seeds (marked *s*), otherwise one "
        "from each agent's 95% bootstrap intervals of return and cost (the agents' errors taken "
        "as fully correlated, so it is wide rather than narrow)."
    )

    def iv(m: yardstick.MethodInterval | None) -> str:
        if m is None:
            return "n/a"
        return f"{fmt(m.mean)} [{fmt(m.lo)}, {fmt(m.hi)}]" + (" *s*" if m.seeds > 1 else "")

    flip = yardstick.coin_flip(frontier, experts, alphas) if frontier is not None else None
    if frontier is not None and flip is not None:
        gaps = yardstick.method_intervals(agents, experts, "frontier_gap", frontier, summary)
        inner = yardstick.coin_flip(frontier, experts, COIN_FLIP_ALPHAS)
        room = flip.mean
        doc.para(
            "Flipping a coin between the experts (the `mixture` baseline) puts an agent on their "
            f"chord; over this run's {len(alphas)} alphas the exact frontier is on average "
            f"**{fmt(room)}** of the experts' return range above it (max {fmt(flip.max)}"
            + (f"; {fmt(inner.mean)} over alphas 0.1 .. 0.9" if inner is not None else "")
            + "). That is the room a knob has: frontier gap 0 takes all of it, a gap of "
            f"{fmt(room)} none (`safeknob frontier` prints it for the exact experts). " + noise
        )
        rows = []
        for m in gaps:
            share = 1.0 - m.mean / room if room > 1e-12 else math.nan
            rows.append([m.method, iv(m), fmt(share), iv(by_gain.get(m.method))])
        if rows:
            doc.table(
                ["method", "frontier gap [interval]", "share of the room taken",
                 "chord gain [interval]"],
                rows,
            )  # fmt: skip
        return gaps
    if frontier is not None:
        doc.para(
            "This env has an exact frontier, but the experts' measured returns and costs are "
            "missing or their returns are equal, so the coin flip's room (and every gap as a "
            "fraction of the experts' return range) is undefined; `safeknob frontier` prints "
            "the room between the exact experts."
        )
        return []
    nav = yardstick.nav_best_gain(rc, alphas)
    if nav is not None:
        best = nav[0]
        doc.para(
            "This env has no exact model. Its value-iteration estimate "
            "(`experiments/nav_frontier.py`, cached in `cache/nav_frontier.json`) puts the best "
            f"mean chord gain over this run's {len(alphas)} alphas at **{best:+.3f}** of the "
            "experts' return range: the room a knob has above the coin flip (chord gain 0). The "
            "estimate's routes are slightly worse than trained agents' (0.01-0.03 of return), "
            "so read it as a scale, not a bound. " + noise
        )
        rows = [
            [m.method, iv(m), f"{best:+.3f}", fmt(m.mean / best) if best > 1e-12 else "n/a"]
            for m in gains
        ]
        if rows:
            doc.table(["method", "chord gain [interval]", "estimated best", "share of it"], rows)
        return gains
    doc.para(
        "This env has no exact model and no frontier estimate: a chord gain of 0 is the coin "
        "flip between the experts, above 0 is better. " + noise
    )
    if gains:
        doc.table(["method", "chord gain [interval]"], [[m.method, iv(m)] for m in gains])
    return gains


def build_document(
    rc: RunConfig,
    results: pd.DataFrame,
    summary: pd.DataFrame,
    frontier: Frontier | None,
    experts: ExpertStats,
    traj_note: str,
    has_trajectories: bool,
) -> Document:
    exp = rc.experiment
    doc = Document(f"safeknob report: {exp.name}")
    episodes = sorted({int(e) for e in results.episodes.dropna()}) if "episodes" in results else []
    doc.para(
        f"Env `{exp.env.id}`; {', '.join(map(str, episodes)) or 'n/a'} evaluation episodes per "
        f"agent (seed {exp.eval.seed}); 95% bootstrap confidence intervals. Costs are hazard "
        "steps per episode."
    )

    intervals = yardstick_section(doc, rc, results, frontier, experts, summary)

    calibration = yardstick.method_intervals(
        _agents(results), experts, "calibration", summary=summary
    )
    doc.heading("Findings")
    doc.bullets(findings(summary, frontier is not None, intervals, calibration))

    doc.heading("Summary per method")
    if summary.empty:
        doc.para("No blended method in `eval/summary.csv`.")
    else:
        doc.table(SUMMARY_TABLE_COLUMNS, summary_rows(summary))
    doc.para(
        "`spearman`: rank correlation of alpha and cost; `violations`: adjacent alphas whose costs "
        "go the wrong way with non-overlapping CIs; `calibration_error`/`max`: mean/max of "
        "|position - alpha|; `chord_gain_mean`: return above the experts' coin-flip mixture at "
        "equal cost; `frontier_gap`: shortfall from the exact frontier (both as fractions of "
        "R_reck - R_safe); `cost_std_mean`: per-episode cost dispersion."
    )

    doc.heading("Experts", 3)
    rows = []
    for role in ("safe", "reckless"):
        r = _expert_row(results, role)
        if r is not None:
            rows.append(
                [f"expert-{role}", _ci(r.return_mean, r.return_lo, r.return_hi),
                 _ci(r.cost_mean, r.cost_lo, r.cost_hi), fmt(r.cost_std)]
            )  # fmt: skip
    doc.table(["expert", "return [95% CI]", "cost [95% CI]", "cost std"], rows)

    doc.heading("All agents", 3)
    agents = _agents(results).sort_values(["method", "alpha", "seed"], kind="stable")
    doc.table(
        ["method", "alpha", "seed", "return [95% CI]", "cost [95% CI]", "position",
         "chord gain", "frontier gap"],
        [
            [str(r.method), f"{r.alpha:.2f}", _fmt_int(r.seed),
             _ci(r.return_mean, r.return_lo, r.return_hi), _ci(r.cost_mean, r.cost_lo, r.cost_hi),
             fmt(r.position), fmt(r.chord_gain), fmt(r.frontier_gap)]
            for _, r in agents.iterrows()
        ],
    )  # fmt: skip

    doc.heading("Figures")
    doc.heading("Return vs. cost", 3)
    doc.image("frontier.png", "return vs. cost")
    doc.para(
        "Each agent's mean episode cost and return with 95% CIs, coloured by alpha, one marker "
        "per method. The dashed chord is what flipping a coin between the experts achieves; "
        + (
            "the black line is the exact frontier R*(C), the best return at expected cost C."
            if frontier is not None
            else "this env has no exact model, so no frontier is drawn."
        )
    )
    doc.heading("Knob calibration", 3)
    doc.image("knob.png", "requested alpha vs. realized position")
    outliers = knob_outliers(results)
    doc.para(
        "Position 0 is the safe expert's cost, 1 the reckless expert's "
        f"(C_safe = {fmt(experts.cost_safe)}, C_reck = {fmt(experts.cost_reck)}); a calibrated "
        "knob sits on the dashed identity line."
        + (
            f" Drawn clipped to [{KNOB_RANGE[0]:g}, {KNOB_RANGE[1]:g}] (arrows): "
            + ", ".join(f"{m} at alpha {a:.2f} (position {fmt(x)})" for m, a, x in outliers)
            + "."
            if outliers
            else ""
        )
    )
    doc.heading("Trajectories", 3)
    if has_trajectories:
        doc.image("trajectories.png", "trajectories")
    doc.para(traj_note)

    doc.heading("Experiment config")
    if rc.paths.config.is_file():
        config_text = rc.paths.config.read_text()
        doc.para(f"From `{rc.paths.config}`:")
    else:
        config_text = toml_dumps(exp.to_dict())
        doc.para("Resolved config (no `config.toml` in the experiment folder):")
    doc.code(config_text, "toml")
    return doc
