"""The on-disk demonstration record: imitation's HuggingFace-datasets format with a float
``cost`` in every step's info dict (verified to survive the round trip; see STACK.md).

A demonstration folder holds the dataset files plus ``manifest.json`` (episodes,
transitions, return and cost statistics, provenance).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
from imitation.data import serialize
from imitation.data.types import TrajectoryWithRew

from safeknob.artifacts import ArtifactError
from safeknob.evaluation.rollout import Episode


def to_trajectories(episodes: Sequence[Episode]) -> list[TrajectoryWithRew]:
    """Recorded episodes as imitation trajectories; costs go in ``infos[t]["cost"]``."""
    out = []
    for ep in episodes:
        infos = np.array([{"cost": float(c)} for c in ep.costs], dtype=object)
        out.append(
            TrajectoryWithRew(
                obs=np.asarray(ep.obs),
                acts=np.asarray(ep.acts),
                infos=infos,
                terminal=bool(ep.terminal),
                rews=np.asarray(ep.rews, dtype=float),
            )
        )
    return out


@contextlib.contextmanager
def _quiet():
    """Silence the datasets library's progress bars and logs."""
    prev = os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS")
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    logging.getLogger("datasets").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()):
        yield
    if prev is None:
        os.environ.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)


def save(path: Path, trajectories: Sequence[TrajectoryWithRew]) -> None:
    """Write trajectories (with per-step cost in infos) to ``path`` (a new folder)."""
    with _quiet():
        serialize.save(str(path), list(trajectories))


def unencodable_path_message(path: Path | str) -> str:
    """The error for a path the locale cannot encode (``LANG=C`` with non-ASCII names): the
    data is fine, the locale is not, so never call it corrupt (``--force`` would overwrite)."""
    enc = sys.getfilesystemencoding()
    shown = os.fsencode(str(path)).decode("utf-8", "replace")
    return (
        f"the path {shown!r} has characters the locale's encoding ({enc}) cannot "
        "represent; the data was not touched. Run with a UTF-8 locale, e.g. "
        "`LANG=C.UTF-8 safeknob ...` or `PYTHONUTF8=1 safeknob ...`"
    )


def load(path: Path, fix: str = "safeknob collect-demos") -> list[TrajectoryWithRew]:
    """Load trajectories; raises ArtifactError (naming ``fix``) when missing or corrupt."""
    path = Path(path)
    if not (path / "dataset_info.json").is_file() and not (path / "state.json").is_file():
        raise ArtifactError(f"no demonstration dataset at {path}; run `{fix}` first")
    try:
        with _quiet():
            seq = serialize.load(str(path))
            trajs = [
                TrajectoryWithRew(
                    obs=np.asarray(t.obs),
                    acts=np.asarray(t.acts),
                    infos=np.array(list(t.infos), dtype=object) if t.infos is not None else None,
                    terminal=bool(t.terminal),
                    rews=np.asarray(getattr(t, "rews", np.zeros(len(t.acts))), dtype=float),
                )
                for t in seq
            ]
    except UnicodeError:
        raise ArtifactError(unencodable_path_message(path)) from None
    except PermissionError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from None
    except Exception as exc:  # noqa: BLE001 - any other failure here means a broken folder
        raise ArtifactError(
            f"demonstration dataset at {path} is corrupt or truncated ({type(exc).__name__}); "
            f"re-run `{fix} --force`"
        ) from None
    if not trajs:
        raise ArtifactError(f"demonstration dataset at {path} is empty; re-run `{fix} --force`")
    return trajs


def costs(traj: TrajectoryWithRew) -> np.ndarray:
    """Per-step costs of a trajectory, shape (len(traj),); KeyError-free check via
    :func:`has_costs` first."""
    assert traj.infos is not None
    return np.array([float(info["cost"]) for info in traj.infos])


def demo_stats(trajs: Sequence[TrajectoryWithRew]) -> dict[str, float]:
    """Mean episode return and cost, and the fraction of episodes ending in a terminal state,
    of one expert's demonstrations (``return_mean``, ``cost_mean``, ``terminal_rate``)."""
    return {
        "return_mean": float(np.mean([np.sum(t.rews) for t in trajs])),
        "cost_mean": float(np.mean([np.sum(costs(t)) for t in trajs])),
        "terminal_rate": float(np.mean([bool(t.terminal) for t in trajs])),
    }


def has_costs(trajs: Sequence[TrajectoryWithRew]) -> bool:
    return all(
        t.infos is not None
        and len(t.infos) == len(t.acts)
        and all(isinstance(i, dict) and "cost" in i for i in t.infos)
        for t in trajs
    )


def episode_limit(env: gym.Env) -> int | None:
    """The most steps an episode of ``env`` (made by ``make_env``) can take: its time limit,
    step cap or ``horizon``, whichever is smallest; None if it states none."""
    limits = []
    e: gym.Env | None = env
    while e is not None:
        for attr in ("_max_episode_steps", "max_steps", "horizon"):
            v = getattr(e, attr, None) if attr in vars(e) else None
            if isinstance(v, int) and v > 0:
                limits.append(v)
        e = getattr(e, "env", None)
    return min(limits) if limits else None


