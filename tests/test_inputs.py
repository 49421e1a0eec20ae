"""Bad input as users really bring it (issue 12): envs, datasets, settings, names, artifacts.

Every case is one kind of bad input (A..H of the issue) tried as a new user would, through
the command line: one line on stderr starting ``error:`` that names the problem and the fix,
exit code 2, no traceback, no hang, and nothing on disk lost or changed. ``KINDS`` counts the
cases per kind (``pytest tests/test_inputs.py -q -k count -s`` prints the tally).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
import typing
from collections import Counter
from pathlib import Path

import bad_envs  # noqa: F401 - registers bad_envs/BadEnv-v0 and bad_envs/OldReset-v0
import numpy as np
import pytest
from conftest import tiny_config
from test_cli import snapshot
from typer.testing import CliRunner

from safeknob import data
from safeknob.artifacts import alpha_dir
from safeknob.cli import app
from safeknob.config import RANGES, ExperimentConfig, from_dict
from safeknob.evaluation.rollout import Episode
from safeknob.stages.common import toml_dumps

EXP = "tiny-grid"
TINY = None  # the tiny experiment's TOML (set by the autouse fixture below)
KINDS: Counter[str] = Counter()
"""Cases per kind, counted as the parametrized lists below are built."""


def _name_only(x) -> str:
    """Test ids from the case names only (a function's repr holds its address)."""
    return x if isinstance(x, str) else ""


def cases(kind: str, items: list) -> list:
    KINDS[kind] += len(items)
    return items


@pytest.fixture(autouse=True)
def _tiny_file(tiny_experiment_file):
    global TINY
    TINY = tiny_experiment_file


# ---------------------------------------------------------------------------- helpers
def invoke(*args) -> typing.Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_error_line(res, *needles: str) -> str:
    """Exit 2, one ``error:`` line on stderr (warnings aside), nothing on stdout about it,
    no traceback; every needle in that line. Returns the line."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    assert "error" not in res.stdout, res.stdout  # errors go to stderr only
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def experiment(tmp_path: Path, name: str = "exp.toml", **over) -> Path:
    path = tmp_path / name
    path.write_text(toml_dumps(tiny_config(**over).to_dict()))
    return path


def experiment_with(tmp_path: Path, key: str, value) -> Path:
    """The tiny experiment's TOML with the dotted ``key`` set to ``value`` (nan/inf allowed:
    TOML has them)."""
    doc = tiny_config().to_dict()
    *parents, last = key.split(".")
    table = doc
    for p in parents:
        table = table[p]
    table[last] = value
    path = tmp_path / "exp.toml"
    path.write_text(toml_dumps(doc))
    return path


def bad_env_experiment(tmp_path: Path, env_id: str, mode: str | None = None, **env) -> Path:
    kwargs = {"mode": mode} if mode else {}
    return experiment(tmp_path, env={"id": env_id, "kwargs": kwargs, **env})


# ============================================================================ kind D: settings
SETTINGS = cases(
    "D",
    [
        # the examples
        ("ppo.batch_size", 0, "ppo.batch_size must be >= 2"),
        ("ppo.n_steps", 0, "ppo.n_steps must be >= 1"),
        ("ppo.learning_rate", -1.0, "ppo.learning_rate must be > 0"),
        ("blend.steps", -100, "blend.steps must be >= 1"),
        ("experts.eval_episodes", 0, "experts.eval_episodes must be >= 2"),
        ("eval.n_boot", 0, "eval.n_boot must be >= 1"),
        ("env.kwargs.step_penalty", math.nan, "env.kwargs.step_penalty must be a finite number"),
        ("ppo.net_arch", [0], "ppo.net_arch must be >= 1"),
        # ours
        ("ppo.batch_size", 1, "ppo.batch_size must be >= 2"),
        ("ppo.gamma", 1.5, "ppo.gamma must be in [0, 1]"),
        ("ppo.gae_lambda", -0.1, "ppo.gae_lambda must be in [0, 1]"),
        ("ppo.clip_range", 0.0, "ppo.clip_range must be > 0"),
        ("ppo.ent_coef", -0.01, "ppo.ent_coef must be >= 0"),
        ("ppo.learning_rate", math.inf, "ppo.learning_rate must be > 0"),
        ("ppo.n_epochs", 0, "ppo.n_epochs must be >= 1"),
        ("ppo.net_arch", [64, -3], "ppo.net_arch must be >= 1"),
        ("lagrange.lambda_max", 0.0, "lagrange.lambda_max must be > 0"),
        ("lagrange.cost_window", 0, "lagrange.cost_window must be >= 1"),
        ("lagrange.kp", -1.0, "lagrange.kp must be >= 0"),
        ("lagrange.warmup_rollouts", -1, "lagrange.warmup_rollouts must be >= 0"),
        ("experts.cost_limit", math.inf, "experts.cost_limit must be >= 0"),
        ("blend.gain_scale", math.nan, "blend.gain_scale must be > 0"),
        ("blend.conditioned_bins", 1, "blend.conditioned_bins must be >= 2"),
        ("blend.batch_size", 1, "blend.batch_size must be 0 or >= 2"),
        ("blend.candidate_episodes", 0, "blend.candidate_episodes must be >= 1"),
        ("blend.alphas", [0.0, -0.5], "blend.alphas must be in [0, 1]"),
        ("rewards.check_steps", -1, "rewards.check_steps must be >= 0"),
        ("rewards.airl_steps", 0, "rewards.airl_steps must be >= 1"),
        ("eval.seed", -5, "eval.seed must be in [0, 2147483647]"),
        ("eval.episodes", 1, "eval.episodes must be >= 2"),
        ("demos.episodes", 0, "demos.episodes must be >= 1"),
        ("seed", -1, "seed must be in [0, 2147483647]"),
        ("env.kwargs.slip", -math.inf, "env.kwargs.slip must be a finite number"),
        ("env.kwargs.nested", {"x": [1.0, math.nan]}, "env.kwargs.nested.x[] must be a finite"),
    ],
)


@pytest.mark.parametrize(("key", "value", "needle"), SETTINGS, ids=lambda x: str(x))
def test_out_of_range_setting_is_one_line_before_anything_is_written(
    pipeline_root, tmp_path, key, value, needle
):
    path = experiment_with(tmp_path, key, value)
    before = snapshot(pipeline_root)
    res = invoke("train-experts", "-e", path, "--data", pipeline_root, "-q", "--force")
    assert_one_error_line(res, needle, str(path))
    assert snapshot(pipeline_root) == before


SEED_ARGS = cases(
    "D",
    [
        (["train-experts", "--seed", "-1"], "--seed must be in [0, 2147483647], got -1"),
        (["train-experts", "--seed", str(2**40)], "--seed must be in [0, 2147483647]"),
        (["blend", "--method", "mixture", "--alpha", "0.5", "--seed", "-3"], "--seed must be"),
        (["train-blend", "--method", "mixture", "--seed", "-1"], "--seed must be"),
        (["sweep", "--methods", "mixture", "--seeds", "0,-1"], "--seeds must be"),
        (["evaluate", "--episodes", "1"], "--episodes must be >= 2"),
        (["blend", "--method", "mixture", "--alpha", "0.5", "--episodes", "0"], "--episodes"),
        (["train-experts", "--set", "ppo.batch_size=0"], "ppo.batch_size must be >= 2"),
        (["train-experts", "--set", "eval.n_boot=-3"], "eval.n_boot must be >= 1"),
        (["train-experts", "--set", "name=../up"], "name must be one folder name"),
    ],
)


@pytest.mark.parametrize(("args", "needle"), SEED_ARGS, ids=lambda x: str(x))
def test_bad_seed_option_changes_nothing(pipeline_root, tiny_experiment_file, args, needle):
    """``train-experts --seed -1`` used to rewrite config.toml and then crash."""
    before = snapshot(pipeline_root)
    res = invoke(*args, "-e", tiny_experiment_file, "--data", pipeline_root, "-q")
    assert_one_error_line(res, needle)
    assert snapshot(pipeline_root) == before


def _numeric_keys(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            out += _numeric_keys(tp, f"{key}.")
            continue
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is tuple:
            if args[0] in (int, float):
                out.append(f"{key}[]")
        elif tp in (int, float) or (args and args[0] in (int, float)):
            out.append(key)
    return out


def test_every_numeric_setting_has_a_range():
    keys = _numeric_keys(ExperimentConfig)
    assert "ppo.batch_size" in keys and "blend.alphas[]" in keys
    assert sorted(keys) == sorted(RANGES), set(keys) ^ set(RANGES)


def test_the_shipped_defaults_and_experiments_pass_the_ranges():
    from safeknob.config import list_experiments, load_experiment, quick

    from_dict({})
    for path in list_experiments():
        quick(load_experiment(str(path)))  # --quick budgets too


# ============================================================================ kind G: names
NAMES = cases(
    "G",
    ["../outside", "a/b", "..", ".", ".hidden", "", "x" * 101, "name with space", "sub\\dir"],
)


@pytest.mark.parametrize("name", NAMES)
def test_experiment_name_must_be_one_safe_folder(tmp_path, name):
    path = experiment_with(tmp_path, "name", name)
    data_dir = tmp_path / "deep" / "data"
    res = invoke("train-experts", "-e", path, "--data", data_dir, "-q")
    assert_one_error_line(res, "name must be one folder name", str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


ALPHA_SETS = cases(
    "G",
    [
        [0.0, -0.0],
        [0.001, 0.004, 0.0],
        [0.125, 0.12, 0.13],
        [1 / 3, 0.33, 0.3333],
        [0.1, 0.1 + 1e-12],
    ],
)


@pytest.mark.parametrize("alphas", ALPHA_SETS, ids=str)
def test_distinct_alphas_get_distinct_exact_folders(alphas):
    names = {alpha_dir(a) for a in alphas}
    assert len(names) == len({a + 0.0 for a in alphas})
    for a in alphas:
        name = alpha_dir(a)
        assert float(name.removeprefix("alpha-")) == a  # the folder says the alpha exactly
        assert "--" not in name
    assert alpha_dir(0.5) == "alpha-0.50"  # two decimals where exact (existing folders)


def test_minus_zero_alpha_is_alpha_zero(pipeline_root, tiny_experiment_file):
    res = invoke(
        "train-blend", "--alphas=-0,0", "--method", "mixture",
        "-e", tiny_experiment_file, "--data", pipeline_root, "-q",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    folders = sorted(p.name for p in (pipeline_root / EXP / "blends" / "mixture").iterdir())
    assert [f for f in folders if f.startswith("alpha-")] == ["alpha-0.00"]


# ============================================================================ kind A: envs
ENVS = cases(
    "A",
    [
        ("bad_envs/BadEnv-v0", "cost-vector", ("cost of shape (2,)", "step 1", "BadEnv")),
        ("bad_envs/BadEnv-v0", "cost-none", ("cost None", "step 1")),
        ("bad_envs/BadEnv-v0", "cost-str", ("cost '0.5'", "step 1")),
        ("bad_envs/BadEnv-v0", "cost-nan", ("cost nan", "step 1")),
        ("bad_envs/BadEnv-v0", "cost-inf", ("cost inf", "step 1")),
        ("bad_envs/BadEnv-v0", "cost-negative", ("cost -1.0", "step 1", ">= 0")),
        ("bad_envs/BadEnv-v0", "cost-list", ("cost of shape (2,)",)),
        ("bad_envs/OldReset-v0", None, ("reset() takes no seed=", "Gymnasium")),
        ("bad_envs/BadEnv-v0", "dict-obs", ("Dict observation space", "Box and Discrete")),
        ("bad_envs/BadEnv-v0", "tuple-obs", ("Tuple observation space", "FlattenObservation")),
        ("bad_envs/BadEnv-v0", "multidiscrete-act", ("MultiDiscrete action space",)),
        ("bad_envs/BadEnv-v0", "old-step", ("4-tuple", "old Gym API")),
        ("bad_envs/BadEnv-v0", "reward-nan", ("reward nan", "step 1")),
    ],
)


@pytest.mark.parametrize(("env_id", "mode", "needles"), ENVS, ids=lambda x: str(x))
def test_bad_env_is_one_line_naming_env_and_step(tmp_path, env_id, mode, needles):
    path = bad_env_experiment(tmp_path, env_id, mode)
    root = tmp_path / "data"
    res = invoke("train-experts", "-e", path, "--data", root, "-q")
    assert_one_error_line(res, *needles)
    assert not root.exists()


COST_FNS = cases(
    "A",
    [
        ("bad_envs:cost_two_args", ("cost function 'bad_envs:cost_two_args'", "(obs, action, next_obs, info)")),
        ("bad_envs:cost_list", ("cost function 'bad_envs:cost_list'", "shape (2,)")),
        ("bad_envs:cost_nan", ("cost function 'bad_envs:cost_nan'", "cost nan")),
        ("bad_envs:cost_str", ("cost function 'bad_envs:cost_str'", "'cheap'")),
        ("bad_envs:not_a_function", ("has no function 'not_a_function'",)),
        ("bad_envs", ("expected 'module:function'",)),
        ("no_such_module_xyz:f", ("cannot import module",)),
    ],
)  # fmt: skip


@pytest.mark.parametrize(("spec", "needles"), COST_FNS, ids=lambda x: str(x))
@pytest.mark.parametrize("how", ["option", "toml"])
def test_bad_cost_function_is_one_line_naming_it(tmp_path, spec, needles, how):
    root = tmp_path / "data"
    env = {"id": "CartPole-v1", "kwargs": {}}
    if how == "option":
        path = experiment(tmp_path, env=env)
        res = invoke("--cost-fn", spec, "train-experts", "-e", path, "--data", root, "-q")
    else:
        path = experiment(tmp_path, env={**env, "cost_fn": spec})
        res = invoke("train-experts", "-e", path, "--data", root, "-q")
    assert_one_error_line(res, *needles)
    assert not root.exists()


def test_safety_gymnasium_style_array_cost_works():
    from safeknob.envs import make_env

    env = make_env("bad_envs/BadEnv-v0", {"mode": "cost-array1"})
    env.reset(seed=0)
    _, _, _, _, info = env.step(1)
    assert info["cost"] == 0.5 and type(info["cost"]) is float


def test_a_good_cost_function_works():
    from safeknob.envs import make_env

    env = make_env("CartPole-v1", {}, "bad_envs:cost_ok")
    env.reset(seed=0)
    assert env.step(1)[4]["cost"] == pytest.approx(0.1)


KINDS["A"] += 1  # the case below


def test_episodes_that_never_end_are_capped_and_say_so(tmp_path):
    """train-experts used to hang forever in the experts' evaluation on such an env."""
    path = experiment(
        tmp_path,
        env={"id": "bad_envs:bad_envs/BadEnv-v0", "kwargs": {"mode": "never-ends"}},
        experts={"reckless_steps": 256, "safe_steps": 256, "eval_episodes": 2},
        ppo={"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 1, "net_arch": [8]},
    )
    root = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "safeknob.cli", "--no-tensorboard", "train-experts", "-e",
         str(path), "--data", str(root), "-q"],
        capture_output=True, text=True, timeout=300, env=_child_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "step cap" in proc.stderr and "max_episode_steps" in proc.stderr
    meta = (root / EXP / "experts" / "safe" / "meta.json").read_text()
    assert '"length_mean": 1000.0' in meta


