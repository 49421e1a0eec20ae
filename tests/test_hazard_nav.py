import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from safeknob.envs.hazard_nav import HazardNavEnv, steps_per_second


def run_controller(env, policy, seed=0, max_steps=1000):
    """Roll out ``policy(pos) -> action``; return (total cost, goal reached, steps, positions)."""
    env.reset(seed=seed)
    cost, path = 0.0, [env.pos]
    for t in range(1, max_steps + 1):
        _, _, terminated, truncated, info = env.step(policy(env.pos))
        cost += info["cost"]
        path.append(env.pos)
        if terminated or truncated:
            return cost, info["goal_reached"], t, np.array(path)
    raise AssertionError("episode did not end")


def towards(target, pos):
    d = np.asarray(target, dtype=float) - pos
    n = np.linalg.norm(d)
    return (d / max(n, 1e-9)).astype(np.float32)


def detour_policy(env, height=0.6):
    """Up from the start, across above the hazards, then down to the goal."""
    waypoints = [(env.start[0], height), (env.goal[0], height), env.goal]
    state = {"i": 0}

    def policy(pos):
        while (
            state["i"] < len(waypoints) - 1 and np.linalg.norm(waypoints[state["i"]] - pos) < 0.05
        ):
            state["i"] += 1
        return towards(waypoints[state["i"]], pos)

    return policy


def test_check_env():
    # Built through gym.make so it has a spec and the checker also tests the render modes.
    spec = gym.envs.registration.EnvSpec(
        "HazardNav-test-v0", entry_point=HazardNavEnv, kwargs={"action_noise": 0.1}
    )
    env = gym.make(spec, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)


def test_spaces_and_observation():
    env = HazardNavEnv()
    obs, info = env.reset(seed=0)
    assert info == {"cost": 0.0}
    assert env.action_space.shape == (2,)
    assert obs.shape == (4 + 2 * len(env.hazards),) and obs.dtype == np.float32
    env.pos = (0.3, -0.2)
    obs, *_ = env.step(np.zeros(2, dtype=np.float32))
    p = np.array([0.3, -0.2])
    expected = np.concatenate([p, np.array(env.goal) - p, (env.hazard_centres - p).ravel()])
    np.testing.assert_allclose(obs, expected, atol=1e-6)
    assert env.observation_space.contains(obs)


def test_reset_jitter_near_start():
    env = HazardNavEnv()
    for seed in range(20):
        env.reset(seed=seed)
        assert np.all(np.abs(env.pos - env.start) <= env.start_jitter + 1e-12)
        assert not env.in_hazard(env.pos)


def test_cost_inside_and_outside_hazard():
    env = HazardNavEnv(hazards=[(0.0, 0.0, 0.3)], start_jitter=0.0)
    env.reset(seed=0)
    zero = np.zeros(2, dtype=np.float32)
    env.pos = (0.1, 0.1)
    _, _, _, _, info = env.step(zero)
    assert info["cost"] == 1.0 and isinstance(info["cost"], float)
    assert info["goal_reached"] is False
    env.pos = (0.0, 0.5)
    _, _, _, _, info = env.step(zero)
    assert info["cost"] == 0.0 and isinstance(info["cost"], float)
    # Cost depends on the new position: stepping from outside into the hazard costs.
    env.pos = (0.0, 0.35)
    _, _, _, _, info = env.step(np.array([0.0, -1.0], dtype=np.float32))
    assert info["cost"] == 1.0


def test_actions_clipped_and_scaled():
    env = HazardNavEnv(start_jitter=0.0, max_speed=0.1)
    env.reset(seed=0)
    env.pos = (-0.5, 0.8)
    env.step(np.array([5.0, 0.5], dtype=np.float32))
    v = np.array([1.0, 0.5]) / np.hypot(1.0, 0.5)  # clipped per axis, then to norm 1
    np.testing.assert_allclose(env.pos, [-0.5 + 0.1 * v[0], 0.8 + 0.1 * v[1]], rtol=1e-6)
    env.pos = (0.95, 0.95)
    env.step(np.array([1.0, 1.0], dtype=np.float32))
    np.testing.assert_allclose(env.pos, [1.0, 1.0])  # clipped to the arena


def test_goal_terminates_with_bonus():
    env = HazardNavEnv(start_jitter=0.0, step_penalty=0.01, goal_reward=1.0, progress_coef=1.0)
    env.reset(seed=0)
    env.pos = (env.goal[0] - 0.15, env.goal[1])
    _, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert terminated and not truncated and info["goal_reached"] is True
    assert reward == pytest.approx(0.1 - 0.01 + 1.0)


