"""Simulation node: a MuJoCo Franka scene that publishes what a real robot publishes.

Publishes /joint_states (arm + fingers), two cameras (agentview, wrist) as sensor_msgs/Image, the
end-effector pose, /clock (the simulation time; run the other nodes with use_sim_time), and the
task's success flag. Accepts the commands the executor produces: JointTrajectory (interpolated like
a JointTrajectoryController), forward position commands, JointState commands, and a gripper
command (std_msgs/Float64, 0 open .. 1 closed). `~/reset_episode` starts a new seeded episode.

Oracle mode (`oracle: true`; what `collect` records and `replay --oracle` measures): the scripted expert
acts as the policy. Each chunk request of the executor (std_msgs/Header on `request_topic`, as a
policy_node with trigger `request` gets them) is answered on `chunk_topic` with an ActionChunk built like
policy_node builds its own: stamped with the newest camera frame's time, `oracle_horizon` rows of EEF
deltas `oracle_dt` apart (default: the camera period, i.e. the dataset's frame period) and a gripper
closure per row, computed by vla_adapter_ros.sim.oracle.ExpertOracle from the tool pose at that frame
and the expert's plan (planned at the first request after a reset, timed to fit the executor's limits
`oracle_robot`). The executor then commands the arm through its limits, as it would for a model.

Direct expert mode (`expert: true`, the old way of recording; its motions exceed the executor's limits): at `expert_rate_hz` of simulation time the
node computes the scripted expert's action (vla_adapter_ros.sim.expert.ScriptedExpert) for the
current episode and publishes it like a policy-driven executor would: a short JointTrajectory
(header stamped with the simulation time; its first point is the expert's target) on `jtc_topic` and the gripper closure on `gripper_topic`;
it then follows them through its own subscriptions, so a recorder sees the commanded actions. The
expert starts `expert_start_delay_s` after each reset (the arm holds still until then, so a
recording started right after the reset sees the motion from its beginning).

What RViz and Foxglove need (vla_adapter_ros.sim.ros_description): `robot_description` (the scene's arm,
hand and table as a URDF, transient local: late subscribers get it), one sensor_msgs/CameraInfo per camera
next to its image (`camera/<name>/camera_info`, same stamp and frame), and in a ROS install /tf (joints,
cubes; at the camera rate with the images' stamps, so every frame has its exact transforms) and /tf_static
(fixed links, TCP, camera optical frames). /tf needs tf2_msgs, which has no pip wheel: without it the node
says so once and publishes everything else. `tf_prefix` is put in front of every frame id the node
publishes (TF, URDF links, eef_pose, images, camera_info) so that namespaced sims can share /tf; the oracle's
ActionChunk keeps `frame_id` as policy_node's chunks do.

Physics runs on its own thread at up to `real_time_factor` times wall time; when rendering cannot
keep up, simulation time simply runs slower (every node follows /clock).

Lockstep (`lockstep: true`, default): while a controller streams arm commands (the last one came less
than `lockstep_window_s` of simulated time ago), each physics step waits (at most `lockstep_timeout_s`
of wall time) for the next command before the following step, like a ros2_control loop that runs its
controller every cycle. On a busy machine the executor (250 Hz of simulated time) would otherwise skip
control periods, and its reference, which advances one period per tick, would fall behind the time its
chunks are meant for. Without commands (executor disabled, expert mode) the physics runs free.
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
from geometry_msgs.msg import PoseStamped, TransformStamped  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import Bool, Float64, Float64MultiArray, Header, String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

from vla_adapter_ros.nodes.common import (  # noqa: E402
    Param,
    check_specs,
    declare,
    live_parameters,
    run_node,
    seconds_to_duration,
    seconds_to_stamp,
    stamp_seconds,
)
from vla_adapter_ros.srv import ResetEpisode  # noqa: E402

try:  # part of every ROS 2 install, but no pip wheel: the pip-only venv runs without /tf
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None

NO_TF = "no /tf: tf2_msgs is not installed (it comes with every ROS 2 install)"
# what tf2's broadcasters use: /tf_static latched (depth 1, transient local), /tf deep enough for bursts
TF_STATIC_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
TF_QOS = QoSProfile(depth=100)
# robot_state_publisher's robot_description QoS: a late RViz still gets it
DESCRIPTION_QOS = TF_STATIC_QOS

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
    "camera_topics": ["camera/agentview/image_raw", "camera/wrist/image_raw"],
    "joint_state_topic": "joint_states",
    "eef_pose_topic": "eef_pose",
    "jtc_topic": "fr3_arm_controller/joint_trajectory",
    "forward_topic": "forward_position_controller/commands",
    "joint_command_topic": "joint_command",
    "gripper_topic": "gripper/command",
    "success_topic": "vla/task_success",
    "frame_id": "base",
    "tf_prefix": "",  # prepended to every published frame id (TF, URDF, eef_pose, images): sims sharing /tf
    "robot_description_topic": "robot_description",
    # demonstration mode
    "expert": False,  # drive the arm with the scripted expert through jtc_topic / gripper_topic
    "expert_rate_hz": 20.0,  # expert actions per second of simulation time
    "expert_start_delay_s": 0.5,  # s of simulation time after a reset before the expert moves
    # lockstep with a streaming controller (see the module docstring)
    "lockstep": True,
    "lockstep_window_s": 0.05,  # s of simulated time: a controller that sent within this counts as streaming
    "lockstep_timeout_s": 0.1,  # s of wall time a step waits at most for the next command
    # oracle mode: the scripted expert answers the executor's chunk requests (see the module docstring)
    "oracle": False,
    "oracle_robot": "fr3_sim",  # the executor's limits file (bundled name or path): the plan fits its limits
    "oracle_horizon": 8,  # rows per chunk
    "oracle_dt": 0.0,  # s between rows; 0 = 1 / camera_rate_hz (the dataset's frame period)
    "oracle_max_speed": 0.35,  # m/s, peak tool speed of the plan (the joint limits may slow it further)
    "chunk_topic": "vla/action_chunk",
    "request_topic": "vla/request_chunk",
}

# what each parameter means; `live` ones can be changed with `ros2 param set`
PARAMETERS = {
    "task": Param("task of the first episode: reach_red, push_blue_left or lift_green (~/reset_episode changes it)"),
    "seed": Param("placement seed of the first episode", range=(0, 2**31 - 1)),
    # (no descriptor range: the task's reset gives the clearer refusal, "start jitter must be in [0, 1]")
    "start_jitter": Param("0..1: seeded random start pose (TCP +-8/12/5 cm, yaw +-0.3 rad at 1); 0 = ready pose; "
                          "used from the next reset on", live=True),
    "joint_prefix": Param("prefix of the joint names (fr3_ -> fr3_joint1..7, fr3_finger_joint1..2)"),
    "real_time_factor": Param("upper bound of simulation time / wall time", range=(0.01, 100.0), live=True),
    "step_dt": Param("simulated time per loop iteration (s); joint states and /clock at this period",
                     range=(0.0005, 0.1)),
    "camera_rate_hz": Param("camera rate in simulated time (Hz)", range=(0.1, 1000.0)),
    "image_width": Param("camera image width (pixels)", range=(16, 4096)),
    "image_height": Param("camera image height (pixels)", range=(16, 4096)),
    "camera_names": Param("cameras of the scene to render"),
    "camera_topics": Param("one sensor_msgs/Image topic per camera"),
    "joint_state_topic": Param("sensor_msgs/JointState output (arm and fingers)"),
    "eef_pose_topic": Param("geometry_msgs/PoseStamped output (hand TCP)"),
    "jtc_topic": Param("JointTrajectory command input"),
    "forward_topic": Param("Float64MultiArray position command input"),
    "joint_command_topic": Param("JointState command input"),
    "gripper_topic": Param("std_msgs/Float64 gripper command input, 0 open .. 1 closed"),
    "success_topic": Param("std_msgs/Bool task success output"),
    "frame_id": Param("frame_id of the poses: the robot base, root link of robot_description and of the TF tree"),
    "tf_prefix": Param("prepended to every frame id the node publishes (TF, robot_description links, eef_pose, "
                       "images, camera_info) so that namespaced sims can share /tf; empty: none"),
    "robot_description_topic": Param("std_msgs/String output (transient local): the URDF of the scene's robot "
                                     "and table, for RViz/Foxglove"),
    "expert": Param("direct expert mode: the scripted expert drives jtc_topic / gripper_topic itself"),
    "expert_rate_hz": Param("expert mode: expert actions per second of simulated time", range=(0.1, 1000.0)),
    "expert_start_delay_s": Param("expert mode: simulated time after a reset before the expert moves (s); "
                                  "used from the next reset on", range=(0.0, 60.0), live=True),
    "lockstep": Param("while a controller streams commands, each physics step waits for its next one"),
    "lockstep_window_s": Param("lockstep: a controller that sent within this much simulated time is streaming (s)",
                               range=(0.0, 10.0)),
    "lockstep_timeout_s": Param("lockstep: wall time a step waits at most for the next command (s)",
                                range=(0.0, 10.0)),
    "oracle": Param("oracle mode: the scripted expert answers the executor's chunk requests"),
    "oracle_robot": Param("oracle mode: the executor's limits file (bundled name or path); the plan fits it"),
    "oracle_horizon": Param("oracle mode: rows per chunk", range=(1, 1000)),
    "oracle_dt": Param("oracle mode: time between rows (s); 0 = 1 / camera_rate_hz", range=(0.0, 10.0)),
    "oracle_max_speed": Param("oracle mode: peak tool speed of the plan (m/s); used from the next episode on",
                              range=(0.01, 2.0), live=True),
    "chunk_topic": Param("oracle mode: ActionChunk output"),
    "request_topic": Param("oracle mode: std_msgs/Header chunk requests input"),
}
check_specs(DEFAULTS, PARAMETERS)


class SimNode(Node):
    def __init__(self):
        # /clock is ours: this node itself runs on wall time.
        super().__init__("sim_node", parameter_overrides=[Parameter("use_sim_time", value=False)])
        self.p = p = declare(self, DEFAULTS, PARAMETERS)
        from vla_adapter_ros.sim.controllers import TrajectoryFollower
        from vla_adapter_ros.sim.env import GRIPPER_MAX_WIDTH_M, FrankaSimEnv
        from vla_adapter_ros.sim.tasks import get_task

        if len(p["camera_names"]) != len(p["camera_topics"]):
            raise ValueError("camera_names and camera_topics must have the same length")
        if p["expert"] and not float(p["expert_rate_hz"]) > 0:
            raise ValueError(f"expert_rate_hz must be > 0, got {p['expert_rate_hz']}")
        if p["expert"] and p["oracle"]:
            raise ValueError("expert and oracle are two ways to drive the arm: set one of them")
        self._get_task = get_task
        self.task = get_task(p["task"])
        self.gripper_max = GRIPPER_MAX_WIDTH_M
        self.env = FrankaSimEnv(joint_prefix=p["joint_prefix"])
        self.seed = int(p["seed"])
        self.start_jitter = float(p["start_jitter"])  # validated by the first reset (live: see _apply_live)
        self.task.reset(self.env, self.seed, self.start_jitter)
        self.follower = TrajectoryFollower(self.env.joint_positions())
        self.lock = threading.Lock()
        self.success = False
        self.rejected_commands = 0
        self.time_offset = 0.0  # published time = physics time + offset (physics restarts at 0 on reset)
        self._command_seen = threading.Event()  # an arm command arrived since the last step (lockstep)
        self._last_command_time = -float("inf")  # published time of the last arm command's arrival
        self._reset_wall_ns = 0  # time.time_ns() of the last reset: commands published before it are stale
        self.stale_commands = 0

        self.clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.joint_pub = self.create_publisher(JointState, p["joint_state_topic"], 10)
        self.pose_pub = self.create_publisher(PoseStamped, p["eef_pose_topic"], 10)
        self.camera_pubs = [self.create_publisher(Image, t, 10) for t in p["camera_topics"]]
        self._init_description()
        self.success_pub = self.create_publisher(Bool, p["success_topic"], 10)
        # command callbacks get the message info (publication time): see _stale
        self.create_subscription(JointTrajectory, p["jtc_topic"], lambda m, i: self._on_trajectory(m, i), 10)
        self.create_subscription(Float64MultiArray, p["forward_topic"], lambda m, i: self._on_forward(m, i), 10)
        self.create_subscription(JointState, p["joint_command_topic"], lambda m, i: self._on_joint_command(m, i), 10)
        self.create_subscription(Float64, p["gripper_topic"], lambda m, i: self._on_gripper(m, i), 10)
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
        self.oracle = None  # ExpertOracle of the current episode (oracle mode)
        self._camera_obs = None  # (env.sim_time, tool pose 4x4) of the newest camera frame
        self.oracle_chunks = 0
        if p["oracle"]:
            from vla_adapter_ros.control import load_robot_limits
            from vla_adapter_ros.msg import ActionChunk

            self._oracle_limits = load_robot_limits(p["oracle_robot"])
            self._oracle_dt = float(p["oracle_dt"]) or 1.0 / float(p["camera_rate_hz"])
            if int(p["oracle_horizon"]) < 1 or not self._oracle_dt > 0:
                raise ValueError("oracle_horizon must be >= 1 and oracle_dt >= 0")
            self.chunk_pub = self.create_publisher(ActionChunk, p["chunk_topic"], 10)
            self.create_subscription(Header, p["request_topic"], self._on_chunk_request, 10)
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="physics", daemon=True)
        live_parameters(self, PARAMETERS, self.p, validate=self._validate_live, apply=self._apply_live)

    @staticmethod
    def _validate_live(values: dict, changes: dict):
        if "start_jitter" in changes and not 0.0 <= float(changes["start_jitter"]) <= 1.0:
            return f"start jitter must be in [0, 1], got {changes['start_jitter']}"
        return None

    def _apply_live(self, changes: dict) -> None:
        if "start_jitter" in changes:
            with self.lock:
                self.start_jitter = float(changes["start_jitter"])

    def start(self) -> None:
        self._thread.start()
        self.get_logger().info(
            f"ready: task {self.task.name!r} seed {self.seed}: {self.task.instruction!r}; "
            f"{len(self.camera_pubs)} cameras at {self.p['camera_rate_hz']} Hz"
            + (f"; scripted expert at {self.p['expert_rate_hz']} Hz" if self.p["expert"] else "")
            + (f"; oracle: expert chunks on {self.resolve_topic_name(self.p['chunk_topic'])} on request, within the "
               f"limits of {self._oracle_limits.name!r}" if self.p["oracle"] else "")
        )

    def stop(self) -> None:
        """Stop the physics thread (it closes its renderers itself: their GL context belongs to it)
        before the node and the ROS context go."""
        self._running = False
        self._command_seen.set()  # a lockstep wait ends now
        if self._thread.is_alive():
            self._thread.join(1.5)
        elif self._thread.ident is None:  # never started: nothing rendered on another thread
            self.env.close()

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

    def _stale(self, info) -> bool:
        """A command published before the last reset (still queued when the scene was reset: applied now it
        would pull the teleported arm back toward the previous episode's pose). Publication times are the
        middleware's source timestamps (wall clock of this machine); ignored and counted."""
        source = int(info.get("source_timestamp", 0) or 0) if info is not None else 0
        if 0 < source < self._reset_wall_ns:
            self.stale_commands += 1
            return True
        return False

    def _on_trajectory(self, msg: JointTrajectory, info=None) -> None:
        if self._stale(info):
            return
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
                self._note_command()
            if self.p["expert"]:
                self._expert_applied[0].set()
        except (ValueError, IndexError) as exc:
            self._warn_reject("trajectory", exc)

    def _on_forward(self, msg: Float64MultiArray, info=None) -> None:
        if self._stale(info):
            return
        try:
            with self.lock:
                self.follower.set_position(np.asarray(msg.data, dtype=float))
                self._note_command()
        except ValueError as exc:
            self._warn_reject("forward command", exc)

    def _on_joint_command(self, msg: JointState, info=None) -> None:
        if self._stale(info):
            return
        try:
            q = self._reorder(msg.name, msg.position)
            with self.lock:
                self.follower.set_position(q)
                self._note_command()
        except (ValueError, IndexError) as exc:
            self._warn_reject("joint command", exc)

    def _note_command(self) -> None:
        """An arm command was applied (lock held): lockstep bookkeeping."""
        self._last_command_time = self.env.sim_time + self.time_offset
        self._command_seen.set()

    def _on_gripper(self, msg: Float64, info=None) -> None:
        if self._stale(info):
            return
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
            self._reset_wall_ns = time.time_ns()
            self.task = task
            self.seed = int(request.seed) if request.seed >= 0 else self.seed + 1
            before = self.env.sim_time
            self.task.reset(self.env, self.seed, self.start_jitter)
            self.time_offset += before - self.env.sim_time  # /clock never goes backwards
            if self.env.model is not self._described_model:  # a new scene: new description and frames
                self._publish_description()
            self.follower.reset(self.env.joint_positions())
            self.success = False
            if self.p["expert"]:
                self._reset_expert()
            self.oracle, self._camera_obs = None, None  # the oracle plans at the episode's first request
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

    # ------------------------------------------------------------------ oracle mode
    def _on_chunk_request(self, _msg) -> None:
        """Answer a chunk request with the expert's chunk for the newest camera frame."""
        from vla_adapter_ros.msg import ActionChunk
        from vla_adapter_ros.sim.oracle import ExpertOracle

        start = time.perf_counter()
        with self.lock:
            if self._camera_obs is None:
                return  # no frame of this episode yet: as a policy without an observation
            if self.oracle is None:
                self.oracle = ExpertOracle(self.task, int(self.p["oracle_horizon"]), self._oracle_dt,
                                           float(self.p["oracle_max_speed"]), limits=self._oracle_limits)
                self.oracle.reset(self.env)
            t_obs, pose = self._camera_obs
            chunk = self.oracle.chunk(t_obs, pose)
            stamp = seconds_to_stamp(t_obs + self.time_offset)
            instruction = self.task.instruction
        msg = ActionChunk()
        msg.header.stamp, msg.header.frame_id = stamp, self.p["frame_id"]
        msg.names = ["eef_dx", "eef_dy", "eef_dz", "eef_drx", "eef_dry", "eef_drz"]
        msg.action_space = ActionChunk.EEF_DELTA
        msg.horizon, msg.action_dim = chunk.arm.shape
        msg.actions = chunk.arm.astype(np.float32).reshape(-1).tolist()
        msg.dt = self._oracle_dt
        msg.gripper = chunk.closure.astype(np.float32).tolist()
        msg.instruction = instruction
        msg.model_id = "scripted-expert-oracle"
        msg.sequence = self.oracle_chunks
        msg.inference_ms = float((time.perf_counter() - start) * 1e3)
        self.oracle_chunks += 1
        self.chunk_pub.publish(msg)

    # ------------------------------------------------------------------ physics loop
    def _loop(self) -> None:
        try:
            self._physics()
        finally:
            # the renderers' EGL contexts are current on this thread: free them here, not in a
            # finaliser on the main thread (EGL_BAD_ACCESS)
            with self.lock:
                self.env.close()

    def _physics(self) -> None:
        p = self.p
        step_dt = float(p["step_dt"])
        substeps = max(1, int(round(step_dt / self.env.timestep)))
        camera_period = 1.0 / float(p["camera_rate_hz"])
        next_camera = 0.0
        next_success = 0.0
        wall_start, sim_start = time.monotonic(), self.env.sim_time + self.time_offset
        rtf = float(p["real_time_factor"])
        lockstep = bool(p["lockstep"]) and not p["expert"]
        window, wait_s = float(p["lockstep_window_s"]), float(p["lockstep_timeout_s"])
        while self._running and rclpy.ok():
            with self.lock:
                if not self._running:
                    break
                self._command_seen.clear()
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
            if lockstep and t - self._last_command_time < window:
                self._command_seen.wait(wait_s)  # the controller's command for this period
            if float(p["real_time_factor"]) != rtf:  # changed live: pace from here on
                rtf, wall_start, sim_start = float(p["real_time_factor"]), time.monotonic(), t
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
        out.header.stamp, out.header.frame_id = stamp, self.frame
        out.pose.position.x, out.pose.position.y, out.pose.position.z = (float(v) for v in pose.position)
        q = pose.quat_xyzw
        out.pose.orientation.x, out.pose.orientation.y, out.pose.orientation.z, out.pose.orientation.w = (
            float(v) for v in q)
        self.pose_pub.publish(out)

    def _publish_cameras(self, stamp) -> None:
        width, height = int(self.p["image_width"]), int(self.p["image_height"])
        self._camera_obs = (self.env.sim_time, self.env.eef_pose().matrix())  # what the frame shows
        for name, pub, info, info_pub in zip(self.p["camera_names"], self.camera_pubs, self.camera_infos,
                                             self.camera_info_pubs):
            rgb = self.env.render(name, width, height)
            msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=rgb.tobytes())
            msg.header.stamp, msg.header.frame_id = stamp, info.header.frame_id
            pub.publish(msg)
            info.header.stamp = stamp
            info_pub.publish(info)
        self._publish_tf(stamp)

    # ------------------------------------------------------------------ RViz / Foxglove
    def _init_description(self) -> None:
        """Publishers of robot_description, camera_info, /tf and /tf_static; publishes the latched ones."""
        from vla_adapter_ros.sim import ros_description

        p = self.p
        self._ros_description = ros_description
        prefix = p["tf_prefix"]
        self.frame = prefix + p["frame_id"]
        self.description_pub = self.create_publisher(String, p["robot_description_topic"], DESCRIPTION_QOS)
        self.camera_infos = []
        for name in p["camera_names"]:
            fields = ros_description.camera_info(self.env.model, name, int(p["image_width"]), int(p["image_height"]))
            info = CameraInfo(**fields)
            info.header.frame_id = prefix + name  # the camera's optical frame on /tf_static
            self.camera_infos.append(info)
        self.camera_info_pubs = [self.create_publisher(CameraInfo, ros_description.camera_info_topic(t), 10)
                                 for t in p["camera_topics"]]
        if TFMessage is None:
            self.get_logger().info(NO_TF)
            self.tf_pub = self.tf_static_pub = None
        else:
            self.tf_pub = self.create_publisher(TFMessage, "/tf", TF_QOS)
            self.tf_static_pub = self.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self._publish_description()

    def _publish_description(self) -> None:
        """robot_description and /tf_static of the current model (at start, and after a reset that
        rebuilt the scene)."""
        rd, p = self._ros_description, self.p
        self._described_model = self.env.model
        self._frames = rd.sim_frames(self.env.model, joint_prefix=p["joint_prefix"], root=p["frame_id"],
                                     tf_prefix=p["tf_prefix"], cameras=list(p["camera_names"]))
        self.description_pub.publish(String(data=rd.urdf(self.env.model, description=self._frames)))
        if self.tf_static_pub is not None:
            stamp = seconds_to_stamp(self.env.sim_time + self.time_offset)
            self.tf_static_pub.publish(self._tf_message(stamp, rd.static_transforms(self.env.model, self._frames)))

    @staticmethod
    def _tf_message(stamp, transforms) -> TFMessage:
        out = TFMessage()
        for t in transforms:
            msg = TransformStamped()
            msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, t.parent, t.child
            tr, rot = msg.transform.translation, msg.transform.rotation
            tr.x, tr.y, tr.z = t.xyz
            rot.x, rot.y, rot.z, rot.w = t.quat_xyzw
            out.transforms.append(msg)
        return out

    def _publish_tf(self, stamp) -> None:
        """The moving frames (joints, cubes) at this state (physics thread, lock held)."""
        if self.tf_pub is not None:
            transforms = self._ros_description.body_transforms(self.env.model, self.env.data, self._frames)
            self.tf_pub.publish(self._tf_message(stamp, transforms))


def main(argv: list[str] | None = None) -> int:
    # Single-threaded: all callbacks share one group, and rclpy's MultiThreadedExecutor busy-spins
    # (100 % CPU, starving the physics thread of the GIL) while a callback of a busy group waits.
    return run_node(SimNode, "sim_node", argv, setup=SimNode.start, teardown=SimNode.stop, num_threads=1)


if __name__ == "__main__":
    sys.exit(main())