def _first_bad(mask: np.ndarray, starts: np.ndarray) -> tuple[int, int]:
    """(episode, step) of the first False in the flat per-step ``mask``."""
    i = int(np.flatnonzero(~mask)[0])
    ep = int(np.searchsorted(starts, i, side="right")) - 1
    return ep, i - int(starts[ep])


def _in_space(x: np.ndarray, space: gym.spaces.Space) -> tuple[np.ndarray, str]:
    """Per-row membership of the stacked values ``x`` (shape (N,) + item shape) in ``space``,
    and what the space demands (for the error message); vectorized."""
    n = len(x)
    if isinstance(space, gym.spaces.Discrete):
        if x.ndim != 1 and not (x.ndim == 2 and x.shape[1] == 1):
            return np.zeros(n, bool), f"one integer per step for {space}"
        v = x.reshape(n).astype(float) if np.issubdtype(x.dtype, np.number) else None
        if v is None:
            return np.zeros(n, bool), f"integers for {space}"
        ok = (v == np.round(v)) & (v >= space.start) & (v < space.start + space.n)
        return ok, f"integers in [{space.start}, {space.start + space.n - 1}] ({space})"
    if isinstance(space, gym.spaces.Box):
        if x.shape[1:] != space.shape or not np.issubdtype(x.dtype, np.number):
            return np.zeros(n, bool), f"shape {space.shape} ({space})"
        v = x.astype(float)
        tol = 1e-6 * np.maximum(1.0, np.abs(np.where(np.isfinite(space.low), space.low, 0)))
        low = np.asarray(space.low, float) - tol
        high = np.asarray(space.high, float) + tol
        ok = np.isfinite(v) & (v >= low) & (v <= high)
        return ok.reshape(n, -1).all(axis=1), f"finite values within the bounds of {space}"
    return np.zeros(n, bool), f"a Box or Discrete space (got {space})"


def _stack(arrays: Sequence[np.ndarray], what: str, where: str, fix: str) -> np.ndarray:
    shapes = {np.asarray(a).shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise ArtifactError(
            f"{where}: {what} change shape between episodes {sorted(shapes)}; {fix}"
        )
    try:
        return np.concatenate([np.asarray(a) for a in arrays])
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: {what} cannot be stacked ({exc}); {fix}") from None


def check_compatible(
    trajs: Sequence[TrajectoryWithRew], env: gym.Env, where: str, fix: str
) -> None:
    """Check every step of every episode against the env (vectorized over all steps).

    Observations and actions must lie in the env's spaces (integers for Discrete, inside the
    bounds for Box), each step's cost must be a finite number >= 0 and each reward finite, and
    no episode may be longer than the env's episode limit (:func:`episode_limit`).

    Raises:
        ArtifactError: one line naming ``where``, the episode and step of the first bad
            value, and ``fix``.
    """
    if not has_costs(trajs):
        raise ArtifactError(f"{where} has no per-step cost in its infos; {fix}")
    lengths = np.array([len(t.acts) for t in trajs])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    limit = episode_limit(env)
    if limit is not None and lengths.max() > limit:
        ep = int(np.argmax(lengths > limit))
        raise ArtifactError(
            f"{where}: episode {ep} has {lengths[ep]} steps, more than the env's episode limit "
            f"of {limit}; {fix}"
        )
    obs = _stack([np.asarray(t.obs)[:-1] for t in trajs], "observations", where, fix)
    last = _stack([np.asarray(t.obs)[-1:] for t in trajs], "observations", where, fix)
    acts = _stack([np.asarray(t.acts) for t in trajs], "actions", where, fix)
    for name, kind, x, space, st in (
        ("observation", "observation", obs, env.observation_space, starts),
        ("final observation", "observation", last, env.observation_space, np.arange(len(trajs))),
        ("action", "action", acts, env.action_space, starts),
    ):
        ok, want = _in_space(x, space)
        if not ok.all():
            ep, step = _first_bad(ok, st)
            value = np.asarray(x[st[ep] + step]).tolist() if ok.size else "?"
            at = f"episode {ep}" + ("" if name == "final observation" else f", step {step}")
            raise ArtifactError(
                f"{where}: {at}: {name} {_short(value)} does not match the env's {kind} "
                f"space (expected {want}); {fix}"
            )
    try:
        cost = np.fromiter(
            (float(np.asarray(i["cost"], float).reshape(())) for t in trajs for i in t.infos),
            float,
            count=int(lengths.sum()),
        )
    except (TypeError, ValueError):
        cost = None
    rews = _stack([np.asarray(t.rews, float) for t in trajs], "rewards", where, fix)
    if cost is None:
        raise ArtifactError(f"{where}: a step's cost is not a number; {fix}")
    for name, ok in (
        ("cost", np.isfinite(cost) & (cost >= 0)),
        ("reward", np.isfinite(rews)),
    ):
        if not ok.all():
            ep, step = _first_bad(ok, starts)
            value = float((cost if name == "cost" else rews)[starts[ep] + step])
            need = "a finite number >= 0" if name == "cost" else "finite"
            raise ArtifactError(
                f"{where}: episode {ep}, step {step}: {name} {value!r} (must be {need}); {fix}"
            )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
