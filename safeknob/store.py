"""The read side of an experiment's artifacts: one :class:`ExperimentStore` over
``data/<experiment>/`` with typed readers. Each reader checks the artifact's structure and,
when it is missing or broken, raises :class:`~safeknob.errors.ArtifactError` naming the
command that remakes it. The write side (``atomic_dir``, ``make_meta``, provenance) is
:mod:`safeknob.artifacts`.

Layout (see ``docs/ARCHITECTURE.md``)::

    experts/<role>/{model.zip,meta.json}      train-experts
    demos/<role>/{dataset..., manifest.json}  collect-demos
    rewards/<role>/{reward_net.pt,standardize.json,meta.json}   learn-rewards
    blends/<method>/alpha-A[_seed-S]/meta.json                  train-blend / blend
    blends/<method>/calibration.json          calibrate
    eval/{results.csv,summary.csv}            evaluate
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch as th
from imitation.data.types import TrajectoryWithRew
from stable_baselines3 import PPO

from safeknob import data, schemas
from safeknob.artifacts import ExperimentPaths, alpha_dir, read_meta
from safeknob.config import RunConfig
from safeknob.envs import make_env
from safeknob.errors import ArtifactError
from safeknob.evaluation.metrics import RESULT_COLUMNS, SUMMARY_COLUMNS
from safeknob.rl.airl import LearnedReward, make_reward_net
from safeknob.rl.training import load_ppo
from safeknob.seeding import folder_suffix

ROLES = ("reckless", "safe")
EXPERT_SECTIONS = ("env", "ppo", "lagrange", "experts")
"""The config sections an expert depends on (``train-experts`` records them)."""

CALIBRATION_FILE = "calibration.json"
CALIBRATE_STAGE = "calibrate"
BLEND_STAGE = "blend"

# The command that remakes each artifact (named in every error).
FIX_EXPERTS = "safeknob train-experts"
FIX_DEMOS = "safeknob collect-demos"
FIX_REWARDS = "safeknob learn-rewards"
FIX_BLENDS = "safeknob train-blend"
FIX_EVAL = "safeknob evaluate"

LOAD_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    RuntimeError,
    EOFError,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
)
"""What a truncated, corrupt or mismatched file raises while loading (a bug raises others)."""


class RewardCheckError(ArtifactError):
    """A learned reward failed its re-optimization check (the gate): no method trains on it."""


def check_status(meta: dict[str, Any]) -> str:
    """``"passed"``, ``"failed"`` or ``"unchecked"`` (``check_steps = 0``) for a reward's
    meta.json; a meta.json without a gate verdict (an older run) counts as failed."""
    chk = meta.get("check")
    if isinstance(chk, dict) and chk.get("skipped"):
        return "unchecked"
    if isinstance(chk, dict) and chk.get("passed") is True:
        return "passed"
    return "failed"


@dataclass(frozen=True)
class CalibrationMap:
    """Piecewise-linear monotone map from the requested position to the internal alpha."""

    alphas: tuple[float, ...]
    """Internal settings measured (sorted)."""
    positions: tuple[float, ...]
    """Realized positions, made non-decreasing (isotonic regression)."""

    def internal(self, requested: float) -> float:
        p = np.asarray(self.positions)
        a = np.asarray(self.alphas)
        # np.interp needs strictly increasing x; flat runs map to their midpoint.
        xs, ys = [], []
        for val in np.unique(p):
            xs.append(val)
            ys.append(float(np.mean(a[p == val])))
        if len(xs) == 1:
            return float(np.clip(requested, 0.0, 1.0))
        return float(np.clip(np.interp(requested, xs, ys), 0.0, 1.0))


@dataclass(frozen=True)
class BlendRecord:
    """A trained blend folder and its checked ``meta.json``."""

    folder: Path
    meta: dict[str, Any]

    @property
    def method_arg(self) -> str:
        """The ``--method`` name it was trained with (``budget``)."""
        return str(self.meta.get("method_arg", self.meta.get("method", "")))


class ExperimentStore:
    """Typed, checked readers over one experiment's folder ``<data>/<experiment>/``."""

    def __init__(self, rc: RunConfig) -> None:
        self.rc = rc

    @property
    def paths(self) -> ExperimentPaths:
        return self.rc.paths

    # ------------------------------------------------------------------ experts
    def expert_meta(self, role: str) -> dict[str, Any]:
        """``experts/<role>/meta.json``, checked: its structure (:data:`schemas.EXPERT_META`)
        and that it was trained for this experiment (name and :data:`EXPERT_SECTIONS`)."""
        folder = self.paths.expert(role)
        path = folder / "meta.json"
        if not path.is_file():
            raise ArtifactError(f"{path} not found; run `{FIX_EXPERTS}` first")
        meta = read_meta(folder, "train-experts", FIX_EXPERTS)
        meta = schemas.check(meta, schemas.EXPERT_META, path, FIX_EXPERTS)
        schemas.check_belongs(self.rc, meta, folder, EXPERT_SECTIONS, FIX_EXPERTS)
        return meta

    def expert(self, role: str) -> tuple[PPO, dict[str, Any]]:
        """The expert's PPO model and meta (:meth:`expert_meta`; the model's spaces must be
        the experiment's env's)."""
        folder = self.paths.expert(role)
        meta = self.expert_meta(role)
        if not (folder / "model.zip").is_file():
            raise ArtifactError(f"{folder}/model.zip is missing; run `{FIX_EXPERTS} --force`")
        try:
            model = load_ppo(folder / "model.zip")
        except LOAD_ERRORS:
            raise ArtifactError(
                f"{folder}/model.zip is corrupt; run `{FIX_EXPERTS} --force`"
            ) from None
        env_cfg = self.rc.experiment.env
        env = make_env(env_cfg.id, dict(env_cfg.kwargs), env_cfg.cost_fn)
        try:
            schemas.check_spaces(model, env, folder / "model.zip", FIX_EXPERTS)
        finally:
            env.close()
        return model, meta

    def reference(self, role: str) -> tuple[str, float, float]:
        """(label, return, cost) of one end of the knob: the trained expert's evaluation, or,
        when the demonstrations were imported (``collect-demos --from``) and no expert was
        trained, the imported demonstrations' means."""
        if (self.paths.expert(role) / "meta.json").is_file():
            ev = self.expert_meta(role)["evaluation"]
            return f"expert-{role}", float(ev["return_mean"]), float(ev["cost_mean"])
        m = self.demos_manifest(role)
        return f"demos-{role}", float(m["summary"]["return_mean"]), float(m["summary"]["cost_mean"])

    # ------------------------------------------------------------------ demonstrations
    def demos_manifest(self, role: str) -> dict[str, Any]:
        """``demos/<role>/manifest.json``, checked: its structure
        (:data:`schemas.DEMOS_MANIFEST`) and that it belongs to this experiment and env."""
        folder = self.paths.demos(role)
        manifest = read_meta(folder, "collect-demos", FIX_DEMOS, name="manifest.json")
        manifest = schemas.check(
            manifest, schemas.DEMOS_MANIFEST, folder / "manifest.json", FIX_DEMOS
        )
        schemas.check_belongs(self.rc, manifest, folder, ("env",), FIX_DEMOS)
        return manifest

    def demos(self, role: str) -> tuple[list[TrajectoryWithRew], dict[str, Any]]:
        """Trajectories and manifest of one role's demonstrations (checked)."""
        manifest = self.demos_manifest(role)
        return data.load(self.paths.demos(role)), manifest

    def demo_costs(self) -> tuple[float, float]:
        """(C_safe, C_reck): the experts' mean episode costs in their demonstrations."""
        out = [
            float(self.demos_manifest(role)["summary"]["cost_mean"])
            for role in ("safe", "reckless")
        ]
        return out[0], out[1]

    # ------------------------------------------------------------------ learned rewards
    def has_reward(self, role: str) -> bool:
        return (self.paths.rewards(role) / "meta.json").is_file()

    def reward_meta(self, role: str) -> dict[str, Any]:
        """``rewards/<role>/meta.json``, checked: its structure (:data:`schemas.REWARD_META`)
        and that it belongs to this experiment and env."""
        folder = self.paths.rewards(role)
        meta = read_meta(folder, "learn-rewards", FIX_REWARDS)
        meta = schemas.check(meta, schemas.REWARD_META, folder / "meta.json", FIX_REWARDS)
        schemas.check_belongs(self.rc, meta, folder, ("env",), FIX_REWARDS)
        return meta

    def reward_status(self, role: str) -> str:
        """``"passed"``, ``"failed"``, ``"unchecked"`` or ``"missing"`` for the role's learned
        reward (see :func:`check_status`)."""
        try:
            return check_status(json.loads((self.paths.rewards(role) / "meta.json").read_text()))
        except (OSError, json.JSONDecodeError):
            return "missing"

    def require_usable(self, role: str, unconstrained: bool = False) -> dict[str, Any]:
        """The role's reward meta.json, if a method may train on it. Raises
        :class:`RewardCheckError` when the reward failed its re-optimization check (with
        ``unconstrained``: also when it passed only under its expert's cost limit, for a
        method that optimizes it without one), ArtifactError (naming ``safeknob
        learn-rewards``) when it is missing."""
        meta = self.reward_meta(role)
        if check_status(meta) == "failed":
            raise RewardCheckError(
                f"the learned {role} reward in {self.paths.rewards(role)} failed its "
                f"re-optimization check, so no method trains on it; see `{FIX_REWARDS} --role "
                f"{role}` for why, and re-learn it (`{FIX_REWARDS} --force`) with more "
                "rewards.airl_steps or demos.episodes"
            )
        check = meta.get("check") or {}
        if unconstrained and check.get("ppo_cost_limit") is not None:
            if not check.get("unconstrained_passed", False):
                raise RewardCheckError(
                    f"the learned {role} reward passed its re-optimization check only under "
                    f"its expert's cost limit ({check['ppo_cost_limit']:g}), and this method "
                    "optimizes it without one; use budget-airl or conditioned-airl, which add "
                    "the cost constraint"
                )
        return meta

    def reward(self, role: str, checked: bool = True, unconstrained: bool = False) -> LearnedReward:
        """One role's learned AIRL reward, standardized (callable as a ``reward_fn``).

        Raises ArtifactError naming ``safeknob learn-rewards`` when missing or corrupt, and
        :class:`RewardCheckError` when it failed its re-optimization check (unless ``checked``
        is False: the check itself uses the reward before it has a verdict; ``unconstrained``:
        see :meth:`require_usable`)."""
        folder = self.paths.rewards(role)
        meta = self.require_usable(role, unconstrained) if checked else self.reward_meta(role)
        env_cfg = self.rc.experiment.env
        env = make_env(env_cfg.id, dict(env_cfg.kwargs), env_cfg.cost_fn)
        net = make_reward_net(env.observation_space, env.action_space, self.rc.experiment.ppo.gamma)
        env.close()
        try:
            net.load_state_dict(
                th.load(folder / "reward_net.pt", map_location="cpu", weights_only=True)
            )
            stats = json.loads((folder / "standardize.json").read_text())
            mean, std = float(stats["mean"]), float(stats["std"])
        except (*LOAD_ERRORS, TypeError):
            raise ArtifactError(f"{folder} is corrupt; re-run `{FIX_REWARDS} --force`") from None
        net.eval()
        return LearnedReward(net, env.observation_space, mean, std, {**meta, "standardize": stats})

    # ------------------------------------------------------------------ blends
    def blend_folder(self, method: str, alpha: float, seed: int | None = None) -> Path:
        """``blends/<method>/alpha-A`` (``_seed-S`` for a seed other than the first)."""
        return self.paths.blends / method / (alpha_dir(alpha) + self.seed_suffix(seed))

    def seed_suffix(self, seed: int | None) -> str:
        """``""`` for the experiment's first training seed (``[blend] seeds[0]``), else
        ``"_seed-S"``: one folder per (method, alpha, seed) (``safeknob.seeding``)."""
        first = self.rc.experiment.blend.seeds[0]
        return "" if seed is None else folder_suffix(first, seed)

    def blend_at(self, folder: Path) -> BlendRecord:
        """The blend stored in ``folder`` (its meta checked)."""
        meta = read_meta(folder, BLEND_STAGE, FIX_BLENDS)
        meta = schemas.check(meta, schemas.BLEND_META, folder / "meta.json", FIX_BLENDS)
        schemas.check_belongs(self.rc, meta, folder, ("env",), FIX_BLENDS)
        return BlendRecord(folder, meta)

    def blend(self, method: str, alpha: float, seed: int | None = None) -> BlendRecord:
        """The blend of ``method`` (its column name, e.g. ``budget-env``) at ``alpha``."""
        return self.blend_at(self.blend_folder(method, alpha, seed))

    def blend_folders(self) -> list[Path]:
        """Every ``blends/<method>/alpha-*`` folder, sorted."""
        root = self.paths.blends
        if not root.is_dir():
            return []
        return sorted(
            p for m in sorted(root.iterdir()) if m.is_dir() and not m.name.startswith(".")
            for p in m.iterdir() if p.is_dir() and p.name.startswith("alpha-")
        )  # fmt: skip

    def calibration_map(self, method: str) -> CalibrationMap | None:
        """The stored map of ``method`` or None; refuses a map of another experiment/method."""
        path = self.paths.blends / method / CALIBRATION_FILE
        fix = f"safeknob calibrate --method {method}"
        if not path.is_file():
            return None
        try:
            meta: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ArtifactError(f"{path} is corrupt; re-run `{fix}`") from None
        if (
            meta.get("stage") != CALIBRATE_STAGE
            or meta.get("experiment") != self.rc.experiment.name
            or meta.get("method") != method
        ):
            raise ArtifactError(
                f"{path} is a calibration map of experiment {meta.get('experiment')!r} method "
                f"{meta.get('method')!r}, not {self.rc.experiment.name!r} {method!r}; re-run "
                f"`{fix}`"
            )
        try:
            return CalibrationMap(tuple(meta["alphas"]), tuple(meta["positions"]))
        except (KeyError, TypeError):
            raise ArtifactError(f"{path} is corrupt; re-run `{fix}`") from None

    # ------------------------------------------------------------------ evaluation
    def results(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``eval/results.csv`` and ``eval/summary.csv`` (their columns checked)."""
        frames = []
        for name, columns in (("results.csv", RESULT_COLUMNS), ("summary.csv", SUMMARY_COLUMNS)):
            path = self.paths.eval / name
            if not path.is_file():
                raise ArtifactError(f"{path} not found; run `{FIX_EVAL}` first")
            try:
                df = pd.read_csv(path)
            except (OSError, ValueError, pd.errors.ParserError):  # EmptyDataError too
                raise ArtifactError(
                    f"{path} is empty or corrupt; remake it with `{FIX_EVAL}`"
                ) from None
            rows = len(df) if name == "results.csv" else 1  # a summary of experts only is empty
            schemas.check_table(df.columns, rows, columns, path, FIX_EVAL)
            numeric = [c for c in columns if c not in ("experiment", "env_id", "method")]
            bad = [c for c in numeric if len(df) and not pd.api.types.is_numeric_dtype(df[c])]
            if bad:
                raise ArtifactError(
                    f"{path} has non-numeric values in the column(s) {', '.join(bad[:3])}; "
                    f"remake it with `{FIX_EVAL}`"
                )
            frames.append(df)
        return frames[0], frames[1]