def test_step_cap_is_set_by_max_episode_steps():
    from safeknob.envs import make_env

    env = make_env("bad_envs/BadEnv-v0", {"mode": "never-ends", "max_episode_steps": 7})
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        if any(env.step(0)[2:4]):
            break
    assert steps == 7


def _child_env() -> dict[str, str]:
    tests = str(Path(__file__).resolve().parent)
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]),
    }


# ============================================================================ kind B: imports
def grid_episodes(n: int = 5, length: int = 6, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    return [
        Episode(
            rng.integers(0, 10, length + 1),
            rng.integers(0, 4, length),
            np.zeros(length),
            np.full(length, 0.1),
            terminal=False,
        )
        for _ in range(n)
    ]


def _float_actions(eps):  # a Discrete(4) dataset stored as floats 0.0..3.99
    for e in eps:
        e.acts = e.acts.astype(float) + 0.99
    return eps


def _set(field: str, ep: int, step: int, value):
    def edit(eps):
        if not float(value).is_integer():  # one dtype across episodes (the dataset format)
            for e in eps:
                setattr(e, field, getattr(e, field).astype(float))
        getattr(eps[ep], field)[step] = value
        return eps

    return edit


def _longer(eps):
    eps[2] = grid_episodes(1, length=25)[0]  # the tiny grid's horizon is 20
    return eps


IMPORTS = cases(
    "B",
    [
        ("float-actions", _float_actions, ("action 0.99", "integers in [0, 3]", "episode 0")),
        ("cost-nan", _set("costs", 3, 2, np.nan), ("episode 3, step 2: cost nan",)),
        ("cost-negative", _set("costs", 1, 0, -0.5), ("episode 1, step 0: cost -0.5", ">= 0")),
        ("cost-inf", _set("costs", 0, 5, np.inf), ("cost inf",)),
        ("action-7", _set("acts", 4, 3, 7), ("episode 4, step 3: action 7",)),
        ("action-negative", _set("acts", 0, 0, -1), ("action -1",)),
        ("obs-out-of-grid", _set("obs", 2, 1, 12), ("episode 2, step 1: observation 12",)),
        ("obs-fraction", _set("obs", 2, 1, 2.5), ("observation 2.5",)),
        ("final-obs", _set("obs", 1, 6, 40), ("episode 1: final observation 40",)),
        ("reward-nan", _set("rews", 0, 1, np.nan), ("reward nan",)),
        ("longer-than-horizon", _longer, ("episode 2 has 25 steps", "limit of 20")),
        ("late-episode", None, ("episode 70, step 0: action 9",)),
    ],
)


@pytest.mark.parametrize(("case", "edit", "needles"), IMPORTS, ids=_name_only)
def test_imported_demonstrations_are_checked_step_by_step(
    pipeline_root, tiny_experiment_file, tmp_path, case, edit, needles
):
    if case == "late-episode":  # beyond the 50 episodes that used to be looked at
        eps = grid_episodes(80)
        eps[70].acts[0] = 9
    else:
        eps = edit(grid_episodes())
    src = tmp_path / "src"
    data.save(src, data.to_trajectories(eps))
    before = snapshot(pipeline_root)
    res = invoke(
        "collect-demos", "--from", src, "--role", "safe", "--force",
        "-e", tiny_experiment_file, "--data", pipeline_root, "-q",
    )  # fmt: skip
    assert_one_error_line(res, str(src), *needles)
    assert snapshot(pipeline_root) == before


NAV_IMPORTS = cases(
    "B",
    [
        ("box-action-3", lambda a, o: a.__setitem__((1, 0), 3.0), ("action [3.0,", "Box(-1.0, 1.0")),
        ("box-action-nan", lambda a, o: a.__setitem__((0, 1), np.nan), ("action [",)),
        ("box-obs-nan", lambda a, o: o.__setitem__((2, 0), np.nan), ("observation [",)),
        ("box-action-shape", None, ("shape (2,)",)),
    ],
)  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "needles"), NAV_IMPORTS, ids=_name_only)
def test_imported_box_demonstrations_stay_inside_the_bounds(tmp_path, case, edit, needles):
    from safeknob.envs import NAV_ID, make_env

    env = make_env(NAV_ID)
    rng = np.random.default_rng(0)
    eps = []
    for _ in range(3):
        obs = np.stack([env.observation_space.sample() for _ in range(5)]).astype(float)
        acts = rng.uniform(-1, 1, size=(4, 3 if case == "box-action-shape" else 2))
        if edit is not None and not eps:
            edit(acts, obs)
        eps.append(Episode(obs, acts, np.zeros(4), np.zeros(4), terminal=False))
    src = tmp_path / "src"
    data.save(src, data.to_trajectories(eps))
    path = experiment(tmp_path, env={"id": NAV_ID, "kwargs": {}})
    root = tmp_path / "data"
    res = invoke("collect-demos", "--from", src, "--role", "safe", "-e", path, "--data", root)
    assert_one_error_line(res, *needles)
    assert not (root / "exp" / "demos").exists()


