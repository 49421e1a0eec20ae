"""Stage ``learn-rewards``: an AIRL reward per expert (:mod:`safeknob.rl.airl`), standardized
on the union of both demonstration sets, then checked by re-optimizing it with PPO (from BC of
its expert; the safe reward under its expert's cost limit) and, with a tabular model, exactly;
the check is a gate: a reward that fails it fails the stage, and no method trains on it."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from imitation.data.types import TrajectoryWithRew
from rich.table import Table

from safeknob import data, parallel, seeding
from safeknob.artifacts import atomic_dir, make_meta, stage_config, up_to_date, write_json
from safeknob.config import RunConfig
from safeknob.envs import make_env, tabular_model
from safeknob.envs.frontier import InfeasibleBudgetError, solve
from safeknob.envs.model import evaluate_policy
from safeknob.envs.vec import vec_env
from safeknob.errors import UserError
from safeknob.evaluation.metrics import bootstrap_ci
from safeknob.evaluation.rollout import PolicyAgent, rollout
from safeknob.rl.airl import (
    STAGE,
    absorbing_factory,
    exchange_ratio,
    save_reward,
    standardization,
    train_airl,
)
from safeknob.rl.lagrangian import scale_gains
from safeknob.rl.training import env_factory, train_ppo
from safeknob.rl.warmstart import bc_warmstart
from safeknob.stages.common import console, progress_bar
from safeknob.store import FIX_REWARDS as FIX
from safeknob.store import ExperimentStore, RewardCheckError


def run(
    rc: RunConfig,
    roles: tuple[str, ...] = ("reckless",),
    steps: int | None = None,
    check_steps: int | None = None,
    workers: int = 2,
) -> Path:
    """Learn AIRL rewards for ``roles``, standardize them on the union of demonstrations and
    check them by re-optimizing them with PPO (:func:`reoptimize`); returns ``rewards/``.

    With ``workers >= 2`` and two or more roles to do, each role is learned in its own process
    (one torch thread each). Every role seeds all it draws from itself, so its reward is the
    same whatever the order, the other role, or the number of workers."""
    exp = rc.experiment
    steps = steps or exp.rewards.airl_steps
    check_steps = check_steps if check_steps is not None else exp.rewards.check_steps
    store = ExperimentStore(rc)
    demos = {r: store.demos(r)[0] for r in ("safe", "reckless")}
    # The check's verdict also depends on the safe expert's cost limit and the multiplier.
    config = {
        **stage_config(exp, "env", "ppo", "demos", "rewards", "lagrange"),
        "cost_limit": exp.experts.cost_limit,
        "steps": steps,
    }
    todo = [
        r
        for r in roles
        if not up_to_date(rc.paths.rewards(r) / "meta.json", config, rc.force, FIX)
        or store.reward_status(r) == "failed"  # a reward that failed the gate is never up to date
    ]
    if workers >= 2 and len(todo) >= 2:
        _run_parallel(rc, todo, steps, check_steps, config, workers)
    else:
        with progress_bar(rc.quiet) as progress:
            for role in todo:
                learn_role(rc, role, steps, check_steps, config, demos, progress)
    if not rc.quiet:
        print_checks(rc, roles)
    failed = [r for r in roles if store.reward_status(r) == "failed"]
    if failed:
        why = "; ".join(
            f"{r}: "
            + (store.reward_meta(r).get("check") or {}).get(
                "failure", "no verdict (its check did not finish)"
            )
            for r in failed
        )
        raise RewardCheckError(
            f"learned reward failed its re-optimization check (optimizing it does not "
            f"reproduce its expert) - {why}; no method will train on it: re-learn it with "
            f"more rewards.airl_steps or demos.episodes (`{FIX} --force`)"
        )
    unchecked = [r for r in roles if store.reward_status(r) == "unchecked"]
    if unchecked and not rc.quiet:
        console.print(
            f"[yellow]learned rewards not checked (rewards.check_steps = 0): {', '.join(unchecked)}"
        )
    return rc.paths.root / "rewards"


def learn_role(
    rc: RunConfig,
    role: str,
    steps: int,
    check_steps: int,
    config: dict[str, Any],
    demos: dict[str, list[TrajectoryWithRew]],
    progress=None,
) -> None:
    """One role's reward, in this process: AIRL, standardization, the folder (atomically),
    then the re-optimization check added to its meta.json."""
    exp = rc.experiment
    seed = seeding.derive(exp.seed, "rewards", role)
    task = progress.add_task(f"AIRL {role}", total=steps) if progress is not None else None
    t0 = time.perf_counter()
    net, facts = train_airl(rc, demos[role], steps, seed, role, progress, task)
    env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
    stats = standardization(net, demos["safe"] + demos["reckless"], env.observation_space)
    seconds = time.perf_counter() - t0
    with atomic_dir(rc.paths.rewards(role)) as tmp:
        save_reward(tmp, net, stats)
        write_json(
            tmp / "meta.json",
            make_meta(
                STAGE,
                config,
                seed,
                inputs={"demos": rc.paths.demos(role)},
                wall_seconds=seconds,
                role=role,
                **facts,
            ),
        )
    # The folder is complete but has no verdict yet: until the check below writes one it
    # counts as failed (an interrupted check is redone, and no method uses the reward).
    if check_steps:
        # The expert's behaviour is its demonstrations (all a user with recordings has).
        evals = {r: data.demo_stats(demos[r]) for r in ("reckless", "safe")}
        check = reoptimize(rc, role, check_steps, progress, demos, evals)
        failures = gate(check, exp.rewards, evals, role)
        check["passed"] = not failures
        check["unconstrained_passed"] = unconstrained_verdict(check, failures)
        if failures:
            check["failure"] = ", ".join(failures)
    else:
        check = {"skipped": True}
    meta = json.loads((rc.paths.rewards(role) / "meta.json").read_text())
    meta["check"] = check
    write_json(rc.paths.rewards(role) / "meta.json", meta)


def gate(
    check: dict[str, Any], cfg: Any, expert_evals: dict[str, dict[str, Any]], role: str
) -> list[str]:
    """The re-optimization gate: what is wrong with ``check`` (empty list: it passed).

    ``check`` holds the PPO's results and its expert's (``expert_return``,
    ``expert_cost``, ``expert_terminal_rate``); ``expert_evals`` both experts' mean return
    and cost (their demonstrations). Scales come from the data, not from the env: the cost
    tolerance is ``cfg.cost_tolerance * |C_reck - C_safe|``, the return tolerance
    ``cfg.return_tolerance * |R_reck - R_safe|``, and the PPO's fraction of episodes
    ending in a terminal state may be at most ``cfg.terminal_tolerance`` below its
    expert's. With a tabular model ``check`` also holds the learned reward's exact optimum
    (``exact_return``/``exact_cost``), held to the same return and cost tolerances."""
    ev = expert_evals
    c_gap = abs(ev["reckless"]["cost_mean"] - ev["safe"]["cost_mean"])
    r_scale = abs(ev["reckless"]["return_mean"] - ev["safe"]["return_mean"])
    c_tol = cfg.cost_tolerance * max(c_gap, 1e-9)
    r_tol = cfg.return_tolerance * max(r_scale, 1e-9)
    check.update(cost_tolerance=c_tol, return_tolerance=r_tol)
    cost, ret = check["ppo_cost"][0], check["ppo_return"][0]
    out = []
    if abs(cost - check["expert_cost"]) > c_tol:
        out.append(
            f"PPO cost {cost:.3g} vs the expert's {check['expert_cost']:.3g} "
            f"(tolerance {c_tol:.3g})"
        )
    if abs(ret - check["expert_return"]) > r_tol:
        out.append(
            f"PPO return {ret:.3g} vs the expert's {check['expert_return']:.3g} "
            f"(tolerance {r_tol:.3g})"
        )
    if "exact_return" in check:  # a tabular model: the learned reward's exact optimum too
        e_cost, e_ret = check["exact_cost"], check["exact_return"]
        if not _matches(check, e_ret, e_cost):
            out.append(
                f"exact optimum of the learned reward {e_ret:.3g} / cost {e_cost:.3g} vs the "
                f"expert's {check['expert_return']:.3g} / {check['expert_cost']:.3g}"
            )
    need = check["expert_terminal_rate"] - cfg.terminal_tolerance
    if check["ppo_terminal_rate"] < need:
        out.append(
            f"{check['ppo_terminal_rate']:.0%} of PPO's episodes reach a terminal state vs "
            f"{check['expert_terminal_rate']:.0%} in the demonstrations"
        )
    return out


def _one_role(job: tuple[RunConfig, str, int, int, dict[str, Any]]) -> str:
    """A pool job: one role's reward, progress relayed to the parent."""
    rc, role, steps, check_steps, config = job
    store = ExperimentStore(rc)
    demos = {r: store.demos(r)[0] for r in ("safe", "reckless")}
    learn_role(rc, role, steps, check_steps, config, demos, parallel.relay(role))
    return role


