"""``mixture``: each episode runs the reckless expert with probability alpha (the chord).

Nothing is trained; the blend folder's meta.json names both experts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeknob.evaluation.rollout import Agent, MixtureAgent, PolicyAgent
from safeknob.methods.base import BlendContext, Method
from safeknob.methods.registry import register


@register(
    "mixture",
    trains=False,
    calibratable=False,
    cost=0,
    summary="each episode runs the reckless expert with probability alpha (the chord)",
)
class MixtureMethod(Method):
    def steps(self, ctx: BlendContext) -> int:
        return 0

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        paths = ctx.run.paths
        return {
            "experts": {
                "reckless": str(paths.expert("reckless")),
                "safe": str(paths.expert("safe")),
            },
            "probabilities": {"reckless": alpha, "safe": 1.0 - alpha},
        }

    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        alpha = float(meta.get("internal_alpha", meta["alpha"]))
        agents = []
        for role in ("safe", "reckless"):
            model, emeta = ctx.store.expert(role)
            agents.append(PolicyAgent(model, bool(emeta.get("deterministic", True))))
        return MixtureAgent(agents, [1.0 - alpha, alpha])
