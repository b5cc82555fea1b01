"""Our interfaces over real ROS 2 middleware, between separate processes."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")

from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from ros_harness import PEERS, spin_until  # noqa: E402
from vla_adapter_ros.action import ExecuteInstruction  # noqa: E402
from vla_adapter_ros.msg import ActionChunk  # noqa: E402
from vla_adapter_ros.srv import SetInstruction  # noqa: E402

pytestmark = pytest.mark.ros

PEER = PEERS / "interface_peer.py"


def _node(context, name):
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    return node, executor


def test_action_chunk_crosses_processes(processes, rclpy_context):
    peer = processes.start_python("chunk_publisher", PEER, "publish")
    node, executor = _node(rclpy_context, "chunk_listener")
    received: list[ActionChunk] = []
    node.create_subscription(ActionChunk, "action_chunk", received.append, 10)
    peer.wait_for_output("READY")

    assert spin_until(executor, lambda: len(received) >= 3, timeout=30), peer.output()

    sequences = [m.sequence for m in received]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    for msg in received:
        assert msg.action_space == ActionChunk.JOINT_POSITION
        assert (msg.horizon, msg.action_dim) == (8, 7)
        assert len(msg.actions) == msg.horizon * msg.action_dim
        # Exactly the values the peer computed (float32 on the wire: 0.25 steps are exact).
        assert list(msg.actions) == [float(msg.sequence) + 0.25 * i for i in range(56)]
        assert list(msg.gripper) == [0.0, 1.0] * 4
        assert msg.names[0] == "fr3_joint1" and msg.names[-1] == "fr3_joint7"
        assert msg.dt == pytest.approx(0.1)
        assert msg.instruction == "pick up the red cube"
        assert msg.inference_ms == pytest.approx(12.5)
        assert msg.header.stamp.sec > 0
    node.destroy_node()


def test_set_instruction_round_trip(processes, rclpy_context):
    peer = processes.start_python("services", PEER, "services")
    node, executor = _node(rclpy_context, "instruction_client")
    client = node.create_client(SetInstruction, "set_instruction")
    peer.wait_for_output("READY")
    assert spin_until(executor, client.service_is_ready, timeout=30), peer.output()

    def call(text):
        future = client.call_async(SetInstruction.Request(instruction=text))
        assert spin_until(executor, future.done, timeout=15), "no service response"
        return future.result()

    ok = call("Put the bowl on the plate")
    assert ok.success and ok.message == "instruction set: Put the bowl on the plate"
    refused = call("   ")
    assert not refused.success and "empty" in refused.message
    node.destroy_node()


def test_execute_instruction_goal_and_cancel(processes, rclpy_context):
    peer = processes.start_python("services", PEER, "services")
    node, executor = _node(rclpy_context, "execute_client")
    client = ActionClient(node, ExecuteInstruction, "execute_instruction")
    peer.wait_for_output("READY")
    assert spin_until(executor, client.server_is_ready, timeout=30), peer.output()

    feedback: list = []
    goal = ExecuteInstruction.Goal(instruction="open the drawer", max_duration=20.0)
    send = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert spin_until(executor, send.done, timeout=15)
    handle = send.result()
    assert handle.accepted

    assert spin_until(executor, lambda: len(feedback) >= 3, timeout=15)
    assert [f.chunks for f in feedback[:3]] == [1, 2, 3]
    assert all(f.state == "running" for f in feedback)

    cancel = handle.cancel_goal_async()
    assert spin_until(executor, cancel.done, timeout=15)
    assert len(cancel.result().goals_canceling) == 1

    result_future = handle.get_result_async()
    assert spin_until(executor, result_future.done, timeout=15)
    outcome = result_future.result()
    assert outcome.status == GoalStatus.STATUS_CANCELED
    assert not outcome.result.success and "cancelled" in outcome.result.message
    assert outcome.result.chunks >= 3

    # An empty instruction is rejected at goal time.
    send = client.send_goal_async(ExecuteInstruction.Goal(instruction=""))
    assert spin_until(executor, send.done, timeout=15)
    assert not send.result().accepted
    client.destroy()
    node.destroy_node()


def test_children_are_reaped_even_when_they_ignore_sigint(processes):
    """The harness escalates to SIGTERM/SIGKILL and reaps: no child outlives its test."""
    import sys

    child = processes.start(
        "stubborn",
        [sys.executable, "-c", "import signal,time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "print('READY', flush=True); time.sleep(600)"],
    )
    child.wait_for_output("READY")
    child_pid = child.pid
    code = child.stop(timeout=0.5)
    assert code != 0 and not child.alive()
    import os

    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)
