"""Cost-aware envs: HazardGrid layouts and exact model, the 6-tuple and cost-fn adapters,
and the errors for unknown ids and envs without a cost."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from safeknob.envs import EnvError, MissingCostError, evaluate_policy, make_env, tabular_model
from safeknob.envs.hazard_grid import DEFAULT_LAYOUT, HazardGridEnv, LayoutError
from safeknob.evaluation.rollout import rollout

GRID = "safeknob/HazardGrid-v0"


# ---------------------------------------------------------------------------- test envs
class SixTupleEnv(gym.Env):
    """Steps return ``(obs, reward, cost, terminated, truncated, info)``; cost = action."""

    observation_space = spaces.Discrete(3)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        return self.t % 3, 1.0, 0.5 * int(action), False, False, {"t": self.t}


class NoCostEnv(gym.Env):
    """A well-formed 5-tuple env that never reports a cost."""

    observation_space = spaces.Discrete(2)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 1, 0.0, True, False, {}


def pole_cost(obs, action, next_obs, info) -> float:
    """A cost for CartPole: the cart's distance from the centre."""
    return abs(float(next_obs[0]))


def unit_cost(obs, action, next_obs, info) -> float:
    return 1.0


# ``make_env("<this module>:SixTuple-v0")`` imports this module, which registers these ids.
for _id, _cls, _limit in (("SixTuple-v0", "SixTupleEnv", 5), ("NoCost-v0", "NoCostEnv", None)):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=f"{__name__}:{_cls}", max_episode_steps=_limit)

SIX = f"{__name__}:SixTuple-v0"
NOCOST = f"{__name__}:NoCost-v0"


# ---------------------------------------------------------------------------- layouts
@pytest.mark.parametrize(
    ("layout", "needle"),
    [
        (["..H.G", "....."], "exactly one start"),
        (["S.H.G", "S...."], "exactly one start"),
        (["S.H.G", "....G"], "exactly one goal"),
        (["S.H..", "....."], "exactly one goal"),
        (["S#..G", "##..."], "unreachable"),
        (["S.X.G", "....."], "unknown characters"),
        (["S.H.G", "...."], "same length"),
        ([], "non-empty"),
        (["", ""], "non-empty"),
    ],
    ids=["no-start", "two-starts", "two-goals", "no-goal", "unreachable", "bad-char",
         "ragged", "empty", "empty-rows"],
)  # fmt: skip
def test_bad_layouts_raise_layout_error(layout, needle):
    with pytest.raises(LayoutError, match=needle):
        HazardGridEnv(layout=layout)


def test_bad_layout_through_make_env_is_an_env_error():
    with pytest.raises(EnvError, match="exactly one goal"):
        make_env(GRID, {"layout": ["S...", "...."]})


def test_layout_as_a_multiline_string():
    env = HazardGridEnv(layout="\n  S.H.G\n  .....\n")
    assert env.observation_space.n == 10
    assert env.layout == ("S.H.G", ".....")


def test_walls_are_not_states():
    env = HazardGridEnv(layout=["S#G", "..."])
    assert env.observation_space.n == 5


# ---------------------------------------------------------------------------- exact model
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"layout": ["S.H.G", "....."], "slip": 0.2, "horizon": 12},
        {"layout": ["S#..", ".#H.", "...G"], "slip": 0.0, "horizon": 9},
    ],
    ids=["default", "tiny", "walls-noslip"],
)
def test_tabular_model_is_a_distribution(kwargs):
    model = tabular_model(make_env(GRID, kwargs))
    assert model is not None
    np.testing.assert_allclose(model.P.sum(axis=2), 1.0, atol=1e-12)
    assert (model.P >= 0).all() and (model.C >= 0).all()
    assert model.mu.sum() == pytest.approx(1.0)
    assert model.terminal.sum() == 1


def test_tabular_model_is_none_for_other_envs():
    assert tabular_model(make_env("CartPole-v1", cost_fn=f"{__name__}:pole_cost")) is None


