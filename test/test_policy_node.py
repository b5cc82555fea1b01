"""The policy node as a separate process over real ROS 2 middleware (tiny random-weight model, CPU).

The test process plays the robot: it publishes synthetic camera and joint-state streams, sets
instructions, and checks what comes back (chunks, status, service answers, action results).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("torch")

from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from ros_harness import spin_until  # noqa: E402
from vla_adapter_ros.action import ExecuteInstruction  # noqa: E402
from vla_adapter_ros.msg import ActionChunk, PolicyStatus  # noqa: E402
from vla_adapter_ros.observation import encode_rgb  # noqa: E402
from vla_adapter_ros.srv import SetInstruction  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

READY_POSE = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
CAMERAS = ["/cam/agentview", "/cam/wrist"]


def write_params(path, **overrides):
    params = {
        "camera_topics": CAMERAS,
        "joint_state_topic": "/joint_states",
        "trigger": "rate",
        "rate_hz": 5.0,
        "status_rate_hz": 10.0,
        "max_age": 0.5,
        "max_skew": 0.05,
        "warmup_iterations": 1,
    }
    params.update(overrides)
    lines = ["policy_node:", "  ros__parameters:"]
    for key, value in params.items():
        lines.append(f"    {key}: {value!r}".replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")
    return path


def start_policy(processes, tmp_path, **overrides):
    params = write_params(tmp_path / "policy.yaml", **overrides)
    child = processes.start("policy_node", [sys.executable, "-m", "vla_adapter_ros.nodes.policy_node",
                                            "--ros-args", "--params-file", str(params)])
    child.wait_for_output("ready:", timeout=120)
    return child


class FakeRobot:
    """Publishes cameras and joint states from the test process; records chunks and status."""

    def __init__(self, context):
        self.node = rclpy.create_node("fake_robot", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.cams = [self.node.create_publisher(Image, t, 10) for t in CAMERAS]
        self.joints = self.node.create_publisher(JointState, "/joint_states", 10)
        self.chunks: list[ActionChunk] = []
        self.status: list[PolicyStatus] = []
        self.node.create_subscription(ActionChunk, "/vla/action_chunk", self.chunks.append, 10)
        self.node.create_subscription(PolicyStatus, "/vla/policy/status", self.status.append, 10)
        self.set_client = self.node.create_client(SetInstruction, "/policy_node/set_instruction")
        self.instruction_pub = self.node.create_publisher(String, "/vla/instruction", 10)
        # what the next frames look like (tests change these)
        self.camera_delay = [0.0, 0.0]  # seconds subtracted from each camera's stamp
        self.encoding = "rgb8"
        self.size = (64, 64)
        self.q = list(READY_POSE)
        self.sent_stamps: list[float] = []
        self.enabled = [True, True]
        self.node.create_timer(0.05, self.publish)

    def publish(self):
        now = self.node.get_clock().now()
        t = now.nanoseconds * 1e-9
        rgb = np.random.default_rng(int(t * 100)).integers(0, 256, self.size + (3,), dtype=np.uint8)
        for i, pub in enumerate(self.cams):
            if not self.enabled[i]:
                continue
            h, w, step, data = encode_rgb(rgb, "rgb8")
            msg = Image(height=h, width=w, step=step, encoding=self.encoding, data=data)
            if self.encoding != "rgb8":
                msg.step = w * 2  # e.g. yuv422: 2 bytes per pixel
                msg.data = bytes(h * w * 2)
            stamp = rclpy.time.Time(nanoseconds=int((t - self.camera_delay[i]) * 1e9))
            msg.header.stamp = stamp.to_msg()
            if i == 0:
                self.sent_stamps.append(stamp.nanoseconds * 1e-9)
            pub.publish(msg)
        js = JointState(name=[f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1", "fr3_finger_joint2"],
                        position=self.q + [0.04, 0.04])
        js.header.stamp = now.to_msg()
        self.joints.publish(js)

    def spin_until(self, predicate, timeout):
        return spin_until(self.executor, predicate, timeout)

    def set_instruction(self, text):
        assert self.spin_until(self.set_client.service_is_ready, 30)
        future = self.set_client.call_async(SetInstruction.Request(instruction=text))
        assert self.spin_until(future.done, 30)
        return future.result()

    def wait_chunks(self, count, timeout=30):
        target = len(self.chunks) + count
        assert self.spin_until(lambda: len(self.chunks) >= target, timeout), self.last_status()
        return self.chunks[-count:]

    def last_status(self):
        return self.status[-1] if self.status else None

    def assert_no_chunks(self, seconds):
        before = len(self.chunks)
        self.spin_until(lambda: False, seconds)
        assert len(self.chunks) == before, f"{len(self.chunks) - before} chunks published"

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def assert_no_chunks_from(self, t_bad, seconds):
        """No chunk computed from an observation at or after t_bad (when the bad input began) within
        `seconds`; a chunk whose inference was already running on an earlier, good frame may still land."""
        before = len(self.chunks)
        self.spin_until(lambda: False, seconds)
        stamps = [c.header.stamp.sec + c.header.stamp.nanosec * 1e-9 for c in self.chunks[before:]]
        assert all(t < t_bad for t in stamps), f"chunks from observations at {stamps} >= {t_bad}"

    def close(self):
        self.node.destroy_node()


@pytest.fixture
def robot(rclpy_context):
    fake = FakeRobot(rclpy_context)
    yield fake
    fake.close()


def test_chunks_from_synthetic_streams(processes, robot, tmp_path):
    policy = start_policy(processes, tmp_path)
    # no instruction yet: nothing is published
    robot.assert_no_chunks(1.0)

    reply = robot.set_instruction("  Pick up the red cube ")
    assert reply.success and reply.message == "instruction set: Pick up the red cube"
    chunks = robot.wait_chunks(3)
    for chunk in chunks:
        assert chunk.action_space == ActionChunk.EEF_DELTA
        assert (chunk.horizon, chunk.action_dim) == (8, 6)
        assert len(chunk.actions) == 48 and np.all(np.isfinite(chunk.actions))
        assert len(chunk.gripper) == 8 and all(0.0 <= g <= 1.0 for g in chunk.gripper)
        assert list(chunk.names) == ["eef_dx", "eef_dy", "eef_dz", "eef_drx", "eef_dry", "eef_drz"]
        assert chunk.dt == pytest.approx(0.05)
        assert chunk.instruction == "Pick up the red cube"
        assert chunk.model_id.startswith("random-weights:tiny")
        assert chunk.inference_ms > 0
        # stamped with the observation time: exactly one of the reference camera's stamps
        stamp = chunk.header.stamp.sec + chunk.header.stamp.nanosec * 1e-9
        assert min(abs(stamp - s) for s in robot.sent_stamps) < 1e-6
    sequences = [c.sequence for c in robot.chunks]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))

    # instruction change (topic) takes effect on the next chunk
    robot.instruction_pub.publish(String(data="push the blue cube to the left"))
    assert robot.spin_until(lambda: robot.chunks[-1].instruction == "push the blue cube to the left", 30)
    switch = next(i for i, c in enumerate(robot.chunks) if c.instruction.startswith("push"))
    assert all(c.instruction.startswith("push") for c in robot.chunks[switch:])

    # a bad instruction is refused with a reason; the node keeps going with the old one
    reply = robot.set_instruction("x" * 300)
    assert not reply.success and "300 characters long" in reply.message
    reply = robot.set_instruction("")
    assert not reply.success and "empty" in reply.message
    last = robot.wait_chunks(1)[0]
    assert last.instruction == "push the blue cube to the left"

    assert robot.spin_until(lambda: robot.last_status() is not None and robot.last_status().chunks_published > 0, 10)
    status = robot.last_status()
    assert status.ready and status.device == "cpu" and status.inference_p50_ms > 0
    assert list(status.input_names) == CAMERAS + ["/joint_states"]
    assert all(0 <= age < 500 for age in status.input_ages_ms)

    # /diagnostics (1 Hz) says the same, WARN because the weights are random
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    diagnostics = []
    robot.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)

    def policy_diagnostics():
        return [s for array in diagnostics for s in array.status if s.name == "policy_node: policy"]

    assert robot.spin_until(lambda: policy_diagnostics(), 10), "no /diagnostics from the policy"
    diag = policy_diagnostics()[-1]
    assert diag.level == DiagnosticStatus.WARN and diag.message == "ready, random weights"
    values = {kv.key: kv.value for kv in diag.values}
    assert values["ready"] == "true" and values["device"] == "cpu" and int(values["chunks_published"]) > 0
    assert values["instruction"] == "push the blue cube to the left"
    assert float(values["inference_p50_ms"]) > 0 and "input_age_ms./cam/wrist" in values
    assert policy.alive()


def test_bad_inputs_are_refused_with_a_reason(processes, robot, tmp_path):
    policy = start_policy(processes, tmp_path, image_width=64, image_height=64)
    assert robot.set_instruction("open the drawer").success
    robot.wait_chunks(1)

    def refused_with(text):
        def check():
            status = robot.last_status()
            return status is not None and text in status.last_refusal
        assert robot.spin_until(check, 30), robot.last_status()

    # stale wrist camera: no chunk from it, reason in the status
    t_bad = robot.now()
    robot.camera_delay = [0.0, 2.0]
    robot.spin_until(lambda: False, 0.5)
    # the wrist's delayed frames are dropped (out of order), so its last good frame stays the newest: the
    # first agentview frame after the change may still pair with it (within max_skew) and give a chunk
    robot.assert_no_chunks_from(t_bad + 0.05, 1.5)
    refused_with("stale input: /cam/wrist")  # the topic, not an internal name
    robot.camera_delay = [0.0, 0.0]
    robot.wait_chunks(1)

    # wrong encoding
    t_bad = robot.now()
    robot.encoding = "yuv422"
    robot.spin_until(lambda: False, 0.8)
    refused_with("unsupported image encoding 'yuv422'")
    robot.assert_no_chunks_from(t_bad, 1.0)
    robot.encoding = "rgb8"
    robot.wait_chunks(1)

    # wrong image size
    t_bad = robot.now()
    robot.size = (48, 64)
    refused_with("image is 64x48, expected 64x64")
    robot.spin_until(lambda: False, 0.8)
    robot.assert_no_chunks_from(t_bad, 1.0)
    robot.size = (64, 64)
    robot.wait_chunks(1)

    # NaN joint states
    t_bad = robot.now()
    robot.q = [float("nan")] + READY_POSE[1:]
    refused_with("non-finite")
    robot.spin_until(lambda: False, 0.8)
    robot.assert_no_chunks_from(t_bad, 1.0)
    robot.q = list(READY_POSE)
    robot.wait_chunks(1)
    assert robot.last_status().refusals >= 4
    assert policy.alive()


def test_request_trigger_and_execute_instruction_cancel(processes, robot, tmp_path):
    policy = start_policy(processes, tmp_path, trigger="request")
    requests = robot.node.create_publisher(Header, "/vla/request_chunk", 10)
    # a request without an instruction: no chunk, and a (throttled) warning that says how to set one
    assert robot.spin_until(lambda: requests.get_subscription_count() > 0, 30)
    for _ in range(3):
        requests.publish(Header())
        robot.spin_until(lambda: False, 0.2)
    policy.wait_for_output("chunk request ignored: no instruction is set", timeout=30)
    assert "ros2 service call /policy_node/set_instruction" in policy.output()
    assert policy.output().count("no instruction is set") == 1  # throttled
    assert not robot.chunks
    client = ActionClient(robot.node, ExecuteInstruction, "/policy_node/execute_instruction")
    assert robot.spin_until(client.server_is_ready, 30)

    feedback = []
    goal = ExecuteInstruction.Goal(instruction="lift the green cube", max_duration=60.0)
    send = client.send_goal_async(goal, feedback_callback=lambda f: feedback.append(f.feedback))
    assert robot.spin_until(send.done, 30) and send.result().accepted
    handle = send.result()

    # request mode: no requests -> no chunks; requests -> chunks. Like the executor, the test
    # repeats its request while waiting (one that arrives while a chunk is being computed is
    # covered by that chunk), and never gets more chunks than it sent requests.
    robot.assert_no_chunks(1.0)
    sent = 0
    for _ in range(3):
        before = len(robot.chunks)
        for _attempt in range(60):
            requests.publish(Header())
            sent += 1
            if robot.spin_until(lambda: len(robot.chunks) > before, 0.5):
                break
        assert len(robot.chunks) > before, robot.last_status()
    assert len(robot.chunks) <= sent
    assert all(c.instruction == "lift the green cube" for c in robot.chunks)
    assert robot.spin_until(lambda: feedback and feedback[-1].chunks >= 3, 10)

    cancel = handle.cancel_goal_async()
    assert robot.spin_until(cancel.done, 30)
    result = handle.get_result_async()
    assert robot.spin_until(result.done, 30)
    assert result.result().status == GoalStatus.STATUS_CANCELED
    assert "hold" in result.result().result.message
    # the executor is told to stop: an empty chunk
    assert robot.spin_until(lambda: robot.chunks and robot.chunks[-1].horizon == 0, 10)
    # and requests no longer produce chunks
    requests.publish(Header())
    robot.assert_no_chunks(1.0)

    # an empty goal instruction is rejected
    send = client.send_goal_async(ExecuteInstruction.Goal(instruction=" "))
    assert robot.spin_until(send.done, 30) and not send.result().accepted
    client.destroy()
    assert policy.alive()


def test_load_failure_exits_nonzero_with_a_clear_line(processes, tmp_path):
    child = processes.start("policy_node", [sys.executable, "-m", "vla_adapter_ros.nodes.policy_node",
                                            "--ros-args", "-p", f"checkpoint:={tmp_path / 'missing'}"])
    assert child.wait_exit(120) == 1
    assert "policy_node: cannot start" in child.output() and "missing" in child.output()


def test_optimized_engine_publishes_the_same_kind_of_chunks(processes, robot, tmp_path):
    policy = start_policy(processes, tmp_path, engine="optimized", image_width=64, image_height=64)
    assert "ready on cpu (optimized engine)" in policy.output()
    assert robot.set_instruction("pick up the red cube").success
    for chunk in robot.wait_chunks(2):
        assert (chunk.horizon, chunk.action_dim) == (8, 6) and np.all(np.isfinite(chunk.actions))
        assert chunk.model_id.startswith("random-weights:tiny") and chunk.inference_ms > 0
    assert policy.alive()


def test_unknown_engine_is_a_clear_load_error(processes, tmp_path):
    params = write_params(tmp_path / "policy.yaml", engine="turbo")
    child = processes.start("policy_node", [sys.executable, "-m", "vla_adapter_ros.nodes.policy_node",
                                            "--ros-args", "--params-file", str(params)])
    assert child.wait_exit(120) == 1
    assert "engine must be one of eager, optimized; got 'turbo'" in child.output()
    assert "loading model" not in child.output()  # refused with the parameters, before the model loads


def test_camera_qos_and_topic_types():
    from rclpy.qos import ReliabilityPolicy

    from vla_adapter_ros.nodes.policy_node import DEFAULTS, camera_qos_profile, is_compressed_topic

    assert DEFAULTS["camera_qos"] == "sensor_data"
    sensor = camera_qos_profile("sensor_data")
    assert sensor.reliability == ReliabilityPolicy.BEST_EFFORT and sensor.depth == 5
    reliable = camera_qos_profile("reliable")
    assert reliable.reliability == ReliabilityPolicy.RELIABLE and reliable.depth == 5
    with pytest.raises(ValueError, match="camera_qos must be one of"):
        camera_qos_profile("fast")
    assert is_compressed_topic("/camera/color/image_raw/compressed") and is_compressed_topic("/x/compressed/")
    assert not is_compressed_topic("/camera/color/image_raw") and not is_compressed_topic("/x/compressed_depth")


def test_camera_qos_is_read_only_and_checked(processes, tmp_path):
    params = write_params(tmp_path / "policy.yaml", camera_qos="fast")
    child = processes.start("policy_node", [sys.executable, "-m", "vla_adapter_ros.nodes.policy_node",
                                            "--ros-args", "--params-file", str(params)])
    assert child.wait_exit(120) == 1
    assert "camera_qos must be one of sensor_data, reliable; got 'fast'" in child.output()
