"""Demonstrations to and from local Minari datasets (the optional ``minari`` extra, 0.5.x).

Layout of an exported dataset: ``<out_dir>/<dataset_id>/data/`` (Minari's own, arrow format),
so ``MINARI_DATASETS_PATH=<out_dir> minari show <dataset_id>`` and
``minari.load_dataset(dataset_id)`` find it. The per-step cost goes in the episode infos as
``infos["cost"]``, following Minari's convention that infos hold one entry per observation:
entry 0 belongs to ``reset`` (cost 0.0) and entry ``t + 1`` to step ``t``. :func:`load` undoes
that, giving trajectories whose ``infos[t]["cost"]`` is step ``t``'s cost, as everywhere else
in safeknob (see :mod:`safeknob.data`). Only local datasets are read: nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from imitation.data.types import TrajectoryWithRew

from safeknob import data
from safeknob.artifacts import ArtifactError
from safeknob.envs import make_env, register_envs
from safeknob.errors import UserError

COST_KEY = "cost"
DATA_FORMAT = "arrow"  # pyarrow is already installed (datasets needs it); hdf5 needs h5py


def _minari() -> Any:
    try:
        import minari
    except ImportError:
        raise UserError("minari is not installed; run `make install-minari`") from None
    return minari


@contextlib.contextmanager
def _datasets_root(root: Path) -> Iterator[None]:
    """Point Minari's local database at ``root`` for the duration."""
    prev = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        if prev is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = prev


def _check_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise UserError(
            f"malformed Minari dataset id {dataset_id!r}; use (namespace/)name-vN, "
            "e.g. safeknob/hazard-grid-safe-v0"
        ) from None


def _env_of(demos_folder: Path) -> tuple[str, dict[str, Any], str | None]:
    """(env id, kwargs, cost_fn) recorded in a demonstration folder's manifest."""
    mpath = demos_folder / "manifest.json"
    try:
        env = json.loads(mpath.read_text())["config"]["env"]
        return str(env["id"]), dict(env.get("kwargs") or {}), env.get("cost_fn")
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise ArtifactError(
            f"{mpath} is missing or names no env; export a folder written by "
            "`safeknob collect-demos` (it records the env)"
        ) from None


def _env_spec(env_id: str, kwargs: dict[str, Any]) -> Any:
    """The gymnasium spec with the experiment's kwargs, or None when it cannot be stored."""
    register_envs()
    try:
        spec = gym.spec(env_id)
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, **kwargs})
        spec.to_json()  # kwargs must be JSON
    except Exception:  # noqa: BLE001 - unregistered ids or exotic kwargs: spaces only
        return None
    return spec


def _as_space(x: Any, space: Any) -> np.ndarray:
    """Minari writes Box data with the space's dtype and does not cast (float64 actions in a
    float32 space fail deep inside pyarrow), so cast here."""
    x = np.asarray(x)

    if isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary | gym.spaces.MultiDiscrete):
        return x.astype(space.dtype, copy=False)
    return x


def _buffers(trajs: Sequence[TrajectoryWithRew], obs_space: Any, act_space: Any) -> list[Any]:
    from minari.data_collector.episode_buffer import EpisodeBuffer

    out = []
    for i, t in enumerate(trajs):
        n = len(t.acts)
        costs = data.costs(t)
        terminations = np.zeros(n, dtype=bool)
        truncations = np.zeros(n, dtype=bool)
        (terminations if t.terminal else truncations)[-1] = True
        out.append(
            EpisodeBuffer(
                id=i,
                observations=_as_space(t.obs, obs_space),
                actions=_as_space(t.acts, act_space),
                rewards=list(np.asarray(t.rews, dtype=np.float64)),
                terminations=list(terminations),
                truncations=list(truncations),
                # A list of floats, as Minari's DataCollector records scalar infos (a 1-D
                # ndarray is stored with an empty shape that minari 0.5.4 cannot read back).
                infos={COST_KEY: [0.0, *(float(c) for c in costs)]},
            )
        )
    return out


