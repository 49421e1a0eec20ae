"""The Lagrange multiplier component (safeknob.rl.multiplier): its PID update against values
computed by hand, warm-up, cap, scaling, state round trip, and the old code's exact sequence."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from safeknob.config import LagrangeConfig
from safeknob.rl.lagrangian import LEARNED_CAP, PIDLagrangian, scale_gains
from safeknob.rl.multiplier import CostWindow, LagrangeMultiplier

CFG = LagrangeConfig(kp=0.5, ki=0.1, kd=0.2, lambda_max=1.0, warmup_rollouts=0, cost_window=1)


def test_one_sided_update_by_hand():
    m = LagrangeMultiplier(1.0, CFG)
    # err 2: I = 0.2; first update has no derivative; 0.5*2 + 0.2 = 1.2, capped at 1
    assert m.update(3.0) == 1.0
    assert m.integral == pytest.approx(0.2, abs=1e-15)
    # err 1: I = 0.3; D = -1 -> 0 (one-sided); 0.5 + 0.3 = 0.8
    assert m.update(2.0) == pytest.approx(0.8, abs=1e-15)
    # err -1: I = 0.2; D = -2 -> 0; -0.5 + 0.2 = -0.3 -> clipped at 0
    assert m.update(0.0) == 0.0
    assert m.integral == pytest.approx(0.2, abs=1e-15)
    # err 3: I = 0.5; D = 4; 1.5 + 0.5 + 0.8 = 2.8 -> 1
    assert m.update(4.0) == 1.0
    assert m.prev_cost == 4.0


def test_two_sided_update_by_hand():
    m = LagrangeMultiplier(1.0, CFG, two_sided=True)
    assert m.update(3.0) == 1.0  # 1.2 capped
    # err 1: I = 0.3; D = -1 kept; 0.5 + 0.3 - 0.2 = 0.6
    assert m.update(2.0) == pytest.approx(0.6, abs=1e-15)
    # err -1: I = 0.2; D = -2; -0.5 + 0.2 - 0.4 = -0.7 (negative allowed)
    assert m.update(0.0) == pytest.approx(-0.7, abs=1e-15)
    # err -1: I = 0.1; D = 0; -0.5 + 0.1 = -0.4
    assert m.update(0.0) == pytest.approx(-0.4, abs=1e-15)
    assert m.lower == -1.0


def test_integral_is_clipped_at_both_ends():
    one = LagrangeMultiplier(1.0, CFG)
    two = LagrangeMultiplier(1.0, CFG, two_sided=True)
    for _ in range(30):  # err -1 each time: the integral falls by 0.1 per update
        one.update(0.0)
        two.update(0.0)
    assert one.integral == 0.0 and one.lam == 0.0
    assert two.integral == -1.0 and two.lam == -1.0  # -0.5 - 1 clipped at -lambda_max
    for _ in range(30):
        two.update(11.0)  # err 10: I += 1 per update, clipped at the cap
    assert two.integral == 1.0 and two.lam == 1.0


def test_warmup_holds_lambda_and_counts_rollouts():
    cfg = LagrangeConfig(kp=0.5, ki=0.1, kd=0.2, lambda_max=1.0, warmup_rollouts=2)
    m = LagrangeMultiplier(1.0, cfg)
    assert m.holding
    assert m.rollout_end(5.0) == 0.0
    assert m.rollout_end(5.0) == 0.0
    assert m.integral == 0.0 and m.prev_cost is None  # no PID step while held
    # first step after the warm-up: err 0.5: I = 0.05; 0.25 + 0.05 = 0.3
    assert m.rollout_end(1.5) == pytest.approx(0.3, abs=1e-15)
    # a rollout with no finished episode counts but does not step
    assert m.rollout_end(None) == pytest.approx(0.3, abs=1e-15)
    assert m.rollouts == 4 and m.prev_cost == 1.5


def test_scale_matches_scale_gains():
    m = LagrangeMultiplier(1.0, CFG, scale=2.0)
    assert m.cfg == scale_gains(CFG, 2.0)
    assert m.cfg.lambda_max == pytest.approx(1.0 * 2.0 * LEARNED_CAP)
    # kp 1.0, ki 0.2: err 2: I = 0.4; 2.0 + 0.4 = 2.4 (below the cap 6)
    assert m.update(3.0) == pytest.approx(2.4, abs=1e-15)


def test_state_dict_round_trip_continues_identically():
    a = LagrangeMultiplier(1.0, CFG, two_sided=True)
    for c in (3.0, 0.5, 2.5):
        a.rollout_end(c)
    b = LagrangeMultiplier(7.0, CFG, two_sided=True)
    b.load_state_dict(a.state_dict())
    assert b.budget == 1.0
    for c in (0.1, 4.0, 1.0):
        assert a.rollout_end(c) == b.rollout_end(c)
    assert a.state_dict() == b.state_dict()
    with pytest.raises(KeyError, match="integral"):
        b.load_state_dict({"lam": 0.0})


def test_rejects_negative_cap():
    with pytest.raises(ValueError, match="lambda_max"):
        LagrangeMultiplier(1.0, LagrangeConfig(lambda_max=-1.0))


def test_cost_window_pools_last_rollouts():
    w = CostWindow(2)
    assert w.add([]) is None
    assert w.add([1.0, 3.0]) == 2.0
    assert w.add([5.0]) == 3.0  # [1, 3] and [5]
    assert w.add([]) == 5.0  # [5] and []
    assert w.add([]) is None


# The code this component replaced, verbatim (safeknob/rl/lagrangian.py and
# methods/conditioned.py at 7ed7a58), as the reference of the exact-sequence tests.
class _OldPID:
    def __init__(self, budget, cfg, two_sided=False):
        self.budget = float(budget)
        self.cfg = cfg
        self.two_sided = two_sided
        self.integral = 0.0
        self.prev_cost = None
        self.lam = 0.0

    def update(self, mean_cost):
        err = mean_cost - self.budget
        lo = -self.cfg.lambda_max if self.two_sided else 0.0
        self.integral = float(np.clip(self.integral + self.cfg.ki * err, lo, self.cfg.lambda_max))
        deriv = 0.0 if self.prev_cost is None else mean_cost - self.prev_cost
        if not self.two_sided:
            deriv = max(0.0, deriv)
        self.prev_cost = mean_cost
        raw = self.cfg.kp * err + self.integral + self.cfg.kd * deriv
        self.lam = float(np.clip(raw, lo, self.cfg.lambda_max))
        return self.lam


def _old_callback_lambdas(chunks, budget, cfg, two_sided):
    """LagrangeCallback._on_rollout_end at 7ed7a58 over per-rollout episode-cost chunks."""
    pid, lam, rollouts, out = _OldPID(budget, cfg, two_sided), 0.0, 0, []
    window = deque(maxlen=max(1, cfg.cost_window))
    for new in chunks:
        window.append(new)
        rollouts += 1
        pooled = [c for chunk in window for c in chunk]
        if not pooled:
            continue
        mean_cost = float(np.mean(pooled))
        if rollouts > cfg.warmup_rollouts:
            lam = pid.update(mean_cost)
        out.append((lam, mean_cost))
    return out


def _random_chunks(seed, n=300):
    rng = np.random.default_rng(seed)
    # some rollouts finish no episode; costs are counts as on the grid, some fractional
    return [
        list(rng.integers(0, 9, size=rng.integers(0, 4)) * rng.choice([1.0, 0.37]))
        for _ in range(n)
    ]


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_reproduces_old_callback_sequence_exactly(seed, two_sided):
    cfg = LagrangeConfig(kp=0.1, ki=0.013, kd=0.05, lambda_max=0.9, warmup_rollouts=7)
    chunks = _random_chunks(seed)
    ref = _old_callback_lambdas(chunks, 2.7, cfg, two_sided)
    mult, window, new = LagrangeMultiplier(2.7, cfg, two_sided), CostWindow(cfg.cost_window), []
    for chunk in chunks:
        mean_cost = window.add(chunk)
        lam = mult.rollout_end(mean_cost)
        if mean_cost is not None:
            new.append((lam, mean_cost))
    assert len(ref) > 200 and any(lam != 0.0 for lam, _ in ref)
    assert new == ref  # bit for bit


def test_old_name_is_the_component_with_the_same_update():
    rng = np.random.default_rng(3)
    old, new = _OldPID(1.3, CFG, True), PIDLagrangian(1.3, CFG, two_sided=True)
    for c in rng.uniform(0, 4, size=200):
        assert old.update(float(c)) == new.update(float(c))


def _old_bin_lambdas(rollouts, budgets, cfg):
    """BinLagrangeCallback._on_rollout_end at 7ed7a58 over per-rollout (bin, cost) lists."""
    pids = [_OldPID(b, cfg, two_sided=True) for b in budgets]
    lam = np.zeros(len(budgets))
    pending = [[] for _ in budgets]
    out = []
    for i, new in enumerate(rollouts, start=1):
        for b, c in new:
            pending[b].append(c)
        if i <= cfg.warmup_rollouts:
            pending = [[] for _ in pids]
        else:
            for b, pid in enumerate(pids):
                if len(pending[b]) >= 8:
                    lam[b] = pid.update(float(np.mean(pending[b])))
                    pending[b] = []
        out.append(lam.copy())
    return out


def test_conditioned_bins_reproduce_old_sequence_exactly():
    from types import SimpleNamespace

    from stable_baselines3.common.logger import Logger

    from safeknob.methods.conditioned import BinLagrangeCallback

    cfg = LagrangeConfig(kp=0.1, ki=0.02, kd=0.05, lambda_max=0.8, warmup_rollouts=5)
    budgets = np.array([0.5, 2.0, 4.0])
    rng = np.random.default_rng(0)
    rollouts = [
        [(int(rng.integers(3)), float(rng.integers(0, 7))) for _ in range(rng.integers(0, 9))]
        for _ in range(200)
    ]
    env = SimpleNamespace(finished=[], lam=np.zeros(len(budgets)))
    cb = BinLagrangeCallback(env, budgets, cfg)
    cb.model = SimpleNamespace(logger=Logger(None, []))
    got = []
    for new in rollouts:
        env.finished.extend(new)
        cb._on_rollout_end()
        got.append(env.lam.copy())
    ref = _old_bin_lambdas(rollouts, budgets, cfg)
    assert np.any(ref[-1] != 0.0)
    np.testing.assert_array_equal(np.array(got), np.array(ref))
