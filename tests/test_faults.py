"""Failure behaviour (DESIGN section 7): a killed stage leaves the previous artifact or none,
re-running an up-to-date stage does nothing, a changed config needs --force, and the same
seed gives the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_cli import EXP, assert_user_error, invoke, snapshot, write_experiment

from safeknob import data

ROLES = ("reckless", "safe")  # the order collect-demos writes them in

# Runs the CLI in a child process; with SAFEKNOB_TEST_PAUSE set, it touches the marker file
# and sleeps at that point of the write, so the parent can SIGKILL it there.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    pause, marker = os.environ.get("SAFEKNOB_TEST_PAUSE"), os.environ["SAFEKNOB_TEST_MARKER"]

    def hold():
        open(marker, "w").close()
        time.sleep(120)

    import safeknob.data as D
    _save, calls = D.save, []

    def save(path, trajs):
        calls.append(path)
        _save(path, trajs)
        if pause == "after-dataset" or (pause == "second-role" and len(calls) == 2):
            hold()

    D.save = save
    _replace = os.replace

    def replace(src, dst):
        _replace(src, dst)
        if pause == "between-renames" and os.path.basename(str(dst)).startswith(".old-"):
            hold()

    os.replace = replace
    from safeknob.cli import main
    sys.argv = ["safeknob", *sys.argv[1:]]
    main()
    """
)


def demos_state(root: Path) -> dict[str, dict | None]:
    """Per role: None if the folder is absent, else its manifest and file checksums; asserts
    that a present folder is a complete, loadable artifact."""
    out: dict[str, dict | None] = {}
    for role in ROLES:
        folder = root / EXP / "demos" / role
        if not folder.exists():
            out[role] = None
            continue
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["stage"] == "collect-demos" and manifest["role"] == role
        trajs = data.load(folder)
        assert len(trajs) == manifest["summary"]["episodes"]
        assert data.has_costs(trajs)
        out[role] = {"manifest": manifest, "files": snapshot(folder)}
    return out


def leftovers(root: Path) -> list[str]:
    demos = root / EXP / "demos"
    return sorted(p.name for p in demos.iterdir() if p.name.startswith((".tmp-", ".old-")))


@pytest.mark.parametrize(
    ("pause", "delay", "expect"),
    [
        # killed while importing: nothing touched
        (None, 0.5, {"reckless": "old", "safe": "old"}),
        # killed with reckless's dataset written to the temporary folder, no manifest yet
        ("after-dataset", None, {"reckless": "old", "safe": "old"}),
        # killed between moving the old reckless folder aside and moving the new one in
        ("between-renames", None, {"reckless": "none", "safe": "old"}),
        # killed while writing safe's dataset: reckless already replaced in full
        ("second-role", None, {"reckless": "new", "safe": "old"}),
        # no pause: killed as soon as a temporary folder shows up (or after it finished)
        ("poll", None, {}),
    ],
    ids=["importing", "after-dataset", "between-renames", "second-role", "poll"],
)
def test_killed_collect_demos_leaves_old_artifact_or_none(
    pipeline_root, tiny_experiment_file, tmp_path, pause, delay, expect
):
    before = demos_state(pipeline_root)
    assert all(before.values())
    marker = tmp_path / "marker"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "SAFEKNOB_TEST_MARKER": str(marker),
        **({"SAFEKNOB_TEST_PAUSE": pause} if pause and pause != "poll" else {}),
    }
    args = ["collect-demos", "--force", "-q", "-e", str(tiny_experiment_file)]
    args += ["--data", str(pipeline_root)]
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    demos = pipeline_root / EXP / "demos"
    deadline = time.monotonic() + 120
    try:
        if delay is not None:
            time.sleep(delay)
        else:
            while proc.poll() is None and time.monotonic() < deadline:
                if pause == "poll" and any(p.name.startswith(".tmp-") for p in demos.iterdir()):
                    break
                if pause != "poll" and marker.exists():
                    break
                time.sleep(0.002)
        finished = proc.poll() is not None
        proc.kill()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if pause not in (None, "poll"):
        assert not finished and marker.exists(), f"child ended before pausing: {err}"

    after = demos_state(pipeline_root)  # asserts every present folder is complete
    for role, want in expect.items():
        if want == "old":
            assert after[role] == before[role], role
        elif want == "none":
            assert after[role] is None, role
        else:
            assert after[role] is not None and after[role] != before[role], role

    res = invoke("collect-demos", "--force", "-q", "-e", tiny_experiment_file, "--data",
                 pipeline_root)  # fmt: skip
    assert res.exit_code == 0, res.output
    final = demos_state(pipeline_root)
    assert all(final.values())
    assert leftovers(pipeline_root) == []


