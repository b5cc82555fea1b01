"""Closed loop over real middleware: sim_node + policy_node (tiny random-weight model) +
executor_node as three separate processes, exactly as `vla-adapter-ros up config/sim_stack.yaml`
starts them; the test process watches the arm, checks limits, and presses the estop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("torch")
pytest.importorskip("mujoco")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from ros_harness import spin_until  # noqa: E402
from vla_adapter_ros.control import load_robot_limits  # noqa: E402
from vla_adapter_ros.msg import ExecutorStatus  # noqa: E402
from vla_adapter_ros.supervisor import load_stack  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CONFIG = Path(__file__).resolve().parents[1] / "config"
LIMITS = load_robot_limits("fr3")


def test_closed_loop_episode_moves_within_limits_and_estop_stops_it(processes, rclpy_context, tmp_path):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(
        "sim_node:\n  ros__parameters:\n    seed: 7\n    camera_rate_hz: 5.0\n    image_width: 96\n"
        "    image_height: 96\n"
        "policy_node:\n  ros__parameters:\n    max_age: 0.5\n    warmup_iterations: 1\n"
    )
    children = {}
    for spec in load_stack(CONFIG / "sim_stack.yaml"):  # the same node set and files as `up`
        children[spec.name] = processes.start(spec.name, spec.argv([overrides]))
    for name, child in children.items():
        child.wait_for_output("ready:", timeout=180)

    node = rclpy.create_node("observer", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    states: list[JointState] = []
    status: list[ExecutorStatus] = []
    node.create_subscription(JointState, "/joint_states", states.append, 100)
    node.create_subscription(ExecutorStatus, "/vla/executor/status", status.append, 10)
    instruction = node.create_publisher(String, "/vla/instruction", 10)

    assert spin_until(executor, lambda: status and status[-1].state == "running" and states, 60), \
        status[-1] if status else children["executor_node"].output()
    ready = np.array(LIMITS.start_pose)
    assert np.max(np.abs(np.array(states[-1].position[:7]) - ready)) < 0.01  # sim starts at the ready pose

    # a message published before discovery has matched the policy's subscription is lost
    assert spin_until(executor, lambda: instruction.get_subscription_count() > 0, 30)
    instruction.publish(String(data="reach the red cube"))
    moved = lambda: states and np.max(np.abs(np.array(states[-1].position[:7]) - ready)) > 0.02  # noqa: E731
    assert spin_until(executor, moved, 90), (status[-1].state, status[-1].hold_reason, status[-1].chunks_accepted,
                                             children["policy_node"].output()[-1500:],
                                             children["executor_node"].output()[-1500:])
    assert status[-1].chunks_accepted > 0

    client = node.create_client(Trigger, "/executor_node/estop")
    assert spin_until(executor, client.service_is_ready, 10)
    future = client.call_async(Trigger.Request())
    assert spin_until(executor, future.done, 10) and future.result().success
    assert spin_until(executor, lambda: status[-1].state == "estop", 10)
    # braking: well under a second of simulated time at these limits (wall time would depend on how
    # fast a loaded machine runs the simulation)
    stamp_estop = states[-1].header.stamp.sec + states[-1].header.stamp.nanosec * 1e-9
    spin_until(executor, lambda: states[-1].header.stamp.sec + states[-1].header.stamp.nanosec * 1e-9
               > stamp_estop + 1.0, 30)
    q_stop = np.array(states[-1].position[:7])
    stamp_stop = states[-1].header.stamp.sec + states[-1].header.stamp.nanosec * 1e-9
    spin_until(executor, lambda: states[-1].header.stamp.sec + states[-1].header.stamp.nanosec * 1e-9
               > stamp_stop + 1.0, 30)  # one more simulated second
    q_later = np.array(states[-1].position[:7])
    assert np.max(np.abs(q_later - q_stop)) < 2e-3, "the arm kept moving after the estop"

    # every measured arm state of the run stayed inside the hardware position limits
    q_all = np.array([s.position[:7] for s in states])
    assert np.all(q_all >= np.array(LIMITS.q_min)) and np.all(q_all <= np.array(LIMITS.q_max))
    assert all(child.alive() for child in children.values())
    node.destroy_node()


def test_sim_node_refuses_bad_start_jitter(processes, tmp_path):
    import sys

    params = tmp_path / "bad.yaml"
    params.write_text("sim_node:\n  ros__parameters:\n    start_jitter: 2.0\n")
    child = processes.start("sim_bad_jitter", [sys.executable, "-m", "vla_adapter_ros.nodes.sim_node", "--ros-args",
                                               "--params-file", str(CONFIG / "sim.yaml"), "--params-file", str(params)])
    assert child.wait_exit(60) != 0, child.output()
    assert "sim_node: cannot start" in child.output() and "start jitter must be in [0, 1], got 2.0" in child.output()
