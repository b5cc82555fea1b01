"""A separate-process peer for the interface tests: exercises ActionChunk, SetInstruction and
ExecuteInstruction over real ROS 2 middleware.

    python interface_peer.py publish   # publishes ActionChunk messages with known content
    python interface_peer.py services  # serves SetInstruction and ExecuteInstruction

Prints READY once its endpoints exist; stops on SIGINT.
"""

from __future__ import annotations

import sys
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from vla_adapter_ros.action import ExecuteInstruction
from vla_adapter_ros.msg import ActionChunk
from vla_adapter_ros.srv import SetInstruction

HORIZON, ACTION_DIM = 8, 7


def expected_actions(sequence: int) -> list[float]:
    """The content a published chunk with this sequence number carries (row-major)."""
    return [float(sequence) + 0.25 * i for i in range(HORIZON * ACTION_DIM)]


class ChunkPublisher(Node):
    def __init__(self):
        super().__init__("chunk_publisher")
        self.pub = self.create_publisher(ActionChunk, "action_chunk", 10)
        self.sequence = 0
        self.timer = self.create_timer(0.05, self.publish)

    def publish(self):
        msg = ActionChunk()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "base"
        msg.names = [f"fr3_joint{i + 1}" for i in range(ACTION_DIM)]
        msg.action_space = ActionChunk.JOINT_POSITION
        msg.horizon = HORIZON
        msg.action_dim = ACTION_DIM
        msg.actions = expected_actions(self.sequence)
        msg.dt = 0.1
        msg.gripper = [1.0 if i % 2 else 0.0 for i in range(HORIZON)]
        msg.instruction = "pick up the red cube"
        msg.model_id = "peer"
        msg.sequence = self.sequence
        msg.inference_ms = 12.5
        self.pub.publish(msg)
        self.sequence += 1


class InstructionServices(Node):
    def __init__(self):
        super().__init__("instruction_services")
        self.instruction = ""
        self.create_service(SetInstruction, "set_instruction", self.set_instruction)
        self.action_server = ActionServer(
            self,
            ExecuteInstruction,
            "execute_instruction",
            execute_callback=self.execute,
            goal_callback=self.on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
        )

    def set_instruction(self, request, response):
        text = request.instruction.strip()
        if not text:
            response.success, response.message = False, "instruction is empty"
        else:
            self.instruction = text
            response.success, response.message = True, f"instruction set: {text}"
        return response

    def on_goal(self, goal_request):
        return GoalResponse.ACCEPT if goal_request.instruction.strip() else GoalResponse.REJECT

    def execute(self, goal_handle):
        start = time.monotonic()
        limit = goal_handle.request.max_duration if goal_handle.request.max_duration > 0 else 30.0
        chunks = 0
        result = ExecuteInstruction.Result()
        while True:
            elapsed = time.monotonic() - start
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.success, result.message = False, "cancelled: holding position"
                break
            if elapsed > limit:
                goal_handle.abort()
                result.success, result.message = False, "timeout"
                break
            chunks += 1
            feedback = ExecuteInstruction.Feedback(chunks=chunks, elapsed=elapsed, state="running")
            goal_handle.publish_feedback(feedback)
            time.sleep(0.05)
        result.chunks, result.elapsed = chunks, time.monotonic() - start
        return result


def main() -> int:
    mode = sys.argv[1]
    rclpy.init()
    node = ChunkPublisher() if mode == "publish" else InstructionServices()
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    print("READY", flush=True)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
