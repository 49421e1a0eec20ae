"""Figure helpers shared by the envs' own drawing (``env.trajectory_figure``) and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120


def new_figure(width: float = 7.0, height: float = 5.0) -> Figure:
    """A constrained-layout figure on the Agg canvas (no pyplot state), ``width`` x ``height``
    inches."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at :data:`DPI`."""
    fig.savefig(path, dpi=DPI)


def panel_title(label: str, rollouts: Any) -> str:
    """``label`` over the mean cost and return of ``rollouts`` (a
    :class:`~safeknob.evaluation.rollout.Rollouts`)."""
    return f"{label}\ncost {rollouts.costs.mean():.2f}, return {rollouts.returns.mean():.2f}"
