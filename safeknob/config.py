"""Experiment configuration: frozen, typed dataclasses loaded from TOML.

One dataclass per concern; the loader rejects unknown keys and wrong types with one line
naming the key. Derived values are properties, never fields filled in at runtime.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from safeknob.artifacts import ExperimentPaths, experiment_paths
from safeknob.errors import ConfigError


@dataclass(frozen=True)
class EnvConfig:
    id: str = "safeknob/HazardGrid-v0"
    """Gymnasium id (``"module:EnvId"`` works) of an env that reports ``info["cost"]``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the env constructor (e.g. a HazardGrid ``layout``)."""
    cost_fn: str | None = None
    """Optional ``"module:function"`` computing the cost of a transition."""


@dataclass(frozen=True)
class PPOConfig:
    """stable-baselines3 PPO settings shared by every trained agent of an experiment."""

    n_envs: int = 8
    """Parallel envs per rollout (a DummyVecEnv)."""
    n_steps: int = 128
    """Steps per env per rollout."""
    batch_size: int = 256
    """Minibatch size."""
    n_epochs: int = 10
    """Optimization epochs per rollout."""
    learning_rate: float = 1e-3
    """Adam step size."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clip range."""
    ent_coef: float = 0.03
    """Entropy bonus; keeps route choice stochastic enough for interior frontier points."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy and value networks."""


@dataclass(frozen=True)
class LagrangeConfig:
    """PID Lagrangian multiplier (Stooke et al. 2020) on the mean episode cost."""

    kp: float = 0.02
    """Proportional gain per unit of episode cost."""
    ki: float = 0.002
    """Integral gain per unit of episode cost."""
    kd: float = 0.01
    """Derivative gain per unit of episode cost."""
    lambda_max: float = 1.0
    """Upper bound on the multiplier."""
    warmup_rollouts: int = 15
    """Rollouts with the multiplier held at 0 before updates start."""
    cost_window: int = 3
    """Rollouts over which episode costs are averaged for each update."""


@dataclass(frozen=True)
class ExpertsConfig:
    cost_limit: float = 1.5
    """Episode cost budget of the safe expert (undiscounted sum of per-step costs)."""
    reckless_steps: int = 100_000
    """Env steps of PPO for the reckless expert."""
    safe_steps: int = 300_000
    """Env steps of PPO-Lagrangian for the safe expert."""
    eval_episodes: int = 500
    """Episodes of the closing evaluation table."""
    deterministic: bool = True
    """Act greedily (argmax) when rolling the experts out."""


@dataclass(frozen=True)
class DemosConfig:
    episodes: int = 50
    """Episodes recorded per expert."""


