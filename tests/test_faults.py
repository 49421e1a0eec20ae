"""Failure behaviour (DESIGN section 7): a killed stage leaves the previous artifact or none,
re-running an up-to-date stage does nothing, a changed config needs --force, and the same
seed gives the same numbers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
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


# ---------------------------------------------------------------------------- killed mid-write
# sitecustomize for child processes (and their spawned pool workers, which inherit the env):
# the first time a folder built in a `.tmp-<SAFEKNOB_TEST_PAUSE_IN>*` sibling is about to get
# its meta.json, it writes its pid to the marker and sleeps, so the test can SIGKILL it with
# the folder half-written (model or policy saved, meta.json not yet).
PAUSE_HOOK = textwrap.dedent(
    """
    import os, time
    _prefix = os.environ.get("SAFEKNOB_TEST_PAUSE_IN")
    _marker = os.environ.get("SAFEKNOB_TEST_MARKER")
    if _prefix and _marker:
        _replace = os.replace

        def _paused_replace(src, dst):
            d = os.fspath(dst)
            folder = os.path.basename(os.path.dirname(d))
            if (
                os.path.basename(d) == "meta.json"
                and folder.startswith(".tmp-" + _prefix)
                and not os.path.exists(_marker)
            ):
                with open(_marker + ".part", "w") as fh:
                    fh.write(str(os.getpid()))
                _replace(_marker + ".part", _marker)
                time.sleep(120)
            return _replace(src, dst)

        os.replace = _paused_replace
    """
)


def start_paused(args: list, tmp_path: Path, pause_in: str) -> tuple[subprocess.Popen, int]:
    """Start ``safeknob ARGS`` in its own process group and wait until it pauses half-way
    through writing a ``pause_in`` folder; returns the process and the pausing pid."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PAUSE_HOOK)
    marker = tmp_path / "paused"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
        "SAFEKNOB_TEST_PAUSE_IN": pause_in,
        "SAFEKNOB_TEST_MARKER": str(marker),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "safeknob.cli", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the pool workers share its process group
    )
    deadline = time.monotonic() + 180
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not marker.exists():
        kill_group(proc)
        pytest.fail(f"never paused in {pause_in}: {proc.communicate()[1]}")
    return proc, int(marker.read_text())


def kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def half_written(parent: Path, name: str) -> list[Path]:
    """The ``.tmp-<name>-*`` siblings in ``parent`` (asserting they have no meta.json)."""
    tmps = sorted(parent.glob(f".tmp-{name}-*"))
    for t in tmps:
        assert any(t.iterdir()) and not (t / "meta.json").exists(), sorted(t.iterdir())
    return tmps


def assert_complete(parent: Path) -> None:
    """Every folder in ``parent`` is a finished artifact and no temporary sibling is left."""
    names = sorted(p.name for p in parent.iterdir())
    assert not [n for n in names if n.startswith((".tmp-", ".old-"))], names
    for p in parent.iterdir():
        meta = json.loads((p / "meta.json").read_text())
        assert meta["schema"] == 1, p


def test_killed_train_experts_resumes(tmp_path):
    """SIGKILL while the safe expert's folder is half-written: the reckless one is kept, the
    next run skips it and trains only the safe one."""
    exp = write_experiment(
        tmp_path,
        "tiny-grid.toml",
        experts={"reckless_steps": 1024, "safe_steps": 1024, "eval_episodes": 10},
    )
    root = tmp_path / "data"
    proc, _ = start_paused(
        ["train-experts", "-q", "-e", exp, "--data", root], tmp_path, pause_in="safe"
    )
    experts = root / EXP / "experts"
    assert (experts / "reckless" / "meta.json").is_file()
    assert half_written(experts, "safe")
    kill_group(proc)
    assert not (experts / "safe").exists()
    reckless = snapshot(experts / "reckless")

    res = invoke("train-experts", "-q", "-e", exp, "--data", root)
    assert res.exit_code == 0, res.output
    assert_complete(experts)
    assert snapshot(experts / "reckless") == reckless  # skipped, not redone
    assert sorted(p.name for p in experts.iterdir()) == ["reckless", "safe"]


