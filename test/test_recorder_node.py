"""recorder_node as a separate process over real middleware: the freshness gate, start/stop/discard,
exact message counts and contents read back with rosbags, and clear start-up failures."""

from __future__ import annotations

import sys

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from ros_harness import spin_until  # noqa: E402
from vla_adapter_ros.data.bag_io import make_typestore, read_episode_metadata, read_raw_messages  # noqa: E402
from vla_adapter_ros.srv import SetInstruction  # noqa: E402

pytestmark = [pytest.mark.ros]

TOPICS = {
    "/rec_test/image": "sensor_msgs/msg/Image",
    "/rec_test/joints": "sensor_msgs/msg/JointState",
    "/rec_test/gripper": "std_msgs/msg/Float64",
}


def _params(path, output_dir, topics=None, required=("/rec_test/image", "/rec_test/joints")) -> str:
    topics = [f"{t}: {m}" for t, m in TOPICS.items()] if topics is None else topics
    quoted = ", ".join(f'"{t}"' for t in topics)
    path.write_text(
        "recorder_node:\n  ros__parameters:\n"
        f'    output_dir: "{output_dir}"\n    topics: [{quoted}]\n'
        f"    required_topics: [{', '.join(required)}]\n    max_age: 2.0\n    status_period: 1.0\n"
    )
    return str(path)


def _recorder_argv(params: str) -> list[str]:
    return [sys.executable, "-m", "vla_adapter_ros.nodes.recorder_node", "--ros-args", "--params-file", params]