@dataclass(frozen=True)
class BlendConfig:
    method: str = "budget"
    """Default blend method."""
    alphas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    """Default alpha grid of train-blend."""
    methods: tuple[str, ...] = (
        "mixture",
        "bc-mix",
        "bc-mix+cal",
        "budget-env",
        "budget-airl",
        "conditioned",
        "conditioned+cal",
        "reward-mix",
    )
    """Methods ``safeknob run`` trains on the grid (``budget-env`` = ``--method budget
    --reward env``; ``bc-mix+cal`` = train bc-mix, calibrate it, train again through the map)."""
    n_envs: int = 0
    """Parallel envs of the blended PPO agents on the env's reward (``budget-env``,
    ``conditioned``; 0: ``ppo.n_envs``). ``n_steps`` shrinks to keep the rollout size
    ``ppo.n_envs * ppo.n_steps``: wider, shorter rollouts make fewer policy calls per sample
    (and the conditioned policy sees more alpha bins per update). Agents on a learned reward
    keep ``[ppo]``, the settings their reward's gate ran (``Method.ppo``)."""
    batch_size: int = 0
    """Minibatch size of the blended PPO agents on the env's reward (0: ``ppo.batch_size``)."""
    n_epochs: int = 0
    """Epochs per rollout of the blended PPO agents on the env's reward (0: ``ppo.n_epochs``)."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds of the blended agents: ``run``, ``reproduce``, ``train-blend`` and
    ``sweep`` train every (method, alpha, seed), one ``results.csv`` row each, and
    ``summary.csv`` gives each metric's mean and 95% interval over them. Labels, not the
    numbers handed to torch: every stream is derived from the experiment's ``seed``
    (``safeknob.seeding``)."""
    steps: int = 300_000
    """Env steps per trained blended agent."""
    gain_scale: float = 5.0
    """Multiplies the PID gains for ``budget`` agents: a per-alpha run is short, and an
    oscillating multiplier is fine (the deployed dual mixture of iterates meets the budget),
    while a sluggish one never reaches the interior of the frontier."""
    candidate_episodes: int = 300
    """Fresh episodes on which ``budget`` measures each candidate iterate, the same ones for
    every candidate (common random numbers). With 100 on the grid the cheapest-looking
    iterate was often a lucky draw (winner's curse). Costly on slow envs (Bullet)."""
    conditioned_steps: int = 1_000_000
    """Env steps of the one alpha-conditioned policy (``conditioned``)."""
    conditioned_bins: int = 11
    """Alpha grid the conditioned policy trains on (one multiplier per value)."""
    warmstart: bool = False
    """Start ``budget --reward env`` and ``conditioned --reward env`` from behavioural cloning
    of the demonstrations instead of a random policy (on learned rewards, ``--reward airl``,
    both always do):
    ``budget`` clones both experts, ``conditioned`` clones each expert with its own alpha
    (0 safe, 1 reckless) in the observation. For envs where PPO from scratch learns the
    reckless route first and then cannot find the safe one (HazardNav's fence)."""
    batched: bool = False
    """Train all alphas of one training seed of ``budget --reward env`` as one batched
    computation (``safeknob.rl.batched_ppo``: the same PPO-Lagrangian agents, several times
    faster) when the env has a batched core (the built-in grid and nav). Off: one SB3 run per
    alpha, as before. The numbers move within seed noise (float rounding differs), so it is
    part of each agent's recorded config; at its default it is left out of the record, so
    agents made before the switch existed stay up to date. Batched agents write no
    TensorBoard logs; each meta.json records its batch."""


@dataclass(frozen=True)
class RewardsConfig:
    airl_steps: int = 300_000
    """Generator env steps of AIRL per learned reward."""
    check_steps: int = 200_000
    """Env steps of the PPO that re-optimizes a learned reward (0: skip the check; the
    reward is then marked unchecked and methods use it with a warning)."""
    generator_term: str = "auto"
    """The AIRL discriminator's generator term: "transition" (log-probability of the observed
    transition; needs a tabular model), "absorbing" (Discriminator-Actor-Critic style: log
    pi(a|s), 0 on absorbing steps; no model), "absorbing-centered" (plus the policy's
    entropy), "policy" (imitation's own log pi(a|s) everywhere; loiters, for comparison) or
    "auto" (transition where a tabular model exists, else absorbing)."""
    generator_warmstart: bool = True
    """Start AIRL's generator from behavioural cloning of the demonstrations (the first
    generator; restarted ones start from scratch, see ``generator_restarts``)."""
    generator_restarts: int = 7
    """Times AIRL's generator is re-initialized from scratch during training, at evenly
    spaced rounds. A generator that starts at its expert (BC) leaves the discriminator no
    negatives off the expert's path, and a fresh PPO on such a reward loiters; a fresh
    generator does what a fresh PPO on the current reward does (loiter, cut through hazards),
    so the discriminator sees it and learns to penalize it (experiments/NOTES.md)."""
    replay_rounds: int = 0
    """Rounds of generator samples the discriminator draws its negatives from (imitation's
    ``gen_replay_buffer_capacity`` = this x the generator's steps per round): 1 is
    imitation's default (the latest round only), 0 every round of the run, so what earlier
    generators did stays penalized."""
    check_warmstart: bool = True
    """Start the gate's PPO from behavioural cloning of its expert's demonstrations, as every
    method on learned rewards starts: the gate asks whether PPO on the reward keeps (and does
    not drift from) the expert's behaviour. False: a PPO from scratch (AIRL's
    re-optimization test, Fu et al. 2018), which must also find the behaviour by
    exploration."""
    check_constrained: bool = True
    """Re-optimize the safe expert's reward under the cost limit it was trained under
    (``experts.cost_limit``, PPO-Lagrangian), as that expert maximized its reward under it:
    a learned reward explains behaviour, and the safe expert's behaviour includes its
    constraint (inverse constrained RL, Malik et al. 2021). False: unconstrained."""
    cost_tolerance: float = 0.2
    """The re-optimization gate: the PPO's mean episode cost must lie within this fraction of
    the experts' cost gap |C_reck - C_safe| of its own expert's cost."""
    return_tolerance: float = 0.1
    """... and its mean return within this fraction of the experts' return difference
    |R_reck - R_safe| (the knob's range) of its own expert's return. Relative to the
    difference, not to the returns' size: a reward that loses most of the range between the
    experts must fail even where both returns are large (hazard-nav: 0.05 of the returns'
    size was 81% of their difference)."""
    terminal_tolerance: float = 0.1
    """... and the fraction of its episodes that end in a terminal state (the goal) at most
    this much below its expert's demonstrations' fraction."""