@pytest.mark.parametrize("kill", ["job", "sweep"])
def test_killed_sweep_job_leaves_no_half_written_folder(
    pipeline_root, tiny_experiment_file, tmp_path, kill
):
    """SIGKILL of a sweep job while its blend folder is half-written. ``job``: only its worker
    dies; the sweep reruns the job on a fresh worker and finishes. ``sweep``: the whole sweep
    dies; running the same command again skips the finished job and redoes the killed one."""
    args = ["sweep", "-e", tiny_experiment_file, "--data", pipeline_root, "--methods", "bc-mix"]
    args += ["--alphas", "0.25,0.75", "--workers", "1", "-q"]
    proc, worker = start_paused(args, tmp_path, pause_in="alpha-0.75")
    assert worker != proc.pid  # paused in a pool worker
    blends = pipeline_root / EXP / "blends" / "bc-mix"
    assert (blends / "alpha-0.25" / "meta.json").is_file()  # the first job finished
    assert half_written(blends, "alpha-0.75")
    first = snapshot(blends / "alpha-0.25")
    if kill == "job":
        import signal

        os.kill(worker, signal.SIGKILL)
        try:
            _, err = proc.communicate(timeout=180)
        finally:
            kill_group(proc)
        assert proc.returncode == 0, err
    else:
        kill_group(proc)
        assert not (blends / "alpha-0.75").exists()
        res = invoke(*args)
        assert res.exit_code == 0, res.output
    assert_complete(blends)
    assert sorted(p.name for p in blends.iterdir()) == ["alpha-0.25", "alpha-0.75"]
    assert snapshot(blends / "alpha-0.25") == first  # never redone
    df = pd.read_csv(pipeline_root / EXP / "eval" / "results.csv")
    assert {0.25, 0.75} <= set(df.loc[df.method == "bc-mix", "alpha"].round(2))