def _run_parallel(
    rc: RunConfig, todo: list[str], steps: int, check_steps: int, config: dict, workers: int
) -> None:
    """One role per job on the process pool (:mod:`safeknob.parallel`); each job writes only
    its own folder."""
    quiet_rc = dataclasses.replace(rc, quiet=True)
    n = min(workers, len(todo))
    with progress_bar(rc.quiet) as progress:
        overall = progress.add_task(f"learned rewards ({n} workers)", total=len(todo))
        parallel.Pool(
            _one_role,
            n,
            progress=progress,
            on_result=lambda _job, _role: progress.update(overall, advance=1),
            grace=3.0,
            what="a learn-rewards worker",
            fix=FIX,
        ).run([(quiet_rc, r, steps, check_steps, config) for r in todo])


def reoptimize(
    rc: RunConfig,
    role: str,
    steps: int,
    progress,
    demos: dict[str, list[TrajectoryWithRew]],
    evals: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """Train a PPO on the learned reward (absorbing env) and measure it under the true
    reward and cost, next to its expert's demonstrations (``demos[role]``, summarized in
    ``evals[role]`` by :func:`safeknob.data.demo_stats`); with a tabular model also the exact
    optimum of the learned reward (LP over occupancy measures).

    The PPO starts from BC of ``demos[role]`` with ``rewards.check_warmstart``. The safe expert
    maximized its reward under a cost limit, so with ``rewards.check_constrained`` its reward
    is re-optimized under the same limit (``experts.cost_limit``, PPO-Lagrangian with the
    multiplier scaled to the learned reward by the experts' exchange-rate ratio,
    :func:`safeknob.rl.airl.exchange_ratio`; inverse constrained RL's re-optimization test,
    Malik et al. 2021), and the exact optimum is the constrained one."""
    exp = rc.experiment
    fn = ExperimentStore(rc).reward(role, checked=False)
    seed = seeding.derive(exp.seed, "rewards", f"check-{role}")
    budget = constraint(exp, role)
    exact = exact_optima(rc, fn, budget)  # first: a cost limit no policy meets stops here
    lagrange, scale = exp.lagrange, None
    if budget is not None:
        scale = exchange_ratio(fn, demos, evals, exp.env)
        lagrange = scale_gains(lagrange, scale["ratio"])
    warm = exp.rewards.check_warmstart

    def warmstart(model: Any) -> None:
        env = model.get_env()
        bc_warmstart(model, demos[role], env.observation_space, env.action_space, seed)

    task = progress.add_task(f"PPO on learned {role} reward", total=steps) if progress else None
    model = train_ppo(
        exp,
        steps,
        seed,
        budget=budget,
        lagrange=lagrange,
        reward_fn=fn,
        venv=vec_env(absorbing_factory(exp.env), exp.ppo.n_envs),
        progress=progress,
        task=task,
        warmstart=warmstart if warm else None,
    ).model
    res = rollout(
        PolicyAgent(model, True),
        env_factory(exp.env),
        exp.eval.episodes,
        exp.eval.seed,
        record=True,
    )
    out: dict[str, Any] = {
        "ppo_steps": steps,
        "ppo_warmstart": warm,
        "ppo_cost_limit": budget,
        "exchange_ratio": scale,
        "ppo_return": bootstrap_ci(res.returns, seed=0),
        "ppo_cost": bootstrap_ci(res.costs, seed=0),
        "ppo_terminal_rate": float(np.mean([e.terminal for e in res.episodes])),
        "episodes": int(len(res.returns)),
        "expert_return": evals[role]["return_mean"],
        "expert_cost": evals[role]["cost_mean"],
        "expert_terminal_rate": evals[role]["terminal_rate"],
    }
    out.update(exact)
    return out


def exact_optima(rc: RunConfig, fn: Any, budget: float | None) -> dict[str, float]:
    """With a tabular model: true return and cost of the learned reward's exact optimum (LP
    over occupancy measures, :func:`safeknob.envs.frontier.solve`), under ``budget`` when
    given (``exact_return``/``exact_cost``) and without it (``exact_unconstrained_*``); empty
    without a model. The goal's learned reward is collected on every absorbing step until the
    horizon, as in the env PPO trains in (the model's goal is a self-loop).

    Raises UserError when ``budget`` is below the least cost any policy achieves."""
    exp = rc.experiment
    env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
    model_t = tabular_model(env)
    env.close()
    if model_t is None:
        return {}
    g = fn.unshaped(np.arange(model_t.n_states))
    learned = dataclasses.replace(model_t, R=model_t.P @ g)

    def optimum(b: float | None) -> tuple[float, float]:
        try:
            return evaluate_policy(model_t, solve(learned, b).policy)
        except InfeasibleBudgetError:
            raise UserError(
                f"experts.cost_limit = {b:g} is below the least expected cost any policy "
                "achieves in this env, so the safe reward cannot be re-optimized under it; "
                "raise experts.cost_limit in the experiment"
            ) from None

    free = optimum(None)
    ret, cost = free if budget is None else optimum(budget)
    return {
        "exact_return": ret,
        "exact_cost": cost,
        "exact_unconstrained_return": free[0],
        "exact_unconstrained_cost": free[1],
    }


def unconstrained_verdict(check: dict[str, Any], failures: list[str]) -> bool:
    """Whether the reward also passes without its expert's cost limit: the verdict itself
    when the check was unconstrained; under a limit, only a tabular model's unconstrained
    exact optimum can show it (held to the gate's tolerances)."""
    if failures:
        return False
    if check.get("ppo_cost_limit") is None:
        return True
    if "exact_unconstrained_return" not in check:
        return False
    return _matches(check, check["exact_unconstrained_return"], check["exact_unconstrained_cost"])


def _matches(check: dict[str, Any], ret: float, cost: float) -> bool:
    """Whether a return and cost lie within the gate's tolerances (``check``'s
    ``return_tolerance``/``cost_tolerance``) of the expert's."""
    return (
        abs(cost - check["expert_cost"]) <= check["cost_tolerance"]
        and abs(ret - check["expert_return"]) <= check["return_tolerance"]
    )


def constraint(exp: Any, role: str) -> float | None:
    """The cost limit the gate re-optimizes ``role``'s reward under: the safe expert's
    ``experts.cost_limit`` with ``rewards.check_constrained``, else None (unconstrained)."""
    if role == "safe" and exp.rewards.check_constrained:
        return exp.experts.cost_limit
    return None


def print_checks(rc: RunConfig, roles: Sequence[str]) -> None:
    """The re-optimization checks (and gate verdicts) of ``roles`` as a table."""
    t = Table(
        title="Learned rewards, re-optimized (true return and cost; expert: its demonstrations)"
    )
    for c in (
        "reward",
        "cost limit",
        "expert return",
        "expert cost",
        "PPO return",
        "PPO cost",
        "PPO terminal",
        "exact return",
        "exact cost",
        "gate",
    ):
        t.add_column(c, justify="right")
    for role in roles:
        p = rc.paths.rewards(role) / "meta.json"
        if not p.is_file():
            continue
        chk = json.loads(p.read_text()).get("check")
        if not chk or chk.get("skipped"):
            continue
        t.add_row(
            role, "-" if chk.get("ppo_cost_limit") is None else f"{chk['ppo_cost_limit']:g}",
            f"{chk['expert_return']:.3f}", f"{chk['expert_cost']:.2f}",
            f"{chk['ppo_return'][0]:.3f}", f"{chk['ppo_cost'][0]:.2f}",
            f"{chk.get('ppo_terminal_rate', float('nan')):.0%}",
            f"{chk.get('exact_return', float('nan')):.3f}", f"{chk.get('exact_cost', float('nan')):.2f}",
            "pass" if chk.get("passed") else "[red]FAIL",
        )  # fmt: skip
    console.print(t)