def test_a_good_box_import_passes(tmp_path):
    from safeknob.envs import NAV_ID, make_env

    env = make_env(NAV_ID)
    eps = [
        Episode(
            np.stack([env.observation_space.sample() for _ in range(5)]),
            np.stack([env.action_space.sample() for _ in range(4)]),
            np.zeros(4),
            np.zeros(4),
            terminal=False,
        )
    ]
    data.check_compatible(data.to_trajectories(eps), env, "ds", "fix")


# ============================================================================ kind C: batches
@pytest.mark.parametrize(
    ("episodes", "length"), cases("C", [(1, 20), (30, 1), (2, 3)]), ids=["1x20", "30x1", "2x3"]
)
def test_fewer_demonstrations_than_a_batch_train_bc_mix(pipeline_root, tmp_path, episodes, length):
    path = experiment(tmp_path)
    for role in ("safe", "reckless"):
        src = tmp_path / f"src-{role}"
        data.save(src, data.to_trajectories(grid_episodes(episodes, length)))
        res = invoke("collect-demos", "--from", src, "--role", role, "--force",
                     "-e", path, "--data", pipeline_root, "-q")  # fmt: skip
        assert res.exit_code == 0, res.output
    res = invoke("blend", "--method", "bc-mix", "--alpha", "0.5", "--episodes", "4",
                 "-e", path, "--data", pipeline_root, "-q")  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    assert (pipeline_root / EXP / "blends" / "bc-mix" / "alpha-0.50" / "policy.pt").is_file()


