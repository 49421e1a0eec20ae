"""HazardNav: a continuous 2-D point robot that must reach a goal past circular hazards.

A MuJoCo-free cousin of Safety-Gym's PointGoal, in plain numpy:

* The arena is the square ``[-1, 1]^2`` (positions are clipped to it).
* The action is a velocity command in ``Box(-1, 1, (2,))``; it is clipped, optionally perturbed
  by Gaussian noise (``action_noise``), clipped again, limited to norm 1 (so a diagonal is no
  faster than a straight move) and scaled by ``max_speed`` per step.
* The agent starts near ``start`` (uniform jitter of +-``start_jitter`` per axis) and must
  reach the disk of radius ``goal_radius`` around ``goal``.
* Hazards are disks ``(x, y, radius)`` and walls, axis-aligned rectangles
  ``(x_min, y_min, x_max, y_max)``, given explicitly (``hazards``, ``walls``) or by a named
  ``layout``:

  - ``"disks"`` (the default): a big disk and two small ones on the straight start-goal line;
    a longer detour above (or below) them is hazard-free. Cutting into a disk costs more steps
    inside the deeper it goes, so the first units of cost buy the least and the best policy
    between the two experts is a coin flip between their routes (a convex route frontier).
  - ``"fence"``: a thin wall across the line near the start (0.12 thick: crossing it costs
    one or two steps wherever it is crossed, and saves a long way round its ends) and a round
    pond near the goal (crossing it costs about 4 steps and saves about one). The first units
    of cost buy the most: crossing the fence but going round the pond beats any coin flip
    between the two experts. The fence is a rectangle, not a row of disks: cutting the
    rounded tip of a disk is cheap at first and gets dearer, and agents nibbled at the end
    of a fence of disks instead of crossing it.

Observation (``float32``): agent position (2), vector to the goal (2), then the vector to each
hazard centre (2 per disk, then 2 per wall).

Reward per step: ``progress_coef * (previous distance to goal - new distance) - step_penalty``,
plus ``goal_reward`` on reaching the goal, which terminates the episode. Episodes are truncated
at ``horizon`` steps. ``info["cost"]`` is 1.0 for a step whose new position lies inside any
hazard, else 0.0; ``info["goal_reached"]`` says whether the goal was reached on that step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Rectangle

from safeknob.envs.drawing import new_figure, panel_title

# A big disk in the middle plus two smaller ones, all cutting the line y = 0 between the start
# (-0.8, 0) and the goal (0.8, 0). Everything with |y| >= 0.5 is hazard-free.
DEFAULT_HAZARDS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.35),
    (-0.45, 0.1, 0.12),
    (0.45, -0.1, 0.12),
)
Disk = tuple[float, float, float]
Wall = tuple[float, float, float, float]
# name -> (disks, walls). "fence": a wall across y = 0 near the start (|y| <= 0.5, 0.12 thick)
# and a pond near the goal.
LAYOUTS: dict[str, tuple[tuple[Disk, ...], tuple[Wall, ...]]] = {
    "disks": (DEFAULT_HAZARDS, ()),
    "fence": (((0.4, 0.0, 0.22),), ((-0.51, -0.5, -0.39, 0.5),)),
}
DEFAULT_START: tuple[float, float] = (-0.8, 0.0)
DEFAULT_GOAL: tuple[float, float] = (0.8, 0.0)

ARENA = 1.0  # half-width of the square arena


def _check_ranges(
    horizon: int, max_speed: float, goal_radius: float, start_jitter: float, action_noise: float
) -> None:
    """ValueError (one line) for a constructor argument out of range."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if max_speed <= 0:
        raise ValueError(f"max_speed must be > 0, got {max_speed}")
    if goal_radius <= 0:
        raise ValueError(f"goal_radius must be > 0, got {goal_radius}")
    if start_jitter < 0 or action_noise < 0:
        raise ValueError("start_jitter and action_noise must be >= 0")