# ---------------------------------------------------------------------------- re-runs
@pytest.mark.parametrize("command", ["train-experts", "collect-demos"])
def test_rerun_with_the_same_config_changes_nothing(pipeline_root, tiny_experiment_file, command):
    before = snapshot(pipeline_root)
    res = invoke(command, "-q", "-e", tiny_experiment_file, "--data", pipeline_root)
    assert res.exit_code == 0, res.output
    assert snapshot(pipeline_root) == before  # same files, same bytes, same mtimes


@pytest.mark.parametrize(
    ("command", "over", "fix"),
    [
        ("train-experts", {"ppo": {"n_epochs": 5}}, "safeknob train-experts --force"),
        ("train-experts", {"experts": {"cost_limit": 0.3}}, "safeknob train-experts --force"),
        ("collect-demos", {"demos": {"episodes": 7}}, "safeknob collect-demos --force"),
    ],
    ids=["experts-ppo", "experts-limit", "demos-episodes"],
)
def test_rerun_with_a_changed_config_is_refused(pipeline_root, tmp_path, command, over, fix):
    path = write_experiment(tmp_path, "tiny-grid.toml", **over)
    before = snapshot(pipeline_root)
    res = invoke(command, "-q", "-e", path, "--data", pipeline_root)
    assert_user_error(res, "different config", f"`{fix}`")
    assert snapshot(pipeline_root) == before


def test_force_redoes_collect_demos(pipeline_root, tiny_experiment_file):
    manifest = pipeline_root / EXP / "demos" / "safe" / "manifest.json"
    old = manifest.stat().st_mtime_ns
    res = invoke("collect-demos", "--force", "-q", "-e", tiny_experiment_file, "--data",
                 pipeline_root)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert manifest.stat().st_mtime_ns != old
    assert leftovers(pipeline_root) == []


# ---------------------------------------------------------------------------- determinism
def test_train_experts_is_deterministic(trained_root, tiny_experiment_file, tmp_path):
    """Training the experts again with the same seed, into another folder, gives the same
    evaluation numbers and multiplier history."""
    res = invoke("train-experts", "-q", "-e", tiny_experiment_file, "--data", tmp_path)
    assert res.exit_code == 0, res.output
    for role in ROLES:
        first = json.loads((trained_root / EXP / "experts" / role / "meta.json").read_text())
        second = json.loads((tmp_path / EXP / "experts" / role / "meta.json").read_text())
        assert second["evaluation"] == first["evaluation"], role
        assert second["final_lambda"] == first["final_lambda"], role
        assert second["lagrange_history"] == first["lagrange_history"], role
        assert second["config"] == first["config"]


def test_killed_parent_takes_its_pool_workers_along(pipeline_root, tiny_experiment_file):
    """SIGKILL of `train-blend --workers 2` must not leave workers training in the background,
    and leaves no half-written blend folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [
        sys.executable, "-m", "safeknob.cli", "train-blend", "-e", str(tiny_experiment_file),
        "--data", str(pipeline_root), "--method", "bc-mix", "--alphas", "0,0.25,0.5,0.75,1",
        "--workers", "2", "-q",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children() -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        pids = [int(p) for p in out]
        # Pool workers only (not the spawn resource tracker, which exits on its own).
        return [p for p in pids if "spawn_main" in _cmdline(p)]

    deadline = time.time() + 60
    kids: list[int] = []
    while time.time() < deadline and len(kids) < 2:
        kids = children()
        time.sleep(0.2)
    assert kids, "the pool never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    alive = kids
    while time.time() < deadline and alive:
        alive = [k for k in kids if os.path.exists(f"/proc/{k}") and not _zombie(k)]
        time.sleep(0.2)
    assert not alive, f"workers {alive} outlived their parent"
    for folder in (pipeline_root / "tiny-grid" / "blends").rglob("alpha-*"):
        assert (folder / "meta.json").is_file(), f"half-written {folder}"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------- no stray files
def test_learn_rewards_writes_nothing_outside_the_data_dir(
    pipeline_root, tiny_experiment_file, tmp_path, monkeypatch
):
    """SB3's learn() without a logger of its own makes an empty ``$TMPDIR/SB3-<date>`` folder
    (imitation's algorithms without ``custom_logger`` make one too): none may be left."""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    res = invoke("learn-rewards", "-q", "-e", tiny_experiment_file, "--data", pipeline_root)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp.iterdir()) == []
