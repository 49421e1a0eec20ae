"""The exact model of a tabular environment, as the frontier solver needs it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TabularModel:
    """A finite-horizon, undiscounted MDP with a cost.

    Attributes:
        P: transition probabilities, shape (n_states, n_actions, n_states); rows sum to 1.
        R: expected one-step reward, shape (n_states, n_actions).
        C: expected one-step cost (>= 0), shape (n_states, n_actions).
        mu: start distribution, shape (n_states,).
        horizon: number of steps in an episode (an episode that reaches an absorbing
            terminal state stays there with zero reward and cost until the horizon).
        terminal: boolean mask of absorbing terminal states, shape (n_states,).
    """

    P: np.ndarray
    R: np.ndarray
    C: np.ndarray
    mu: np.ndarray
    horizon: int
    terminal: np.ndarray

    @property
    def n_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.P.shape[1])


def with_state_reward(model: TabularModel, g: np.ndarray) -> TabularModel:
    """The model with its reward replaced by a state-only reward of the next state.

    ``R[s, a] = sum_s' P[s, a, s'] g[s']``, the expected one-step reward when the reward of a
    step is ``g`` of the state it enters. Unlike the env's reward this is *not* zeroed at the
    absorbing terminal states: a learned reward is optimized in the absorbing fixed-horizon env
    (:class:`safeknob.rl.airl.AbsorbingWrapper`), where every step after the goal repeats the
    goal's observation and is paid ``g[goal]``; ``P`` keeps the goal absorbing, so
    ``R[goal, a] = g[goal]``.

    Args:
        model: the tabular model.
        g: reward of entering each state, shape (n_states,) (the learned reward's units).

    Returns:
        A copy of ``model`` with ``R`` replaced, shape (n_states, n_actions).

    Raises:
        ValueError: if ``g`` has the wrong shape or a non-finite entry.
    """
    g = np.asarray(g, dtype=float)
    if g.shape != (model.n_states,):
        raise ValueError(f"g must have shape ({model.n_states},), got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("g has a non-finite entry")
    return dataclasses.replace(model, R=np.asarray(model.P, dtype=float) @ g)


def evaluate_policy(model: TabularModel, policy: np.ndarray) -> tuple[float, float]:
    """Exact expected episode return and cost of a policy.

    Args:
        model: the tabular model.
        policy: action probabilities, shape (n_states, n_actions) for a stationary policy or
            (horizon, n_states, n_actions) for a time-dependent one.

    Returns:
        (expected return, expected cost), undiscounted sums over the horizon.
    """
    pi = np.asarray(policy, dtype=float)
    if pi.ndim == 2:
        pi = np.broadcast_to(pi, (model.horizon, *pi.shape))
    d = model.mu.astype(float).copy()
    ret = cost = 0.0
    for t in range(model.horizon):
        sa = d[:, None] * pi[t]  # occupancy at step t, shape (S, A)
        ret += float((sa * model.R).sum())
        cost += float((sa * model.C).sum())
        d = np.einsum("sa,sap->p", sa, model.P)
    return ret, cost
