"""Bad input at the command line: one clear line naming the problem and the fixing command,
a non-zero exit, no traceback, and nothing on disk changed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from typer.testing import CliRunner

from safeknob import data
from safeknob.cli import app
from safeknob.evaluation.rollout import Episode
from safeknob.stages.common import toml_dumps

runner = CliRunner()
EXP = "tiny-grid"


# ---------------------------------------------------------------------------- helpers
def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(res, *needles: str) -> str:
    """Exit code 2, exactly one line starting with ``error:``, no traceback; returns it."""
    out = res.output
    assert res.exit_code == 2, (res.exit_code, out, res.exception)
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("error: "), out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (hidden ones too) with its checksum and mtime."""
    if not root.exists():
        return {}
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = ("dir",)
        else:
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def write_experiment(tmp_path: Path, name: str = "exp.toml", text: str | None = None, **over):
    path = tmp_path / name
    path.write_text(text if text is not None else toml_dumps(tiny_config(**over).to_dict()))
    return path


def save_synthetic(path: Path, n_states: int = 10, with_cost: bool = True, box: bool = False):
    rng = np.random.default_rng(0)
    eps = []
    for _ in range(3):
        obs = rng.normal(size=(6, 3)) if box else rng.integers(0, n_states, 6)
        eps.append(Episode(obs, rng.integers(0, 4, 5), np.zeros(5), np.zeros(5), terminal=False))
    trajs = data.to_trajectories(eps)
    if not with_cost:
        for t in trajs:
            t.infos[:] = [{} for _ in t.infos]
    data.save(path, trajs)
    return path


@pytest.fixture()
def exp_file(tiny_experiment_file):
    return tiny_experiment_file


# ---------------------------------------------------------------------------- no data yet
@pytest.mark.parametrize(
    ("over", "needles"),
    [
        ({"env": {"id": "safeknob/HazardGrd-v0"}}, ("unknown env id", "safeknob/HazardGrid-v0")),
        ({"env": {"id": "CartPole-v1", "kwargs": {}}}, ("CartPole-v1", "info['cost']", "cost_fn")),
        ({"env": {"id": "test_envs:NoCost-v0", "kwargs": {}}}, ("info['cost']", "[env]")),
        ({"env": {"kwargs": {"layout": ["S.H.G", "G...."]}}}, ("exactly one goal",)),
        ({"env": {"kwargs": {"layout": ["S...", "...."]}}}, ("exactly one goal",)),
        ({"env": {"kwargs": {"layout": ["S#.G", "#..."]}}}, ("unreachable",)),
        ({"env": {"kwargs": {"layout": ["S.X.G"]}}}, ("unknown characters",)),
        ({"env": {"cost_fn": "no_such_module_xyz:f"}}, ("cannot import module",)),
    ],
    ids=["unknown-id", "no-cost", "no-cost-module-form", "two-goals", "no-goal", "unreachable",
         "bad-char", "bad-cost-fn"],
)  # fmt: skip
def test_train_experts_rejects_bad_envs(tmp_path, over, needles):
    import test_envs  # noqa: F401 - registers NoCost-v0

    env = {**tiny_config().to_dict()["env"], **over["env"]}
    path = write_experiment(tmp_path, env=env)
    root = tmp_path / "data"
    assert_user_error(invoke("train-experts", "-e", path, "--data", root, "-q"), *needles)
    assert not root.exists()


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda t: t.replace("cost_limit = 0.2", "cost_limit = -1.0"), ("cost_limit must be >= 0",)),
        (lambda t: t.replace("[experts]\n", "[experts]\nbogus = 1\n"), ("[experts]", "bogus")),
        (lambda t: "typo = 1\n" + t, ("unknown key(s) typo",)),
        (lambda t: t.replace("n_envs = 4", 'n_envs = "4"'), ("ppo.n_envs must be an integer",)),
        (lambda t: t.replace("[ppo]", "[ppo"), ("malformed TOML",)),
        (lambda t: t.replace("alphas = [0.0, 0.5, 1.0]", "alphas = [0.5, 2.0]"), ("[0, 1]",)),
    ],
    ids=["negative-cost-limit", "nested-unknown-key", "top-unknown-key", "wrong-type",
         "malformed", "alphas-out-of-range"],
)  # fmt: skip
@pytest.mark.parametrize(
    "command",
    [["train-experts"], ["collect-demos"], ["train-blend"], ["blend", "--alpha", "0.5"],
     ["evaluate"]],
    ids=lambda c: c[0],
)  # fmt: skip
def test_bad_experiment_files_are_rejected_by_every_command(tmp_path, edit, needles, command):
    text = edit(toml_dumps(tiny_config().to_dict()))
    path = write_experiment(tmp_path, text=text)
    root = tmp_path / "data"
    line = assert_user_error(invoke(*command, "-e", path, "--data", root, "-q"), *needles)
    assert str(path) in line  # names the file to fix
    assert not root.exists()


