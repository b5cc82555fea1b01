"""The executor node as a separate process over real ROS 2 middleware.

The test process plays a perfectly tracking robot: it publishes joint states equal to the last
commanded positions (starting at the ready pose) and feeds chunks, then checks the controller
messages, the control services and the holds.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Float64, Header  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from ros_harness import PEERS, spin_until  # noqa: E402
from vla_adapter_ros.control import FrankaKinematics, ToolOffset, load_robot_limits  # noqa: E402
from vla_adapter_ros.msg import ActionChunk, ExecutorStatus  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

LIMITS = load_robot_limits("fr3")
READY = np.array(LIMITS.start_pose)
NAMES = list(LIMITS.joint_names)
JTC = "/fr3_arm_controller/joint_trajectory"


def write_params(path, node="executor_node", **overrides):
    # 100 Hz: the test process (a Python fake robot) must keep up with the command stream
    params = {"auto_enable": False, "status_rate_hz": 20.0, "gripper_output": "topic", "control_rate_hz": 100.0}
    params.update(overrides)
    lines = [f"{node}:", "  ros__parameters:"] + [f"    {k}: {v!r}".replace("'", '"') for k, v in params.items()]
    path.write_text("\n".join(lines).replace("True", "true").replace("False", "false") + "\n")
    return path


def relaxed_limits(tmp_path):
    """FR3 limits with watchdogs loose enough for a test process that is not a real-time robot
    (its joint states come from a Python timer on a shared 2-core machine)."""
    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/robots/fr3.yaml").read_text())
    data.update(joint_state_timeout=0.5, chunk_max_age=10.0)
    path = tmp_path / "fr3_test.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def start_executor(processes, tmp_path, command=None, extra_env=None, **overrides):
    """command: how to run the node (default: the executor module)."""
    overrides.setdefault("robot", relaxed_limits(tmp_path))
    params = write_params(tmp_path / "executor.yaml", **overrides)
    command = command or [sys.executable, "-m", "vla_adapter_ros.nodes.executor_node"]
    child = processes.start("executor_node", command + ["--ros-args", "--params-file", str(params)],
                            extra_env=extra_env)
    child.wait_for_output("ready:", timeout=60)
    return child


class TrackingRobot:
    """Joint states = last commanded JTC positions; records commands, status, requests, gripper."""

    def __init__(self, context, topic=JTC):
        self.node = rclpy.create_node("tracking_robot", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.q = READY.copy()
        self.publishing = True
        self.state_joints = NAMES  # the arm joints each joint state carries (fingers always)
        self.commands: list[JointTrajectory] = []
        self.dry_run: list[JointTrajectory] = []
        self.status: list[ExecutorStatus] = []
        self.requests: list[Header] = []
        self.gripper: list[float] = []
        self.js_pub = self.node.create_publisher(JointState, "/joint_states", 10)
        self.chunk_pub = self.node.create_publisher(ActionChunk, "/vla/action_chunk", 10)
        self.node.create_subscription(JointTrajectory, topic, self._on_command, 50)
        self.node.create_subscription(JointTrajectory, "/executor_node/dry_run/joint_trajectory",
                                      self.dry_run.append, 50)
        self.node.create_subscription(ExecutorStatus, "/vla/executor/status", self.status.append, 10)
        self.node.create_subscription(Header, "/vla/request_chunk", self.requests.append, 10)
        self.node.create_subscription(Float64, "/gripper/command", lambda m: self.gripper.append(m.data), 10)
        self.node.create_timer(0.01, self._publish_state)

    def _on_command(self, msg):
        self.commands.append(msg)
        self.q = np.array(msg.points[0].positions)

    def _publish_state(self):
        if not self.publishing:
            return
        self.publish_state(self.node.get_clock().now())

    def publish_state(self, stamp, names=None):
        names = self.state_joints if names is None else names
        positions = [float(self.q[NAMES.index(n)]) for n in names]
        msg = JointState(name=list(names) + ["fr3_finger_joint1", "fr3_finger_joint2"],
                         position=positions + [0.04, 0.04])
        msg.header.stamp = stamp.to_msg()
        self.js_pub.publish(msg)

    def spin(self, predicate, timeout):
        return spin_until(self.executor, predicate, timeout)

    def wait(self, seconds):
        self.spin(lambda: False, seconds)

    def call(self, srv_type, name, request):
        client = self.node.create_client(srv_type, f"/executor_node/{name}")
        assert self.spin(client.service_is_ready, 30), f"service {name} not available"
        future = client.call_async(request)
        assert self.spin(future.done, 15)
        self.node.destroy_client(client)
        return future.result()

    def trigger(self, name):
        return self.call(Trigger, name, Trigger.Request())

    def enable(self, on=True, timeout=15.0):
        """~/enable; retried while the executor has not yet received one of our joint states."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            reply = self.call(SetBool, "enable", SetBool.Request(data=on))
            early = "no fresh joint state" in reply.message or "try again" in reply.message
            if reply.success or not early or time.monotonic() > deadline:
                return reply
            self.wait(0.2)

    def last_status(self):
        return self.status[-1] if self.status else None

    def wait_until_still(self, duration, tolerance, timeout):
        """True once the arm moved less than `tolerance` (rad) over `duration` seconds."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            q0 = self.q.copy()
            self.wait(duration)
            if np.max(np.abs(self.q - q0)) < tolerance:
                return True
        return False

    def describe(self):
        s = self.last_status()
        if s is None:
            return "no status"
        return (f"state={s.state} holding={s.holding} hold_reason={s.hold_reason!r} accepted={s.chunks_accepted} "
                f"rejected={s.chunks_rejected} reject_reason={s.last_chunk_reject_reason!r} queue={s.queue_depth} "
                f"event={s.last_safety_event!r} message={s.message!r} estop={s.estop_reason!r}")

    def wait_state(self, state, timeout=30):
        assert self.spin(lambda: self.last_status() is not None and self.last_status().state == state, timeout), \
            self.last_status()

    def send_chunk(self, rows, dt=0.05, gripper=None, stamp=None, action_space=ActionChunk.JOINT_POSITION,
                   names=NAMES, sequence=0):
        rows = np.asarray(rows, dtype=float)
        msg = ActionChunk(action_space=action_space, names=list(names), horizon=rows.shape[0],
                          action_dim=rows.shape[1] if rows.ndim == 2 else 0, dt=dt, sequence=sequence)
        msg.actions = rows.reshape(-1).tolist()
        msg.gripper = [] if gripper is None else list(gripper)
        now = self.node.get_clock().now()
        msg.header.stamp = (stamp or now).to_msg()
        self.chunk_pub.publish(msg)

    def send_chunk_until_accepted(self, rows, attempts=10, **kwargs):
        """Publish a fresh chunk until the executor accepts one (a loaded machine may deliver a
        chunk so late that all its rows are already in the past, which is then rightly rejected)."""
        for _ in range(attempts):
            before = self.last_status().chunks_accepted
            self.send_chunk(rows, **kwargs)
            if self.spin(lambda: self.last_status().chunks_accepted > before, 3.0):
                return
        raise AssertionError("no chunk accepted: " + self.describe())

    def close(self):
        self.node.destroy_node()


@pytest.fixture
def robot(rclpy_context):
    fake = TrackingRobot(rclpy_context)
    yield fake
    fake.close()


def _velocity_bound():
    return LIMITS.v_max * (1 + 1e-6) + 1e-6


def test_chunks_become_smooth_trajectories_and_estop_latches(processes, robot, tmp_path):
    executor = start_executor(processes, tmp_path)
    executor.wait_for_output("real-time scheduling: off (realtime_priority 0)", timeout=30)  # the default
    robot.wait_state("disabled")
    robot.wait(0.3)
    assert not robot.commands, "a disabled executor must send nothing"

    reply = robot.enable()
    assert reply.success and "running" in reply.message, reply.message
    robot.wait_state("running")
    assert robot.spin(lambda: len(robot.requests) > 0, 15), "an empty queue must request a chunk"

    # a chunk moving joint 1 by +0.1 rad over 2 s, closing the gripper halfway
    target = READY + np.array([0.1, 0, 0, 0, 0, 0, 0])
    rows = np.linspace(READY, target, 41)[1:]
    robot.send_chunk_until_accepted(rows, gripper=[0.0] * 20 + [1.0] * 20)
    # the arm follows and comes to rest at the end of the chunk
    assert robot.spin(lambda: np.max(np.abs(robot.q - target)) < 1e-4 and robot.last_status().holding, 30), \
        (robot.q, robot.describe())

    for msg in robot.commands:
        assert msg.header.stamp.sec == 0 and msg.header.stamp.nanosec == 0  # start now
        assert list(msg.joint_names) == NAMES
        assert 1 <= len(msg.points) <= 3
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        assert all(t > 0 for t in times) and times == sorted(times)
        for p in msg.points:
            q, v = np.array(p.positions), np.array(p.velocities)
            assert np.all(np.isfinite(q)) and np.all(np.abs(v) <= _velocity_bound())
            assert np.all(q >= LIMITS.soft_q_min - 1e-9) and np.all(q <= LIMITS.soft_q_max + 1e-9)
    # consecutive first points never step more than the per-step cap, except along the stop the previous
    # message ended with: after a late tick (a loaded machine) the executor continues from where the
    # controller is on that stop (the stop turns back by at most ~10 mrad, test_control_safety.py)
    for previous, message in zip(robot.commands, robot.commands[1:]):
        before = np.array([p.positions for p in previous.points])
        q = np.array(message.points[0].positions)
        step = np.max(np.abs(q - before[0]))
        along_stop = np.all(q >= before.min(axis=0) - LIMITS.max_step_rad - 0.01) and \
            np.all(q <= before.max(axis=0) + LIMITS.max_step_rad + 0.01)
        assert step <= LIMITS.max_step_rad + 1e-9 or (len(previous.points) > 1 and along_stop), (step, before, q)
    assert robot.gripper and robot.gripper[-1] == 1.0  # one goal on the change to closed

    # estop: latched, holds, refuses chunks and resume until reset (from rest: "holding" is reported while
    # the last motion is still being finished, which may end with a slow approach of a few 1e-5 rad)
    assert robot.wait_until_still(0.3, tolerance=1e-6, timeout=10), robot.describe()
    reply = robot.trigger("estop")
    assert reply.success
    robot.wait_state("estop")
    q_estop = robot.q.copy()
    robot.send_chunk(np.linspace(target, READY, 9)[1:])
    robot.wait(0.5)
    status = robot.last_status()
    assert status.state == "estop" and status.holding and status.estop_reason == "estop service"
    assert np.max(np.abs(robot.q - q_estop)) < 1e-5, "estop must hold, not follow new chunks"
    assert not robot.trigger("resume").success
    assert not robot.trigger("start").success
    reply = robot.trigger("reset")
    assert reply.success, reply.message
    robot.wait_state("idle")
    assert executor.alive()


def test_bad_chunks_rejected_and_joint_state_timeout_holds(processes, robot, tmp_path):
    start_executor(processes, tmp_path)
    assert robot.enable().success
    robot.wait_state("running")

    accepted_before = robot.last_status().chunks_accepted
    rejected_before = robot.last_status().chunks_rejected
    robot.send_chunk(np.full((8, 7), np.nan))  # NaN rows
    robot.send_chunk(np.tile(READY, (8, 1))[:, :6], names=NAMES[:6])  # wrong width
    old = robot.node.get_clock().now() - rclpy.duration.Duration(seconds=5.0)
    robot.send_chunk(np.tile(READY, (8, 1)), stamp=old)  # stale
    assert robot.spin(lambda: robot.last_status().chunks_rejected >= rejected_before + 3, 30), robot.last_status()
    assert robot.last_status().chunks_accepted == accepted_before
    assert np.max(np.abs(robot.q - READY)) < 1e-6, "rejected chunks must not move the arm"

    # a far jump is held, not followed
    robot.send_chunk(np.tile(READY + 1.0, (8, 1)))
    robot.wait(1.0)
    assert np.max(np.abs(robot.q - READY)) < LIMITS.max_jump_rad

    # joint states stop: the executor holds (no motion, holding flag with a reason)
    robot.publishing = False
    assert robot.spin(lambda: robot.last_status().holding and "joint" in robot.last_status().hold_reason, 15), \
        robot.last_status()
    q_before = robot.q.copy()
    robot.send_chunk(np.linspace(READY, READY + 0.05, 9)[1:])
    robot.wait(0.5)
    assert np.max(np.abs(robot.q - q_before)) < 0.02


def test_dry_run_actuates_nothing(processes, robot, tmp_path):
    start_executor(processes, tmp_path, dry_run=True)
    assert robot.enable().success
    robot.wait_state("running")
    assert robot.spin(lambda: len(robot.dry_run) > 20, 30)

    def moved():
        return any(abs(m.points[0].positions[0] - READY[0]) > 0.01 for m in robot.dry_run)

    # a 3 s chunk, re-sent until one arrives in time on a loaded machine
    rows = np.linspace(READY, READY + np.array([0.05, 0, 0, 0, 0, 0, 0]), 61)[1:]
    for _ in range(10):
        robot.send_chunk(rows, gripper=[1.0] * 60)
        if robot.spin(moved, 3.0):
            break
    assert moved(), robot.describe()
    assert not robot.commands and not robot.gripper, "dry run must not send to the controller"
    assert robot.last_status().dry_run


def test_killed_policy_node_leads_to_hold(processes, robot, tmp_path):
    pytest.importorskip("torch")
    start_executor(processes, tmp_path)
    from test_policy_node import write_params as policy_params  # same directory

    params = policy_params(tmp_path / "policy.yaml", camera_topics=["/cam/a", "/cam/b"], trigger="request",
                           instruction="pick up the red cube", max_age=1.0,
                           action_scale=[0.002] * 6)  # random weights: at most 2 mm per step
    policy = processes.start("policy_node", [sys.executable, "-m", "vla_adapter_ros.nodes.policy_node",
                                             "--ros-args", "--params-file", str(params)])
    # cameras for the policy
    from sensor_msgs.msg import Image

    from vla_adapter_ros.observation import encode_rgb

    cams = [robot.node.create_publisher(Image, t, 10) for t in ("/cam/a", "/cam/b")]
    frame = encode_rgb(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))

    def publish_cams():
        stamp = robot.node.get_clock().now().to_msg()
        for pub in cams:
            h, w, step, data = frame
            msg = Image(height=h, width=w, step=step, encoding="rgb8", data=data)
            msg.header.stamp = stamp
            pub.publish(msg)

    robot.node.create_timer(0.05, publish_cams)
    policy.wait_for_output("ready:", timeout=120)  # blocks: the fake robot publishes nothing meanwhile
    robot.wait(0.5)  # fresh joint states again
    assert robot.enable().success
    assert robot.spin(lambda: robot.last_status() is not None and robot.last_status().chunks_accepted >= 3, 60), \
        robot.describe() + "\n" + policy.output()[-3000:]

    policy.stop(timeout=0.1)  # SIGINT with almost no grace, then SIGTERM/SIGKILL: the policy is gone
    assert not policy.alive()
    # the queue runs dry (<= one chunk, 0.4 s) and the executor holds: velocity 0, arm still
    assert robot.spin(lambda: robot.last_status().queue_depth == 0 and robot.last_status().holding, 15), \
        robot.describe()
    # at rest soon (finishing at most finish_distance, then an exact hold): still for 0.5 s
    assert robot.wait_until_still(0.5, tolerance=1e-4, timeout=10), robot.describe()
    assert max(abs(v) for v in robot.commands[-1].points[0].velocities) < 1e-3
    assert robot.last_status().state == "running"  # still enabled: it resumes when chunks return
    assert math.isfinite(robot.last_status().chunk_latency_ms)
    # and the status says why (policy_timeout_s 1 s): the policy stopped answering
    assert robot.spin(lambda: robot.last_status().hold_reason.startswith("no chunk from the policy"), 15), \
        robot.describe()
    assert "is policy_node running?" in robot.last_status().hold_reason


def test_slow_chunk_conversion_does_not_stop_the_command_stream(processes, robot, tmp_path):
    """Chunks are converted beside the control loop: while a chunk's conversion takes >= 1 s (the
    peer adds 1 s of pure-Python work before the core's real EEF_DELTA IK, i.e. >= 100 control
    periods at 100 Hz), the executor keeps sending commands and status. A control loop that waited
    for the conversion would send none in that window (at most the few around its ends)."""
    start_executor(processes, tmp_path, command=[sys.executable, str(PEERS / "slow_chunk_executor.py")],
                   extra_env={"SLOW_CHUNK_S": "1.0"})
    assert robot.enable().success, robot.describe()
    robot.wait_state("running")
    robot.wait(0.3)
    from vla_adapter_ros.control import chunk as chunk_module

    horizon = min(300, getattr(chunk_module, "MAX_CHUNK_ROWS", 300))
    rows = np.zeros((horizon, 6))
    rows[:, 0] = 0.0005  # m in x per row: a slow straight move (a few cm)
    accepted, commands, statuses = robot.last_status().chunks_accepted, len(robot.commands), len(robot.status)
    robot.send_chunk(rows, dt=0.05, action_space=ActionChunk.EEF_DELTA, names=[])
    assert robot.spin(lambda: robot.last_status().chunks_accepted > accepted, 30), robot.describe()
    during = len(robot.commands) - commands
    assert during >= 20, f"only {during} commands while the chunk was being converted"
    assert len(robot.status) - statuses >= 4
    # and the chunk itself is executed: the tool moves along +x, holding at the end
    kinematics = FrankaKinematics(ToolOffset(LIMITS.flange_length_m, LIMITS.tcp_offset_m, LIMITS.tool_yaw_rad))
    start = kinematics.fk_position(READY)
    assert robot.spin(lambda: robot.last_status().queue_depth == 0 and robot.last_status().holding, 30), \
        robot.describe()
    assert robot.wait_until_still(0.3, tolerance=1e-4, timeout=10), robot.describe()
    moved = kinematics.fk_position(robot.q) - start
    assert 0.01 < moved[0] < horizon * 0.0005 + 0.005 and np.all(np.abs(moved[1:]) < 0.01), moved


def test_joint_state_watchdog_uses_the_receive_time_of_every_joint(processes, robot, tmp_path):
    """Ages come from the executor's own clock per joint, never from header stamps (timeout 0.5 s)."""
    start_executor(processes, tmp_path)
    assert robot.enable().success, robot.describe()
    robot.wait_state("running")

    def timed_out():
        s = robot.last_status()
        return s.holding and "joint_state_timeout" in s.hold_reason

    def fresh():
        s = robot.last_status()
        return "joint_state_timeout" not in s.hold_reason and 0 <= s.joint_state_age_ms < 300

    assert robot.spin(fresh, 10), robot.describe()
    # (a) one joint state stamped 60 s in the future, then silence: still a timeout within ~0.5 s
    robot.publishing = False
    robot.publish_state(robot.node.get_clock().now() + rclpy.duration.Duration(seconds=60.0))
    assert robot.spin(timed_out, 10), robot.describe()
    assert robot.last_status().joint_state_age_ms >= 400, robot.last_status().joint_state_age_ms
    # fresh again when complete joint states return
    robot.publishing = True
    assert robot.spin(fresh, 10), robot.describe()
    # (b) joints 1-5 only: 6-7 go stale, so the whole state does (no refresh from a cache)
    robot.state_joints = NAMES[:5]
    unknown = JointState(name=[f"other_joint_{i}" for i in range(10_000)], position=[0.0] * 10_000)
    robot.js_pub.publish(unknown)  # unknown names are ignored
    malformed = JointState(name=NAMES, position=READY[:3].tolist())
    robot.js_pub.publish(malformed)  # lengths differ: ignored
    assert robot.spin(timed_out, 10), robot.describe()
    robot.wait(0.3)
    assert timed_out() and robot.last_status().joint_state_age_ms >= 400, robot.describe()
    robot.state_joints = NAMES
    assert robot.spin(fresh, 10), robot.describe()


