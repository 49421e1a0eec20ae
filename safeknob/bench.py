"""``make bench``: measured quality and speed, printed (never a pass/fail on wall time).

* Expert quality on the default HazardGrid against the exact optimum and frontier.
* The coin flip's exact frontier gap on the default HazardGrid (fails below ``MIN_GAP``).
* HazardNav experts: cost ratio and goal-reach rate.
* Env speed (random actions, steps/s, single thread): HazardNav, and the optional
  Bullet-Safety-Gym ``SafetyBallCircle-v0`` and Safety-Gymnasium
  ``SafetyPointGoal1Gymnasium-v0`` when installed.
* Speed, side by side: env steps/s of the built-in envs as single envs (``DummyVecEnv``) and
  batched (``safeknob.envs.vec``); K PPO-Lagrangian agents trained as one batched computation
  (``rl.batched_ppo``) against SB3 at K = 1, 11, 33; ``evaluate``'s rollout episodes/s before and after batching
  (same agent, same episodes, the numbers compared); PPO training steps/s on both; the
  sweep's 2-worker speed-up; ``conditioned``'s training time as a fraction of ``budget``'s
  11-alpha time (from the last ``evaluate`` of hazard-grid under the data folder).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from safeknob.config import RunConfig, load_experiment
from safeknob.envs import EnvError, make_env, tabular_model
from safeknob.envs.frontier import Frontier, value_iteration
from safeknob.envs.vec import batched_vec_env
from safeknob.errors import UserError
from safeknob.evaluation.rollout import PolicyAgent, rollout
from safeknob.rl.batched_ppo import AgentSpec, train_batched
from safeknob.rl.training import build_ppo, env_factory, make_vec_env, set_threads, train_ppo
from safeknob.stages import frontier, sweep, train_experts
from safeknob.stages.common import console
from safeknob.store import ExperimentStore

OPTIONAL_ENVS = (
    ("Bullet-Safety-Gym", "bullet_safety_gym:SafetyBallCircle-v0", "make install-bullet", 5_000),
    (
        "Safety-Gymnasium",
        "safeknob.envs.safety_gymnasium:SafetyPointGoal1Gymnasium-v0",
        "make install-safety-gymnasium",
        3_000,
    ),
)


def env_steps_per_second(env_id: str, n: int, seed: int = 0) -> float:
    """Random-action env steps per second through ``make_env`` (cost adapter included;
    construction excluded), resetting at episode ends."""
    env = make_env(env_id)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(n):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    rate = n / (time.perf_counter() - t0)
    env.close()
    return rate


def env_speeds() -> None:
    t = Table(title="Env speed (random actions, 1 thread, through make_env)")
    for c in ("env", "id", "steps/s"):
        t.add_column(c, justify="right")
    nav = f"{env_steps_per_second('safeknob/HazardNav-v0', 50_000):,.0f}"
    t.add_row("HazardNav", "safeknob/HazardNav-v0", nav)
    for name, env_id, install, n in OPTIONAL_ENVS:
        try:
            rate = f"{env_steps_per_second(env_id, n):,.0f}"
        except EnvError:
            rate = f"not installed ({install})"
        t.add_row(name, env_id.split(":")[-1], rate)
    console.print(t)
    console.print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def grid_experts(data: Path) -> None:
    rc = RunConfig(load_experiment("hazard-grid"), data)
    train_experts.run(rc)
    exp = rc.experiment
    model = tabular_model(make_env(exp.env.id, dict(exp.env.kwargs)))
    assert model is not None
    optimum, _ = value_iteration(model)
    fr = Frontier.compute(model)
    limit = exp.experts.cost_limit
    t = Table(
        title=f"HazardGrid experts ({exp.experts.eval_episodes} episodes; data in {rc.paths.root})"
    )
    for c in ("expert", "return [95% CI]", "cost [95% CI]", "target", "measured", "train s"):
        t.add_column(c, justify="right")
    total = 0.0
    for role in ("reckless", "safe"):
        meta = json.loads((rc.paths.expert(role) / "meta.json").read_text())
        ev = meta["evaluation"]
        total += meta["wall_seconds"]
        if role == "reckless":
            target = "optimum - return <= 0.02"
            measured = (
                f"{optimum:.4f} - {ev['return_mean']:.4f} = {optimum - ev['return_mean']:.4f}"
            )
        else:
            target = f"cost <= {limit * 1.1:.2f}; R*({limit:g}) - return <= 0.03"
            measured = (
                f"cost {ev['cost_mean']:.3f}; {fr(limit):.4f} - {ev['return_mean']:.4f} = "
                f"{fr(limit) - ev['return_mean']:.4f} (at own cost: {fr(ev['cost_mean']) - ev['return_mean']:.4f})"
            )
        t.add_row(
            role,
            f"{ev['return_mean']:.3f} [{ev['return_lo']:.3f}, {ev['return_hi']:.3f}]",
            f"{ev['cost_mean']:.3f} [{ev['cost_lo']:.3f}, {ev['cost_hi']:.3f}]",
            target,
            measured,
            f"{meta['wall_seconds']:.0f}",
        )
    console.print(t)
    console.print(f"both experts trained in {total:.0f} s (target <= 180 s)")


def grid_frontier(data: Path) -> bool:
    """The default grid's routes and the coin flip's exact gap (``safeknob frontier``), also
    with the experts just trained. False when the exact mean gap is below ``MIN_GAP``."""
    try:
        frontier.run(RunConfig(load_experiment("hazard-grid"), data), min_gap=frontier.MIN_GAP)
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return False
    return True


def nav_experts(data: Path) -> None:
    rc = RunConfig(load_experiment("hazard-nav"), data)
    train_experts.run(rc)
    exp = rc.experiment
    horizon = int(exp.env.kwargs.get("horizon", 100))
    t = Table(title="HazardNav experts (500 episodes)")
    for c in ("expert", "return", "cost", "reaches goal", "train s"):
        t.add_column(c, justify="right")
    costs = {}
    for role in ("reckless", "safe"):
        model, meta = ExperimentStore(rc).expert(role)
        res = rollout(PolicyAgent(model, True), env_factory(exp.env), 500, exp.eval.seed)
        reached = float(np.mean(res.lengths < horizon))
        costs[role] = float(res.costs.mean())
        t.add_row(
            role,
            f"{res.returns.mean():.3f}",
            f"{res.costs.mean():.3f}",
            f"{reached:.1%}",
            f"{meta['wall_seconds']:.0f}",
        )
    console.print(t)
    ratio = (
        f"{costs['reckless'] / costs['safe']:.1f}"
        if costs["safe"] > 0
        else f"unbounded (safe cost 0, reckless {costs['reckless']:.2f})"
    )
    console.print(f"cost ratio reckless/safe = {ratio} (target >= 3; safe reaches goal >= 90%)")


def sweep_speedup(data: Path, n_alphas: int = 6, steps: int = 40_000) -> None:
    """Wall time of the same sweep (budget-env, ``n_alphas`` alphas, ``steps`` each, then the
    evaluation) with 1 and with 2 workers, each in a fresh copy of the experts and
    demonstrations. Other processes on the machine skew it: the load average is printed."""
    src = RunConfig(load_experiment("hazard-grid"), data)
    exp = src.experiment
    exp = exp.replace(blend=dataclasses.replace(exp.blend, steps=steps))
    alphas = tuple(float(a) for a in np.linspace(0, 1, n_alphas).round(2))
    times, loads = {}, {}
    for workers in (1, 2):
        loads[workers] = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / exp.name
            root.mkdir()
            for part in ("experts", "demos", "config.toml"):
                p = src.paths.root / part
                if p.is_dir():
                    shutil.copytree(p, root / part)
                elif p.is_file():
                    shutil.copy2(p, root / part)
            t0 = time.perf_counter()
            sweep.run(
                sweep.SweepConfig(
                    (exp,), Path(tmp), ("budget-env",), alphas, None, "local", workers, quiet=True
                )
            )
            times[workers] = time.perf_counter() - t0
    console.print(
        f"sweep of {n_alphas} budget-env jobs x {steps:,} steps: 1 worker {times[1]:.0f} s, "
        f"2 workers {times[2]:.0f} s, speed-up {times[1] / times[2]:.2f}x (goal >= 1.7x; load "
        f"average before each: {loads[1]:.1f}, {loads[2]:.1f} on {os.cpu_count()} CPUs)"
    )


def _vec_envs(name: str, n: int):
    from stable_baselines3.common.vec_env import DummyVecEnv

    exp = load_experiment(name)
    dummy = DummyVecEnv([env_factory(exp.env)] * n)
    batched = batched_vec_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn, n)
    return exp, dummy, batched


def _steps_per_second(venv, steps: int, seed: int = 0) -> float:
    venv.seed(seed)
    venv.reset()
    rng = np.random.default_rng(seed)
    space = venv.action_space
    n = venv.num_envs
    if space.shape == ():
        acts = rng.integers(space.n, size=(steps // n + 1, n))
    else:
        acts = rng.uniform(-1, 1, size=(steps // n + 1, n, *space.shape)).astype(np.float32)
    t0 = time.perf_counter()
    for a in acts:
        venv.step(a)
    return len(acts) * n / (time.perf_counter() - t0)


def env_speed(steps: int = 100_000) -> None:
    """Env steps/s, random actions: 8 single envs in a DummyVecEnv vs the batched VecEnv."""
    t = Table(title=f"Env steps/s (random actions, {steps:,} steps, 1 thread)")
    for c in ("env", "DummyVecEnv x8", "batched x8", "speed-up", "batched x64", "speed-up"):
        t.add_column(c, justify="right")
    for name in ("hazard-grid", "hazard-nav"):
        _, dummy, batched = _vec_envs(name, 8)
        _, _, wide = _vec_envs(name, 64)
        single = _steps_per_second(dummy, steps)
        b8 = _steps_per_second(batched, steps)
        b64 = _steps_per_second(wide, steps)
        t.add_row(
            name, f"{single:,.0f}", f"{b8:,.0f}", f"{b8 / single:.1f}x", f"{b64:,.0f}",
            f"{b64 / single:.1f}x",
        )  # fmt: skip
    console.print(t)


def rollout_speed(data: Path, episodes: int = 500) -> None:
    """``evaluate``'s rollout of each expert: single envs (8 at a time, the old path) vs the
    batched env (64 at a time); same agent, same episode seeds, the numbers compared."""
    t = Table(title=f"evaluate rollouts ({episodes} episodes per expert)")
    for c in (
        "experts of", "role", "single eps/s", "batched eps/s", "speed-up",
        "same numbers (max |d return|)",
    ):  # fmt: skip
        t.add_column(c, justify="right")
    for name in ("hazard-grid", "hazard-nav"):
        rc = RunConfig(load_experiment(name), data)
        if not (rc.paths.expert("safe") / "meta.json").is_file():
            continue
        exp = rc.experiment
        for role in ("safe", "reckless"):
            model, meta = ExperimentStore(rc).expert(role)
            agent = PolicyAgent(model, bool(meta.get("deterministic", True)))
            cfg = exp.env

            def single(cfg=cfg):
                return make_env(cfg.id, dict(cfg.kwargs), cfg.cost_fn)

            t0 = time.perf_counter()
            old = rollout(agent, single, episodes, exp.eval.seed)
            t1 = time.perf_counter()
            new = rollout(agent, env_factory(exp.env), episodes, exp.eval.seed)
            t2 = time.perf_counter()
            # Costs are counts and must agree exactly; returns are float sums whose last bits
            # may differ when the policy is queried for 64 observations at once instead of 8
            # (batched matmul order), so they must agree to 1e-9 and the largest gap is shown.
            gap = float(np.max(np.abs(old.returns - new.returns), initial=0.0))
            same = gap <= 1e-9 and np.array_equal(old.costs, new.costs)
            t.add_row(
                name, role, f"{episodes / (t1 - t0):,.0f}", f"{episodes / (t2 - t1):,.0f}",
                f"{(t1 - t0) / (t2 - t1):.1f}x", f"{'yes' if same else 'NO'} ({gap:.0e})",
            )  # fmt: skip
    console.print(t)


def ppo_speed(steps: int = 30_000) -> None:
    """PPO training steps/s (the experiment's PPO settings): DummyVecEnv vs batched env, and
    on the batched env torch's default (for-loop) Adam vs the foreach Adam safeknob trains
    with (``rl.training.ADAM_KWARGS``; same weights)."""
    t = Table(title=f"PPO training steps/s ({steps:,} steps, 1 torch thread)")
    for c in ("env", "DummyVecEnv", "batched", "speed-up", "batched, for-loop Adam", "foreach"):
        t.add_column(c, justify="right")
    for name in ("hazard-grid", "hazard-nav"):
        exp = load_experiment(name)
        rates = []
        for venv in _vec_envs(name, exp.ppo.n_envs)[1:]:
            rates.append(_ppo_rate(build_ppo(venv, exp.ppo, 0), steps))
        loop = build_ppo(make_vec_env(exp.env, exp.ppo.n_envs), exp.ppo, 0)
        loop.policy.optimizer = torch.optim.Adam(
            loop.policy.parameters(), lr=exp.ppo.learning_rate, eps=1e-5
        )
        rates.append(_ppo_rate(loop, steps))
        t.add_row(
            name, f"{rates[0]:,.0f}", f"{rates[1]:,.0f}", f"{rates[1] / rates[0]:.2f}x",
            f"{rates[2]:,.0f}", f"{rates[1] / rates[2]:.2f}x",
        )  # fmt: skip
    console.print(t)


def batched_ppo_speed(sb3_rollouts: int = 16, batched_rollouts: int = 4) -> None:
    """Env steps per CPU-second of PID PPO-Lagrangian agents: SB3 2.2.1 (``train_ppo``, one
    agent) against the batched trainer (``rl.batched_ppo``) at K = 1, 11, 33 agents, on the
    grid's budget-env settings (``[blend]``: 32 envs x 32 steps, minibatch 512) and nav's
    ``[ppo]`` (8 x 256, minibatch 256), side by side in this process. Construction (SB3 models,
    BC-free) is included in both arms; CPU time, so other processes skew it less than wall
    time (the load average is printed). One untimed rollout of each arm first warms torch up
    (its first calls of each kernel are slow)."""
    t = Table(title="Batched PPO-Lagrangian vs SB3 (env steps per CPU-second, 1 torch thread)")
    for c in ("setting", "SB3", "K=1", "ratio", "K=11", "ratio", "K=33", "ratio"):
        t.add_column(c, justify="right")
    load = os.getloadavg()[0]
    for name, settings in (("hazard-grid", "blend_ppo"), ("hazard-nav", "ppo")):
        exp = load_experiment(name)
        ppo = getattr(exp, settings)
        rollout = ppo.n_envs * ppo.n_steps
        lag = exp.lagrange
        train_ppo(exp, rollout, 0, 1.0, lag, True, ppo=ppo)
        train_batched(env_factory(exp.env), ppo, rollout, [AgentSpec(0, 1.0, lag, True)])
        t0 = time.process_time()
        train_ppo(exp, sb3_rollouts * rollout, 0, 1.0, lag, True, ppo=ppo)
        sb3 = sb3_rollouts * rollout / (time.process_time() - t0)
        row = [f"{name} {ppo.n_envs}x{ppo.n_steps}/{ppo.batch_size}", f"{sb3:,.0f}"]
        for k in (1, 11, 33):
            specs = [AgentSpec(i, budget=1.0, lagrange=lag, two_sided=True) for i in range(k)]
            t0 = time.process_time()
            train_batched(env_factory(exp.env), ppo, batched_rollouts * rollout, specs)
            rate = k * batched_rollouts * rollout / (time.process_time() - t0)
            row += [f"{rate:,.0f}", f"{rate / sb3:.2f}x"]
        t.add_row(*row)
    console.print(t)
    console.print(
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        f"(SB3 {sb3_rollouts} rollouts, batched {batched_rollouts} rollouts per agent)"
    )


def _ppo_rate(model, steps: int) -> float:
    t0 = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - t0)


def conditioned_fraction(data: Path) -> None:
    """``conditioned``'s training time over ``budget-env``'s for the whole alpha grid, per
    training seed, from the last ``evaluate`` of hazard-grid under ``data``."""
    import pandas as pd

    rc = RunConfig(load_experiment("hazard-grid"), data)
    path = rc.paths.eval / "results.csv"
    if not path.is_file():
        console.print(f"conditioned vs budget: no {path} (run `make reproduce` first)")
        return
    df = pd.read_csv(path)
    parts = []
    for seed, g in df.groupby("seed"):
        cond = g.loc[g.method == "conditioned", "train_seconds"].sum()
        bud = g.loc[g.method == "budget-env", "train_seconds"]
        if len(bud) and bud.sum() > 0:
            parts.append(f"seed {seed}: {cond:.0f} s / {bud.sum():.0f} s ({len(bud)} alphas) "
                         f"= {cond / bud.sum():.2f}")  # fmt: skip
    console.print("conditioned training time / budget-env's: " + ("; ".join(parts) or "n/a"))


def main() -> None:
    set_threads()
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data")
    t0 = time.perf_counter()
    env_speeds()
    env_speed()
    ppo_speed()
    batched_ppo_speed()
    grid_experts(data)
    gap_ok = grid_frontier(data)
    nav_experts(data)
    rollout_speed(data)
    sweep_speedup(data)
    conditioned_fraction(data)
    console.print(f"bench done in {time.perf_counter() - t0:.0f} s")
    if not gap_ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
