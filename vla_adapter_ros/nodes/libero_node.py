"""LIBERO bridge node: a LIBERO task (robosuite 1.4, Franka Panda, OSC_POSE at 20 Hz) as ROS topics.

Runs from the separate LIBERO environment (`.venv-libero`, scripts/setup_libero.sh); imports only
rclpy, numpy, our interfaces and, lazily, libero. Publishes what the official VLA-Adapter LIBERO
evaluation feeds the model, so the same policy and executor nodes as on a real robot can be checked
against the benchmark:
  camera_topics   agentview and wrist sensor_msgs/Image, rgb8, upright (LIBERO renders upside down)
  eef_pose_topic  geometry_msgs/PoseStamped, LIBERO's eef position and quaternion (world frame)
  joint_state_topic  arm joints + the two finger joints (`joint_prefix` names)
  proprio_topic   std_msgs/Float64MultiArray: the official 8-d proprio (diagnostics)
  /clock          simulation time: 0.05 s per control step (run the other nodes with use_sim_time)
  success_topic   std_msgs/Bool, true once the task succeeded
  episode_topic   std_msgs/String, JSON: task, init_state, step, max_steps, hold_steps, done, success
`~/reset_episode` (ResetEpisode): task "libero_spatial/3" (or a bare index in the current suite),
seed = the initial-state number (< 0: the next one); runs the wait steps and answers with the
task's instruction.

Stepping is lockstep with the executor (`output: eef_delta`): each command
[dx dy dz (m), drx dry drz (rad), gripper 0 open..1 closed] on `command_topic` is applied in exactly
one env step, converted back to controller units (vla_adapter_ros.libero.core.env_action). When no
command comes within `command_timeout_s` (wall time), the env steps with a hold (zero delta, last
gripper) so that time moves on. With `freeze_on_wait`, a "wait" command (the executor's queue is
empty and it asked for a chunk) freezes the world until the next ActionChunk appears on
`chunk_topic` (at most `inference_timeout_s`), like the official evaluation, which steps only when
the model has answered; the wait is then applied as one hold step. Holds do not count against the
episode's step budget. The episode ends at success or after `max_steps` policy steps (0 = the
suite's limit); then the node waits for the next reset.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading

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
from std_msgs.msg import Bool, Float64MultiArray, String  # noqa: E402

from vla_adapter_ros.libero.core import CONTROL_HZ, env_action, hold_action, parse_task_spec  # noqa: E402
from vla_adapter_ros.nodes.common import (  # noqa: E402
    Param,
    check_specs,
    declare,
    live_parameters,
    run_node,
    seconds_to_stamp,
)
from vla_adapter_ros.msg import ActionChunk  # noqa: E402
from vla_adapter_ros.srv import ResetEpisode  # noqa: E402

DEFAULTS = {
    "task": "libero_spatial/0",  # SUITE/INDEX of the first episode
    "init_state": 0,  # initial-state number of the first episode
    "max_steps": 0,  # policy steps per episode; 0 = the suite's official limit
    "num_steps_wait": 10,  # no-op steps after every reset (objects settle)
    "image_size": 256,  # LIBERO renders square images of this size
    "command_timeout_s": 1.0,  # wall s to wait for a command before stepping with a hold
    "freeze_on_wait": True,  # a "wait" command freezes the world until the next chunk
    "inference_timeout_s": 30.0,  # wall s of the longest freeze (then one hold step: the executor asks again)
    "joint_prefix": "panda_",  # joint names: <prefix>joint1..7, <prefix>finger_joint1..2
    "camera_topics": ["camera/agentview/image_raw", "camera/wrist/image_raw"],
    "joint_state_topic": "joint_states",
    "eef_pose_topic": "eef_pose",
    "proprio_topic": "libero/proprio",
    "command_topic": "eef_delta_command",
    "chunk_topic": "vla/action_chunk",
    "success_topic": "vla/task_success",
    "episode_topic": "libero/episode",
    "frame_id": "world",
    "start_episode": True,  # reset to `task` / `init_state` at start-up
}

# what each parameter means; `live` ones can be changed with `ros2 param set`
PARAMETERS = {
    "task": Param("SUITE/INDEX of the first episode, e.g. libero_spatial/0"),
    "init_state": Param("initial-state number of the first episode", range=(0, 100000)),
    "max_steps": Param("policy steps per episode; 0 = the suite's official limit; used from the next reset on",
                       range=(0, 1000000), live=True),
    "num_steps_wait": Param("no-op steps after every reset (objects settle)", range=(0, 10000)),
    "image_size": Param("LIBERO renders square images of this size (pixels)", range=(16, 4096)),
    "command_timeout_s": Param("wall time to wait for a command before stepping with a hold (s)",
                               range=(0.001, 3600.0), live=True),
    "freeze_on_wait": Param("a 'wait' command freezes the world until the next chunk", live=True),
    "inference_timeout_s": Param("wall time of the longest freeze (s)", range=(0.0, 3600.0), live=True),
    "joint_prefix": Param("joint names: <prefix>joint1..7, <prefix>finger_joint1..2"),
    "camera_topics": Param("two sensor_msgs/Image outputs: agentview, wrist"),
    "joint_state_topic": Param("sensor_msgs/JointState output"),
    "eef_pose_topic": Param("geometry_msgs/PoseStamped output"),
    "proprio_topic": Param("std_msgs/Float64MultiArray output: the official 8-d proprio"),
    "command_topic": Param("eef_delta command input (executor output eef_delta)"),
    "chunk_topic": Param("ActionChunk input (ends a freeze)"),
    "success_topic": Param("std_msgs/Bool task success output"),
    "episode_topic": Param("std_msgs/String JSON episode status output"),
    "frame_id": Param("frame_id of the poses"),
    "start_episode": Param("reset to task / init_state at start-up"),
}
check_specs(DEFAULTS, PARAMETERS)


class LiberoNode(Node):
    def __init__(self):
        super().__init__("libero_node", parameter_overrides=[Parameter("use_sim_time", value=False)])
        self.p = p = declare(self, DEFAULTS, PARAMETERS)
        from vla_adapter_ros.libero.episode import LiberoEpisode

        if len(p["camera_topics"]) != 2:
            raise ValueError("camera_topics: give two topics (agentview, wrist)")
        if not float(p["command_timeout_s"]) > 0:
            raise ValueError(f"command_timeout_s must be > 0, got {p['command_timeout_s']}")
        self.spec = parse_task_spec(p["task"])
        self.init_state = int(p["init_state"])
        self.episode = LiberoEpisode(image_size=int(p["image_size"]), num_steps_wait=int(p["num_steps_wait"]))
        prefix = p["joint_prefix"]
        self.joint_names = [f"{prefix}joint{i}" for i in range(1, 8)] + [f"{prefix}finger_joint{i}" for i in (1, 2)]
        self.lock = threading.Lock()  # the episode (physics thread vs. reset service)
        self.commands: collections.deque = collections.deque(maxlen=64)
        self.command_ready = threading.Condition()
        self.sim_time = 0.0
        self.gripper = -1.0  # last gripper action (env units: -1 open, +1 closed)
        self.hold_steps = 0
        self.rejected_commands = 0
        self.episode_count = 0
        self.chunks_seen = 0  # chunks published by the policy (freeze_on_wait)
        self.chunks_released = 0  # of those, the ones that ended a freeze
        self.froze = False  # the last step was a wait that ended a freeze

        self.clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.camera_pubs = [self.create_publisher(Image, t, 10) for t in p["camera_topics"]]
        self.joint_pub = self.create_publisher(JointState, p["joint_state_topic"], 10)
        self.pose_pub = self.create_publisher(PoseStamped, p["eef_pose_topic"], 10)
        self.proprio_pub = self.create_publisher(Float64MultiArray, p["proprio_topic"], 10)
        self.success_pub = self.create_publisher(Bool, p["success_topic"], 10)
        self.episode_pub = self.create_publisher(String, p["episode_topic"], 10)
        self.create_subscription(Float64MultiArray, p["command_topic"], self._on_command, 10)
        self.create_subscription(ActionChunk, p["chunk_topic"], self._on_chunk, 10)
        self.create_service(ResetEpisode, "~/reset_episode", self._on_reset)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="libero", daemon=True)
        live_parameters(self, PARAMETERS, self.p)

    def start(self) -> None:
        if self.p["start_episode"]:
            info = self._reset(self.spec, self.init_state)
            self.get_logger().info(f"episode: {info.spec} init state {self.episode.init_state}: {info.language!r}")
        self._thread.start()
        self.get_logger().info(f"ready: lockstep at {CONTROL_HZ:.0f} Hz of simulation time, "
                               f"commands on {self.resolve_topic_name(self.p['command_topic'])}")

    def stop(self) -> None:
        self._running = False
        with self.command_ready:
            self.command_ready.notify_all()
        if self._thread.is_alive():
            self._thread.join(1.5)
        self.episode.close()

    # ------------------------------------------------------------------ inputs
    def _on_command(self, msg: Float64MultiArray) -> None:
        kind = msg.layout.dim[0].label if msg.layout.dim else "step"
        with self.command_ready:
            self.commands.append((list(msg.data), kind))
            self.command_ready.notify_all()

    def _on_chunk(self, _msg: ActionChunk) -> None:
        with self.command_ready:
            self.chunks_seen += 1
            self.command_ready.notify_all()

    def _freeze(self) -> None:
        """Wait (world frozen) until a chunk newer than the last freeze comes; once per wait streak."""
        if not self.p["freeze_on_wait"] or self.froze:
            return
        with self.command_ready:
            self.command_ready.wait_for(lambda: self.chunks_seen > self.chunks_released or not self._running,
                                        float(self.p["inference_timeout_s"]))
            self.chunks_released = self.chunks_seen
        self.froze = True

    def _on_reset(self, request, response):
        try:
            spec = parse_task_spec(request.task, default_suite=self.spec.suite) if request.task else self.spec
            init_state = int(request.seed) if request.seed >= 0 else self.episode.init_state + 1
            info = self._reset(spec, init_state)
        except (ValueError, KeyError, IndexError) as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.task, response.seed = True, str(info.spec), self.episode.init_state
        response.instruction = info.language
        response.message = (f"episode {self.episode_count}: {info.spec} init state {self.episode.init_state} "
                            f"({self.episode.max_steps} steps max)")
        self.get_logger().info(f"{response.message}: {info.language!r}")
        return response

    def _reset(self, spec, init_state: int):
        with self.lock:
            info = self.episode.reset(spec, init_state, max_steps=int(self.p["max_steps"]))
            self.spec = spec
            self.gripper = -1.0
            self.hold_steps = 0
            self.episode_count += 1
            with self.command_ready:
                self.commands.clear()  # commands in flight belong to the previous episode
                self.chunks_released = self.chunks_seen
            self.froze = False
            self._publish(self.episode.last_obs)
        return info

    # ------------------------------------------------------------------ physics
    def _next_command(self):
        """The next command, or None after command_timeout_s (then the env steps with a hold)."""
        with self.command_ready:
            self.command_ready.wait_for(lambda: self.commands or not self._running,
                                        float(self.p["command_timeout_s"]))
            return self.commands.popleft() if self.commands else None

    def _loop(self) -> None:
        while self._running and rclpy.ok():
            if self.episode.done:  # wait for a reset; keep the clock and the state alive
                with self.lock:
                    if self.episode.last_obs is not None:
                        self._publish(self.episode.last_obs, cameras=False)
                self._next_command()
                continue
            command = self._next_command()
            data, kind = command if command is not None else (None, "timeout")
            if kind == "wait":
                self._freeze()
            else:
                self.froze = False
            with self.lock:
                if self.episode.done:
                    continue
                action = None
                if data is not None:
                    try:
                        action = env_action(data)
                    except ValueError as exc:
                        self.rejected_commands += 1
                        self.get_logger().warning(f"command rejected: {exc}", throttle_duration_sec=2.0)
                counts = action is not None and kind == "step"
                if not counts:
                    self.hold_steps += 1
                if action is None:
                    action = hold_action(self.gripper)
                self.gripper = float(action[6])
                obs = self.episode.step(action, counts=counts)
                self.sim_time += 1.0 / CONTROL_HZ
                self._publish(obs)
                if self.episode.done:
                    self.get_logger().info(
                        f"episode {self.episode_count} ({self.episode.task.spec} init state {self.episode.init_state}): "
                        f"{'SUCCESS' if self.episode.success else 'FAILURE'} after {self.episode.steps} steps "
                        f"({self.hold_steps} holds)")

    def _publish(self, obs: dict, cameras: bool = True) -> None:
        stamp = seconds_to_stamp(self.sim_time)
        joints = JointState(name=list(self.joint_names),
                            position=np.concatenate([obs["joint_pos"], obs["gripper_qpos"]]).tolist(),
                            velocity=np.concatenate([obs["joint_vel"], obs["gripper_qvel"]]).tolist())
        joints.header.stamp = stamp
        self.joint_pub.publish(joints)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, self.p["frame_id"]
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in obs["eef_pos"])
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in obs["eef_quat_xyzw"])
        self.pose_pub.publish(pose)
        self.proprio_pub.publish(Float64MultiArray(data=obs["proprio"].tolist()))
        if cameras:
            for name, pub in zip(("agentview", "wrist"), self.camera_pubs):
                img = obs[name]
                msg = Image(height=img.shape[0], width=img.shape[1], encoding="rgb8", step=img.shape[1] * 3,
                            data=img.tobytes())
                msg.header.stamp, msg.header.frame_id = stamp, name
                pub.publish(msg)
        ep = self.episode
        self.success_pub.publish(Bool(data=bool(ep.success)))
        status = {"episode": self.episode_count, "task": str(ep.task.spec), "instruction": ep.task.language,
                  "init_state": ep.init_state, "step": ep.steps, "max_steps": ep.max_steps, "physics_steps": ep.physics_steps,
                  "hold_steps": self.hold_steps, "done": ep.done, "success": bool(ep.success),
                  "sim_time": round(self.sim_time, 3)}
        self.episode_pub.publish(String(data=json.dumps(status)))
        # /clock last: a node that acts on the new time (the executor's tick) has the observation
        self.clock_pub.publish(Clock(clock=stamp))


def main(argv: list[str] | None = None) -> int:
    return run_node(LiberoNode, "libero_node", argv, setup=LiberoNode.start, teardown=LiberoNode.stop, num_threads=1)


if __name__ == "__main__":
    sys.exit(main())
