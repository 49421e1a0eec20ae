"""The interface every blend method implements, and what a method sees while it trains."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.progress import Progress, TaskID

from safeknob import seeding
from safeknob.artifacts import alpha_dir
from safeknob.config import PPOConfig, RunConfig, tb_dir
from safeknob.evaluation.rollout import Agent
from safeknob.store import ExperimentStore

REWARD_SOURCES = ("airl", "env")
"""Every reward source a method may take (``--reward``): the env's own or AIRL's learned one."""


@dataclass
class BlendContext:
    """What a method sees when it trains or loads an agent."""

    run: RunConfig
    """Experiment, data folder, flags."""
    seed: int
    """Training seed of this agent: a label (``[blend] seeds``, the ``seed`` column); the
    numbers handed to torch and numpy come from :meth:`stream`."""
    c_safe: float
    """The safe expert's mean episode cost in its demonstrations."""
    c_reck: float
    """The reckless expert's mean episode cost in its demonstrations."""
    progress: Progress | None = None
    task: TaskID | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, rc: RunConfig, seed: int | None = None) -> BlendContext:
        """The context of an experiment (reads the demonstrations' costs; ArtifactError when
        they are missing)."""
        c_safe, c_reck = ExperimentStore(rc).demo_costs()
        return cls(rc, rc.experiment.blend.seeds[0] if seed is None else seed, c_safe, c_reck)

    @property
    def store(self) -> ExperimentStore:
        return ExperimentStore(self.run)

    def stream(self, role: str, method: str, alpha: float | None = None) -> int:
        """The integer seed of stream (``blend``, role, method, alpha, seed) derived from the
        experiment's seed (:mod:`safeknob.seeding`); ``alpha=None`` for a stream shared by
        every alpha."""
        return seeding.derive(self.run.experiment.seed, "blend", role, method, alpha, self.seed)

    def tb_dir(self, method: str, alpha: float) -> Path | None:
        """TensorBoard folder of the agent of ``method`` at ``alpha`` for this training seed
        (``tb/blend/<method>/alpha-A[_seed-S]``; None with ``--no-tensorboard``)."""
        return tb_dir(
            self.run, "blend", method, alpha_dir(alpha) + self.store.seed_suffix(self.seed)
        )

    def budget(self, alpha: float) -> float:
        """d(alpha) = C_safe + alpha * (C_reck - C_safe), the episode-cost budget at alpha."""
        return self.c_safe + alpha * (self.c_reck - self.c_safe)


class Method(abc.ABC):
    """A blend method: trains (or instantiates) one agent per alpha.

    The class attributes are the method's facts, set in one place by
    :func:`safeknob.methods.registry.register`; config validation, the CLI, ``run``,
    ``sweep`` and ``train-blend`` read them and never test a method by name."""

    key: ClassVar[str] = ""
    """The ``--method`` name (``budget``)."""
    rewards: ClassVar[tuple[str, ...]] = ()
    """Reward sources ``--reward`` accepts; empty when the method takes none."""
    default_reward: ClassVar[str | None] = None
    """Reward source used when ``--reward`` is not given."""
    bare_default: ClassVar[bool] = False
    """Name the default reward source's spec by the key alone (``conditioned``; its learned
    reward variant is ``conditioned-airl``) instead of ``key-reward`` (``budget-env``)."""
    needs_rewards: ClassVar[tuple[str, ...]] = ()
    """Roles whose learned (AIRL) reward the method uses when its reward source is ``airl``."""
    shared_policy: ClassVar[bool] = False
    """One policy serves every alpha (trained once per grid; only the experiment's seed)."""
    trains: ClassVar[bool] = True
    """False for methods that only combine existing agents (mixture)."""
    calibratable: ClassVar[bool] = True
    """Whether ``<method>+cal`` (training through a calibration map) makes sense."""
    cost: ClassVar[int] = 1
    """Rough relative compute of one job (a sweep starts the long ones first)."""
    summary: ClassVar[str] = ""
    """One line for the CLI's help."""

    def __init__(self, reward: str | None = None) -> None:
        self.reward = reward if reward is not None else self.default_reward

    @property
    def name(self) -> str:
        """Column value in results.csv and the ``blends/`` folder name (``budget-env``): the
        key, with the reward source when the method takes several (not for the default one
        of a ``bare_default`` method: ``conditioned``, ``conditioned-airl``)."""
        if len(self.rewards) <= 1 or (self.bare_default and self.reward == self.default_reward):
            return self.key
        return f"{self.key}-{self.reward}"

    @property
    def learned_rewards(self) -> tuple[str, ...]:
        """Roles whose learned reward must exist before this method trains."""
        return self.needs_rewards if self.reward == "airl" else ()

    @property
    def promise(self) -> str | None:
        """The key of :data:`safeknob.stages.promised.SOURCES` whose optimum this method's
        agents should deliver on a learned reward (the report sets them side by side), or
        None on the env's reward: by default the learned task reward at the budget d(alpha)
        (``airl``)."""
        return self.learned_promise if self.learned_rewards else None

    learned_promise: ClassVar[str] = "airl"
    """What the method maximizes on learned rewards (a :data:`~safeknob.stages.promised.
    SOURCES` key): ``airl``, the task reward within the budget; ``mix``, the alpha-mix of the
    experts' rewards without one."""

    def ppo(self, ctx: BlendContext) -> PPOConfig:
        """The PPO settings of this method's agents. On the env's reward, ``[blend]``'s
        (:attr:`ExperimentConfig.blend_ppo`: width, minibatch, epochs). On a learned reward,
        the experiment's ``[ppo]``: the settings under which that reward passed its
        re-optimization gate (``learn-rewards``), which certifies a reward for the optimizer
        it ran, not for another one."""
        exp = ctx.run.experiment
        return exp.ppo if self.learned_rewards else exp.blend_ppo

    @abc.abstractmethod
    def steps(self, ctx: BlendContext) -> int:
        """Env steps (or epochs) one agent trains for, for the progress bar; 0 if none."""

    @abc.abstractmethod
    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        """Train the agent at ``alpha``, write its files into ``folder``; return meta extras."""

    def batches(self, ctx: BlendContext) -> bool:
        """True when this method trains all alphas of one training seed in one batched call
        (:meth:`train_batch` and :meth:`finish`) instead of :meth:`train` per alpha."""
        return False

    def train_batch(
        self, ctx: BlendContext, alphas: list[float], progress: Any = None
    ) -> list[Any]:
        """Train the agents at ``alphas`` together (only when :meth:`batches`); one result per
        alpha for :meth:`finish`, or an ``AgentFailure``. ``progress(n)`` is called with the
        env steps done (all agents)."""
        raise NotImplementedError(f"{self.name} does not train in batches")

    def finish(self, ctx: BlendContext, alpha: float, folder: Path, result: Any) -> dict[str, Any]:
        """Write the agent trained by :meth:`train_batch` at ``alpha`` into ``folder``; return
        meta extras (as :meth:`train`)."""
        raise NotImplementedError(f"{self.name} does not train in batches")

    @abc.abstractmethod
    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        """Rebuild the agent saved in ``folder`` (its checked ``meta.json`` given)."""
