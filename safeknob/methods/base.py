"""The interface every blend method implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.progress import Progress, TaskID

from safeknob.rollout import Agent
from safeknob.stages.common import RunConfig


@dataclass
class BlendContext:
    """What a method sees when it trains or loads an agent."""

    run: RunConfig
    """Experiment, data folder, flags."""
    seed: int
    """Training seed of this agent."""
    c_safe: float
    """The safe expert's mean episode cost in its demonstrations."""
    c_reck: float
    """The reckless expert's mean episode cost in its demonstrations."""
    progress: Progress | None = None
    task: TaskID | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def budget(self, alpha: float) -> float:
        """d(alpha) = C_safe + alpha * (C_reck - C_safe), the episode-cost budget at alpha."""
        return self.c_safe + alpha * (self.c_reck - self.c_safe)


class Method(Protocol):
    """A blend method: trains (or instantiates) one agent per alpha."""

    name: str
    """Column value in results.csv, e.g. ``budget-env``; also the blends/ folder name."""
    trains: bool
    """False for methods that only combine existing agents (mixture)."""

    def steps(self, ctx: BlendContext) -> int:
        """Env steps one agent trains for (for the progress bar); 0 if nothing trains."""

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        """Train the agent at ``alpha``, write its files into ``folder``; return meta extras."""

    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        """Rebuild the agent saved in ``folder``."""