# ============================================================================ kind E: artifacts
def _edit_json(path: Path, fn) -> None:
    import json

    path.write_text(json.dumps(fn(json.loads(path.read_text()))))


def _drop(*keys):
    def fn(d):
        for k in keys[:-1]:
            d = d[k]
        d.pop(keys[-1])

    return fn


def _put(*keys_value):
    *keys, value = keys_value

    def fn(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return fn


def _json_edit(rel: str, change):
    def edit(root: Path) -> None:
        def fn(d):
            out = change(d)
            return d if out is None else out

        _edit_json(root / EXP / rel, fn)

    return edit


def _mixture_blend(root: Path) -> None:
    res = invoke("train-blend", "--alphas", "0.5", "--method", "mixture",
                 "-e", TINY, "--data", root, "-q")  # fmt: skip
    assert res.exit_code == 0, res.output


BLEND = "blends/mixture/alpha-0.50/meta.json"
ARTIFACTS = cases(
    "E",
    [
        # the examples
        ("expert-meta-list", None, _json_edit("experts/safe/meta.json", lambda d: []),
         ["evaluate"], ("experts/safe/meta.json holds list", "safeknob train-experts --force")),
        ("expert-no-evaluation", None,
         _json_edit("experts/safe/meta.json", _drop("evaluation")),
         ["evaluate"], ("lacks the key 'evaluation'", "safeknob train-experts --force")),
        ("demos-no-summary", None, _json_edit("demos/safe/manifest.json", _drop("summary")),
         ["train-blend", "--method", "mixture"],
         ("lacks the key 'summary'", "safeknob collect-demos --force")),
        ("blend-alpha-string", _mixture_blend, _json_edit(BLEND, _put("alpha", "0.5")),
         ["evaluate"], ("alpha = '0.5', expected a number", "safeknob train-blend --force")),
        # ours
        ("expert-return-string", None,
         _json_edit("experts/reckless/meta.json", _put("evaluation", "return_mean", "high")),
         ["evaluate"], ("evaluation.return_mean = 'high'",)),
        ("expert-evaluation-list", None,
         _json_edit("experts/reckless/meta.json", _put("evaluation", [1, 2])),
         ["blend", "--alpha", "0.5", "--method", "mixture"], ("evaluation",)),
        ("demos-cost-null", None,
         _json_edit("demos/reckless/manifest.json", _put("summary", "cost_mean", None)),
         ["evaluate"], ("summary.cost_mean = null", "safeknob collect-demos --force")),
        ("demos-manifest-number", None, _json_edit("demos/safe/manifest.json", lambda d: 3),
         ["train-blend", "--method", "mixture"], ("holds int",)),
        ("blend-method-number", _mixture_blend, _json_edit(BLEND, _put("method", 3)),
         ["evaluate"], ("method = 3, expected a string",)),
        ("blend-seed-missing", _mixture_blend, _json_edit(BLEND, _drop("seed")),
         ["evaluate"], ("lacks the key 'seed'",)),
        ("expert-seed-float", None, _json_edit("experts/safe/meta.json", _put("seed", 0.5)),
         ["evaluate"], ("seed = 0.5, expected an integer",)),
    ],
)  # fmt: skip


@pytest.mark.parametrize(("case", "prepare", "edit", "command", "needles"), ARTIFACTS,
                         ids=_name_only)  # fmt: skip
def test_artifact_of_the_wrong_shape_is_one_line_naming_the_remake(
    pipeline_root, case, prepare, edit, command, needles
):
    if prepare is not None:
        prepare(pipeline_root)
    edit(pipeline_root)
    (pipeline_root / EXP / "eval").mkdir(exist_ok=True)
    (pipeline_root / EXP / "eval" / "results.csv").write_text("a good table\n")
    before = snapshot(pipeline_root)
    res = invoke(*command, "-e", TINY, "--data", pipeline_root, "-q")
    assert_one_error_line(res, *needles)
    assert snapshot(pipeline_root) == before


def test_demos_info_with_a_manifest_of_the_wrong_shape(trained_root, tmp_path):
    import shutil

    src = tmp_path / "safe"
    shutil.copytree(trained_root / EXP / "demos" / "safe", src)
    _edit_json(src / "manifest.json", lambda d: _put("summary", [1, 2])(d) or d)
    before = snapshot(tmp_path)
    res = invoke("demos", "info", src)
    assert_one_error_line(res, "summary", "safeknob collect-demos --force")
    assert snapshot(tmp_path) == before


KINDS["E"] += 1  # the case above


def _results(text: str):
    def edit(root: Path) -> None:
        (root / EXP / "eval").mkdir(exist_ok=True)
        (root / EXP / "eval" / "summary.csv").write_text(
            "experiment,method,n_alphas,spearman,violations,calibration_error,calibration_max,"
            "chord_gain_mean,frontier_gap_mean,frontier_gap_max,cost_std_mean,train_seconds\n"
        )
        (root / EXP / "eval" / "results.csv").write_text(text)

    return edit


_HEADER = (
    "experiment,env_id,method,alpha,seed,episodes,return_mean,return_lo,return_hi,cost_mean,"
    "cost_lo,cost_hi,cost_std,position,chord_gain,frontier_return,frontier_gap,train_seconds"
)
TABLES = cases(
    "E",
    [
        ("results-no-column", _results(_HEADER.replace(",cost_mean", "") + "\n"),
         ("lacks column(s) cost_mean", "safeknob evaluate")),
        ("results-empty-file", _results(""), ("is empty or corrupt", "safeknob evaluate")),
        ("results-header-only", _results(_HEADER + "\n"), ("has no rows",)),
        ("results-alpha-text", _results(_HEADER + "\ntiny-grid,x,mixture,half,0,4"
                                        + ",1" * 12 + "\n"), ("non-numeric", "alpha")),
    ],
)  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "needles"), TABLES, ids=_name_only)
@pytest.mark.parametrize("command", [["report"], ["calibrate", "--method", "mixture"]], ids=str)
def test_results_table_of_the_wrong_shape(pipeline_root, case, edit, needles, command):
    edit(pipeline_root)
    before = snapshot(pipeline_root)
    res = invoke(*command, "-e", TINY, "--data", pipeline_root, "-q")
    assert_one_error_line(res, *needles)
    assert snapshot(pipeline_root) == before


