"""Simulation node: a MuJoCo Franka scene that publishes what a real robot publishes.

Publishes /joint_states (arm + fingers), two cameras (agentview, wrist) as sensor_msgs/Image, the
end-effector pose, /clock (the simulation time; run the other nodes with use_sim_time), and the
task's success flag. Accepts the commands the executor produces: JointTrajectory (interpolated like
a JointTrajectoryController), forward position commands, JointState commands, and a gripper
command (std_msgs/Float64, 0 open .. 1 closed). `~/reset_episode` starts a new seeded episode.

Expert mode (`expert: true`, for demonstration recording): at `expert_rate_hz` of simulation time the
node computes the scripted expert's action (vla_adapter_ros.sim.expert.ScriptedExpert) for the
current episode and publishes it like a policy-driven executor would: a short JointTrajectory
(header stamped with the simulation time; its first point is the expert's target) on `jtc_topic` and the gripper closure on `gripper_topic`;
it then follows them through its own subscriptions, so a recorder sees the commanded actions. The
expert starts `expert_start_delay_s` after each reset (the arm holds still until then, so a
recording started right after the reset sees the motion from its beginning).

Physics runs on its own thread at up to `real_time_factor` times wall time; when rendering cannot
keep up, simulation time simply runs slower (every node follows /clock).
"""

from __future__ import annotations

import os
import sys
import threading
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64, Float64MultiArray  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from vla_adapter_ros.nodes.common import (  # noqa: E402
    declare,
    run_node,
    seconds_to_duration,
    seconds_to_stamp,
    stamp_seconds,
)
from vla_adapter_ros.srv import ResetEpisode  # noqa: E402

DEFAULTS = {
    "task": "reach_red",
    "seed": 0,
    "start_jitter": 0.0,  # 0..1: seeded random start pose (TCP +-8/12/5 cm, yaw +-0.3 rad at 1); 0 = ready pose
    "joint_prefix": "fr3_",
    "real_time_factor": 1.0,  # upper bound of sim time / wall time
    "step_dt": 0.004,  # s of simulation per loop iteration (joint states and /clock at this period)
    "camera_rate_hz": 10.0,
    "image_width": 224,
    "image_height": 224,
    "camera_names": ["agentview", "wrist"],
    "camera_topics": ["/camera/agentview/image_raw", "/camera/wrist/image_raw"],
    "joint_state_topic": "/joint_states",
    "eef_pose_topic": "/eef_pose",
    "jtc_topic": "/fr3_arm_controller/joint_trajectory",
    "forward_topic": "/forward_position_controller/commands",
    "joint_command_topic": "/joint_command",
    "gripper_topic": "/gripper/command",
    "success_topic": "/vla/task_success",
    "frame_id": "base",
    # demonstration mode
    "expert": False,  # drive the arm with the scripted expert through jtc_topic / gripper_topic
    "expert_rate_hz": 20.0,  # expert actions per second of simulation time
    "expert_start_delay_s": 0.5,  # s of simulation time after a reset before the expert moves
}


