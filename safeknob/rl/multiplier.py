"""The Lagrange multiplier of a cost constraint as one component with state.

PID update (Stooke, Achiam & Abbeel 2020, "Responsive Safety in Reinforcement Learning by PID
Lagrangian Methods", Algorithm 2) of ``lambda`` from the mean episode cost ``J_C`` and its
budget ``d``, one step per rollout::

    err      = J_C - d
    I        = clip(I + Ki * err, lo, lambda_max)
    D        = J_C - J_C(previous update)        (0 at the first update; >= 0 when one-sided)
    lambda   = clip(Kp * err + I + Kd * D, lo, lambda_max)

with ``lo = 0`` (one-sided: an inequality constraint ``J_C <= d``) or ``lo = -lambda_max``
(two-sided: an equality constraint, a negative lambda pushes the cost *up* towards ``d``).
Units: the gains are per unit of episode cost (undiscounted sum of per-step costs); lambda is
in units of the objective per unit of cost. During a warm-up of ``warmup_rollouts`` rollouts
lambda is held at 0 (a random policy's cost would otherwise wind it up before the goal is ever
found; STACK.md). The consumers (``rl.lagrangian.LagrangeCallback``, the per-bin multipliers of
``methods.conditioned``, ``rl.batched_ppo``) penalize the reward as
``(r - lambda * c) / (1 + |lambda|)``.

:func:`scale_gains` rescales a :class:`~safeknob.config.LagrangeConfig` for an objective that
is not the env's reward (a learned one); :class:`CostWindow` is the averaging of finished
episodes' costs over the last rollouts that feeds the update.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from safeknob.config import LagrangeConfig

LEARNED_CAP = 3.0
"""Headroom of the multiplier's cap on a learned reward beyond the exchange-rate ratio
(:func:`scale_gains`): a learned objective is not the env's, so its route switches need not
sit where they do under the env's reward."""


def scale_gains(cfg: LagrangeConfig, ratio: float, cap: float = LEARNED_CAP) -> LagrangeConfig:
    """``cfg`` for an objective ``ratio`` times the env reward's exchange rate
    (:func:`safeknob.rl.airl.exchange_ratio`): PID gains x ``ratio``, cap x ``ratio`` x
    ``cap``. The multiplier then moves in the objective's units as it did in the env's."""
    return dataclasses.replace(
        cfg,
        kp=cfg.kp * ratio,
        ki=cfg.ki * ratio,
        kd=cfg.kd * ratio,
        lambda_max=cfg.lambda_max * ratio * cap,
    )


class LagrangeMultiplier:
    """One PID Lagrange multiplier (see the module docstring for the update).

    Args:
        budget: the episode-cost budget ``d`` (undiscounted); may be moved later by assigning
            ``budget``.
        cfg: gains ``kp``, ``ki``, ``kd`` (per unit of episode cost), the cap ``lambda_max``
            and ``warmup_rollouts``. ``cfg.cost_window`` is the caller's (:class:`CostWindow`).
        two_sided: lambda may go down to ``-lambda_max`` (equality constraint).
        scale: if given, the gains and cap are first rescaled for a learned objective,
            ``scale_gains(cfg, scale)``.

    State (:meth:`state_dict`): ``lam``, the PID integral, the previous update's cost and the
    rollouts counted so far. Raises ``ValueError`` on a negative cap or warm-up.
    """

    def __init__(
        self,
        budget: float,
        cfg: LagrangeConfig,
        two_sided: bool = False,
        scale: float | None = None,
    ) -> None:
        if scale is not None:
            cfg = scale_gains(cfg, scale)
        if cfg.lambda_max < 0 or cfg.warmup_rollouts < 0:
            raise ValueError(
                f"lambda_max and warmup_rollouts must be >= 0, got {cfg.lambda_max}, "
                f"{cfg.warmup_rollouts}"
            )
        self.budget = float(budget)
        self.cfg = cfg
        self.two_sided = bool(two_sided)
        self.integral = 0.0
        self.prev_cost: float | None = None
        self.lam = 0.0
        self.rollouts = 0

    @property
    def lower(self) -> float:
        """The smallest value lambda may take: 0, or ``-lambda_max`` when two-sided."""
        return -self.cfg.lambda_max if self.two_sided else 0.0

    @property
    def holding(self) -> bool:
        """True while the rollouts counted so far are all within the warm-up
        (``rollouts <= warmup_rollouts``): lambda is held at its value (0)."""
        return self.rollouts <= self.cfg.warmup_rollouts

    def update(self, mean_cost: float) -> float:
        """One PID step on ``err = mean_cost - budget`` regardless of the warm-up; returns the
        new lambda."""
        cfg = self.cfg
        err = mean_cost - self.budget
        lo = self.lower
        self.integral = float(np.clip(self.integral + cfg.ki * err, lo, cfg.lambda_max))
        deriv = 0.0 if self.prev_cost is None else mean_cost - self.prev_cost
        if not self.two_sided:
            deriv = max(0.0, deriv)
        self.prev_cost = mean_cost
        raw = cfg.kp * err + self.integral + cfg.kd * deriv
        self.lam = float(np.clip(raw, lo, cfg.lambda_max))
        return self.lam

    def count_rollout(self) -> bool:
        """Count one finished rollout; True when the warm-up is over (updates may start)."""
        self.rollouts += 1
        return not self.holding

    def rollout_end(self, mean_cost: float | None) -> float:
        """Count a rollout and, past the warm-up and given a mean episode cost (None: no
        episode to measure), take one PID step. Returns lambda (unchanged while held)."""
        active = self.count_rollout()
        if active and mean_cost is not None:
            return self.update(mean_cost)
        return self.lam

    def state_dict(self) -> dict[str, Any]:
        """The mutable state, JSON-friendly: ``lam``, ``integral``, ``prev_cost`` (None before
        the first update), ``rollouts`` and ``budget``."""
        return {
            "lam": self.lam,
            "integral": self.integral,
            "prev_cost": self.prev_cost,
            "rollouts": self.rollouts,
            "budget": self.budget,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output. Raises ``KeyError`` naming missing keys."""
        missing = {"lam", "integral", "prev_cost", "rollouts", "budget"} - set(state)
        if missing:
            raise KeyError(f"multiplier state lacks {sorted(missing)}")
        self.lam = float(state["lam"])
        self.integral = float(state["integral"])
        prev = state["prev_cost"]
        self.prev_cost = None if prev is None else float(prev)
        self.rollouts = int(state["rollouts"])
        self.budget = float(state["budget"])


class CostWindow:
    """The episode costs that finished over the last ``size`` rollouts (``size >= 1``), pooled:
    the measurement each multiplier update uses (``LagrangeConfig.cost_window``)."""

    def __init__(self, size: int) -> None:
        self._chunks: deque[list[float]] = deque(maxlen=max(1, int(size)))

    def add(self, costs: Sequence[float]) -> float | None:
        """Add one rollout's finished episode costs; the mean over the window, or None when
        the window holds no episode."""
        self._chunks.append(list(costs))
        pooled = [c for chunk in self._chunks for c in chunk]
        return float(np.mean(pooled)) if pooled else None
