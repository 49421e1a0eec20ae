"""``safeknob run`` (every stage of one experiment) and ``safeknob reproduce`` (every
experiment marked ``reproduce = true``). Each stage skips work whose artifact is up to date,
so an interrupted run resumes where it stopped."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from safeknob.artifacts import write_json
from safeknob.config import ExperimentConfig, RunConfig, list_experiments, load_experiment, quick
from safeknob.methods import CAL, check_specs, learned_rewards, parse_spec
from safeknob.stages import (
    blend,
    calibrate,
    collect_demos,
    evaluate,
    learn_rewards,
    report,
    train_experts,
)
from safeknob.stages.common import console
from safeknob.store import RewardCheckError


@dataclass(frozen=True)
class PipelineConfig:
    run: RunConfig
    """Experiment, data folder, force, quiet."""
    methods: tuple[str, ...] | None = None
    """Methods to train (default: the experiment's ``blend.methods``)."""
    workers: int = 1
    """Processes for the experts, the learned rewards, the blended agents' (alpha, seed) jobs
    and ``evaluate``'s rollouts."""


def run(pc: PipelineConfig) -> Path:
    """experts -> demos -> learned rewards (if needed) -> every method -> evaluate -> report."""
    rc = pc.run
    exp = rc.experiment
    methods = pc.methods or exp.blend.methods
    check_specs(methods)
    t0 = time.perf_counter()
    clock = _Clock(exp.name)
    clock.start("experts")
    train_experts.run(rc, pc.workers)
    clock.start("demonstrations")
    collect_demos.run(collect_demos.CollectConfig(rc))
    gate_error: RewardCheckError | None = None
    roles = learned_rewards(methods)
    if roles:
        clock.start("learned rewards")
        try:
            learn_rewards.run(rc, roles, workers=pc.workers)
        except RewardCheckError as exc:
            # The gate: no method trains on a reward that failed its check. The other
            # methods still run; the pipeline fails at the end with this line.
            gate_error = exc
            skipped = [m for m in methods if learned_rewards([m])]
            console.print(f"[red]{exc}[/red]\nskipping {', '.join(skipped)}")
            methods = tuple(m for m in methods if not learned_rewards([m]))
    # "<method>+cal": train <method> raw, evaluate it, fit its calibration map, then train
    # the agents asked through the map (blends/<method>+cal/).
    calibrated = [m.removesuffix(CAL) for m in methods if m.endswith(CAL)]
    raw = list(dict.fromkeys([m for m in methods if not m.endswith(CAL)] + calibrated))
    # Every method's (alpha, seed) jobs on one process pool (blend.run_all).
    clock.start(f"{', '.join(raw)} (seeds {list(exp.blend.seeds)})", "blends")
    blend.run_all(
        [blend.BlendRunConfig(rc, **_method_reward(spec), alphas=exp.blend.alphas) for spec in raw],
        pc.workers,
    )
    clock.start("evaluate")
    evaluate.run(rc, pc.workers)
    if calibrated:
        for spec in calibrated:
            clock.start(f"calibrate {spec}", "calibrate")
            calibrate.run(calibrate.CalibrateConfig(rc, spec))
        clock.start(", ".join(s + CAL for s in calibrated), "calibrated blends")
        blend.run_all(
            [
                blend.BlendRunConfig(
                    rc, **_method_reward(s), alphas=exp.blend.alphas, calibrated=True
                )
                for s in calibrated
            ],
            pc.workers,
        )
        clock.start("evaluate (calibrated agents)", "evaluate")
        evaluate.run(rc, pc.workers)  # agents measured above come from cache/eval/
    clock.start("report")
    out = report.run(rc)
    clock.stop()
    write_json(rc.paths.cache / "timings.json", clock.seconds)
    if not rc.quiet:
        clock.print()
    console.print(f"{exp.name} done in {time.perf_counter() - t0:.0f} s: {out}")
    if gate_error is not None:
        raise gate_error
    return out


class _Clock:
    """Wall-clock seconds per pipeline stage: printed at the end of ``run`` and kept in
    ``cache/timings.json`` (where a ``make reproduce`` spends its time)."""

    def __init__(self, name: str) -> None:
        self.name, self.seconds = name, {}
        self._stage: str | None = None
        self._t = 0.0

    def start(self, title: str, stage: str | None = None) -> None:
        """End the running stage and start ``stage`` (default: ``title``), ruled ``title``."""
        self.stop()
        console.rule(f"[bold]{self.name}: {title}")
        self._stage, self._t = stage or title, time.perf_counter()

    def stop(self) -> None:
        if self._stage is not None:
            dt = time.perf_counter() - self._t
            self.seconds[self._stage] = round(self.seconds.get(self._stage, 0.0) + dt, 1)
            self._stage = None

    def print(self) -> None:
        table = Table(title=f"{self.name}: wall-clock seconds per stage")
        table.add_column("stage")
        table.add_column("seconds", justify="right")
        for stage, sec in self.seconds.items():
            table.add_row(stage, f"{sec:.0f}")
        console.print(table)


def _method_reward(spec: str) -> dict[str, str | None]:
    name, reward = parse_spec(spec)
    return {"method": name, "reward": reward}


def experiments_to_reproduce() -> list[ExperimentConfig]:
    return [e for e in (load_experiment(str(p)) for p in list_experiments()) if e.reproduce]


def reproduce(rc: RunConfig, quick_mode: bool = False, workers: int = 1) -> list[Path]:
    """Run every experiment marked ``reproduce = true`` with ``rc``'s data folder and flags
    (``rc.experiment`` is replaced by each of them)."""
    outs, gate_errors = [], []
    for exp in experiments_to_reproduce():
        if quick_mode:
            exp = quick(exp)
        try:
            outs.append(run(PipelineConfig(rc.replace(experiment=exp), workers=workers)))
        except RewardCheckError as exc:  # its other methods ran; go on with the next one
            gate_errors.append(f"{exp.name}: {exc}")
    if gate_errors:
        raise RewardCheckError(" | ".join(gate_errors))
    return outs
