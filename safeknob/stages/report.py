"""Stage ``report``: ``report/`` with figures (frontier.png, knob.png, trajectories.png),
report.md and a self-contained report.html, from the evaluation.

The figures of results are :mod:`safeknob.evaluation.figures`, the page (Markdown, HTML)
:mod:`safeknob.evaluation.page`, the words :mod:`safeknob.stages.findings`; an env draws its
own trajectories (``env.trajectory_figure``, duck-typed like ``tabular_model``). This module
gathers the agents and orders the document.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from safeknob.artifacts import ArtifactError, atomic_dir
from safeknob.config import RunConfig
from safeknob.envs.drawing import save_figure
from safeknob.envs.frontier import Frontier
from safeknob.errors import UserError
from safeknob.evaluation.figures import (
    KNOB_RANGE,
    agent_rows,
    expert_row,
    expert_stats,
    knob_outliers,
    plot_frontier,
    plot_knob,
    training_seeds,
)
from safeknob.evaluation.metrics import ExpertStats
from safeknob.evaluation.page import Document
from safeknob.evaluation.rollout import Agent, PolicyAgent, rollout
from safeknob.methods import BlendContext, load_blend
from safeknob.methods.registry import method_of
from safeknob.rl.training import env_factory
from safeknob.stages import evaluate, yardstick
from safeknob.stages.common import console, toml_dumps
from safeknob.stages.findings import (
    SUMMARY_TABLE_COLUMNS,
    ci,
    findings,
    fmt,
    fmt_int,
    summary_rows,
    yardstick_section,
)
from safeknob.stages.promised import SOURCES, promised
from safeknob.store import ExperimentStore

STAGE = "report"
TRAJECTORY_ALPHAS = (0.25, 0.5, 0.75)
__all__ = [
    "SUMMARY_TABLE_COLUMNS",
    "Document",
    "findings",
    "knob_outliers",
    "plot_knob",
    "run",
    "summary_rows",
    "yardstick_section",
]


def run(rc: RunConfig) -> Path:
    """Write ``report/`` from the evaluation results; returns the path of ``report.md``."""
    results, summary = ExperimentStore(rc).results()
    frontier = evaluate.exact_frontier(rc)
    exp = rc.experiment
    experts = expert_stats(results)

    with atomic_dir(rc.paths.report) as tmp:
        save_figure(plot_frontier(results, frontier, exp.name), tmp / "frontier.png")
        save_figure(plot_knob(results, exp.name), tmp / "knob.png")
        try:
            fig, traj_note = trajectory_figure(rc)
        except ArtifactError as exc:
            fig, traj_note = (
                None,
                f"Trajectory figure skipped: the agents cannot be loaded ({exc}).",
            )
        if fig is not None:
            save_figure(fig, tmp / "trajectories.png")
        doc = build_document(rc, results, summary, frontier, experts, traj_note, fig is not None)
        (tmp / "report.md").write_text(doc.markdown())
        images = {p.name: p.read_bytes() for p in sorted(tmp.glob("*.png"))}
        (tmp / "report.html").write_text(doc.html(images))
    out = rc.paths.report / "report.md"
    if not rc.quiet:
        console.print(f"report written to {out}", markup=False)
    return out


def trajectory_figure(rc: RunConfig) -> tuple[Figure | None, str]:
    """The trajectory figure and a caption, or (None, why it was skipped).

    Raises:
        ArtifactError: an expert or blend cannot be loaded.
    """
    make = env_factory(rc.experiment.env)
    env = make()
    base = env.unwrapped
    env.close()
    if not callable(getattr(base, "trajectory_figure", None)):
        return None, (
            "Trajectory figure skipped: the env draws none (an env with a `trajectory_figure` "
            f"method does, as HazardGrid and HazardNav); this experiment's env is "
            f"`{rc.experiment.env.id}`."
        )
    agents, method = trajectory_agents(rc)
    episodes = int(getattr(base, "trajectory_episodes", 20))
    seed = rc.experiment.eval.seed
    runs = [
        (label, rollout(agent, make, episodes, seed=seed, record=True)) for label, agent in agents
    ]
    kind = getattr(base, "trajectory_kind", "trajectories")
    title = f"{rc.experiment.name}: {kind} ({episodes} episodes per agent)"
    fig = base.trajectory_figure(runs, title)
    what = str(getattr(base, "trajectory_caption", "Trajectories")).format(episodes=episodes)
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


def _delivered(row: pd.Series, metric: str) -> str:
    lo, hi = row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if lo is not None and hi is not None and pd.notna(lo) and pd.notna(hi):
        return f"{fmt(row[metric])} [{fmt(lo)}, {fmt(hi)}]"
    return fmt(row[metric])


def _promise_of(spec: str) -> str | None:
    """The promise a summary row's method delivers (None: none, or not a registered method)."""
    try:
        return method_of(spec).promise
    except UserError:
        return None


