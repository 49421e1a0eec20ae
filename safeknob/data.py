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
    except Exception as exc:  # noqa: BLE001 - any failure here means a broken folder
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


def has_costs(trajs: Sequence[TrajectoryWithRew]) -> bool:
    return all(
        t.infos is not None
        and len(t.infos) == len(t.acts)
        and all(isinstance(i, dict) and "cost" in i for i in t.infos)
        for t in trajs
    )


def check_compatible(
    trajs: Sequence[TrajectoryWithRew], env: gym.Env, where: str, fix: str
) -> None:
    """Raise ArtifactError unless every observation and action lies in the env's spaces
    and every step carries a cost."""
    if not has_costs(trajs):
        raise ArtifactError(f"{where} has no per-step cost in its infos; {fix}")
    obs_space, act_space = env.observation_space, env.action_space
    for t in trajs[:50]:
        obs = np.asarray(t.obs)
        acts = np.asarray(t.acts)
        if isinstance(obs_space, gym.spaces.Discrete):
            ok_obs = (
                obs.ndim == 1
                and np.all(obs == np.round(obs))
                and obs_space.contains(int(obs.max()))
                and obs.min() >= obs_space.start
            )
        else:
            ok_obs = obs.shape[1:] == obs_space.shape
        if isinstance(act_space, gym.spaces.Discrete):
            ok_act = (
                acts.ndim == 1
                and acts.min() >= act_space.start
                and act_space.contains(int(acts.max()))
            )
        else:
            ok_act = acts.shape[1:] == act_space.shape
        if not ok_obs:
            raise ArtifactError(
                f"{where}: observations ({_describe(obs)}) do not match the env's "
                f"observation space {obs_space}; {fix}"
            )
        if not ok_act:
            raise ArtifactError(
                f"{where}: actions ({_describe(acts)}) do not match the env's action "
                f"space {act_space}; {fix}"
            )


def _describe(x: np.ndarray) -> str:
    """Shape, and the value range of scalar (Discrete-like) data, for error messages."""
    if x.ndim == 1 and x.size and np.issubdtype(x.dtype, np.number):
        return f"scalars in [{x.min():g}, {x.max():g}]"
    return f"shape {x.shape[1:]}"