def test_truncation_at_horizon():
    env = HazardNavEnv(horizon=7)
    env.reset(seed=0)
    zero = np.zeros(2, dtype=np.float32)
    for t in range(1, 8):
        _, reward, terminated, truncated, _ = env.step(zero)
        assert not terminated
        assert reward == pytest.approx(-env.step_penalty)
        assert truncated == (t == 7)


def test_deterministic_with_seed():
    def rollout(seed):
        env = HazardNavEnv(action_noise=0.2)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(123)
        out = [obs]
        for _ in range(50):
            obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            out.append(np.append(obs, [r, info["cost"]]))
            if term or trunc:
                obs, _ = env.reset()
                out.append(obs)
        return np.concatenate(out)

    np.testing.assert_array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5), rollout(6))


def test_render_rgb_array():
    env = HazardNavEnv(render_mode="rgb_array", render_size=64)
    env.reset(seed=0)
    img = env.render()
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    # The hazard at the centre is red, the goal (right of centre) is green.
    assert tuple(img[32, 32]) == (220, 60, 50)
    assert tuple(img[32, 57]) == (70, 180, 80)
    assert HazardNavEnv().render() is None


def test_draw_on_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = HazardNavEnv()
    fig, ax = plt.subplots()
    assert env.draw(ax) is ax
    assert len(ax.patches) == len(env.hazards) + 2  # arena, hazards, goal
    plt.close(fig)


def test_detour_is_safe_straight_line_is_not():
    env = HazardNavEnv()
    for seed in range(3):
        cost, reached, steps_detour, path = run_controller(env, detour_policy(env), seed=seed)
        assert reached and cost == 0.0
        assert not any(env.in_hazard(p) for p in path)
        cost, reached, steps_straight, _ = run_controller(
            env, lambda pos: towards(env.goal, pos), seed=seed
        )
        assert reached and cost > 0
        assert steps_straight < steps_detour <= env.horizon


def test_invalid_config():
    with pytest.raises(ValueError):
        HazardNavEnv(hazards=[(0.0, 0.0, -0.1)])
    with pytest.raises(ValueError):
        HazardNavEnv(hazards=[(0.8, 0.0, 0.2)])  # goal inside a hazard
    with pytest.raises(ValueError):
        HazardNavEnv(goal=(1.5, 0.0))
    with pytest.raises(ValueError):
        HazardNavEnv(render_mode="human")


def test_steps_per_second_measures():
    # Speed is measured (printed by `make bench`), never asserted against the clock.
    assert steps_per_second(2000) > 0


def waypoint_policy(waypoints):
    state = {"i": 0}
    pts = [np.asarray(w, dtype=float) for w in waypoints]

    def policy(pos):
        while state["i"] < len(pts) - 1 and np.linalg.norm(pts[state["i"]] - pos) < 0.05:
            state["i"] += 1
        return towards(pts[state["i"]], pos)

    return policy


def route_return_cost(env, waypoints, seeds=range(5)):
    rets, costs = [], []
    for seed in seeds:
        env.reset(seed=seed)
        policy, ret, cost = waypoint_policy(waypoints), 0.0, 0.0
        while True:
            _, r, terminated, truncated, info = env.step(policy(env.pos))
            ret, cost = ret + r, cost + info["cost"]
            if terminated or truncated:
                assert info["goal_reached"]
                break
        rets.append(ret)
        costs.append(cost)
    return float(np.mean(rets)), float(np.mean(costs))


def test_fence_layout_first_units_of_cost_buy_the_most():
    """On the fence layout, crossing the fence and going round the pond sits above the chord
    between the cost-free detour and the straight line (the disks layout has no such route)."""
    env = HazardNavEnv(layout="fence")
    assert env.layout == "fence" and len(env.hazards) == 1 and len(env.walls) == 1
    assert env.observation_space.shape == (4 + 2 * 2,)
    safe = route_return_cost(env, [(-0.65, 0.6), (-0.25, 0.6), (0.4, 0.35), env.goal])
    reck = route_return_cost(env, [env.goal])
    mid = route_return_cost(env, [(-0.2, 0.0), (0.4, 0.3), env.goal])
    assert safe[1] == 0.0 and 0 < mid[1] < reck[1]
    chord = safe[0] + (mid[1] - safe[1]) / (reck[1] - safe[1]) * (reck[0] - safe[0])
    assert (mid[0] - chord) / (reck[0] - safe[0]) > 0.1
    with pytest.raises(ValueError, match="unknown layout"):
        HazardNavEnv(layout="maze")
    with pytest.raises(ValueError, match="not both"):
        HazardNavEnv(layout="fence", hazards=[(0.0, 0.0, 0.1)])
