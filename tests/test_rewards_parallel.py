"""`learn-rewards` with two roles learns them in parallel processes: same seed, same numbers
as serially, and a failing role fails the same way."""

from __future__ import annotations

import json
import shutil

import torch as th
from conftest import UNMEETABLE_GATE, tiny_config
from test_cli import EXP, assert_user_error, invoke, write_experiment

from safeknob.config import RunConfig
from safeknob.stages import learn_rewards as rewards
from safeknob.store import check_status

ROLES = ("reckless", "safe")
VOLATILE = ("wall_seconds", "command")  # wall clock and argv: differ run to run


def _learn(root, workers: int) -> RunConfig:
    rc = RunConfig(experiment=tiny_config(), data_dir=root, quiet=True, tensorboard=False)
    rewards.run(rc, ROLES, steps=1024, check_steps=512, workers=workers)
    return rc


def _result(rc: RunConfig, role: str) -> tuple[dict, bytes, dict]:
    folder = rc.paths.rewards(role)
    net = th.load(folder / "reward_net.pt", map_location="cpu", weights_only=True)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["stage"] == "learn-rewards" and meta["role"] == role and "check" in meta
    for key in VOLATILE:
        meta.pop(key, None)
    return net, (folder / "standardize.json").read_bytes(), meta


def test_parallel_rewards_are_the_serial_ones(trained_root, tmp_path, monkeypatch):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    shutil.copytree(trained_root, serial)
    shutil.copytree(trained_root, parallel)
    fanouts = []
    real = rewards._run_parallel
    monkeypatch.setattr(
        rewards, "_run_parallel", lambda *a, **k: fanouts.append(a[1]) or real(*a, **k)
    )
    rc_s = _learn(serial, workers=1)
    assert fanouts == []
    rc_p = _learn(parallel, workers=2)
    assert fanouts == [list(ROLES)], "two roles and two workers must fan out"
    for role in ROLES:
        net_s, std_s, meta_s = _result(rc_s, role)
        net_p, std_p, meta_p = _result(rc_p, role)
        assert net_s.keys() == net_p.keys()
        for key in net_s:
            assert th.equal(net_s[key], net_p[key]), (role, key)
        assert std_s == std_p, role
        assert meta_s == meta_p, role
    for root in (serial, parallel):
        left = [p.name for p in (root / EXP / "rewards").iterdir() if p.name.startswith(".")]
        assert left == []


def test_a_failing_role_fails_as_it_does_serially(trained_root, tmp_path):
    """Both roles fail the re-optimization gate (tolerances nothing meets), in their workers.
    The CLI prints the serial run's one line; both rewards' files are complete with a failed
    verdict, nothing temporary is left."""
    exp = write_experiment(tmp_path, rewards=UNMEETABLE_GATE)
    lines, states = [], []
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        shutil.copytree(trained_root, root)
        res = invoke(
            "--no-tensorboard", "learn-rewards", "-q", "-e", exp, "--data", root,
            "--role", "reckless", "--role", "safe", "--workers", workers,
        )  # fmt: skip
        line = assert_user_error(res, "re-optimization check", "reckless: PPO", "safe: PPO")
        lines.append(line.replace(str(root), "ROOT"))
        folder = root / EXP / "rewards"
        states.append(sorted(str(p.relative_to(folder)) for p in folder.rglob("*")))
        for role in ROLES:
            meta = json.loads((folder / role / "meta.json").read_text())
            assert check_status(meta) == "failed"
    assert lines[0] == lines[1]
    assert states[0] == states[1]
    assert not [s for s in states[1] if s.startswith(".")], states[1]
