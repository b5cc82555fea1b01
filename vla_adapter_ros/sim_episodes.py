"""Episodes of the simulation stack driven over ROS: reset, executor resync/enable, outcome.

Used by `collect` and `replay` (their client node, inside a :class:`~vla_adapter_ros.stack_session.StackSession`
running sim_node + executor_node):

    episodes = SimEpisodes(session)
    episodes.wait_ready(120)
    reply = episodes.reset("push_blue_left", 1000)      # executor disabled first, arm teleported
    episodes.enable()                                    # resync + enable, retried while it says "try again"
    outcome = episodes.wait_outcome(limit_s=8.0)        # success flag or simulated time limit
    episodes.disable()

Times are simulated seconds (the /clock sim_node publishes): the stack may run slower or faster than
real time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# After a reset the executor adopts the measured position only if the joint states of the last 0.2 s of
# simulated time agree (REST_WINDOW_S in control/executor_core.py): wait a little longer than that, so that
# every state it looks at is one of the new episode (never the arm's pose before the teleport).
SETTLE_AFTER_RESET_S = 0.3


@dataclass
class Outcome:
    success: bool
    sim_s: float  # simulated seconds from the start of the wait to the outcome
    wall_s: float
    timed_out: bool  # simulated time stopped advancing (the stack is stuck), not the episode's limit


class SimEpisodes:
    def __init__(self, session, sim_node: str = "/sim_node", executor_node: str = "/executor_node",
                 success_topic: str = "/vla/task_success", status_topic: str = "/vla/executor/status",
                 executor: bool = True):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from std_msgs.msg import Bool
        from std_srvs.srv import SetBool, Trigger

        from vla_adapter_ros.msg import ExecutorStatus
        from vla_adapter_ros.srv import ResetEpisode

        self.session = session
        self.has_executor = bool(executor)  # False: a stack without executor_node (collect --direct)
        node = session.node
        self.sim_time: float | None = None
        self.executor_state = ""
        self.executor_message = ""
        self.executor_counts: dict = {}
        self.executor_latency_ms = float("nan")
        # success counts only after a False seen since the reset (a True of the previous episode may be in flight)
        self._success = {"value": False, "armed": False}
        node.create_subscription(Bool, success_topic, self._on_success, 10)
        node.create_subscription(Clock, "/clock", self._on_clock,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
        node.create_subscription(ExecutorStatus, status_topic, self._on_status, 10)
        self._reset = node.create_client(ResetEpisode, f"{sim_node}/reset_episode")
        self._enable = node.create_client(SetBool, f"{executor_node}/enable")
        self._resync = node.create_client(Trigger, f"{executor_node}/resync")
        self._types = (ResetEpisode, SetBool, Trigger)

    # ------------------------------------------------------------------ callbacks
    def _on_success(self, msg) -> None:
        self._success["armed"] = self._success["armed"] or not msg.data
        self._success["value"] = bool(msg.data) and self._success["armed"]

    def _on_clock(self, msg) -> None:
        self.sim_time = msg.clock.sec + msg.clock.nanosec * 1e-9

    def _on_status(self, msg) -> None:
        self.executor_state, self.executor_message = msg.state, msg.message
        self.executor_counts = {"chunks_accepted": int(msg.chunks_accepted), "chunks_rejected": int(msg.chunks_rejected),
                                **{k: int(v) for k, v in zip(msg.clip_names, msg.clip_counts)}}
        self.executor_latency_ms = float(msg.chunk_latency_ms)

    def executor_counts_since(self, before: dict) -> dict:
        """The executor's chunk and safety-intervention counters that grew since ``before`` (a copy of
        ``executor_counts``)."""
        return {k: v - before.get(k, 0) for k, v in self.executor_counts.items() if v - before.get(k, 0)}

    @property
    def success(self) -> bool:
        return self._success["value"]

    # ------------------------------------------------------------------ steps
    def wait_ready(self, timeout: float) -> bool:
        """The simulation's and the executor's services answer, and the executor reports its state."""
        if not self.has_executor:
            return self.session.spin_until(lambda: self._reset.service_is_ready() and self.sim_time is not None, timeout)
        return self.session.spin_until(
            lambda: self._reset.service_is_ready() and self._enable.service_is_ready()
            and self._resync.service_is_ready() and self.executor_state != "" and self.sim_time is not None, timeout)

    def sim_wait(self, seconds: float) -> bool:
        """Spin for ``seconds`` of simulated time."""
        if self.sim_time is None and not self.session.spin_until(lambda: self.sim_time is not None, 30.0):
            return False
        end = self.sim_time + seconds
        return self.session.spin_until(lambda: self.sim_time >= end, 60.0 + 20.0 * seconds)

    def disable(self, timeout: float = 30.0) -> None:
        """Disable the executor and wait until it is `disabled` (while `stopping` it still commands the
        decelerating reference, which would pull a teleported arm back)."""
        if not self.has_executor:
            return
        _, set_bool, _ = self._types
        self.session.call(self._enable, set_bool.Request(data=False))
        if not self.session.spin_until(lambda: self.executor_state == "disabled", timeout):
            raise RuntimeError(f"executor did not come to rest within {timeout:.0f} s (state {self.executor_state})")

    def reset(self, task: str, seed: int):
        """Disable the executor, reset the simulation to (task, seed) and let the new state settle;
        returns the ResetEpisode reply."""
        reset_type, _, _ = self._types
        self.disable()
        reply = self.session.call(self._reset, reset_type.Request(task=task, seed=int(seed)))
        if not reply.success:
            raise RuntimeError(f"reset_episode({task}, {seed}) failed: {reply.message}")
        self._success["value"] = self._success["armed"] = False
        if not self.sim_wait(SETTLE_AFTER_RESET_S):
            raise RuntimeError("simulated time stopped advancing after the reset")
        return reply

    def enable(self, timeout: float = 30.0) -> None:
        """~/resync (the reset restarted the arm's controller at the new pose), then ~/enable, retried while
        the executor is not yet sure that the arm rests. RuntimeError when it refuses for another reason or
        enables without running (e.g. holding away from its start pose)."""
        if not self.has_executor:
            return
        _, set_bool, trigger = self._types
        answer = self.session.call(self._resync, trigger.Request())
        if not answer.success:
            raise RuntimeError(f"executor resync refused: {answer.message}")
        deadline = time.monotonic() + timeout
        while True:
            enabled = self.session.call(self._enable, set_bool.Request(data=True))
            if enabled.success and "holding" not in enabled.message:
                return
            if enabled.success or "try again" not in enabled.message or time.monotonic() > deadline:
                raise RuntimeError(f"executor did not start: {enabled.message}")
            self.sim_wait(0.05)

    def wait_outcome(self, limit_s: float, settle_s: float = 0.0) -> Outcome:
        """Until the task's success flag rises or ``limit_s`` simulated seconds pass; after a success, another
        ``settle_s`` simulated seconds."""
        if self.sim_time is None:
            self.session.spin_until(lambda: self.sim_time is not None, 30.0)
        t0_sim, t0_wall = self.sim_time or 0.0, time.monotonic()
        done = self.session.spin_until(lambda: self.success or (self.sim_time or 0.0) - t0_sim >= limit_s,
                                       60.0 + 20.0 * limit_s)
        ok = self.success
        if ok and settle_s > 0:
            self.sim_wait(settle_s)
        return Outcome(ok, (self.sim_time or 0.0) - t0_sim, time.monotonic() - t0_wall, not done)