def test_resync_only_while_disabled(processes, robot, tmp_path):
    """~/resync: refused while enabled; while disabled, the next enable starts at the measured position
    (an arm that moved while disabled is refused by enable until resync)."""
    start_executor(processes, tmp_path)
    assert robot.enable().success, robot.describe()
    robot.wait_state("running")
    reply = robot.enable()  # idempotent: enabling an enabled executor is no failure and changes nothing
    assert reply.success and reply.message == "already enabled (running): nothing changed", reply.message
    robot.wait_state("running")
    reply = robot.trigger("resync")
    assert not reply.success, reply.message
    assert robot.enable(False).success
    robot.wait_state("disabled")
    robot.q = READY + np.array([0.05, 0, 0, 0, 0, 0, 0])  # the controller restarted elsewhere
    robot.wait(0.3)
    reply = robot.enable()
    assert not reply.success and "resync" in reply.message, reply.message
    reply = robot.trigger("resync")
    assert reply.success, reply.message
    robot.wait(0.3)
    before = len(robot.commands)
    reply = robot.enable()
    assert reply.success, reply.message
    assert robot.spin(lambda: len(robot.commands) > before, 10)
    first = np.array(robot.commands[before].points[0].positions)
    assert np.max(np.abs(first - (READY + np.array([0.05, 0, 0, 0, 0, 0, 0])))) < 1e-3, first