class HazardNavEnv(gym.Env):
    """Continuous point-robot navigation with circular hazards; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        hazards: Sequence[Sequence[float]] | None = None,
        walls: Sequence[Sequence[float]] | None = None,
        layout: str | None = None,
        goal: Sequence[float] = DEFAULT_GOAL,
        start: Sequence[float] = DEFAULT_START,
        horizon: int = 100,
        max_speed: float = 0.1,
        step_penalty: float = 0.01,
        goal_reward: float = 1.0,
        goal_radius: float = 0.1,
        progress_coef: float = 1.0,
        start_jitter: float = 0.05,
        action_noise: float = 0.0,
        render_mode: str | None = None,
        render_size: int = 256,
    ) -> None:
        if layout is not None and (hazards is not None or walls is not None):
            raise ValueError("give hazards/walls or a layout, not both")
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
        custom = hazards is not None or walls is not None
        self.layout = None if custom else layout or "disks"
        hz, wl = (hazards or (), walls or ()) if custom else LAYOUTS[self.layout]
        for w in wl:
            if len(w) != 4 or not (w[0] < w[2] and w[1] < w[3]):
                raise ValueError(f"each wall must be (x_min, y_min, x_max, y_max), got {tuple(w)}")
        self.walls: tuple[Wall, ...] = tuple(
            (float(w[0]), float(w[1]), float(w[2]), float(w[3])) for w in wl
        )
        for h in hz:
            if len(h) != 3:
                raise ValueError(f"each hazard must be (x, y, radius), got {tuple(h)}")
        self.hazards: tuple[Disk, ...] = tuple((float(h[0]), float(h[1]), float(h[2])) for h in hz)
        if any(r <= 0 for _, _, r in self.hazards):
            raise ValueError("hazard radii must be > 0")
        self.goal = (float(goal[0]), float(goal[1]))
        self.start = (float(start[0]), float(start[1]))
        for name, p in (("goal", self.goal), ("start", self.start)):
            if max(abs(p[0]), abs(p[1])) > ARENA:
                raise ValueError(f"{name} {p} lies outside the arena [-1, 1]^2")
            if self.in_hazard(p):
                raise ValueError(f"{name} {p} lies inside a hazard")
        _check_ranges(horizon, max_speed, goal_radius, start_jitter, action_noise)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.horizon = int(horizon)
        self.max_speed = float(max_speed)
        self.step_penalty = float(step_penalty)
        self.goal_reward = float(goal_reward)
        self.goal_radius = float(goal_radius)
        self.progress_coef = float(progress_coef)
        self.start_jitter = float(start_jitter)
        self.action_noise = float(action_noise)
        self.render_mode = render_mode
        self.render_size = int(render_size)

        # Precomputed hazard data: arrays for vectorised use, tuples (cx, cy, r^2) for the hot loop.
        self.n_hazards = len(self.hazards) + len(self.walls)
        centres = [h[:2] for h in self.hazards]
        centres += [((w[0] + w[2]) / 2, (w[1] + w[3]) / 2) for w in self.walls]
        self.hazard_centres = np.array(centres, dtype=np.float64).reshape(-1, 2)
        self.hazard_radii = np.array([h[2] for h in self.hazards], dtype=np.float64)
        self._hz = tuple((cx, cy, r * r) for cx, cy, r in self.hazards)
        self._goal_r2 = self.goal_radius**2

        # obs = _obs_mat @ (x, y) + _obs_base: [p, goal - p, c_1 - p, ..., c_k - p].
        n_obs = 4 + 2 * self.n_hazards
        self._obs_mat = np.zeros((n_obs, 2))
        self._obs_mat[0:2] = np.eye(2)
        self._obs_mat[2:] = np.tile(-np.eye(2), (1 + self.n_hazards, 1))
        self._obs_base = np.zeros(n_obs)
        self._obs_base[2:4] = self.goal
        self._obs_base[4:] = self.hazard_centres.ravel()
        # |p| <= 1 and |c - p| <= 1 + |c|; the small margin absorbs float32 rounding.
        bound = (ARENA + np.abs(self._obs_base) + 1e-3).astype(np.float32)
        bound[0:2] = ARENA
        self.observation_space = spaces.Box(-bound, bound, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

        self._x, self._y = self.start
        self._dist = self._goal_dist(self._x, self._y)
        self.t = 0
        self._background: np.ndarray | None = None

    # ------------------------------------------------------------------ state access
    @property
    def pos(self) -> np.ndarray:
        """Agent position, shape (2,). Assigning to it teleports the agent (clipped to the arena)."""
        return np.array([self._x, self._y])

    @pos.setter
    def pos(self, value: Sequence[float]) -> None:
        self._x = min(max(float(value[0]), -ARENA), ARENA)
        self._y = min(max(float(value[1]), -ARENA), ARENA)
        self._dist = self._goal_dist(self._x, self._y)

    def in_hazard(self, p: Sequence[float]) -> bool:
        """Whether point ``p`` lies strictly inside any hazard (disk or wall)."""
        return bool(self.hazard_mask(np.float64(p[0]), np.float64(p[1])))

    def hazard_mask(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Element-wise :meth:`in_hazard` for arrays of coordinates (any broadcastable shape).
        ``step`` keeps its own scalar loop: it is the hot path."""
        out = np.zeros(np.broadcast(x, y).shape, dtype=bool)
        for cx, cy, r in self.hazards:
            out |= (x - cx) ** 2 + (y - cy) ** 2 < r * r
        for x0, y0, x1, y1 in self.walls:
            out |= (x > x0) & (x < x1) & (y > y0) & (y < y1)
        return out

    def _goal_dist(self, x: float, y: float) -> float:
        return math.hypot(x - self.goal[0], y - self.goal[1])

    def _obs(self) -> np.ndarray:
        return (self._obs_mat @ (self._x, self._y) + self._obs_base).astype(np.float32)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        x, y = self.start
        if self.start_jitter > 0:
            jx, jy = self.np_random.uniform(-self.start_jitter, self.start_jitter, size=2)
            x, y = x + jx, y + jy
        self.pos = (x, y)
        self.t = 0
        return self._obs(), {"cost": 0.0}

    def step(self, action):
        ax = min(max(float(action[0]), -1.0), 1.0)
        ay = min(max(float(action[1]), -1.0), 1.0)
        if self.action_noise > 0:
            nx, ny = self.np_random.normal(0.0, self.action_noise, size=2)
            ax = min(max(ax + nx, -1.0), 1.0)
            ay = min(max(ay + ny, -1.0), 1.0)
        # Speed limit on the velocity's norm (not per axis): a detour really costs steps.
        norm2 = ax * ax + ay * ay
        if norm2 > 1.0:
            inv = 1.0 / math.sqrt(norm2)
            ax, ay = ax * inv, ay * inv
        x = min(max(self._x + self.max_speed * ax, -ARENA), ARENA)
        y = min(max(self._y + self.max_speed * ay, -ARENA), ARENA)
        self._x, self._y = x, y
        self.t += 1

        cost = 0.0
        for cx, cy, r2 in self._hz:
            if (x - cx) * (x - cx) + (y - cy) * (y - cy) < r2:
                cost = 1.0
                break
        for x0, y0, x1, y1 in self.walls:
            if x0 < x < x1 and y0 < y < y1:
                cost = 1.0
                break
        gx, gy = self.goal
        dist = math.sqrt((x - gx) * (x - gx) + (y - gy) * (y - gy))
        reward = self.progress_coef * (self._dist - dist) - self.step_penalty
        self._dist = dist
        reached = dist * dist <= self._goal_r2
        if reached:
            reward += self.goal_reward
        truncated = (not reached) and self.t >= self.horizon
        return self._obs(), reward, reached, truncated, {"cost": cost, "goal_reached": reached}

    # ------------------------------------------------------------------ drawing
    def render(self):
        if self.render_mode == "rgb_array":
            return self._rgb()
        return None

    def _world_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates of the pixel centres, each shape (size, size)."""
        s = self.render_size
        c = (np.arange(s) + 0.5) / s * (2 * ARENA) - ARENA
        return np.meshgrid(c, -c)  # X varies along columns, Y decreases down the rows

    def _rgb(self) -> np.ndarray:
        if self._background is None:
            X, Y = self._world_grid()
            img = np.full((*X.shape, 3), 240, dtype=np.uint8)
            img[self.hazard_mask(X, Y)] = (220, 60, 50)
            gx, gy = self.goal
            img[(X - gx) ** 2 + (Y - gy) ** 2 <= self.goal_radius**2] = (70, 180, 80)
            sx, sy = self.start
            img[(np.abs(X - sx) < 0.02) & (np.abs(Y - sy) < 0.02)] = (90, 140, 220)
            img[[0, -1], :] = img[:, [0, -1]] = (40, 40, 40)
            self._background = img
        img = self._background.copy()
        X, Y = self._world_grid()
        img[(X - self._x) ** 2 + (Y - self._y) ** 2 <= 0.035**2] = (30, 30, 160)
        return img

    def draw(self, ax=None, start: bool = True):
        """Draw the arena, hazards (red), goal (green) and start on a matplotlib axes.

        Returns the axes (a new figure's axes if ``ax`` is None). Meant as a backdrop for
        trajectory plots: ``ax.plot(xs, ys)`` on top of it uses world coordinates.
        """
        if ax is None:
            ax = Figure(figsize=(4, 4)).subplots()
        ax.add_patch(
            Rectangle((-ARENA, -ARENA), 2 * ARENA, 2 * ARENA, fill=False, edgecolor="0.2", lw=1)
        )
        for i, (cx, cy, r) in enumerate(self.hazards):
            ax.add_patch(
                Circle((cx, cy), r, color="tab:red", alpha=0.4, label="hazard" if i == 0 else None)
            )
        for i, (x0, y0, x1, y1) in enumerate(self.walls):
            label = "hazard" if i == 0 and not self.hazards else None
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, color="tab:red", alpha=0.4, label=label)
            )
        ax.add_patch(
            Circle(self.goal, self.goal_radius, color="tab:green", alpha=0.5, label="goal")
        )
        if start:
            ax.plot(*self.start, marker="o", color="tab:blue", ls="", label="start")
        ax.set_xlim(-ARENA, ARENA)
        ax.set_ylim(-ARENA, ARENA)
        ax.set_aspect("equal")
        return ax

    trajectory_episodes = 20
    """Episodes per agent in the report's trajectory figure."""
    trajectory_kind = "paths"
    """What :meth:`trajectory_figure` shows (the figure's title)."""
    trajectory_caption = "Paths of {episodes} episodes"
    """The start of the report's caption (``{episodes}`` is filled in)."""

    def trajectory_figure(self, runs: Sequence[tuple[str, Any]], title: str = "paths") -> Figure:
        """Positions of every recorded episode per agent, over the arena.

        ``runs``: (label, :class:`~safeknob.evaluation.rollout.Rollouts` recorded with
        ``record=True``) per agent; one panel each."""
        env = self
        n = max(len(runs), 1)
        fig = new_figure(2.9 * n + 0.6, 4.5)
        axes = fig.subplots(1, n, squeeze=False)[0]
        for i, (ax, (label, res)) in enumerate(zip(axes, runs, strict=False)):
            env.draw(ax)
            for ep in res.episodes:
                xy = np.asarray(ep.obs, dtype=float)[:, :2]
                ax.plot(xy[:, 0], xy[:, 1], color="tab:blue", lw=0.7, alpha=0.55)
            ax.set_title(panel_title(label, res), fontsize=9.5)
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


def steps_per_second(n: int = 20000, seed: int = 0, **env_kwargs: Any) -> float:
    """Single-threaded env steps per second with uniformly random actions (resets included)."""
    env = HazardNavEnv(**env_kwargs)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, size=(n, 2)).astype(np.float32)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return n / (time.perf_counter() - t0)


if __name__ == "__main__":
    print(f"HazardNavEnv: {steps_per_second():,.0f} steps/s")
