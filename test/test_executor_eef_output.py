"""Executor output `eef_delta`: EEF_DELTA chunks streamed as [dx dy dz drx dry drz gripper] per
tick, no IK. The core (control.eef_output.EefDeltaCore) tick by tick, then the node over ROS."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from vla_adapter_ros.control.chunk import EEF_DELTA, JOINT_POSITION, Chunk
from vla_adapter_ros.control.eef_output import EefDeltaCore
from vla_adapter_ros.control.executor_core import ExecutorState
from vla_adapter_ros.control.limits import load_robot_limits

DT = 0.05
LIBERO = load_robot_limits("libero_panda")  # loose Cartesian limits: LIBERO's actions pass unchanged
FR3 = load_robot_limits("fr3")
READY = np.array(LIBERO.start_pose)


def running_core(limits=LIBERO, **kw):
    kw.setdefault("dt", DT)
    core = EefDeltaCore(limits, max_translation_m=0.05, max_rotation_rad=0.5, **kw)
    core.on_joint_state(READY, 0.0)
    ok, message = core.enable(0.0)
    assert ok, message
    return core


def eef_chunk(stamp, rows, gripper=None, seq=0, dt=DT):
    return Chunk(stamp, dt, EEF_DELTA, [], np.asarray(rows, float), None if gripper is None else np.asarray(gripper, float), seq)


def run(core, n, t0=0.0):
    """n ticks with a fresh joint state each; returns the commands."""
    out = []
    for i in range(n):
        now = round(t0 + i * DT, 9)
        core.on_joint_state(READY, now)
        out.append(core.tick(now))
    return out


def test_disabled_sends_nothing_and_refuses_chunks():
    core = EefDeltaCore(LIBERO, dt=DT)
    core.on_joint_state(READY, 0.0)
    assert core.tick(0.0) is None
    result = core.on_chunk(eef_chunk(0.0, [[0.01, 0, 0, 0, 0, 0]]), 0.0)
    assert not result.accepted and "disabled" in result.reason
    assert core.enable(5.0) == (False, "no fresh joint state: cannot enable")  # stale state: refused
    assert core.enable(0.05)[0] and core.state == ExecutorState.RUNNING


def test_rows_stream_one_per_tick_then_wait_with_last_gripper():
    core = running_core()
    rows = [[0.01 * (i + 1), 0, 0, 0, 0, 0.1] for i in range(3)]
    assert core.on_chunk(eef_chunk(0.0, rows, gripper=[0.0, 0.9, 0.9]), 0.0).accepted
    cmds = run(core, 5)
    assert [c.kind for c in cmds] == ["step", "step", "step", "wait", "wait"]
    np.testing.assert_allclose([c.values for c in cmds[:3]],
                               [r + [g] for r, g in zip(rows, [0.0, 1.0, 1.0])])
    np.testing.assert_array_equal(cmds[3].values, [0, 0, 0, 0, 0, 0, 1.0])  # hold: zero delta, gripper kept
    assert cmds[1].gripper_event is not None and cmds[1].gripper_event.closed
    # the next chunk is requested once the last row has been applied (first wait), not before
    core2 = running_core()
    core2.on_chunk(eef_chunk(0.0, rows[:1]), 0.0)
    core2.tick(0.0)
    assert not core2.needs_chunk(0.0)
    core2.tick(0.05)
    assert core2.needs_chunk(0.05)


def test_non_finite_row_holds_and_drops_the_rest():
    core = running_core()
    rows = [[0.01, 0, 0, 0, 0, 0], [math.nan, 0, 0, 0, 0, 0], [0.01, 0, 0, 0, 0, 0]]
    core.on_chunk(eef_chunk(0.0, rows), 0.0)
    cmds = run(core, 3)
    assert cmds[0].kind == "step"
    assert cmds[1].kind == "hold" and cmds[1].hold_reason == "non-finite action"
    np.testing.assert_array_equal(cmds[1].delta, np.zeros(6))
    assert cmds[2].kind == "wait"  # the rest of the chunk was dropped
    assert core.clip_counts["non_finite"] == 1
    core.on_chunk(eef_chunk(0.2, [[0.0] * 6], gripper=[math.inf]), 0.2)
    assert run(core, 1, 0.2)[0].hold_reason == "non-finite action"


def test_translation_and_rotation_are_clamped_along_their_direction():
    core = running_core()
    core.on_chunk(eef_chunk(0.0, [[0.3, 0.4, 0, 0, 0, 2.0], [0.03, 0.04, 0, 0.3, 0.4, 0]]), 0.0)
    big, ok = run(core, 2)
    np.testing.assert_allclose(big.delta, [0.03, 0.04, 0, 0, 0, 0.5])  # |t| 0.5 -> 0.05, |r| 2 -> 0.5
    np.testing.assert_allclose(ok.delta, [0.03, 0.04, 0, 0.3, 0.4, 0])  # at the limits: untouched
    assert core.clip_counts["eef_translation"] == 1 and core.clip_counts["eef_rotation"] == 1


def test_rejected_chunks():
    core = running_core()
    reasons = {
        "joint": core.on_chunk(Chunk(0.0, DT, JOINT_POSITION, [], np.zeros((2, 7))), 0.0).reason,
        "columns": core.on_chunk(Chunk(0.0, DT, EEF_DELTA, [], np.zeros((2, 7))), 0.0).reason,
        "dt": core.on_chunk(eef_chunk(0.0, [[0] * 6], dt=0.1), 0.0).reason,
        "stale": core.on_chunk(eef_chunk(0.0, [[0] * 6]), 5.0).reason,
        "gripper": core.on_chunk(eef_chunk(0.0, [[0] * 6] * 2, gripper=[0.0]), 0.0).reason,
    }
    assert "EEF_DELTA" in reasons["joint"] and "6 columns" in reasons["columns"]
    assert "dt" in reasons["dt"] and "stale" in reasons["stale"] and "gripper" in reasons["gripper"]
    assert core.on_chunk(eef_chunk(1.0, [[0] * 6]), 1.0).accepted
    assert "out of order" in core.on_chunk(eef_chunk(0.5, [[0] * 6]), 1.0).reason
    assert core.chunks_rejected == 6 and core.chunks_accepted == 1


def test_new_chunk_replaces_stop_chunk_clears_and_states_hold():
    core = running_core()
    core.on_chunk(eef_chunk(0.0, [[0.01, 0, 0, 0, 0, 0]] * 5), 0.0)
    run(core, 2)
    core.on_chunk(eef_chunk(0.1, [[0, 0.02, 0, 0, 0, 0]]), 0.1)
    cmds = run(core, 2, 0.1)
    np.testing.assert_allclose(cmds[0].delta, [0, 0.02, 0, 0, 0, 0])
    assert cmds[1].kind == "wait"
    core.on_chunk(eef_chunk(0.2, [[0.01, 0, 0, 0, 0, 0]] * 5), 0.2)
    assert core.on_chunk(Chunk(0.3, DT, EEF_DELTA, [], np.zeros((0, 6))), 0.3).accepted  # stop
    assert run(core, 1, 0.3)[0].kind == "wait"
    assert core.pause()[0] and run(core, 1, 0.4)[0].kind == "hold" and not core.needs_chunk(0.4)
    assert core.resume()[0]
    assert core.estop("test")[0] and core.enable(0.5)[0] is False
    assert run(core, 1, 0.5)[0].hold_reason == "estop"
    assert core.reset(0.5)[0] and core.state == ExecutorState.IDLE and core.start(0.5)[0]
    assert core.go_home()[0] is False
    assert core.disable()[0] and core.tick(0.6) is None  # at rest: disabled at once


def test_stale_joint_state_holds():
    core = running_core()
    assert core.joint_state_timeout == 0.1
    core.on_chunk(eef_chunk(0.0, [[0.01, 0, 0, 0, 0, 0]] * 3), 0.0)
    command = core.tick(0.5)  # last joint state at 0.0
    assert command.kind == "hold" and command.hold_reason == "stale joint state"
    status = core.status(0.5)
    assert status.state == "running" and status.holding and status.hold_reason == "stale joint state"


# ---------------------------------------------------------------------------------------- node
@pytest.mark.ros
@pytest.mark.slow
def test_executor_node_eef_delta_output(processes, rclpy_context, tmp_path):
    pytest.importorskip("rclpy")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import SetBool

    from ros_harness import spin_until
    from vla_adapter_ros.msg import ActionChunk

    params = tmp_path / "executor.yaml"
    params.write_text("executor_node:\n  ros__parameters:\n    robot: libero_panda\n    output: eef_delta\n"
                      "    control_rate_hz: 20.0\n    max_step_translation_m: 0.05\n    max_step_rotation_rad: 0.5\n"
                      "    auto_enable: false\n    status_rate_hz: 20.0\n")
    child = processes.start("executor_node", [sys.executable, "-m", "vla_adapter_ros.nodes.executor_node",
                                              "--ros-args", "--params-file", str(params)])
    child.wait_for_output("ready:", timeout=60)
    node = rclpy.create_node("eef_peer", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    received: list[Float64MultiArray] = []
    node.create_subscription(Float64MultiArray, "/eef_delta_command", received.append, 50)
    js = node.create_publisher(JointState, "/joint_states", 10)
    chunks = node.create_publisher(ActionChunk, "/vla/action_chunk", 10)

    def publish_state():
        msg = JointState(name=[f"panda_joint{i}" for i in range(1, 8)], position=list(READY))
        msg.header.stamp = node.get_clock().now().to_msg()
        js.publish(msg)

    node.create_timer(0.02, publish_state)
    enable = node.create_client(SetBool, "/executor_node/enable")
    assert spin_until(executor, enable.service_is_ready, 30)
    spin_until(executor, lambda: False, 0.5)
    assert not received, "disabled: nothing is sent"
    future = enable.call_async(SetBool.Request(data=True))
    assert spin_until(executor, future.done, 15) and future.result().success, future.result()

    def send(rows, gripper):
        msg = ActionChunk(action_space=ActionChunk.EEF_DELTA, horizon=len(rows), action_dim=6, dt=0.05)
        msg.actions = np.asarray(rows, float).reshape(-1).tolist()
        msg.gripper = list(gripper)
        msg.header.stamp = node.get_clock().now().to_msg()
        chunks.publish(msg)

    rows = [[0.2, 0, 0, 0, 0, 0], [float("nan")] + [0.0] * 5]
    send(rows, [1.0, 1.0])
    label = lambda m: m.layout.dim[0].label if m.layout.dim else ""  # noqa: E731
    assert spin_until(executor, lambda: any(label(m) == "step" for m in received), 15)
    steps = [m for m in received if label(m) == "step"]
    np.testing.assert_allclose(steps[0].data, [0.05, 0, 0, 0, 0, 0, 1.0])  # clamped to 0.05 m, gripper closed
    assert spin_until(executor, lambda: label(received[-1]) in ("hold", "wait") and len(received) > len(steps) + 2, 10)
    tail = received[received.index(steps[0]) + 1:]
    assert all(np.all(np.isfinite(m.data)) for m in received), "never a NaN on the wire"
    assert tail and all(list(m.data) == [0.0] * 6 + [1.0] for m in tail)  # NaN row -> hold, gripper kept
    node.destroy_node()


def test_unparsable_chunk_is_counted():
    core = running_core()
    result = core.reject_unparsable_chunk("bad layout", sequence=7)
    assert not result.accepted and result.sequence == 7 and core.chunks_rejected == 1
    assert core.last_chunk.reason == "bad layout"


# ------------------------------------------------------------------ Cartesian limits (issue 14)
def fr3_core(dt=FR3.control_dt):
    core = EefDeltaCore(FR3, dt=dt, max_translation_m=0.05, max_rotation_rad=0.5)
    core.on_joint_state(np.array(FR3.start_pose), 0.0)
    return core


def drive(core, rows_per_chunk, ticks, dt, chunk_every=8, rng=None):
    """Feed chunks of the given rows every `chunk_every` ticks; return the emitted deltas."""
    out = []
    for k in range(ticks):
        now = round(k * dt, 9)
        core.on_joint_state(np.array(FR3.start_pose), now)
        if k % chunk_every == 0:
            core.on_chunk(Chunk(now, dt, EEF_DELTA, [], np.asarray(rows_per_chunk(k), float)), now)
        cmd = core.tick(now)
        out.append(np.zeros(6) if cmd is None else cmd.delta)
    return np.array(out)


def assert_cartesian_limits(deltas, limits, dt):
    v = deltas / dt
    a = np.diff(np.vstack([np.zeros((1, 6)), v]), axis=0) / dt
    j = np.diff(np.vstack([np.zeros((1, 6)), a]), axis=0) / dt
    for x, bound in ((v, limits.cartesian_v_max), (a, limits.cartesian_a_max), (j, limits.cartesian_j_max)):
        assert np.max(np.linalg.norm(x[:, :3], axis=1)) <= bound[0] * (1 + 1e-9) + 1e-9
        assert np.max(np.linalg.norm(x[:, 3:], axis=1)) <= bound[1] * (1 + 1e-9) + 1e-9


def test_alternating_and_oversized_rows_stay_within_the_cartesian_limits():
    core = fr3_core()
    assert core.enable(0.0)[0]
    dt = core.dt
    alternating = drive(core, lambda k: [[0.01 * (-1) ** i, -0.01 * (-1) ** i, 0.01, 0.05 * (-1) ** i, 0, 0]
                                         for i in range(8)], 2000, dt)
    assert_cartesian_limits(alternating, FR3, dt)
    core2 = fr3_core()
    core2.enable(0.0)
    fast = drive(core2, lambda k: [[0.01, 0, 0, 0, 0, 0.05]] * 8, 100, dt)  # 2.5 m/s, 12.5 rad/s asked
    assert_cartesian_limits(fast, FR3, dt)
    travelled = np.sum(fast[:, :3], axis=0)
    assert travelled[0] < FR3.cartesian_v_max[0] * 100 * dt  # not the 0.98 m of the raw stream


def test_motion_delayed_by_a_limit_is_caught_up_not_lost():
    core = fr3_core()
    core.enable(0.0)
    rows = [[0.002, 0.001, 0, 0, 0, 0.004]] * 8  # 0.5 m/s: beyond the 0.6 m/s / sqrt(3) per axis
    deltas = drive(core, lambda k: rows if k == 0 else [], 400, core.dt, chunk_every=10 ** 9)
    np.testing.assert_allclose(np.sum(deltas, axis=0), np.sum(rows, axis=0), atol=1e-9)
    assert_cartesian_limits(deltas, FR3, core.dt)


def test_libero_actions_pass_unchanged():
    rng = np.random.default_rng(3)
    core = EefDeltaCore(LIBERO, dt=DT, max_translation_m=0.0867, max_rotation_rad=0.867)  # config/executor_libero.yaml
    core.on_joint_state(READY, 0.0)
    assert core.enable(0.0)[0]
    rows = rng.uniform(-1, 1, (64, 6)) * np.array([0.05] * 3 + [0.5] * 3)
    cmds = []
    for c in range(8):
        core.on_chunk(eef_chunk(c * 8 * DT, rows[8 * c: 8 * c + 8]), c * 8 * DT)
        cmds += run(core, 8, c * 8 * DT)
    np.testing.assert_allclose([c.delta for c in cmds], rows, atol=1e-12)
    assert all(c.kind == "step" for c in cmds)


def test_workspace_box_limits_motion_toward_a_wall():
    core = fr3_core()
    core.enable(0.0)
    p0 = core.tool_position()
    # push +z at 0.1 m/s forever; the arm follows the integrated deltas (FK of a fake arm is not
    # needed: the measured tool point is moved by the deltas through a stand-in)
    tool = p0.copy()
    core.tool_position = lambda: tool
    dt = core.dt
    for k in range(3000):
        now = round(k * dt, 9)
        core.on_joint_state(np.array(FR3.start_pose), now)
        if k % 8 == 0:
            core.on_chunk(Chunk(now, dt, EEF_DELTA, [], np.tile([0, 0, 0.0004, 0, 0, 0], (8, 1))), now)
        tool = tool + core.tick(now).delta[:3]
    assert tool[2] <= FR3.workspace_max[2] + 1e-9
    assert tool[2] > FR3.workspace_max[2] - 0.01  # it did get close
    assert core.clip_counts["workspace"] > 0


def test_enable_refuses_a_tool_outside_the_box_and_estop_while_disabled_never_runs():
    core = EefDeltaCore(FR3)
    core.on_joint_state(np.zeros(7), 0.0)  # arm straight up: tool at z ~ 1.2 m, above the box
    ok, message = core.enable(0.0)
    assert not ok and "outside the workspace box" in message and "nothing was sent" in message
    core.on_joint_state(np.array(FR3.start_pose), 0.0)
    assert core.estop("operator")[0]
    assert core.tick(0.0) is None  # nothing is sent
    ok, _ = core.reset(0.0)
    assert ok and core.state == ExecutorState.DISABLED
    assert not core.start(0.0)[0]  # never running without enable
    assert core.tick(0.0) is None


def test_disable_and_estop_brake_smoothly():
    core = fr3_core()
    core.enable(0.0)
    dt = core.dt
    deltas = list(drive(core, lambda k: [[0.001, 0, 0, 0, 0, 0]] * 8, 200, dt))
    assert np.linalg.norm(deltas[-1]) > 0
    core.estop("operator")
    k = 200
    while True:
        cmd = core.tick(round(k * dt, 9))
        core.on_joint_state(np.array(FR3.start_pose), round(k * dt, 9))
        deltas.append(cmd.delta)
        k += 1
        if np.all(cmd.delta == 0) and core.filter.is_stopped:
            break
    assert cmd.kind == "hold"
    assert_cartesian_limits(np.array(deltas), FR3, dt)