# ============================================================================ kind F: belonging
def _other_expert(change):
    def edit(root: Path) -> None:
        _edit_json(root / EXP / "experts" / "safe" / "meta.json", lambda d: change(d) or d)

    return edit


def _foreign_model(root: Path) -> None:
    import gymnasium as gym
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", gym.make("CartPole-v1"), n_steps=64, batch_size=64, seed=0)
    model.save(root / EXP / "experts" / "safe" / "model.zip")


def _foreign_blend(root: Path) -> None:
    _mixture_blend(root)
    _edit_json(root / EXP / BLEND, lambda d: _put("config", "name", "other-exp")(d) or d)


FOREIGN = cases(
    "F",
    [
        ("expert-of-another-experiment", _other_expert(_put("config", "name", "other-exp")), [],
         ("made for experiment 'other-exp'", "safeknob train-experts --force")),
        ("expert-other-ppo", _other_expert(_put("config", "ppo", "n_epochs", 9)), [],
         ("different [ppo]", "n_epochs: 9 there, 4 now")),
        ("expert-other-layout", _other_expert(_put("config", "env", "kwargs", "slip", 0.3)), [],
         ("different [env]",)),
        ("cost-fn-now", None, ["--cost-fn", "bad_envs:cost_ok"],
         ("different [env]", "cost_fn")),
        ("model-other-spaces", _foreign_model, [],
         ("trained for the observation space Box", "Discrete(10)", "train-experts --force")),
        ("blend-of-another-experiment", _foreign_blend, [], ("made for experiment 'other-exp'",)),
        ("demos-of-another-env",
         _json_edit("demos/safe/manifest.json", _put("config", "env", "id", "CartPole-v1")),
         [], ("demos/safe was made with a different [env]", "collect-demos --force")),
    ],
)  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "pre", "needles"), FOREIGN,
                         ids=_name_only)  # fmt: skip
