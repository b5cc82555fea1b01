"""Two namespaced simulation stacks side by side over real middleware (what `sim_pair.launch.py` and
`vla-adapter-ros up config/sim_stack.yaml --namespace robotN` start): every topic, service and clock
of a stack lives under its namespace, nothing is published on the root names, and a command to one
robot leaves the other alone. The policies are left out to keep the test light: their topic names
are checked by test_launch_files.py (no absolute default) and they use the executor's topics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("mujoco")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from ros_harness import spin_until  # noqa: E402
from vla_adapter_ros.msg import ExecutorStatus  # noqa: E402
from vla_adapter_ros.supervisor import load_stack  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CONFIG = Path(__file__).resolve().parents[1] / "config"
NAMESPACES = ("/robot1", "/robot2")


def test_two_namespaced_stacks_do_not_share_anything(processes, rclpy_context, tmp_path):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("sim_node:\n  ros__parameters:\n    camera_rate_hz: 2.0\n    image_width: 64\n"
                         "    image_height: 64\n")
    children = {}
    for index, namespace in enumerate(NAMESPACES):
        for spec in load_stack(CONFIG / "sim_stack.yaml"):
            if spec.name == "policy_node":
                continue
            seed = tmp_path / f"seed{index}.yaml"
            seed.write_text(f"sim_node:\n  ros__parameters:\n    seed: {index + 3}\n")
            argv = spec.argv([overrides, seed] if spec.name == "sim_node" else [], namespace=namespace, own_clock=True,
                             scratch=tmp_path / "params")
            children[namespace, spec.name] = processes.start(f"{namespace[1:]}_{spec.name}", argv)
    for child in children.values():
        child.wait_for_output("ready:", timeout=180)
    # the parameter files reached the namespaced nodes (sim.yaml's task, executor_sim.yaml's auto-enable)
    assert "seed 4" in children["/robot2", "sim_node"].output()
    assert "auto-enable" in children["/robot1", "executor_node"].output()

    node = rclpy.create_node("observer", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    states = {ns: [] for ns in NAMESPACES}
    status = {ns: [] for ns in NAMESPACES}
    poses = {ns: [] for ns in NAMESPACES}
    for ns in NAMESPACES:
        node.create_subscription(PoseStamped, f"{ns}/eef_pose", poses[ns].append, 10)
        node.create_subscription(JointState, f"{ns}/joint_states", states[ns].append, 50)
        node.create_subscription(ExecutorStatus, f"{ns}/vla/executor/status", status[ns].append, 10)
    running = lambda ns: status[ns] and status[ns][-1].state == "running"  # noqa: E731
    assert spin_until(executor, lambda: all(running(ns) and states[ns] for ns in NAMESPACES), 90), \
        {ns: status[ns][-1].state if status[ns] else None for ns in NAMESPACES}

    assert spin_until(executor, lambda: all(poses.values()), 10)
    for ns in NAMESPACES:  # the sims share /tf (in a ROS install): their frames carry the namespace
        assert poses[ns][-1].header.frame_id == f"{ns[1:]}/base"
    topics = dict(node.get_topic_names_and_types())
    for ns in NAMESPACES:
        for name in ("joint_states", "clock", "eef_pose", "camera/agentview/image_raw", "vla/executor/status",
                     "vla/request_chunk", "fr3_arm_controller/joint_trajectory"):
            assert f"{ns}/{name}" in topics, (f"{ns}/{name}", sorted(topics))
    for name in ("/joint_states", "/vla/executor/status", "/fr3_arm_controller/joint_trajectory",
                 "/camera/agentview/image_raw"):
        assert not node.get_publishers_info_by_topic(name), name  # nothing is left on the root names
    assert not node.get_publishers_info_by_topic("/clock")  # each simulation keeps its own clock
    for ns in NAMESPACES:  # who publishes and who listens (graph details arrive a little after discovery)
        publishers = lambda: {(p.node_namespace, p.node_name)  # noqa: E731
                              for p in node.get_publishers_info_by_topic(f"{ns}/joint_states")}
        assert spin_until(executor, lambda: publishers() == {(ns, "sim_node")}, 10), publishers()
        listeners = lambda: {(p.node_namespace, p.node_name)  # noqa: E731
                             for p in node.get_subscriptions_info_by_topic(f"{ns}/joint_states")} - {("/", "observer")}
        assert spin_until(executor, lambda: listeners() == {(ns, "executor_node")}, 10), listeners()
    # the two sims differ (seeds): each executor follows its own arm and its own clock
    services = dict(node.get_service_names_and_types())
    assert "/robot1/executor_node/estop" in services and "/robot2/sim_node/reset_episode" in services
    assert "/executor_node/estop" not in services

    client = node.create_client(Trigger, "/robot1/executor_node/estop")
    assert spin_until(executor, client.service_is_ready, 10)
    future = client.call_async(Trigger.Request())
    assert spin_until(executor, future.done, 10) and future.result().success
    assert spin_until(executor, lambda: status["/robot1"][-1].state == "estop", 10)
    count = len(status["/robot2"])
    assert spin_until(executor, lambda: len(status["/robot2"]) > count + 3, 20)
    assert all(s.state == "running" for s in status["/robot2"][count:]), [s.state for s in status["/robot2"][count:]]
    # both arms report joint states stamped by their own simulated clocks
    for ns in NAMESPACES:
        stamps = np.array([s.header.stamp.sec + 1e-9 * s.header.stamp.nanosec for s in states[ns]])
        assert np.all(np.diff(stamps) >= 0) and stamps[-1] > 0
    assert all(child.alive() for child in children.values())
    node.destroy_node()