class TablePolicy:
    """A stationary stochastic policy ``pi[s, a]`` as a rollout agent."""

    def __init__(self, pi: np.ndarray) -> None:
        self.pi = pi
        self.rngs: dict[int, np.random.Generator] = {}

    def start_episode(self, slot, rng):
        self.rngs[slot] = rng

    def act(self, obs, slots):
        acts = [
            self.rngs[int(s)].choice(self.pi.shape[1], p=self.pi[int(o)])
            for o, s in zip(obs, slots, strict=True)
        ]
        return np.array(acts)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"layout": ["S.H.G", "....."], "slip": 0.2, "horizon": 12},
        {"layout": ["S..", ".H.", "..G"], "slip": 0.3, "horizon": 6},
    ],
    ids=["tiny", "square-short-horizon"],
)
def test_monte_carlo_matches_exact_evaluation(kwargs):
    env = make_env(GRID, kwargs)
    model = tabular_model(env)
    pi = np.random.default_rng(3).dirichlet(np.ones(4), size=model.n_states)
    exact_ret, exact_cost = evaluate_policy(model, pi)
    n = 3000
    res = rollout(TablePolicy(pi), lambda: make_env(GRID, kwargs), n, seed=123)
    for mc, exact in ((res.returns, exact_ret), (res.costs, exact_cost)):
        se = mc.std(ddof=1) / np.sqrt(n)
        assert abs(mc.mean() - exact) < 4 * se + 1e-9, (mc.mean(), exact, se)


def test_env_reports_cost_on_every_step():
    env = make_env(GRID, {"layout": ["SHG"], "slip": 0.0, "horizon": 5})
    _, info = env.reset(seed=0)
    assert info["cost"] == 0.0
    _, r, term, trunc, info = env.step(1)  # right, into the hazard
    assert info["cost"] == 1.0 and not term
    _, r, term, trunc, info = env.step(1)  # right, onto the goal
    assert info["cost"] == 0.0 and term and r == pytest.approx(1.0 - 0.02)


# ---------------------------------------------------------------------------- adapters
def test_six_tuple_env_is_adapted():
    env = make_env(SIX)
    obs, info = env.reset(seed=0)
    assert info["cost"] == 0.0
    out = env.step(1)
    assert len(out) == 5
    obs, reward, term, trunc, info = out
    assert (obs, reward, term, trunc) == (1, 1.0, False, False)
    assert info["cost"] == 0.5 and isinstance(info["cost"], float) and info["t"] == 1
    assert env.step(0)[4]["cost"] == 0.0


def test_six_tuple_env_keeps_its_time_limit():
    env = make_env(SIX)
    env.reset(seed=0)
    truncs = [env.step(0)[3] for _ in range(5)]
    assert truncs == [False] * 4 + [True]


def test_env_without_cost_raises_missing_cost_error():
    env = make_env(NOCOST)
    env.reset(seed=0)
    with pytest.raises(MissingCostError, match="cost_fn"):
        env.step(0)


def test_cartpole_without_cost_fn_raises_missing_cost_error():
    env = make_env("CartPole-v1")
    env.reset(seed=0)
    with pytest.raises(MissingCostError, match="CartPole-v1"):
        env.step(0)


def test_cost_fn_adds_a_cost_to_cartpole():
    env = make_env("CartPole-v1", cost_fn=f"{__name__}:pole_cost")
    env.reset(seed=0)
    for _ in range(5):
        obs, _, term, trunc, info = env.step(1)
        assert info["cost"] == pytest.approx(abs(float(obs[0])))
        assert isinstance(info["cost"], float)
    assert info["cost"] > 0


def test_cost_fn_adds_a_cost_to_an_env_without_one():
    env = make_env(NOCOST, cost_fn=f"{__name__}:unit_cost")
    env.reset(seed=0)
    assert env.step(0)[4]["cost"] == 1.0


@pytest.mark.parametrize(
    ("cost_fn", "needle"),
    [
        ("no_such_module_xyz:f", "cannot import module"),
        ("math:no_such_fn", "no function"),
        ("no-colon", "module:function"),
    ],
)
def test_bad_cost_fn_is_an_env_error(cost_fn, needle):
    with pytest.raises(EnvError, match=needle):
        make_env("CartPole-v1", cost_fn=cost_fn)


@pytest.mark.parametrize(
    ("env_id", "suggestion"),
    [
        ("safeknob/HazardGrd-v0", "safeknob/HazardGrid-v0"),
        ("safeknob/HazardNav-v1", "safeknob/HazardNav-v0"),
        ("CartPol-v1", "CartPole-v1"),
    ],
)
def test_unknown_env_id_suggests_close_names(env_id, suggestion):
    with pytest.raises(EnvError, match="unknown env id") as info:
        make_env(env_id)
    assert suggestion in str(info.value)
    assert "\n" not in str(info.value)


def test_module_form_with_missing_module_is_an_env_error():
    with pytest.raises(EnvError, match="cannot import"):
        make_env("no_such_module_xyz:Env-v0")


def test_bad_env_kwargs_are_an_env_error():
    with pytest.raises(EnvError, match="rejected its arguments"):
        make_env(GRID, {"bogus": 1})


def test_default_layout_is_the_documented_one():
    env = make_env(GRID)
    assert env.unwrapped.layout == DEFAULT_LAYOUT