def test_evaluate_refuses_artifacts_of_another_experiment(pipeline_root, case, edit, pre, needles):
    """evaluate used to overwrite a good results.csv from them."""
    if edit is not None:
        edit(pipeline_root)
    (pipeline_root / EXP / "eval").mkdir(exist_ok=True)
    (pipeline_root / EXP / "eval" / "results.csv").write_text("a good table\n")
    before = snapshot(pipeline_root)
    res = invoke(*pre, "evaluate", "-e", TINY, "--data", pipeline_root, "-q")
    assert_one_error_line(res, *needles)
    assert snapshot(pipeline_root) == before


# ============================================================================ kind H: output
KINDS["H"] += 1  # the case below


def test_errors_go_to_stderr_in_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "safeknob.cli", "blend", "--alpha", "7"],
        capture_output=True, text=True, timeout=120, env=_child_env(), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == "error: alpha must be in [0, 1], got 7"


KINDS["H"] += 1  # the case below


def test_non_ascii_folder_under_lang_c_is_not_called_corrupt(tmp_path):
    src = tmp_path / "dätä" / "demos"
    data.save(src, data.to_trajectories(grid_episodes()))
    env = {**_child_env(), "LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0",
           "PYTHONCOERCECLOCALE": "0"}  # fmt: skip
    before = snapshot(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "safeknob.cli", "demos", "info", os.fsencode(src)],
        capture_output=True, timeout=120, env=env,
    )  # fmt: skip
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 0:  # this machine's C locale is UTF-8 after all: nothing to misreport
        return
    assert proc.returncode == 2, err
    assert "corrupt" not in err and "--force" not in err
    assert "UTF-8" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