def test_silent_policy_is_named_in_the_status_and_diagnostics(processes, robot, tmp_path):
    """Chunks arrive, then stop (a policy killed with kill -9): the executor holds and its status and
    /diagnostics say that the policy stopped answering; the real-time line is logged either way."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    diagnostics = []
    robot.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    executor = start_executor(processes, tmp_path, policy_timeout_s=1.0, realtime_priority=10)
    executor.wait_for_output("real-time scheduling", timeout=30)
    lines = [line for line in executor.output().splitlines() if "real-time scheduling" in line]
    assert len(lines) == 1 and ("SCHED_FIFO priority 10" in lines[0] or "not available (" in lines[0]), lines

    def executor_diagnostics():
        return [s for array in diagnostics for s in array.status if s.name == "executor_node: executor"]

    assert robot.spin(lambda: executor_diagnostics(), 15), "no /diagnostics from the executor"
    first = executor_diagnostics()[-1]
    values = {kv.key: kv.value for kv in first.values}
    assert values["state"] == "disabled" and first.level == DiagnosticStatus.OK, (first.message, values)
    assert {"tick_ms_p50", "tick_ms_p99", "chunks_accepted", "dry_run", "hold_reason"} <= set(values)

    assert robot.enable().success, robot.describe()
    robot.wait_state("running")
    for k in range(3):  # a few chunks, each answering the requests
        rows = np.linspace(robot.q, robot.q + np.array([0.01, 0, 0, 0, 0, 0, 0]), 9)[1:]
        robot.send_chunk_until_accepted(rows, dt=0.05, sequence=10 + k)
        robot.wait(0.2)
    requests = len(robot.requests)

    def named():
        s = robot.last_status()
        return s.state == "running" and s.holding and s.hold_reason.startswith("no chunk from the policy for ")

    assert robot.spin(named, 15), robot.describe()
    assert len(robot.requests) > requests, "the executor keeps asking"
    reason = robot.last_status().hold_reason
    assert "is policy_node running?" in reason and "last chunk at" in reason and "sequence 12" in reason, reason
    count = len(executor_diagnostics())
    assert robot.spin(lambda: len(executor_diagnostics()) > count + 1, 10)
    last = executor_diagnostics()[-1]
    assert last.level == DiagnosticStatus.WARN and "no chunk from the policy" in last.message, last
    assert {kv.key: kv.value for kv in last.values}["enabled"] == "true"
    # chunks again: the reason goes away
    rows = np.linspace(robot.q, robot.q + np.array([0.01, 0, 0, 0, 0, 0, 0]), 41)[1:]
    robot.send_chunk_until_accepted(rows, dt=0.05, sequence=20)
    assert robot.spin(lambda: "no chunk from the policy" not in robot.last_status().hold_reason, 10), \
        robot.describe()
    # estop: ERROR on /diagnostics
    assert robot.trigger("estop").success
    count = len(executor_diagnostics())
    assert robot.spin(lambda: any(s.level == DiagnosticStatus.ERROR for s in executor_diagnostics()[count:]), 10)
    assert executor.alive()
