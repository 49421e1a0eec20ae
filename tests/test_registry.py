"""The method registry, the store and the global options: each method's facts in one place,
and the bugs that came from writing them in five (issue 11)."""

from __future__ import annotations

import pytest
from conftest import tiny_config
from typer.testing import CliRunner

from safeknob import cli
from safeknob.config import RunConfig, apply_overrides
from safeknob.errors import ArtifactError, ConfigError, SafeknobError, UserError
from safeknob.methods import (
    REGISTRY,
    BlendContext,
    check_specs,
    get_method,
    learned_rewards,
    load_blend,
    method_of,
    spec_names,
)
from safeknob.methods.mixture import MixtureMethod
from safeknob.methods.registry import parse_spec
from safeknob.stages import blend, pipeline, sweep
from safeknob.stages.common import toml_dumps
from safeknob.store import ExperimentStore

runner = CliRunner()


def test_every_method_declares_its_facts_once():
    assert list(REGISTRY) == ["bc-mix", "budget", "conditioned", "mixture", "reward-mix"]
    assert spec_names() == [
        "bc-mix", "budget-env", "budget-airl", "conditioned", "conditioned-airl", "mixture",
        "reward-mix",
    ]  # fmt: skip
    assert get_method("conditioned").name == "conditioned"
    assert get_method("conditioned", "airl").name == "conditioned-airl"
    assert parse_spec("conditioned-airl") == ("conditioned", "airl")
    assert method_of("conditioned-airl+cal").learned_rewards == ("reckless", "safe")
    assert get_method("budget").name == "budget-airl"
    assert get_method("budget", "env").name == "budget-env"
    assert method_of("bc-mix+cal").name == "bc-mix"
    assert [k for k, c in REGISTRY.items() if c.shared_policy] == ["conditioned"]
    assert [k for k, c in REGISTRY.items() if not c.trains] == ["mixture"]
    with pytest.raises(ConfigError, match="unknown method 'mixture\\+cal'"):
        check_specs(["mixture+cal"])


def test_budget_airl_needs_both_learned_rewards():
    """Bug: ``sweep`` prepared only the reckless reward for budget-airl."""
    assert learned_rewards(["budget-airl"]) == ("reckless", "safe")
    assert learned_rewards(["reward-mix", "mixture"]) == ("reckless", "safe")
    assert learned_rewards(["budget-env", "bc-mix", "conditioned+cal"]) == ()


def test_sweep_prepares_both_rewards_for_budget_airl(monkeypatch, tmp_path):
    """Bug: the first jobs of the fan-out each learned the safe reward themselves."""
    asked: list[tuple[str, ...]] = []
    monkeypatch.setattr(sweep.train_experts, "run", lambda rc: None)
    monkeypatch.setattr(sweep.collect_demos, "run", lambda cc: None)
    monkeypatch.setattr(
        sweep.learn_rewards, "run", lambda rc, roles, workers=1: asked.append(tuple(roles))
    )
    rc = RunConfig(tiny_config(), tmp_path, quiet=True)
    sweep.prepare(rc, ["budget-airl"])
    sweep.prepare(rc, ["mixture", "budget-env"])
    assert asked == [("reckless", "safe")]