KINDS["H"] += 1  # the case below


def test_minari_export_with_a_relative_out(trained_root, tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.chdir(tmp_path)
    src = trained_root / EXP / "demos" / "safe"
    res = invoke("demos", "export", src, "--id", "safeknob/tiny-safe-v0", "--out", "data/minari")
    assert res.exit_code == 0, (res.output, res.exception)
    assert (tmp_path / "data" / "minari" / "safeknob" / "tiny-safe-v0").is_dir()
    assert not (tmp_path / "data" / "minari" / "data").exists()


KINDS["H"] += 1  # the case below


def test_sigint_stops_train_blend_workers_promptly(pipeline_root, tmp_path):
    """SIGINT to the parent of ``train-blend --workers 2`` used to let every queued agent
    train before exiting."""
    path = experiment(tmp_path, name="tiny-grid.toml", blend={"steps": 10_000_000})
    args = [sys.executable, "-c",
            "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from safeknob.cli import main; sys.argv = ['safeknob', *sys.argv[1:]]; main()",
            "--no-tensorboard", "train-blend", "--method", "budget", "--reward", "env",
            "--alphas", "0,0.25,0.5,0.75", "--workers", "2", "-e", str(path), "--data",
            str(pipeline_root), "-q"]  # fmt: skip
    proc = subprocess.Popen(args, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(15)  # the workers start and train
        assert proc.poll() is None, proc.communicate()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 30
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    blends = pipeline_root / EXP / "blends" / "budget-env"
    assert not blends.exists() or not [p for p in blends.iterdir() if p.name.startswith("alpha")]


# ============================================================================ tally
def test_count_cases_per_kind():
    total = sum(KINDS.values())
    print(f"\ncases: {total}; per kind: {dict(sorted(KINDS.items()))}")
    assert {"A", "B", "C", "D", "G", "H"} <= set(KINDS)
    assert math.isfinite(total)
