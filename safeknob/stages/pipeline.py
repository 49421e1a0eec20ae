"""``safeknob run`` (every stage of one experiment) and ``safeknob reproduce`` (every
experiment marked ``reproduce = true``). Each stage skips work whose artifact is up to date,
so an interrupted run resumes where it stopped."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from safeknob.config import CAL, ExperimentConfig, list_experiments, load_experiment, quick
from safeknob.stages.common import RunConfig, console


def split_method(spec: str) -> tuple[str, str | None]:
    """``"budget-env"`` -> ("budget", "env"); ``"bc-mix"`` -> ("bc-mix", None)."""
    for reward in ("env", "airl"):
        if spec.startswith("budget-") and spec.endswith(f"-{reward}"):
            return "budget", reward
    if spec == "budget":
        return "budget", "airl"
    return spec, None


@dataclass(frozen=True)
class PipelineConfig:
    run: RunConfig
    """Experiment, data folder, force, quiet."""
    methods: tuple[str, ...] | None = None
    """Methods to train (default: the experiment's ``blend.methods``)."""
    workers: int = 1
    """Processes training alphas (and learning the two rewards) in parallel."""


def run(pc: PipelineConfig) -> Path:
    """experts -> demos -> learned rewards (if needed) -> every method -> evaluate -> report."""
    from safeknob import rewards
    from safeknob.stages import blend, collect_demos, evaluate, report, train_experts

    rc = pc.run
    exp = rc.experiment
    methods = pc.methods or exp.blend.methods
    t0 = time.perf_counter()
    console.rule(f"[bold]{exp.name}: experts")
    train_experts.run(rc)
    console.rule(f"[bold]{exp.name}: demonstrations")
    collect_demos.run(collect_demos.CollectConfig(rc))
    gate_error: rewards.RewardCheckError | None = None
    if any(needs_rewards(m) for m in methods):
        console.rule(f"[bold]{exp.name}: learned rewards")
        roles = ("reckless", "safe")
        try:
            rewards.run(rc, roles, workers=pc.workers)
        except rewards.RewardCheckError as exc:
            # The gate: no method trains on a reward that failed its check. The other
            # methods still run; the pipeline fails at the end with this line.
            gate_error = exc
            skipped = [m for m in methods if needs_rewards(m)]
            console.print(f"[red]{exc}[/red]\nskipping {', '.join(skipped)}")
            methods = tuple(m for m in methods if not needs_rewards(m))
    # "<method>+cal": train <method> raw, evaluate it, fit its calibration map, then train
    # the agents asked through the map (blends/<method>+cal/).
    calibrated = [m.removesuffix(CAL) for m in methods if m.endswith(CAL)]
    raw = list(dict.fromkeys([m for m in methods if not m.endswith(CAL)] + calibrated))
    for spec in raw:
        name, reward = split_method(spec)
        console.rule(f"[bold]{exp.name}: {spec}")
        blend.run(blend.BlendRunConfig(rc, name, exp.blend.alphas, reward, workers=pc.workers))
    console.rule(f"[bold]{exp.name}: evaluate")
    evaluate.run(rc)
    if calibrated:
        from safeknob.stages import calibrate

        for spec in calibrated:
            name, reward = split_method(spec)
            console.rule(f"[bold]{exp.name}: {spec}{CAL}")
            calibrate.run(calibrate.CalibrateConfig(rc, spec))
            blend.run(
                blend.BlendRunConfig(
                    rc, name, exp.blend.alphas, reward, workers=pc.workers, calibrated=True
                )
            )
        console.rule(f"[bold]{exp.name}: evaluate (calibrated agents)")
        evaluate.run(rc)  # agents measured above come from cache/eval/
    console.rule(f"[bold]{exp.name}: report")
    out = report.run(rc)
    console.print(f"{exp.name} done in {time.perf_counter() - t0:.0f} s: {out}")
    if gate_error is not None:
        raise gate_error
    return out


def needs_rewards(spec: str) -> bool:
    """True for a method spec that trains on learned rewards (budget-airl, reward-mix)."""
    base = spec.removesuffix(CAL)
    return split_method(base)[1] == "airl" or base == "reward-mix"


def experiments_to_reproduce() -> list[ExperimentConfig]:
    return [e for e in (load_experiment(str(p)) for p in list_experiments()) if e.reproduce]


def reproduce(
    data_dir: Path,
    quick_mode: bool = False,
    force: bool = False,
    quiet: bool = False,
    workers: int = 1,
) -> list[Path]:
    """Run every experiment marked ``reproduce = true``."""
    from safeknob.rewards import RewardCheckError

    outs, gate_errors = [], []
    for exp in experiments_to_reproduce():
        if quick_mode:
            exp = quick(exp)
        try:
            outs.append(
                run(PipelineConfig(RunConfig(exp, data_dir, force, quiet), workers=workers))
            )
        except RewardCheckError as exc:  # its other methods ran; go on with the next one
            gate_errors.append(f"{exp.name}: {exc}")
    if gate_errors:
        raise RewardCheckError(" | ".join(gate_errors))
    return outs
