"""HazardGrid: a tabular gridworld with start, goal, hazard cells, walls and slip.

The map is an ASCII layout (one string per row) so users can draw their own:

    ``S`` start, ``G`` goal, ``.`` free, ``H`` hazard (cost 1 on entering), ``#`` wall.

Observations are the index of the agent's cell among the non-wall cells (``Discrete``);
actions are up, right, down, left (``Discrete(4)``). With probability ``slip`` the action is
replaced by a uniformly random one. Every step costs ``step_penalty`` reward; reaching the
goal pays ``goal_reward`` and ends the episode; the episode is truncated at ``horizon`` steps.
``info["cost"]`` is 1.0 for a step that lands in a hazard cell, else 0.0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from safeknob.envs.drawing import new_figure, panel_title
from safeknob.envs.model import TabularModel
from safeknob.errors import UserError

# The default map (issue #16), designed from the exact frontier so that the coin flip between
# the experts is far from optimal. Start and goal on the bottom edge; three routes:
#   * straight along the bottom through a 5-cell hazard mound (8 steps, cost ~5.5 with slip),
#   * a thin 1-cell hazard wall crossed just above the mound (12 steps, cost ~1.3),
#   * a cost-free detour over the top of the wall (22 steps, cost ~0.03 from slips).
# The thin crossing buys 10 of the detour's 14 extra steps for ~1.3 units of cost, the mound
# only the last 4 for ~4.2 more: R*(c) bows far above the chord (mean coin-flip gap 0.27 of the
# experts' return range with the safe cost limit 0.1; ``safeknob frontier`` prints it).
DEFAULT_LAYOUT: tuple[str, ...] = (
    ".........",
    ".........",
    "....H....",
    "....H....",
    "....H....",
    "....H....",
    "....H....",
    "..HHHHH..",
    "S.HHHHH.G",
)

MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]])  # up, right, down, left
ACTION_NAMES = ("up", "right", "down", "left")


class LayoutError(UserError):
    """The ASCII layout is not a valid HazardGrid map."""


def parse_layout(layout: Sequence[str]) -> np.ndarray:
    """Validate a layout and return it as a 2-D array of characters, shape (rows, cols)."""
    rows = [str(r) for r in layout]
    if not rows or any(len(r) != len(rows[0]) for r in rows) or len(rows[0]) == 0:
        raise LayoutError("layout rows must be non-empty and all the same length")
    grid = np.array([list(r) for r in rows])
    bad = set(np.unique(grid)) - set("SGH.#")
    if bad:
        raise LayoutError(f"layout has unknown characters {sorted(bad)}; use S G H . #")
    for ch, name in (("S", "start"), ("G", "goal")):
        n = int((grid == ch).sum())
        if n != 1:
            raise LayoutError(f"layout must have exactly one {name} '{ch}', found {n}")
    start = tuple(np.argwhere(grid == "S")[0])
    goal = tuple(np.argwhere(grid == "G")[0])
    # Breadth-first search from the start over non-wall cells.
    seen = {start}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES:
            nr, nc = r + dr, c + dc
            if 0 <= nr < grid.shape[0] and 0 <= nc < grid.shape[1]:
                if grid[nr, nc] != "#" and (nr, nc) not in seen:
                    seen.add((nr, nc))
                    queue.append((nr, nc))
    if goal not in seen:
        raise LayoutError("the goal 'G' is unreachable from the start 'S' in this layout")
    return grid


class HazardGridEnv(gym.Env):
    """Tabular gridworld with hazards; see the module docstring."""

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 8}

    def __init__(
        self,
        layout: Sequence[str] | str | None = None,
        slip: float = 0.1,
        horizon: int = 50,
        step_penalty: float = 0.02,
        goal_reward: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(layout, str):
            layout = [r.strip() for r in layout.splitlines() if r.strip()]
        self.layout = tuple(layout) if layout is not None else DEFAULT_LAYOUT
        self.grid = parse_layout(self.layout)
        if not 0.0 <= slip <= 1.0:
            raise ValueError(f"slip must be in [0, 1], got {slip}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.slip = float(slip)
        self.horizon = int(horizon)
        self.step_penalty = float(step_penalty)
        self.goal_reward = float(goal_reward)
        self.render_mode = render_mode

        self.cells = [tuple(int(x) for x in rc) for rc in np.argwhere(self.grid != "#")]
        self.index = {rc: i for i, rc in enumerate(self.cells)}
        self.start_state = self.index[tuple(int(x) for x in np.argwhere(self.grid == "S")[0])]
        self.goal_state = self.index[tuple(int(x) for x in np.argwhere(self.grid == "G")[0])]
        self.hazard = np.array([self.grid[rc] == "H" for rc in self.cells])
        self.n_states = len(self.cells)
        # Deterministic successor of each (state, action), shape (S, 4).
        self.next_state = np.zeros((self.n_states, 4), dtype=np.int64)
        for s, (r, c) in enumerate(self.cells):
            for a, (dr, dc) in enumerate(MOVES):
                nr, nc = r + dr, c + dc
                ok = 0 <= nr < self.grid.shape[0] and 0 <= nc < self.grid.shape[1]
                self.next_state[s, a] = (
                    self.index[(nr, nc)] if ok and self.grid[nr, nc] != "#" else s
                )

        self.observation_space = spaces.Discrete(self.n_states)
        self.action_space = spaces.Discrete(4)
        self.state = self.start_state
        self.t = 0

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.state = self.start_state
        self.t = 0
        return self.state, {"cost": 0.0}

    def step(self, action):
        a = int(action)
        if self.slip > 0 and self.np_random.random() < self.slip:
            a = int(self.np_random.integers(4))
        s2 = int(self.next_state[self.state, a])
        self.state = s2
        self.t += 1
        at_goal = s2 == self.goal_state
        reward = -self.step_penalty + (self.goal_reward if at_goal else 0.0)
        cost = 1.0 if self.hazard[s2] else 0.0
        truncated = (not at_goal) and self.t >= self.horizon
        return s2, reward, at_goal, truncated, {"cost": cost}

    # ------------------------------------------------------------------ exact model
    def tabular_model(self) -> TabularModel:
        """The exact model; the goal is an absorbing terminal state with zero reward and cost."""
        S, A = self.n_states, 4
        P = np.zeros((S, A, S))
        for s in range(S):
            for a in range(A):
                for b in range(A):
                    p = (1 - self.slip) * (a == b) + self.slip / A
                    P[s, a, self.next_state[s, b]] += p
        g = self.goal_state
        R = P @ (self.goal_reward * (np.arange(S) == g)) - self.step_penalty
        C = P @ self.hazard.astype(float)
        P[g] = 0.0
        P[g, :, g] = 1.0
        R[g] = 0.0
        C[g] = 0.0
        mu = np.zeros(S)
        mu[self.start_state] = 1.0
        terminal = np.arange(S) == g
        return TabularModel(P=P, R=R, C=C, mu=mu, horizon=self.horizon, terminal=terminal)

    # ------------------------------------------------------------------ helpers
    def nominal_path(self, policy: np.ndarray) -> list[int]:
        """The states a policy visits from the start when no action slips.

        Args:
            policy: action probabilities, shape (n_states, 4) or (horizon, n_states, 4); the
                most probable action is taken at each step (ties: the lowest index).

        Returns:
            State indices from the start to the goal (or to the horizon), start included.
        """
        pi = np.asarray(policy)
        s, path = self.start_state, [self.start_state]
        for t in range(self.horizon):
            if s == self.goal_state:
                break
            probs = pi[t] if pi.ndim == 3 else pi
            s = int(self.next_state[s, int(np.argmax(probs[s]))])
            path.append(s)
        return path

    def cell_of(self, state: int) -> tuple[int, int]:
        """(row, col) of a state index."""
        r, c = self.cells[int(state)]
        return int(r), int(c)

    def render(self):
        if self.render_mode == "ansi":
            g = self.grid.copy()
            r, c = self.cells[self.state]
            g[r, c] = "A"
            return "\n".join("".join(row) for row in g)
        if self.render_mode == "rgb_array":
            return self._rgb()
        return None

    def _rgb(self, scale: int = 16) -> np.ndarray:
        colours = {
            ".": (235, 235, 235),
            "H": (220, 90, 60),
            "#": (40, 40, 40),
            "S": (90, 140, 220),
            "G": (80, 180, 90),
        }
        img = np.zeros((*self.grid.shape, 3), dtype=np.uint8)
        for ch, col in colours.items():
            img[self.grid == ch] = col
        r, c = self.cells[self.state]
        img[r, c] = (250, 200, 0)
        return np.kron(img, np.ones((scale, scale, 1), dtype=np.uint8))

    trajectory_episodes = 100
    """Episodes per agent in the report's trajectory figure."""
    trajectory_kind = "state visitation"
    """What :meth:`trajectory_figure` shows (the figure's title)."""
    trajectory_caption = "State visitation (mean visits per episode)"
    """The start of the report's caption (``{episodes}`` is filled in)."""

    def trajectory_figure(
        self, runs: Sequence[tuple[str, Any]], title: str = "state visitation"
    ) -> Figure:
        """One heat map of mean visits per episode per agent, over the map.

        ``runs``: (label, :class:`~safeknob.evaluation.rollout.Rollouts` recorded with
        ``record=True``) per agent; one panel each."""
        env = self
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
        fig = new_figure(panel_w * n + 1.2, img_h + 1.5)
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
                        (c - 0.5, r - 0.5),
                        1,
                        1,
                        fill=False,
                        ec="tab:red",
                        hatch="///",
                        lw=0,
                        alpha=0.7,
                    )
                )
                ax.add_patch(
                    Rectangle((c - 0.45, r - 0.45), 0.9, 0.9, fill=False, ec="tab:red", lw=1)
                )
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
            ax.set_title(panel_title(label, res), fontsize=9.5)
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
