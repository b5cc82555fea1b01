"""The scripted expert as a policy (sim/oracle.py): chunk rows are the dataset's labels of the plan, the plan
fits the executor's limits, and its chunks solve the tasks through the real ExecutorCore (sim/closed_loop.py,
no ROS; the ROS path is test/test_oracle_stack.py)."""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
pytest.importorskip("mujoco")
if importlib.util.find_spec("robosuite") is None:
    pytest.skip("robosuite (model files) not installed", allow_module_level=True)

from vla_adapter_ros.control import FrankaKinematics, load_robot_limits  # noqa: E402
from vla_adapter_ros.control.kinematics import axis_angle_to_matrix  # noqa: E402
from vla_adapter_ros.data.labels import eef_delta, integrate_eef_deltas  # noqa: E402
from vla_adapter_ros.sim.closed_loop import OracleSource, executor_parameters, run_chunk_episode  # noqa: E402
from vla_adapter_ros.sim.expert import ScriptedExpert  # noqa: E402
from vla_adapter_ros.sim.oracle import JOINT_LIMIT_MARGIN, ExpertOracle  # noqa: E402
from vla_adapter_ros.sim.tasks import TASKS, get_task  # noqa: E402

LIMITS = load_robot_limits("fr3_sim")


def test_chunk_rows_are_the_plans_labels_from_the_measured_pose(env):
    task = get_task("lift_green")
    task.reset(env, 1000)
    oracle = ExpertOracle(task, horizon=8, dt=0.1, limits=LIMITS)
    oracle.reset(env)
    t_obs = oracle.t0 + 1.0
    # the tool is off the plan: 1 cm / -2 cm / 0.5 cm and turned 0.05 rad about x
    measured = oracle.plan_pose(1.0)[0].copy()
    measured[:3, 3] += [0.01, -0.02, 0.005]
    measured[:3, :3] = axis_angle_to_matrix([0.05, 0.0, 0.0]) @ measured[:3, :3]
    chunk = oracle.chunk(t_obs, measured)
    assert chunk.arm.shape == (8, 6) and chunk.closure.shape == (8,) and chunk.plan_time == pytest.approx(1.0)
    plan = [oracle.plan_pose(1.0 + 0.1 * i)[0] for i in range(9)]
    # row 0: from where the tool is to where the plan is one period later (the correction is in it)
    np.testing.assert_allclose(chunk.arm[0], eef_delta(measured, plan[1]), atol=1e-12)
    np.testing.assert_allclose(chunk.arm[0, :3], plan[1][:3, 3] - measured[:3, 3], atol=1e-12)
    for i in range(1, 8):  # then the plan's own steps
        np.testing.assert_allclose(chunk.arm[i], eef_delta(plan[i], plan[i + 1]), atol=1e-12)
    # integrated as the executor integrates EEF deltas, the rows land exactly on the plan
    for k in range(1, 9):
        np.testing.assert_allclose(integrate_eef_deltas(measured, chunk.arm[:k]), plan[k], atol=1e-9)


def test_chunk_gripper_is_the_plans_gripper_one_period_ahead(env):
    task = get_task("lift_green")
    task.reset(env, 1000)
    oracle = ExpertOracle(task, horizon=8, dt=0.1, limits=LIMITS)
    oracle.reset(env)
    t_close = oracle.expert._times[1]  # lift: the gripper closes at the end of the descent (third waypoint)
    t = t_close - 0.35  # rows 0..7 look at t + 0.1 .. t + 0.8
    chunk = oracle.chunk(oracle.t0 + t, env.eef_pose().matrix())
    expected = [oracle.plan_pose(t + 0.1 * (i + 1))[1] for i in range(8)]
    np.testing.assert_array_equal(chunk.closure, expected)
    np.testing.assert_array_equal(chunk.closure, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # 0 open .. 1 closed


@pytest.mark.parametrize("task_name,seed,jitter", [("reach_red", 1000, 0.0), ("push_blue_left", 1005, 0.0),
                                                   ("lift_green", 1001, 1.0), ("push_blue_left", 1001, 1.0)])
def test_plan_fits_the_executors_limits(env, task_name, seed, jitter):
    """Sampled every 10 ms and followed with the IK, the plan's joint speeds and accelerations stay within
    the limits the executor enforces (fr3_sim), so the executor can track it without falling behind."""
    task = get_task(task_name)
    task.reset(env, seed, jitter)
    oracle = ExpertOracle(task, limits=LIMITS)
    oracle.reset(env)
    kin = FrankaKinematics()
    q, dt, qs = env.joint_positions(), 0.01, []
    for t in np.arange(0.0, oracle.expert.duration + dt, dt):
        q, ok = kin.ik_to_pose(q, oracle.plan_pose(t)[0], q_min=LIMITS.soft_q_min, q_max=LIMITS.soft_q_max,
                               max_iterations=50)
        assert ok
        qs.append(q)
    qs = np.array(qs)
    speed = np.max(np.abs(np.diff(qs, axis=0)) / dt / LIMITS.v_max)
    acc = np.max(np.abs(np.diff(qs, 2, axis=0)) / dt ** 2 / LIMITS.a_max)
    assert 0.3 < speed <= JOINT_LIMIT_MARGIN * 1.05, speed  # fast, but within the margin
    assert acc <= 1.0, acc


def test_joint_limits_slow_the_plan_and_the_default_expert_is_unchanged(env):
    task = get_task("push_blue_left")
    task.reset(env, 1005)
    fast = ScriptedExpert(task)
    fast.reset(env)
    # the direct expert's timing, as it always was: distance / speed, at least 0.5 s, or the waypoint's duration
    t, prev, expected = 0.0, fast._start.position, []
    for wp in fast._plan:
        dist = float(np.linalg.norm(wp.position - prev))
        t += wp.duration if wp.duration is not None else max(0.5, 1.875 * dist / 0.35)
        expected.append(t)
        prev = wp.position
    np.testing.assert_allclose(fast._times, expected, atol=1e-12)
    oracle = ExpertOracle(task, limits=LIMITS)
    oracle.reset(env)
    assert oracle.expert.duration > fast.duration + 3.0  # the turn of the wrist to push sideways takes time
    assert math.isfinite(oracle.expert.duration) and oracle.expert.duration < get_task("push_blue_left").max_duration_s


def test_oracle_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ExpertOracle(get_task("reach_red"), horizon=0)
    with pytest.raises(RuntimeError, match="before reset"):
        ExpertOracle(get_task("reach_red")).chunk(0.0, np.eye(4))


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_oracle_chunks_solve_the_task_through_the_executor_core(env, task_name):
    params = executor_parameters()  # executor.yaml + executor_sim.yaml, as the simulation stack starts it
    assert params["robot"] == "fr3_sim"
    result = run_chunk_episode(task_name, 1000, OracleSource(limits=load_robot_limits(params["robot"])), env=env,
                               params=params)
    assert result.success, result
    assert result.chunks_accepted >= 5 and result.chunks_rejected == 0
    assert result.max_joint_speed < 1.1 * float(np.max(LIMITS.v_max))
    # the plan never runs away from the arm, and the tool does not drift into the workspace floor (a few dozen
    # ticks where braking from a descent toward the table is predicted to end below the floor; hundreds with the
    # old executor, which integrated EEF deltas from its reference at the chunk's arrival)
    assert not {"jump_from_measured", "joint_state_timeout"} & set(result.clip_counts), result.clip_counts
    assert result.clip_counts.get("workspace", 0) < 100, result.clip_counts