class SimNode(Node):
    def __init__(self):
        # /clock is ours: this node itself runs on wall time.
        super().__init__("sim_node", parameter_overrides=[Parameter("use_sim_time", value=False)])
        self.p = p = declare(self, DEFAULTS)
        from vla_adapter_ros.sim.controllers import TrajectoryFollower
        from vla_adapter_ros.sim.env import GRIPPER_MAX_WIDTH_M, FrankaSimEnv
        from vla_adapter_ros.sim.tasks import get_task

        if len(p["camera_names"]) != len(p["camera_topics"]):
            raise ValueError("camera_names and camera_topics must have the same length")
        if p["expert"] and not float(p["expert_rate_hz"]) > 0:
            raise ValueError(f"expert_rate_hz must be > 0, got {p['expert_rate_hz']}")
        self._get_task = get_task
        self.task = get_task(p["task"])
        self.gripper_max = GRIPPER_MAX_WIDTH_M
        self.env = FrankaSimEnv(joint_prefix=p["joint_prefix"])
        self.seed = int(p["seed"])
        self.start_jitter = float(p["start_jitter"])  # validated by the first reset
        self.task.reset(self.env, self.seed, self.start_jitter)
        self.follower = TrajectoryFollower(self.env.joint_positions())
        self.lock = threading.Lock()
        self.success = False
        self.rejected_commands = 0
        self.time_offset = 0.0  # published time = physics time + offset (physics restarts at 0 on reset)

        self.clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.joint_pub = self.create_publisher(JointState, p["joint_state_topic"], 10)
        self.pose_pub = self.create_publisher(PoseStamped, p["eef_pose_topic"], 10)
        self.camera_pubs = [self.create_publisher(Image, t, 10) for t in p["camera_topics"]]
        self.success_pub = self.create_publisher(Bool, p["success_topic"], 10)
        self.create_subscription(JointTrajectory, p["jtc_topic"], self._on_trajectory, 10)
        self.create_subscription(Float64MultiArray, p["forward_topic"], self._on_forward, 10)
        self.create_subscription(JointState, p["joint_command_topic"], self._on_joint_command, 10)
        self.create_subscription(Float64, p["gripper_topic"], self._on_gripper, 10)
        self.create_service(ResetEpisode, "~/reset_episode", self._on_reset)
        self.expert = None  # ScriptedExpert of the current episode (expert mode, once started)
        self._expert_start = 0.0  # env.sim_time at which the expert of this episode starts
        self._expert_next = 0.0  # env.sim_time of the next expert action
        self._expert_q = None  # last commanded joint target
        self._expert_out = None  # (JointTrajectory, Float64) built under the lock, published after it
        self._expert_applied = (threading.Event(), threading.Event())  # trajectory, gripper callbacks ran
        if p["expert"]:
            self.jtc_pub = self.create_publisher(JointTrajectory, p["jtc_topic"], 10)
            self.gripper_pub = self.create_publisher(Float64, p["gripper_topic"], 10)
            self._reset_expert()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="physics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.get_logger().info(
            f"ready: task {self.task.name!r} seed {self.seed}: {self.task.instruction!r}; "
            f"{len(self.camera_pubs)} cameras at {self.p['camera_rate_hz']} Hz"
            + (f"; scripted expert at {self.p['expert_rate_hz']} Hz" if self.p["expert"] else "")
        )

    def stop(self) -> None:
        self._running = False
        self._thread.join(5.0)

    # ------------------------------------------------------------------ commands
    def _warn_reject(self, what: str, exc: Exception) -> None:
        self.rejected_commands += 1
        self.get_logger().warning(f"{what} rejected: {exc}", throttle_duration_sec=2.0)

    def _reorder(self, names, values) -> np.ndarray:
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in self.env.joint_names if n not in index]
        if missing:
            raise ValueError(f"missing joints {missing}")
        return np.array([values[index[n]] for n in self.env.joint_names], dtype=float)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if self.p["expert"] and stamp_seconds(msg.header.stamp) > 0 \
                and stamp_seconds(msg.header.stamp) < self._episode_stamp - 1e-6:
            return  # expert mode: a command of the previous episode, still in flight at the reset
        try:
            if not msg.points:
                raise ValueError("no points")
            times = [stamp_seconds(pt.time_from_start) for pt in msg.points]
            positions = [self._reorder(msg.joint_names, pt.positions) for pt in msg.points]
            velocities = ([self._reorder(msg.joint_names, pt.velocities) for pt in msg.points]
                          if all(len(pt.velocities) for pt in msg.points) else None)
            with self.lock:
                self.follower.set_trajectory(self.env.sim_time, times, positions, velocities)
            if self.p["expert"]:
                self._expert_applied[0].set()
        except (ValueError, IndexError) as exc:
            self._warn_reject("trajectory", exc)

    def _on_forward(self, msg: Float64MultiArray) -> None:
        try:
            with self.lock:
                self.follower.set_position(np.asarray(msg.data, dtype=float))
        except ValueError as exc:
            self._warn_reject("forward command", exc)

    def _on_joint_command(self, msg: JointState) -> None:
        try:
            q = self._reorder(msg.name, msg.position)
            with self.lock:
                self.follower.set_position(q)
        except (ValueError, IndexError) as exc:
            self._warn_reject("joint command", exc)

    def _on_gripper(self, msg: Float64) -> None:
        if not np.isfinite(msg.data):
            self._warn_reject("gripper command", ValueError(f"{msg.data}"))
            return
        closure = float(np.clip(msg.data, 0.0, 1.0))
        with self.lock:
            self.env.set_gripper(self.gripper_max * (1.0 - closure))
        if self.p["expert"]:
            self._expert_applied[1].set()

    def _on_reset(self, request, response):
        try:
            task = self._get_task(request.task) if request.task else self.task
        except (KeyError, ValueError) as exc:
            response.success, response.message = False, str(exc)
            return response
        with self.lock:
            self.task = task
            self.seed = int(request.seed) if request.seed >= 0 else self.seed + 1
            before = self.env.sim_time
            self.task.reset(self.env, self.seed, self.start_jitter)
            self.time_offset += before - self.env.sim_time  # /clock never goes backwards
            self.follower.reset(self.env.joint_positions())
            self.success = False
            if self.p["expert"]:
                self._reset_expert()
        response.success, response.task, response.seed = True, task.name, self.seed
        response.instruction = task.instruction
        response.message = f"episode: task {task.name} seed {self.seed}"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------------ expert mode
    def _reset_expert(self) -> None:
        """Forget the expert; a new one plans once the start delay has passed (caller holds the lock
        or the physics thread is not running yet)."""
        self.expert = None
        self._expert_start = self.env.sim_time + max(0.0, float(self.p["expert_start_delay_s"]))
        self._expert_next = self.env.sim_time  # hold commands during the delay
        self._expert_q = None
        self._hold_q = None
        # expert mode ignores stamped trajectories from before this (in flight across the reset)
        self._episode_stamp = self.env.sim_time + self.time_offset

    def _expert_tick(self, stamp) -> None:
        """Physics thread, lock held: publish the expert's action when one is due."""
        from vla_adapter_ros.sim.expert import ScriptedExpert

        now = self.env.sim_time
        if now + 1e-9 < self._expert_next:
            return
        dt = 1.0 / float(self.p["expert_rate_hz"])
        self._expert_next = max(self._expert_next + dt, now)
        if now + 1e-9 < self._expert_start:  # start delay: hold the reset pose (overrides stale commands)
            q = self._hold_q if self._hold_q is not None else self.env.joint_positions()
            self._hold_q = q
            closure = 1.0 - self.env.gripper_width_target / self.gripper_max
            self._publish_expert(stamp, q, np.zeros_like(q), dt, closure)
            return
        if self.expert is None:
            try:
                self.expert = ScriptedExpert(self.task, control_hz=float(self.p["expert_rate_hz"]))
                self.expert.reset(self.env)
            except ValueError as exc:  # a task without an expert
                self.get_logger().error(f"expert: {exc}", throttle_duration_sec=5.0)
                return
            self._expert_q = self.env.joint_positions()
        action = self.expert.act(self.env)
        q = np.asarray(action.q_target, dtype=float)
        qd = (q - self._expert_q) / dt
        self._expert_q = q
        self._publish_expert(stamp, q, qd, dt, float(action.gripper))

    def _send_expert(self) -> None:
        """Physics thread, lock released: publish the due expert command and wait (briefly) until our
        own subscriptions have applied it, so the expert acts without latency and the executor's
        callbacks are never starved by a physics loop that runs behind real time."""
        out, self._expert_out = self._expert_out, None
        if out is None:
            return
        for event in self._expert_applied:
            event.clear()
        self.jtc_pub.publish(out[0])
        self.gripper_pub.publish(out[1])
        deadline = time.monotonic() + 0.2
        for event in self._expert_applied:
            event.wait(max(0.0, deadline - time.monotonic()))

    def _publish_expert(self, stamp, q, qd, dt: float, closure: float) -> None:
        """One point: the expert's target at +dt with the ramp's velocity (like runner.apply_action)."""
        msg = JointTrajectory(joint_names=list(self.env.joint_names))
        msg.header.stamp = stamp
        msg.points = [JointTrajectoryPoint(positions=q.tolist(), velocities=qd.tolist())]
        for k, point in enumerate(msg.points, start=1):
            t = k * dt
            point.time_from_start = seconds_to_duration(t)
        self._expert_out = (msg, Float64(data=float(np.clip(closure, 0.0, 1.0))))

    # ------------------------------------------------------------------ physics loop
    def _loop(self) -> None:
        p = self.p
        step_dt = float(p["step_dt"])
        substeps = max(1, int(round(step_dt / self.env.timestep)))
        camera_period = 1.0 / float(p["camera_rate_hz"])
        next_camera = 0.0
        next_success = 0.0
        wall_start, sim_start = time.monotonic(), self.env.sim_time + self.time_offset
        rtf = float(p["real_time_factor"])
        while self._running and rclpy.ok():
            with self.lock:
                q_ref, qd_ref = self.follower.sample(self.env.sim_time)
                self.env.set_joint_targets(q_ref, qd_ref)
                self.env.step(substeps)
                t = self.env.sim_time + self.time_offset
                stamp = seconds_to_stamp(t)
                self.clock_pub.publish(Clock(clock=stamp))
                self._publish_state(stamp)
                if self.p["expert"]:
                    self._expert_tick(stamp)
                if t >= next_camera:
                    next_camera = t + camera_period
                    self._publish_cameras(stamp)
                if t >= next_success:
                    next_success = t + 0.1
                    self.success = self.success or bool(self.task.success(self.env))
                    self.success_pub.publish(Bool(data=self.success))
            if self.p["expert"]:
                self._send_expert()
            ahead = (t - sim_start) / rtf - (time.monotonic() - wall_start)
            if ahead > 0:
                time.sleep(ahead)

    def _publish_state(self, stamp) -> None:
        env = self.env
        msg = JointState(name=env.joint_names + env.finger_joint_names,
                         position=np.concatenate([env.joint_positions(), env.finger_positions()]).tolist(),
                         velocity=np.concatenate([env.joint_velocities(), env.finger_velocities()]).tolist())
        msg.header.stamp = stamp
        self.joint_pub.publish(msg)
        pose = env.eef_pose()
        out = PoseStamped()
        out.header.stamp, out.header.frame_id = stamp, self.p["frame_id"]
        out.pose.position.x, out.pose.position.y, out.pose.position.z = (float(v) for v in pose.position)
        q = pose.quat_xyzw
        out.pose.orientation.x, out.pose.orientation.y, out.pose.orientation.z, out.pose.orientation.w = (
            float(v) for v in q)
        self.pose_pub.publish(out)

    def _publish_cameras(self, stamp) -> None:
        width, height = int(self.p["image_width"]), int(self.p["image_height"])
        for name, pub in zip(self.p["camera_names"], self.camera_pubs):
            rgb = self.env.render(name, width, height)
            msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=rgb.tobytes())
            msg.header.stamp, msg.header.frame_id = stamp, name
            pub.publish(msg)


def main(argv: list[str] | None = None) -> int:
    # Single-threaded: all callbacks share one group, and rclpy's MultiThreadedExecutor busy-spins
    # (100 % CPU, starving the physics thread of the GIL) while a callback of a busy group waits.
    return run_node(SimNode, "sim_node", argv, setup=SimNode.start, teardown=SimNode.stop, num_threads=1)


if __name__ == "__main__":
    sys.exit(main())