@pytest.mark.parametrize(
    ("method", "reward", "needle"),
    [
        ("reward-mix", "env", "method 'reward-mix' supports --reward airl, got --reward env"),
        ("bc-mix", "env", "method 'bc-mix' takes no --reward"),
        ("mixture", "airl", "method 'mixture' takes no --reward"),
        ("conditioned", "ppo", "unknown reward source 'ppo'"),
    ],
)
def test_an_unsupported_reward_is_one_clear_error(tmp_path, method, reward, needle):
    """Bug: --reward was silently ignored by reward-mix, bc-mix and conditioned."""
    with pytest.raises(UserError, match=needle):
        get_method(method, reward)
    exp = tmp_path / "exp.toml"
    exp.write_text(toml_dumps(tiny_config().to_dict()))
    res = runner.invoke(
        cli.app,
        ["train-blend", "-e", str(exp), "--data", str(tmp_path / "d"), "-m", method,
         "--reward", reward],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.output
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--quick"],
        ["run"],
        ["reproduce", "--quick"],
        ["sweep", "--methods", "mixture"],
    ],
)
def test_no_tensorboard_reaches_every_pipeline(monkeypatch, tmp_path, args):
    """Bug: ``--no-tensorboard run --quick``, ``reproduce`` and ``sweep`` still logged."""
    seen: list[bool] = []
    monkeypatch.setattr(pipeline, "run", lambda pc: seen.append(pc.run.tensorboard))

    def fake_sweep(sc):
        seen.extend(job.run.tensorboard for job in sweep.plan(sc))

    monkeypatch.setattr(sweep, "run", fake_sweep)
    res = runner.invoke(cli.app, ["--no-tensorboard", *args, "--data", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert seen and not any(seen)
    seen.clear()
    res = runner.invoke(cli.app, [*args, "--data", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert seen and all(seen)


def test_global_data_option_reaches_the_command(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(pipeline, "run", lambda pc: seen.append(pc.run.data_dir))
    assert runner.invoke(cli.app, ["--data", str(tmp_path / "g"), "run"]).exit_code == 0
    assert runner.invoke(cli.app, ["--data", "x", "run", "--data", str(tmp_path)]).exit_code == 0
    assert seen == [tmp_path / "g", tmp_path]


def test_set_overrides_any_field_and_is_checked_like_the_toml(monkeypatch, tmp_path):
    cfg = apply_overrides(tiny_config(), ["blend.steps=4096", "blend.alphas=[0, 0.5]"])
    assert cfg.blend.steps == 4096 and cfg.blend.alphas == (0.0, 0.5)
    assert apply_overrides(cfg, ["env.cost_fn=mod:fn"]).env.cost_fn == "mod:fn"
    for bad, needle in (
        ("blend.stepz=1", "unknown key(s) stepz"),
        ("blend.steps=many", "blend.steps must be an integer"),
        ("experts.cost_limit=-1", "experts.cost_limit must be >= 0"),
        ("blend", "use section.key=value"),
        ('blend.methods=["nope"]', "unknown method 'nope'"),
    ):
        with pytest.raises(ConfigError, match=needle.replace("(", "\\(").replace(")", "\\)")):
            check_specs(apply_overrides(cfg, [bad]).blend.methods)
    seen = []
    monkeypatch.setattr(pipeline, "run", lambda pc: seen.append(pc.run.experiment.blend.steps))
    res = runner.invoke(cli.app, ["run", "--set", "blend.steps=777", "--data", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert seen == [777]
    res = runner.invoke(cli.app, ["run", "--set", "blend.stepz=1", "--data", str(tmp_path)])
    assert res.exit_code == 2 and "unknown key(s) stepz" in res.output


def test_every_user_error_is_a_safeknob_error():
    from safeknob.envs import EnvError, MissingCostError
    from safeknob.envs.hazard_grid import LayoutError

    for cls in (ArtifactError, ConfigError, UserError, EnvError, MissingCostError, LayoutError):
        assert issubclass(cls, SafeknobError)


def test_a_bug_in_a_method_is_not_reported_as_rerun_force(run_config, monkeypatch):
    """A method that raises TypeError while loading keeps its traceback; a broken file
    becomes an ArtifactError naming ``--force``."""
    folder = blend.run(blend.BlendRunConfig(run_config, "mixture", (0.5,))) / "alpha-0.50"
    ctx = BlendContext.create(run_config)

    def buggy(self, ctx, folder, meta):
        raise TypeError("a bug")

    monkeypatch.setattr(MixtureMethod, "load_agent", buggy)
    with pytest.raises(TypeError, match="a bug"):
        load_blend(ctx, folder)

    def broken(self, ctx, folder, meta):
        raise OSError("truncated file")

    monkeypatch.setattr(MixtureMethod, "load_agent", broken)
    with pytest.raises(ArtifactError, match="--force"):
        load_blend(ctx, folder)


def test_store_readers_name_the_remaking_command(run_config):
    store = ExperimentStore(run_config)
    assert store.expert("safe")[1]["role"] == "safe"
    c_safe, c_reck = store.demo_costs()
    assert c_safe <= c_reck
    with pytest.raises(ArtifactError, match="safeknob learn-rewards"):
        store.reward("reckless")
    with pytest.raises(ArtifactError, match="safeknob evaluate"):
        store.results()
    with pytest.raises(ArtifactError, match="safeknob train-blend"):
        store.blend("mixture", 0.5)
    assert store.calibration_map("mixture") is None
    (run_config.paths.expert("safe") / "model.zip").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="safeknob train-experts --force"):
        store.expert("safe")
    (run_config.paths.eval).mkdir(parents=True)
    (run_config.paths.eval / "results.csv").write_text("method,alpha\nmixture,0.5\n")
    (run_config.paths.eval / "summary.csv").write_text("method\nmixture\n")
    with pytest.raises(ArtifactError, match="lacks column.*safeknob evaluate"):
        store.results()