# ---------------------------------------------------------------------------- disk full
def collect_demos_on_private_mount(
    src: Path, tmp_path: Path, exp_file: Path, mount: str, after_copy: str = ""
) -> Path:
    """Copy the experiment ``src`` onto a tmpfs (``mount -t tmpfs MOUNT``) in a private mount
    namespace (no root needed), run ``collect-demos --force`` there, and return the folder
    holding ``rc``, ``out`` and sha256 listings ``before``/``after`` plus ``leftovers``
    (temporary folders). ``after_copy`` runs between the copy and the command. Skips where
    unshare or mount are not permitted."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not available")
    target, out = tmp_path / "mnt", tmp_path / "out"
    target.mkdir()
    out.mkdir()
    script = textwrap.dedent(
        f"""
        mount -t tmpfs {mount} "$1" || exit 97
        mkdir "$1/{EXP}" && cp -a "$2/config.toml" "$2/experts" "$2/demos" "$1/{EXP}/" || exit 98
        {after_copy}
        listing() {{ (cd "$1" && find . -type f -exec sha256sum {{}} + | sort); }}
        listing "$1" > "$3/before"
        "$4" -m safeknob.cli collect-demos --force -q -e "$5" --data "$1" >"$3/out" 2>&1
        echo $? > "$3/rc"
        listing "$1" > "$3/after"
        (cd "$1" && find . -name '.tmp-*' -o -name '.old-*') > "$3/leftovers"
        """
    )
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]
    cmd += [str(target), str(src), str(out), sys.executable, str(exp_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if res.returncode == 97 or (not (out / "rc").exists() and "unshare" in res.stderr):
        pytest.skip(f"cannot mount a private tmpfs here: {res.stderr.strip()}")
    assert (out / "rc").exists(), (res.returncode, res.stderr)
    return out


def test_disk_full_is_one_error_line_and_keeps_the_old_artifact(
    pipeline_root, tiny_experiment_file, tmp_path
):
    """``collect-demos --force`` on a tiny tmpfs (a private mount namespace, so no root is
    needed) that holds the experiment with 8 KiB to spare: a clear error line, exit code 2,
    every old file unchanged and no temporary folder left behind."""
    src = pipeline_root / EXP
    parts = [src / "config.toml", src / "experts", src / "demos"]
    files = [f for p in parts for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    size = sum(-(-f.stat().st_size // 4096) * 4096 for f in files) + 8192
    out = collect_demos_on_private_mount(
        src, tmp_path, tiny_experiment_file, f"-o size={size} tmpfs"
    )

    text = (out / "out").read_text()
    assert int((out / "rc").read_text()) == 2, text
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: no space left on device while writing "), text
    assert f"{EXP}/demos/reckless" in lines[0]
    assert (out / "after").read_text() == (out / "before").read_text()
    assert "demos/reckless/manifest.json" in (out / "before").read_text()
    assert (out / "leftovers").read_text() == ""


# ---------------------------------------------------------------------------- Ctrl-C, read-only
def test_ctrl_c_is_one_line_and_keeps_nothing_half_written(tiny_experiment_file, tmp_path):
    """SIGINT (Ctrl-C) during train-experts: one 'interrupted' line, exit code 130, no
    traceback and no temporary folder left behind."""
    import signal
    import tomllib

    from safeknob.stages.common import toml_dumps

    # Budgets far beyond the tiny ones, so training cannot finish before the signal lands.
    cfg = tomllib.loads(tiny_experiment_file.read_text())
    cfg["experts"].update(reckless_steps=10_000_000, safe_steps=10_000_000)
    exp_file = tmp_path / "tiny-grid.toml"
    exp_file.write_text(toml_dumps(cfg))
    exe = Path(sys.executable).parent / "safeknob"
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [str(exe), "train-experts", "-q", "-e", str(exp_file), "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # A runner started in the background (`cmd &`) passes SIGINT on as ignored, and
        # Python then installs no KeyboardInterrupt handler: restore the default, as a
        # terminal would have it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    experts = data / EXP / "experts"
    # Training has started once PPO's TensorBoard log exists (the expert folders are written
    # only after training, in a blink).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.is_file() for p in (data / EXP / "tb").rglob("*")):
            break
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, f"train-experts ended before Ctrl-C: {proc.communicate()[0]}"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), out
    assert "Traceback" not in out
    assert not list(experts.glob(".tmp-*"))
    for role in ROLES:  # each expert is either complete or absent
        folder = experts / role
        assert not folder.exists() or (folder / "meta.json").is_file()


def test_read_only_data_dir_is_one_error_line(pipeline_root, tiny_experiment_file, tmp_path):
    """``collect-demos --force`` on a read-only mount (private mount namespace): one error
    line, exit code 2, every file unchanged."""
    out = collect_demos_on_private_mount(
        pipeline_root / EXP, tmp_path, tiny_experiment_file, "tmpfs",
        after_copy='mount -o remount,ro "$1" || exit 97',
    )  # fmt: skip
    text = (out / "out").read_text()
    assert int((out / "rc").read_text()) == 2, text
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "read-only" in lines[0].lower(), text
    assert (out / "after").read_text() == (out / "before").read_text()


def test_pipeline_twice_with_one_seed_gives_the_same_results(tiny_experiment_file, tmp_path):
    """`safeknob run` from scratch twice with the same seed, into two data folders: the same
    results.csv byte for byte, apart from the wall-clock ``train_seconds`` column (blanked)."""
    outs = []
    for name in ("first", "second"):
        res = invoke(
            "run", "-q", "-e", tiny_experiment_file, "--data", tmp_path / name,
            "--methods", "mixture,bc-mix,budget-env,conditioned", "--workers", "1",
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        df = pd.read_csv(tmp_path / name / EXP / "eval" / "results.csv", dtype=str)
        assert df["train_seconds"].notna().all()
        df["train_seconds"] = ""
        outs.append(df.to_csv(index=False).encode())
    assert outs[0] == outs[1]