def test_unknown_experiment_name(tmp_path):
    root = tmp_path / "data"
    assert_user_error(
        invoke("train-experts", "-e", "no-such-exp", "--data", root, "-q"),
        "unknown experiment 'no-such-exp'",
        "hazard-grid",
    )
    assert not root.exists()


@pytest.mark.parametrize(
    ("command", "fix"),
    [
        (["collect-demos"], "safeknob train-experts"),
        (["evaluate"], "safeknob train-experts"),
        (["blend", "--method", "mixture", "--alpha", "0.5"], "safeknob collect-demos"),
        (["train-blend", "--method", "mixture"], "safeknob collect-demos"),
    ],
    ids=lambda x: x[0] if isinstance(x, list) else None,
)
def test_stages_before_their_inputs_name_the_command(tmp_path, exp_file, command, fix):
    root = tmp_path / "data"
    root.mkdir()
    assert_user_error(invoke(*command, "-e", exp_file, "--data", root, "-q"), f"`{fix}")
    assert snapshot(root) == {}


def test_data_dir_that_is_a_file(tmp_path, exp_file):
    root = tmp_path / ("x" * 150)  # long: the line must not wrap
    root.write_text("not a folder")
    assert_user_error(invoke("train-experts", "-e", exp_file, "--data", root, "-q"), str(root))


def test_real_process_prints_one_line(tmp_path):
    """Outside the test runner too: no warnings, no traceback, exit code 2."""
    path = write_experiment(tmp_path, env={"id": "CartPole-v1", "kwargs": {}})
    exe = Path(sys.executable).parent / "safeknob"
    res = subprocess.run(
        [str(exe), "train-experts", "-e", str(path), "--data", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 2
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stdout + res.stderr
    assert "info['cost']" in lines[0]


# ---------------------------------------------------------------------------- with artifacts
@pytest.fixture()
def root(pipeline_root):
    """A private trained data folder; the test asserts it is unchanged at the end."""
    before = snapshot(pipeline_root)
    yield pipeline_root
    assert snapshot(pipeline_root) == before, "a failed command changed files on disk"


def in_root(root, exp_file, *args):
    return invoke(*args, "-e", exp_file, "--data", root, "-q")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["blend", "--alpha", "1.5"], ("alpha must be in [0, 1]", "1.5")),
        (["blend", "--alpha", "-0.1"], ("alpha must be in [0, 1]",)),
        (["blend", "--alpha", "nan"], ("alpha must be in [0, 1]",)),
        (["blend", "--alpha", "1.5", "--method", "mixture"], ("alpha must be in [0, 1]",)),
        (["train-blend", "--alphas", "0,abc"], ("malformed alpha list '0,abc'", "0,0.25,0.5")),
        (["train-blend", "--alphas", "0,1.5"], ("alpha must be in [0, 1]",)),
        (["train-blend", "--alphas", ","], ("empty alpha list",)),
        (["train-blend", "--alphas", "0;0.5"], ("malformed alpha list",)),
        (["blend", "--method", "nosuch", "--alpha", "0.5"], ("unknown method 'nosuch'", "mixture")),
        (["train-blend", "--method", "mixtur"], ("did you mean mixture",)),
        (["blend", "--method", "mixture", "--reward", "bogus"], ("unknown reward source",)),
        (["evaluate", "--episodes", "1"], ("--episodes must be >= 2",)),
    ],
    ids=lambda x: "_".join(x) if isinstance(x, list) else None,
)  # fmt: skip
def test_bad_blend_arguments(root, exp_file, args, needles):
    assert_user_error(in_root(root, exp_file, *args), *needles)


def test_evaluate_without_demos(pipeline_root, exp_file):
    shutil.rmtree(pipeline_root / EXP / "demos")
    before = snapshot(pipeline_root)
    res = in_root(pipeline_root, exp_file, "evaluate")
    assert_user_error(res, "`safeknob collect-demos`")
    assert snapshot(pipeline_root) == before


def test_collect_demos_from_a_folder_that_is_not_a_dataset(root, exp_file, tmp_path):
    src = tmp_path / "notes"
    src.mkdir()
    (src / "readme.txt").write_text("hello")
    res = in_root(root, exp_file, "collect-demos", "--from", src, "--role", "safe", "--force")
    assert_user_error(res, "--from", "no demonstration dataset", str(src))


def test_collect_demos_from_a_missing_path(root, exp_file, tmp_path):
    res = in_root(root, exp_file, "collect-demos", "--from", tmp_path / "nope", "--role", "safe")
    assert_user_error(res, "no demonstration dataset")


@pytest.mark.parametrize(
    ("kind", "needles"),
    [
        ("bigger-grid", ("does not match", "Discrete(10)", "--experiment")),
        ("box-obs", ("does not match", "Discrete(10)")),
        ("no-cost", ("no per-step cost",)),
    ],
)
def test_collect_demos_from_an_incompatible_dataset(root, exp_file, tmp_path, kind, needles):
    src = tmp_path / "src"
    save_synthetic(
        src, n_states=40 if kind == "bigger-grid" else 10, with_cost=kind != "no-cost",
        box=kind == "box-obs",
    )  # fmt: skip
    res = in_root(root, exp_file, "collect-demos", "--from", src, "--role", "safe", "--force")
    assert_user_error(res, *needles)