class Client:
    def __init__(self, context):
        self.node = rclpy.create_node("recorder_test", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.image = self.node.create_publisher(Image, "/rec_test/image", qos)
        self.joints = self.node.create_publisher(JointState, "/rec_test/joints", qos)
        self.gripper = self.node.create_publisher(Float64, "/rec_test/gripper", qos)
        self.start = self.node.create_client(SetInstruction, "/recorder_node/start")
        self.stop = self.node.create_client(SetBool, "/recorder_node/stop")
        self.discard = self.node.create_client(Trigger, "/recorder_node/discard")

    def call(self, client, request, timeout=20.0):
        future = client.call_async(request)
        assert spin_until(self.executor, future.done, timeout), f"{client.srv_name}: no answer"
        return future.result()

    def wait(self, seconds):
        spin_until(self.executor, lambda: False, seconds)

    def publish(self, k: int, image=True, joints=True, gripper=True):
        if image:
            img = Image(height=4, width=6, encoding="rgb8", step=18, data=bytes([k % 256]) * 72)
            img.header.stamp.sec, img.header.frame_id = k, "cam"
            self.image.publish(img)
        if joints:
            msg = JointState(name=[f"j{i}" for i in range(7)], position=[k + 0.1 * i for i in range(7)])
            msg.header.stamp.sec = k
            self.joints.publish(msg)
        if gripper:
            self.gripper.publish(Float64(data=float(k)))

    def matched(self) -> bool:
        return all(pub.get_subscription_count() > 0 for pub in (self.image, self.joints, self.gripper))


def _read(bag):
    ts = make_typestore()
    out: dict[str, list] = {}
    for topic, msgtype, _t, raw in read_raw_messages(bag):
        out.setdefault(topic, []).append(ts.deserialize_cdr(raw, msgtype))
    return out


def test_start_gate_stop_readback_and_discard(processes, rclpy_context, tmp_path):
    out = tmp_path / "bags"
    recorder = processes.start("recorder_node", _recorder_argv(_params(tmp_path / "rec.yaml", out)))
    recorder.wait_for_output("ready:", timeout=60)
    c = Client(rclpy_context)
    assert spin_until(c.executor, lambda: c.start.service_is_ready() and c.matched(), 30)

    # nothing published yet: refused, naming the silent topics
    r = c.call(c.start, SetInstruction.Request(instruction="pick up the cube"))
    assert not r.success and "/rec_test/image" in r.message and "/rec_test/joints" in r.message
    # only the joints: the camera is still silent
    for k in range(3):
        c.publish(k, image=False, gripper=False)
    c.wait(0.3)
    r = c.call(c.start, SetInstruction.Request(instruction="pick up the cube"))
    assert not r.success and "/rec_test/image" in r.message and "/rec_test/joints" not in r.message

    # every stream fresh (these messages precede the episode and must not be recorded)
    for k in range(3):
        c.publish(100 + k)
    c.wait(0.3)
    r = c.call(c.start, SetInstruction.Request(instruction="pick up the cube"))
    assert r.success, r.message
    bag_dir = r.message
    assert not c.call(c.start, SetInstruction.Request(instruction="again")).success  # already recording
    n = 25
    for k in range(n):
        c.publish(k, gripper=k % 5 == 0)
        c.wait(0.01)
    # the recorder's status line (every second) shows when it has taken every message
    counts = f"/rec_test/gripper 5, /rec_test/image {n}, /rec_test/joints {n}"
    assert spin_until(c.executor, lambda: counts in recorder.output(), 30), recorder.output()[-2000:]
    r = c.call(c.stop, SetBool.Request(data=True))
    assert r.success and r.message == bag_dir, r.message
    assert not c.call(c.stop, SetBool.Request(data=True)).success  # nothing open

    msgs = _read(bag_dir)
    assert len(msgs["/rec_test/image"]) == n and len(msgs["/rec_test/joints"]) == n
    assert [m.data for m in msgs["/rec_test/gripper"]] == [float(k) for k in range(0, n, 5)]
    assert [m.header.stamp.sec for m in msgs["/rec_test/image"]] == list(range(n))
    img = msgs["/rec_test/image"][7]
    assert (img.height, img.width, img.encoding) == (4, 6, "rgb8") and np.all(np.asarray(img.data) == 7)
    np.testing.assert_allclose(msgs["/rec_test/joints"][3].position, [3 + 0.1 * i for i in range(7)])
    meta = read_episode_metadata(bag_dir)
    assert meta["instruction"] == "pick up the cube" and meta["success"] is True
    assert meta["message_counts"] == {"/rec_test/image": n, "/rec_test/joints": n, "/rec_test/gripper": 5}
    assert meta["config"]["topics"] == TOPICS and meta["config"]["output_dir"] == str(out)

    # a second episode, discarded while open: nothing of it stays on disk
    for k in range(2):
        c.publish(k)
    c.wait(0.2)
    r = c.call(c.start, SetInstruction.Request(instruction="push the cube"))
    assert r.success, r.message
    second = r.message
    c.publish(1)
    c.wait(0.3)
    r = c.call(c.discard, Trigger.Request())
    assert r.success and second in r.message
    c.wait(0.2)
    episodes = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert episodes == [bag_dir.rsplit("/", 1)[-1]]
    assert not any((out / ".partial").iterdir())
    # idle: discard deletes the last saved episode
    r = c.call(c.discard, Trigger.Request())
    assert r.success and bag_dir in r.message
    assert not any(p for p in out.iterdir() if not p.name.startswith("."))
    assert not c.call(c.discard, Trigger.Request()).success
    assert "recording" in recorder.output() and "saved" in recorder.output()
    c.node.destroy_node()


@pytest.mark.parametrize("case", ["output_dir_is_a_file", "malformed_topic", "unknown_type", "required_not_listed"])
def test_bad_configuration_is_a_clear_startup_error(processes, tmp_path, case):
    out = tmp_path / "bags"
    topics = None
    required = ("/rec_test/image",)
    if case == "output_dir_is_a_file":
        out = tmp_path / "a_file"
        out.write_text("not a directory")
    elif case == "malformed_topic":
        topics = ["/rec_test/image sensor_msgs/msg/Image"]
    elif case == "unknown_type":
        topics = ["/rec_test/image: sensor_msgs/msg/NoSuchType"]
    else:
        required = ("/rec_test/elsewhere",)
    child = processes.start(f"recorder_{case}", _recorder_argv(_params(tmp_path / "rec.yaml", out, topics, required)))
    assert child.wait_exit(60) != 0
    text = child.output()
    assert "[FATAL] recorder_node: cannot start" in text, text
    expected = {"output_dir_is_a_file": "output_dir", "malformed_topic": "TOPIC: pkg/msg/Type",
                "unknown_type": "NoSuchType", "required_not_listed": "required_topics"}[case]
    assert expected in text, text


def test_real_robot_override_records_the_cameras_compressed_streams():
    """config/recorder_real.yaml: the cameras' CompressedImage topics, every type resolvable, and the required
    topics among the recorded ones."""
    from pathlib import Path

    import yaml

    from vla_adapter_ros.nodes.recorder_node import message_class, parse_topics

    path = Path(__file__).resolve().parents[1] / "config" / "recorder_real.yaml"
    params = yaml.safe_load(path.read_text())["recorder_node"]["ros__parameters"]
    topics = parse_topics(params["topics"], lambda name: "/" + name.lstrip("/"))  # as in the root namespace
    cameras = [t for t, kind in topics.items() if kind == "sensor_msgs/msg/CompressedImage"]
    assert cameras == ["/camera/agentview/image_raw/compressed", "/camera/wrist/image_raw/compressed"]
    assert all(message_class(kind) is not None for kind in topics.values())
    required = {"/" + name for name in params["required_topics"]}
    assert required <= set(topics) and set(cameras) <= required
