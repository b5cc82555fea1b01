"""Simulation tasks and the scripted expert: expert succeeds, doing nothing fails, actions sane."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

# Headless EGL rendering must be chosen before mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
pytest.importorskip("mujoco")
if importlib.util.find_spec("robosuite") is None:
    pytest.skip("robosuite (model files) not installed", allow_module_level=True)

from vla_adapter_ros.sim.expert import HoldPolicy, ScriptedExpert  # noqa: E402
from vla_adapter_ros.sim.runner import apply_action, bench, run_episode  # noqa: E402
from vla_adapter_ros.sim.tasks import TASKS, get_task  # noqa: E402

SEEDS = range(20)


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_expert_succeeds(env, task_name):
    results = [run_episode(task_name, seed, env=env) for seed in SEEDS]
    ok = sum(r.success for r in results)
    assert ok >= 0.95 * len(results), [r.seed for r in results if not r.success]
    for r in results:
        assert r.steps > 0 and r.sim_time_s > 0 and r.wall_time_s > 0


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_do_nothing_fails(env, task_name):
    for seed in range(5):
        r = run_episode(task_name, seed, env=env, policy=HoldPolicy(), max_duration_s=2.0)
        assert not r.success
        assert not get_task(task_name).success(env)


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_success_held_to_end(env, task_name):
    """Not just a transient: with stop_on_success=False the state at the end still succeeds."""
    r = run_episode(task_name, 123, env=env, stop_on_success=False)
    assert r.success


def test_placement_seeded_and_in_range():
    for name, task in TASKS.items():
        a, b = task.placement(7), task.placement(7)
        assert a == b
        assert task.placement(8) != a
        for seed in range(30):
            p = task.placement(seed)[task.target]
            assert task.target_x_range[0] <= p[0] <= task.target_x_range[1]
            assert task.target_y_range[0] <= p[1] <= task.target_y_range[1]
        assert task.instruction


def test_expert_actions_consistent(env):
    """Expert action: joint targets reach the TCP target (IK), the EEF delta equals the
    target minus the measured TCP, and the LIBERO-normalised action is within [-1, 1]."""
    from vla_adapter_ros.control.kinematics import FrankaKinematics

    kin = FrankaKinematics()
    task = get_task("lift_green")
    task.reset(env, 5)
    expert = ScriptedExpert(task)
    expert.reset(env)
    q = env.joint_positions()
    grips = []
    for _ in range(int(expert.duration / 0.05) + 1):
        a = expert.act(env)
        assert a.q_target.shape == (7,) and 0.0 <= a.gripper <= 1.0
        np.testing.assert_allclose(kin.fk(a.q_target)[:3, 3], a.tcp_target[:3, 3], atol=1e-3)
        np.testing.assert_allclose(env.eef_pose().position + a.delta_pos, a.tcp_target[:3, 3], atol=1e-12)
        assert np.linalg.norm(a.delta_pos) < 0.05
        la = a.libero_action()
        assert la.shape == (7,) and np.all(np.abs(la) <= 1.0)
        grips.append(a.gripper)
        q = apply_action(env, q, a, 0.05)
    assert grips[0] == 0.0 and grips[-1] == 1.0  # opens to approach, closes to grasp


def test_recorded_episode_with_images(env):
    r = run_episode("reach_red", 0, env=env, cameras=("agentview", "wrist"), image_size=(32, 32),
                    record_actions=True)
    assert r.success and len(r.frames) == r.steps == len(r.actions)
    assert r.frames[0]["wrist"].shape == (32, 32, 3)


def test_bench_runs():
    out = bench(seconds=0.2, renders=2, size=32)
    assert out["physics_rtf_raw"] > 1.0
    assert out["render_ms_2cams_fast"] > 0


def test_jittered_start(env):
    from vla_adapter_ros.control.kinematics import FrankaKinematics, matrix_to_axis_angle
    from vla_adapter_ros.sim.env import READY_POSE
    from vla_adapter_ros.sim.tasks import START_JITTER_XYZ_M, START_JITTER_YAW_RAD, jittered_start

    kin = FrankaKinematics()
    ready = kin.fk(READY_POSE)
    assert np.array_equal(jittered_start(5, 0.0), READY_POSE)  # no jitter: exactly the ready pose
    offsets = []
    for seed in range(6):
        q = jittered_start(seed, 1.0)
        assert np.array_equal(q, jittered_start(seed, 1.0))  # seeded
        tcp = kin.fk(q)
        off = tcp[:3, 3] - ready[:3, 3]
        assert np.all(np.abs(off) <= START_JITTER_XYZ_M + 1e-4)
        turn = matrix_to_axis_angle(tcp[:3, :3] @ ready[:3, :3].T)  # a pure turn about the vertical
        assert abs(turn[2]) <= START_JITTER_YAW_RAD + 1e-3 and np.abs(turn[:2]).max() < 1e-3
        offsets.append(off)
    assert np.std(offsets, axis=0).min() > 0.01  # the starts really vary
    half = kin.fk(jittered_start(3, 0.5))[:3, 3] - ready[:3, 3]
    np.testing.assert_allclose(half, 0.5 * offsets[3], atol=1e-4)  # the scale scales the offset
    for bad in (1.5, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="jitter"):
            jittered_start(0, bad)
        with pytest.raises(ValueError, match="jitter"):  # a reset never ignores a bad value
            get_task("reach_red").reset(env, 0, bad)
    # the cube placement of a seed does not depend on the jitter; the arm starts where asked
    task = get_task("lift_green")
    task.reset(env, 7, 1.0)
    np.testing.assert_allclose(env.joint_positions(), jittered_start(7, 1.0), atol=1e-9)
    cubes = {c: env.cube_pose(c)[0].copy() for c in env.cubes}
    task.reset(env, 7)
    for c in env.cubes:
        np.testing.assert_allclose(env.cube_pose(c)[0], cubes[c], atol=1e-9)


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_expert_succeeds_from_jittered_starts(env, task_name):
    assert run_episode(task_name, 11, env=env, start_jitter=1.0).success