def test_collect_demos_from_a_corrupted_dataset(root, exp_file, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(root / EXP / "demos" / "safe", src)
    (arrow,) = src.glob("*.arrow")
    os.truncate(arrow, arrow.stat().st_size // 2)
    res = in_root(root, exp_file, "collect-demos", "--from", src, "--role", "safe", "--force")
    assert_user_error(res, "corrupt or truncated")


@pytest.mark.parametrize("role", [None, "expert"])
def test_collect_demos_from_needs_a_valid_role(root, exp_file, role):
    src = root / EXP / "demos" / "safe"
    args = ["collect-demos", "--from", src] + (["--role", role] if role else [])
    assert_user_error(in_root(root, exp_file, *args), "--role must be one of reckless, safe")


def test_collect_demos_from_into_an_existing_folder_needs_force(root, exp_file):
    src = root / EXP / "demos" / "safe"
    res = in_root(root, exp_file, "collect-demos", "--from", src, "--role", "reckless")
    assert_user_error(res, "already exists", "--force")


def test_collect_demos_from_imports_a_valid_dataset(pipeline_root, exp_file, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(pipeline_root / EXP / "demos" / "safe", src)
    res = in_root(
        pipeline_root, exp_file, "collect-demos", "--from", src, "--role", "reckless", "--force"
    )
    assert res.exit_code == 0, res.output
    dest = pipeline_root / EXP / "demos" / "reckless"
    (arrow,) = src.glob("*.arrow")
    assert (dest / arrow.name).read_bytes() == arrow.read_bytes()
    res = invoke("demos", "info", dest)
    assert res.exit_code == 0 and "episodes" in res.output and "reckless" in res.output


def test_collect_demos_refuses_experts_of_another_config(root, exp_file, tmp_path):
    """Changing the experts' config and forcing collect-demos must not record demos of the
    stale experts; it names `safeknob train-experts --force`."""
    path = write_experiment(tmp_path, "tiny-grid.toml", experts={"cost_limit": 0.5})
    res = invoke("collect-demos", "--force", "-e", path, "--data", root, "-q")
    assert_user_error(res, "different config", "`safeknob train-experts --force`")


def test_collect_demos_with_a_corrupt_expert_model(pipeline_root, exp_file):
    (pipeline_root / EXP / "experts" / "safe" / "model.zip").write_bytes(b"PK\x03\x04broken")
    before = snapshot(pipeline_root)
    res = in_root(pipeline_root, exp_file, "collect-demos", "--force")
    assert_user_error(res, "model.zip is corrupt", "`safeknob train-experts --force`")
    assert snapshot(pipeline_root) == before


@pytest.mark.parametrize("command", [["evaluate"], ["collect-demos", "--force"]])
def test_corrupt_expert_meta(pipeline_root, exp_file, command):
    (pipeline_root / EXP / "experts" / "reckless" / "meta.json").write_text("{truncated")
    before = snapshot(pipeline_root)
    assert_user_error(in_root(pipeline_root, exp_file, *command), "corrupt", "train-experts")
    assert snapshot(pipeline_root) == before


def test_demos_info_on_a_missing_path(tmp_path):
    res = invoke("demos", "info", tmp_path / "nowhere")
    assert_user_error(res, "no demonstration dataset", "`safeknob collect-demos`")
    assert not (tmp_path / "nowhere").exists()


def test_demos_info_on_a_corrupted_demo_folder(pipeline_root):
    folder = pipeline_root / EXP / "demos" / "safe"
    (arrow,) = folder.glob("*.arrow")
    os.truncate(arrow, arrow.stat().st_size // 2)
    before = snapshot(pipeline_root)
    assert_user_error(
        invoke("demos", "info", folder), "corrupt or truncated", "`safeknob collect-demos --force`"
    )
    assert snapshot(pipeline_root) == before


def test_demos_info_on_a_dataset_without_cost(tmp_path):
    src = save_synthetic(tmp_path / "src", with_cost=False)
    assert_user_error(invoke("demos", "info", src), "no per-step cost")


def test_demos_info_on_a_good_folder(trained_root):
    res = invoke("demos", "info", trained_root / EXP / "demos" / "safe")
    assert res.exit_code == 0, res.output
    for word in ("episodes", "transitions", "return", "cost", "safe expert"):
        assert word in res.output


def test_blend_mixture_happy_path(pipeline_root, exp_file):
    res = in_root(pipeline_root, exp_file, "blend", "--method", "mixture", "--alpha", "0.6")
    assert res.exit_code == 0, res.output
    assert (pipeline_root / EXP / "blends" / "mixture" / "alpha-0.60" / "meta.json").is_file()