@dataclass(frozen=True)
class EvalConfig:
    episodes: int = 200
    """Evaluation episodes per agent."""
    seed: int = 10_000
    """Base seed of evaluation episodes (fixed, separate from training seeds)."""
    n_boot: int = 2000
    """Bootstrap resamples of the 95% confidence intervals."""


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "hazard-grid"
    """Experiment name; artifacts go under ``<data>/<name>/``."""
    seed: int = 0
    """Training seed."""
    reproduce: bool = False
    """Whether ``make reproduce`` runs this experiment."""
    env: EnvConfig = field(default_factory=EnvConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    lagrange: LagrangeConfig = field(default_factory=LagrangeConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    demos: DemosConfig = field(default_factory=DemosConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain, TOML/JSON-friendly dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)

    @property
    def blend_ppo(self) -> PPOConfig:
        """The PPO settings of the blended agents: ``ppo`` with ``blend``'s width, minibatch
        and epochs where set. The rollout keeps ``ppo.n_envs * ppo.n_steps`` samples (rounded
        down to a multiple of the width), and the minibatch is at most one rollout."""
        b, ppo = self.blend, self.ppo
        n_envs = b.n_envs or ppo.n_envs
        n_steps = max(1, (ppo.n_envs * ppo.n_steps) // n_envs)
        batch = min(b.batch_size or ppo.batch_size, n_envs * n_steps)
        return dataclasses.replace(
            ppo,
            n_envs=n_envs,
            n_steps=n_steps,
            batch_size=batch,
            n_epochs=b.n_epochs or ppo.n_epochs,
        )


@dataclass(frozen=True)
class RunConfig:
    """What a stage needs beyond the experiment itself."""

    experiment: ExperimentConfig
    """The resolved experiment."""
    data_dir: Path = Path("data")
    """Artifact root; the experiment's folder is ``data_dir / experiment.name``."""
    force: bool = False
    """Redo a stage whose artifact exists (and accept a changed config)."""
    quiet: bool = False
    """No progress bars or tables (tests, sweeps)."""
    tensorboard: bool = True
    """Log training to ``<data>/<experiment>/tb/<stage>/...`` (``--no-tensorboard``)."""

    @property
    def paths(self) -> ExperimentPaths:
        return experiment_paths(self.data_dir, self.experiment.name)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def tb_dir(rc: RunConfig, *parts: str) -> Path | None:
    """TensorBoard folder of one training run, or None when logging is off or unavailable."""
    if not rc.tensorboard or importlib.util.find_spec("tensorboard") is None:
        return None
    return rc.paths.root / "tb" / Path(*parts)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if v is not None}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


# ---------------------------------------------------------------------------- loading
def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[]") for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    return _scalar(value, tp, where)


_SCALARS: dict[Any, tuple[tuple[type, ...], str]] = {
    float: ((int, float), "a number"),
    int: ((int,), "an integer"),
    bool: ((bool,), "true or false"),
    str: ((str,), "a string"),
}
"""Accepted Python types and the description in the error, per scalar field type."""


def _scalar(value: Any, tp: Any, where: str) -> Any:
    if tp not in _SCALARS:
        return value
    accepted, what = _SCALARS[tp]
    if (isinstance(value, bool) and tp is not bool) or not isinstance(value, accepted):
        raise ConfigError(f"{where} must be {what}, got {value!r}")
    return float(value) if tp is float else value


def _build(cls: Any, data: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"[{where}] " if where else ""
        raise ConfigError(
            f"{prefix}unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric setting: ``lo <= x <= hi`` (``<`` where open), finite."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    zero_ok: bool = False
    """0 is allowed too (a "use the default" sentinel below ``lo``)."""

    def contains(self, x: float) -> bool:
        if self.zero_ok and x == 0:
            return True
        if not math.isfinite(x):
            return False
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def describe(self) -> str:
        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() else f"{v:g}"

        if math.isfinite(self.lo) and math.isfinite(self.hi):
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            text = f"in {left}{num(self.lo)}, {num(self.hi)}{right}"
        elif math.isfinite(self.lo):
            text = f"{'>' if self.lo_open else '>='} {num(self.lo)}"
        elif math.isfinite(self.hi):
            text = f"{'<' if self.hi_open else '<='} {num(self.hi)}"
        else:
            text = "a finite number"
        return f"0 or {text}" if self.zero_ok else text


SEED_RANGE = Range(0, 2**31 - 1)
"""Seeds: non-negative, and small enough that the offsets the stages add stay below numpy's
legacy ``2**32`` limit (``np.random.seed``, which stable-baselines3 calls)."""

POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)
AT_LEAST_1 = Range(1)

RANGES: dict[str, Range] = {
    "seed": SEED_RANGE,
    "ppo.n_envs": AT_LEAST_1,
    "ppo.n_steps": AT_LEAST_1,
    "ppo.batch_size": Range(2),  # stable-baselines3 asserts batch_size > 1
    "ppo.n_epochs": AT_LEAST_1,
    "ppo.learning_rate": POSITIVE,
    "ppo.gamma": UNIT,
    "ppo.gae_lambda": UNIT,
    "ppo.clip_range": POSITIVE,
    "ppo.ent_coef": NON_NEGATIVE,
    "ppo.net_arch[]": AT_LEAST_1,
    "lagrange.kp": NON_NEGATIVE,
    "lagrange.ki": NON_NEGATIVE,
    "lagrange.kd": NON_NEGATIVE,
    "lagrange.lambda_max": POSITIVE,
    "lagrange.warmup_rollouts": NON_NEGATIVE,
    "lagrange.cost_window": AT_LEAST_1,
    "experts.cost_limit": NON_NEGATIVE,
    "experts.reckless_steps": AT_LEAST_1,
    "experts.safe_steps": AT_LEAST_1,
    "experts.eval_episodes": Range(2),  # confidence intervals need two episodes
    "demos.episodes": AT_LEAST_1,
    "blend.alphas[]": UNIT,
    "blend.seeds[]": SEED_RANGE,
    "blend.steps": AT_LEAST_1,
    "blend.gain_scale": POSITIVE,
    "blend.candidate_episodes": AT_LEAST_1,
    "blend.conditioned_steps": AT_LEAST_1,
    "blend.conditioned_bins": Range(2),  # the grid includes alpha = 0 and alpha = 1
    "blend.n_envs": Range(1, zero_ok=True),
    "blend.batch_size": Range(2, zero_ok=True),
    "blend.n_epochs": Range(1, zero_ok=True),
    "rewards.airl_steps": AT_LEAST_1,
    "rewards.check_steps": NON_NEGATIVE,
    "rewards.replay_rounds": NON_NEGATIVE,
    "rewards.generator_restarts": NON_NEGATIVE,
    "rewards.cost_tolerance": POSITIVE,
    "rewards.return_tolerance": POSITIVE,
    "rewards.terminal_tolerance": POSITIVE,
    "eval.episodes": Range(2),
    "eval.seed": SEED_RANGE,
    "eval.n_boot": AT_LEAST_1,
}
"""The allowed range of every numeric setting, by its dotted key (``[]``: each list item).
``tests/test_config.py`` checks that every int/float field of the schema has an entry."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
"""Experiment names: one path component (no separators, no ``..``, no hidden folder)."""


def check_range(key: str, value: float, label: str | None = None) -> None:
    """Raise ConfigError naming ``label`` (default ``key``) unless ``value`` lies in the
    :data:`RANGES` entry of ``key``."""
    rng = RANGES[key]
    if not rng.contains(value):
        name = label or key.removesuffix("[]")
        raise ConfigError(f"{name} must be {rng.describe()}, got {value!r}")


def check_name(name: str, key: str = "name") -> None:
    """Raise ConfigError unless ``name`` is a single safe path component."""
    if not NAME_PATTERN.fullmatch(name) or set(name) <= {"."}:
        raise ConfigError(
            f"{key} must be one folder name (letters, digits, '_', '.', '-'; at most 100; no "
            f"'/' or '..'), got {name!r}"
        )


def _check_finite(value: Any, key: str) -> None:
    """Env kwargs are passed on untyped; a NaN or infinite number in them never makes sense."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for v in value:
            _check_finite(v, f"{key}[]")


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Range checks that types alone cannot express (one line naming the key). (``blend.methods``
    names registered methods; :func:`safeknob.methods.check_specs` checks them, one layer up.)"""
    check_name(cfg.name)
    full = dataclasses.asdict(cfg)
    for key in RANGES:
        section, _, name = key.removesuffix("[]").rpartition(".")
        value = full[section][name] if section else full[name]
        for v in value if key.endswith("[]") else (value,):
            if v is not None:
                check_range(key, v)
    _check_finite(cfg.env.kwargs, "env.kwargs")
    seeds = cfg.blend.seeds
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"blend.seeds must be distinct integers >= 0 (e.g. [0, 1, 2]), got {list(seeds)}"
        )
    r = cfg.rewards
    terms = ("auto", "transition", "absorbing", "absorbing-centered", "policy")
    if r.generator_term not in terms:
        raise ConfigError(
            f"rewards.generator_term must be one of {', '.join(terms)}, got {r.generator_term!r}"
        )
    return cfg


def quick(cfg: ExperimentConfig) -> ExperimentConfig:
    """Small budgets for a fast look at the whole pipeline (``--quick``)."""
    e, b, r = cfg.experts, cfg.blend, cfg.rewards
    return cfg.replace(
        name=f"{cfg.name}-quick",
        experts=dataclasses.replace(
            e,
            reckless_steps=e.reckless_steps // 4,
            # Half, not a quarter: the safe expert's multiplier needs time to push it off the
            # cheaper routes (default grid: at 75k steps it still took the thin crossing, cost
            # 1.67 against the limit 0.1; at 150k the detour, cost 0.025; NOTES).
            safe_steps=e.safe_steps // 2,
            eval_episodes=min(e.eval_episodes, 200),
        ),
        demos=dataclasses.replace(cfg.demos, episodes=min(cfg.demos.episodes, 100)),
        blend=dataclasses.replace(
            b,
            alphas=(0.0, 0.25, 0.5, 0.75, 1.0),
            seeds=b.seeds[:1],
            steps=b.steps // 6,
            conditioned_steps=b.conditioned_steps // 6,
        ),
        rewards=dataclasses.replace(r, airl_steps=r.airl_steps // 6, check_steps=0),
        eval=dataclasses.replace(cfg.eval, episodes=min(cfg.eval.episodes, 100)),
    )


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    return validate(_build(ExperimentConfig, data))


def bundled_experiments_dir() -> Path:
    """The repo's ``experiments/`` folder when run from a checkout, else the packaged copy."""
    repo = Path(__file__).resolve().parent.parent / "experiments"
    if repo.is_dir():
        return repo
    return Path(str(resources.files("safeknob") / "experiments"))


def resolve_experiment_path(name_or_path: str | None) -> Path:
    """``None`` -> the default experiment; a name -> ``experiments/<name>.toml``; else a path."""
    if name_or_path is None:
        name_or_path = "hazard-grid"
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"experiment file {p} does not exist")
        return p
    candidate = bundled_experiments_dir() / f"{name_or_path}.toml"
    if not candidate.is_file():
        known = sorted(x.stem for x in bundled_experiments_dir().glob("*.toml"))
        raise ConfigError(f"unknown experiment {name_or_path!r}; known: {', '.join(known)}")
    return candidate


def load_experiment(name_or_path: str | None = None) -> ExperimentConfig:
    """Load and validate an experiment TOML (see ``experiments/``)."""
    path = resolve_experiment_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def list_experiments() -> list[Path]:
    return sorted(bundled_experiments_dir().glob("*.toml"))


def apply_overrides(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """``cfg`` with ``--set section.key=value`` overrides applied, checked like the TOML.

    Each value is read as a TOML value (``50000``, ``0.5``, ``true``, ``[0, 0.5, 1]``,
    ``"text"``); a bare word that is not TOML is taken as a string. Raises ConfigError naming
    the override for a malformed one, an unknown key or a value out of range."""
    if not overrides:
        return cfg
    data = cfg.to_dict()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: use section.key=value, e.g. blend.steps=50000")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        *parents, leaf = key.split(".")
        table = data
        for part in parents:
            nxt = table.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a table")
            table = nxt
        table[leaf] = value
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"--set {', '.join(overrides)}: {exc}") from None