def promise_section(
    doc: Document,
    rc: RunConfig,
    results: pd.DataFrame,
    summary: pd.DataFrame,
    experts: ExpertStats,
) -> None:
    """*Promised* (the optimum of the reward a learned-reward method maximizes, at each
    alpha, scored with the env's reward and cost: :mod:`safeknob.stages.promised`) beside
    *delivered* (its trained agents, ``summary.csv``), so a reader sees whether the reward or
    the optimizer loses the knob. Skipped when no method on a learned reward was evaluated."""
    specs = [m for m in summary.method if _promise_of(str(m)) is not None]
    if not specs:
        return
    doc.heading("What the learned reward promises")
    alphas = sorted({float(a) for a in agent_rows(results).alpha.dropna()}) or list(
        rc.experiment.blend.alphas
    )
    wanted = {_promise_of(m) for m in specs} | {"env"}
    try:
        promises = promised(rc, experts, alphas, [s for s in SOURCES if s in wanted])
    except (ArtifactError, UserError) as exc:
        doc.para(f"Not computed: {exc}")
        return
    exact = any(pd.notna(p.summary["frontier_gap_mean"]) for p in promises.values())
    metrics = (["frontier_gap_mean"] if exact else []) + ["chord_gain_mean", "calibration_error"]
    names = {"frontier_gap_mean": "frontier gap", "chord_gain_mean": "chord gain",
             "calibration_error": "calibration"}  # fmt: skip
    header = ["method", "task reward"]
    for m in metrics:
        header += [f"{names[m]} promised", f"{names[m]} delivered"]
    rows = []
    for spec in specs:
        p = promises[str(_promise_of(spec))]
        row = summary[summary.method == spec].iloc[0]
        cells = [spec, p.label]
        for m in metrics:
            cells += [fmt(p.summary[m]), _delivered(row, m)]
        rows.append(cells)
    env = promises["env"]
    rows.append(
        ["(yardstick)", env.label] + [c for m in metrics for c in (fmt(env.summary[m]), "")]
    )
    doc.table(header, rows)
    how = (
        "the exact optimum of that reward within the budget d(alpha) (the occupancy LP)"
        if exact
        else "the best mixture of value-iteration policies of that reward within the budget "
        "d(alpha) (`reward-mix`: the reward's unconstrained optimum at each alpha)"
    )
    doc.para(
        f"*Promised*: {how}, scored with the env's reward and cost over this run's "
        f"{len(alphas)} alphas; *delivered*: the method's trained agents (mean over seeds "
        "[95% interval]). The env's reward row is the same solver on the true reward. A "
        "promise far from the env's row means the learned reward loses the knob; agents far "
        "from their promise mean the optimizer does (`safeknob frontier --reward airl` prints "
        "every reward's promise per alpha). A diagnostic: it needs the env's reward, which no "
        "method sees."
    )


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

    promise_section(doc, rc, results, summary, experts)

    calibration = yardstick.method_intervals(
        agent_rows(results), experts, "calibration", summary=summary
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
        "R_reck - R_safe); `cost_std_mean`: per-episode cost dispersion. With several "
        "training seeds (`n_seeds`), Spearman, calibration error (mean and max), chord gain and "
        "frontier gap are the mean over seeds of each seed's value with its 95% stratified "
        "bootstrap interval over seeds, `mean [lo, hi]`, and those intervals decide ties."
    )

    doc.heading("Experts", 3)
    rows = []
    for role in ("safe", "reckless"):
        r = expert_row(results, role)
        if r is not None:
            rows.append(
                [f"expert-{role}", ci(r.return_mean, r.return_lo, r.return_hi),
                 ci(r.cost_mean, r.cost_lo, r.cost_hi), fmt(r.cost_std)]
            )  # fmt: skip
    doc.table(["expert", "return [95% CI]", "cost [95% CI]", "cost std"], rows)

    doc.heading("All agents", 3)
    agents = agent_rows(results).sort_values(["method", "alpha", "seed"], kind="stable")
    doc.table(
        ["method", "alpha", "seed", "return [95% CI]", "cost [95% CI]", "position",
         "chord gain", "frontier gap"],
        [
            [str(r.method), f"{r.alpha:.2f}", fmt_int(r.seed),
             ci(r.return_mean, r.return_lo, r.return_hi), ci(r.cost_mean, r.cost_lo, r.cost_hi),
             fmt(r.position), fmt(r.chord_gain), fmt(r.frontier_gap)]
            for _, r in agents.iterrows()
        ],
    )  # fmt: skip

    doc.heading("Figures")
    doc.heading("Return vs. cost", 3)
    doc.image("frontier.png", "return vs. cost")
    n_seeds = training_seeds(agent_rows(results))
    doc.para(
        "Each agent's mean episode cost and return with 95% CIs, coloured by alpha, one marker "
        "per method"
        + (
            f" (every agent of the {n_seeds} training seeds; the grey line joins their mean "
            "per alpha)"
            if n_seeds > 1
            else ""
        )
        + ". The dashed chord is what flipping a coin between the experts achieves; "
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
            f" A marker is a method's mean position over its {n_seeds} training seeds at that "
            "alpha, a dot each seed's agent, the bars their range (min to max over seeds)."
            if n_seeds > 1
            else " Bars: the 95% CI of the position, from the cost's."
        )
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