def export(
    demos_folder: Path | str,
    dataset_id: str,
    out_dir: Path | str,
    *,
    force: bool = False,
) -> Path:
    """Write the demonstrations in ``demos_folder`` as the local Minari dataset
    ``<out_dir>/<dataset_id>``; returns that folder.

    The env (id and kwargs) comes from the folder's ``manifest.json``; the dataset records its
    spec so ``dataset.recover_environment()`` works where safeknob's envs are registered.
    Raises UserError / ArtifactError (one line) on a malformed id, a folder without costs or
    manifest, or an existing dataset without ``force``.
    """
    minari = _minari()

    # Resolved once, here: Minari joins a relative MINARI_DATASETS_PATH to the working
    # directory again, so a relative --out (the default data/minari) was joined twice.
    demos_folder, out_dir = Path(demos_folder).resolve(), Path(out_dir).resolve()
    _check_id(dataset_id)
    trajs = data.load(demos_folder)
    if not data.has_costs(trajs):
        raise ArtifactError(
            f"{demos_folder} has no per-step cost in its infos; record it with "
            "`safeknob collect-demos`"
        )
    env_id, kwargs, cost_fn = _env_of(demos_folder)
    final = out_dir / dataset_id
    if final.exists() and not force:
        raise ArtifactError(f"{final} already exists; add --force to replace it")
    env = make_env(env_id, kwargs, cost_fn)
    obs_space, act_space = env.observation_space, env.action_space
    try:
        data.check_compatible(
            trajs, env, str(demos_folder), "its manifest names another env; re-record it"
        )
    finally:
        env.close()
    role = ""
    with contextlib.suppress(OSError, json.JSONDecodeError):
        role = str(json.loads((demos_folder / "manifest.json").read_text()).get("role", ""))

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".tmp-minari-"))
    try:
        with _datasets_root(tmp), data._quiet(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".* is set to None")  # author etc.
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=_buffers(trajs, obs_space, act_space),
                env=_env_spec(env_id, kwargs),
                observation_space=obs_space,
                action_space=act_space,
                algorithm_name=f"safeknob {role} expert".replace("  ", " "),
                description=(
                    f"safeknob demonstrations of the {role or '?'} expert on {env_id} "
                    f"(kwargs {json.dumps(kwargs, sort_keys=True)}"
                    + (f", cost_fn {cost_fn}" if cost_fn else "")
                    + "). Per-step cost in infos['cost']: entry 0 is the reset (0.0), "
                    "entry t+1 the cost of step t."
                ),
                data_format=DATA_FORMAT,
            )
        # Swap the finished dataset (and its namespace's metadata, if new) into place.
        parts = Path(dataset_id).parts
        if len(parts) > 1 and not (out_dir / parts[0]).exists():
            os.replace(tmp / parts[0], out_dir / parts[0])
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            if final.exists():
                os.replace(final, old)
            os.replace(tmp / dataset_id, final)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _open(dataset_id_or_path: str | Path) -> Any:
    minari = _minari()
    from minari import MinariDataset

    p = Path(dataset_id_or_path)
    for cand in (p / "data", p):
        if (cand / "metadata.json").is_file():
            try:
                return MinariDataset(cand)
            except Exception as exc:  # noqa: BLE001 - a broken dataset, whatever the cause
                raise ArtifactError(
                    f"Minari dataset at {cand} cannot be read ({type(exc).__name__}: {exc})"
                ) from None
    if p.exists():
        raise ArtifactError(f"{p} is not a Minari dataset (no data/metadata.json)")
    try:
        return minari.load_dataset(str(dataset_id_or_path), download=False)
    except (FileNotFoundError, ValueError):
        from minari.storage import get_dataset_path

        raise ArtifactError(
            f"no local Minari dataset {str(dataset_id_or_path)!r} (looked in "
            f"{get_dataset_path()}); pass its folder or set MINARI_DATASETS_PATH"
        ) from None


def load(dataset_id_or_path: str | Path) -> list[TrajectoryWithRew]:
    """Trajectories of a local Minari dataset (an id in Minari's local database, or a folder
    holding ``data/metadata.json``), with ``infos[t]["cost"]`` the cost of step ``t``.

    Episodes without a ``cost`` info get infos without it (``data.has_costs`` is then False,
    and importing them is refused downstream with a clear message)."""
    ds = _open(dataset_id_or_path)
    out = []
    with data._quiet():
        episodes = list(ds.iterate_episodes())
    for ep in episodes:
        acts = np.asarray(ep.actions)
        n = len(acts)
        raw = (ep.infos or {}).get(COST_KEY)
        if raw is not None:
            try:
                c = np.asarray(raw, dtype=float).reshape(-1)
            except (TypeError, ValueError):
                raise ArtifactError(
                    f"Minari dataset {dataset_id_or_path}: episode {ep.id} has costs that are "
                    f"not numbers; record infos['{COST_KEY}'] as one float per step"
                ) from None
            c = c[1:] if len(c) == n + 1 else c  # Minari's convention: entry 0 is the reset
            if len(c) != n:
                raise ArtifactError(
                    f"Minari dataset {dataset_id_or_path}: episode {ep.id} has {len(c)} costs "
                    f"for {n} steps"
                )
            infos = np.array([{COST_KEY: float(x)} for x in c], dtype=object)
        else:
            infos = np.array([{} for _ in range(n)], dtype=object)
        out.append(
            TrajectoryWithRew(
                obs=np.asarray(ep.observations),
                acts=acts,
                infos=infos,
                terminal=bool(np.asarray(ep.terminations)[-1]) if n else False,
                rews=np.asarray(ep.rewards, dtype=float),
            )
        )
    if not out:
        raise ArtifactError(f"Minari dataset {dataset_id_or_path} has no episodes")
    return out
