"""Policy node: cameras + joint state in, timestamped action chunks out, instructions by service.

A thin rclpy adapter. The logic lives in pure-Python cores:
  observation.ObservationAssembler (sync, staleness), observation.decode_image / decode_compressed
  (sensor_msgs/Image, and sensor_msgs/CompressedImage on camera topics ending in /compressed), validate_instruction,
  inference.IOSpec / build_proprio (what the model's numbers mean), inference.InferenceEngine
  (the model), inference.InferenceWorker (off-thread, latest-wins).

Bring-up is lifecycle-style: the model is loaded and warmed up before any subscription exists and
before the status reports `ready`; a load failure logs one clear line and exits with code 1.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_adapter_ros.action import ExecuteInstruction
from vla_adapter_ros.inference.io_spec import (
    IOSpec,
    IOSpecError,
    build_proprio,
    io_from_checkpoint,
    quaternion_to_axis_angle,
)
from vla_adapter_ros.inference.worker import InferenceWorker
from vla_adapter_ros.msg import ActionChunk, PolicyStatus
from vla_adapter_ros.nodes.common import (
    Param,
    check_specs,
    declare,
    live_parameters,
    now_seconds,
    run_node,
    seconds_to_duration,
    seconds_to_stamp,
    stamp_seconds,
    watch_clock,
)
from vla_adapter_ros.nodes.diagnostics import DiagnosticsPublisher, diagnostic_status
from vla_adapter_ros.observation import (
    ImageDecodeError,
    InputRejected,
    InstructionError,
    ObservationAssembler,
    ObservationRefused,
    decode_compressed,
    decode_image,
    validate_instruction,
)
from vla_adapter_ros.srv import SetInstruction

COMPRESSED_SUFFIX = "/compressed"  # camera topics ending in it carry sensor_msgs/CompressedImage
CAMERA_QOS = ("sensor_data", "reliable")


def camera_qos_profile(name: str) -> QoSProfile:
    """The QoS of the camera subscriptions for the camera_qos parameter."""
    if name == "sensor_data":
        return qos_profile_sensor_data  # best effort, keep last 5, volatile
    if name == "reliable":
        return QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
    raise ValueError(f"camera_qos must be one of {', '.join(CAMERA_QOS)}; got {name!r}")


def is_compressed_topic(topic: str) -> bool:
    return topic.rstrip("/").endswith(COMPRESSED_SUFFIX)


ACTION_SPACE_IDS = {
    "joint_position": ActionChunk.JOINT_POSITION,
    "joint_delta": ActionChunk.JOINT_DELTA,
    "eef_delta": ActionChunk.EEF_DELTA,
}

DEFAULTS = {
    # model
    "checkpoint": "",  # checkpoint directory; empty = random-weight `preset` (demos and tests only)
    "preset": "tiny",
    "device": "auto",
    "engine": "eager",  # eager | optimized (static shapes, on-device preprocessing, CUDA graphs on a GPU)
    "seed": 0,
    "unnorm_key": "",
    "warmup_iterations": 2,
    # inputs
    "camera_topics": ["camera/agentview/image_raw", "camera/wrist/image_raw"],
    "camera_qos": "sensor_data",  # sensor_data (best effort, depth 5) | reliable (depth 5)
    "joint_state_topic": "joint_states",
    "arm_joint_names": [f"fr3_joint{i}" for i in range(1, 8)],
    "finger_joint_names": ["fr3_finger_joint1", "fr3_finger_joint2"],
    "eef_pose_topic": "",  # geometry_msgs/PoseStamped; empty = forward kinematics from joints
    "max_skew": 0.05,
    "max_age": 0.2,
    "image_width": 0,  # expected camera size; 0 = accept any (the processor resizes)
    "image_height": 0,
    # instructions
    "instruction": "",
    "instruction_topic": "vla/instruction",
    "max_instruction_chars": 256,
    "success_topic": "vla/task_success",
    "default_max_duration": 120.0,
    # triggering and outputs
    "trigger": "request",  # "request": on executor request; "rate": at rate_hz
    "rate_hz": 4.0,
    "request_topic": "vla/request_chunk",
    "chunk_topic": "vla/action_chunk",
    "trajectory_topic": "vla/action_trajectory",
    "status_topic": "vla/policy/status",
    "status_rate_hz": 2.0,
    "frame_id": "base",
    # meaning of the model's numbers (see inference/io_spec.py); a checkpoint made by our trainer
    # carries them in training.json, which wins when io_from_checkpoint is true
    "io_from_checkpoint": True,
    "action_space": "eef_delta",
    "dt": 0.05,
    "has_gripper": True,
    "gripper_index": 6,
    "gripper_open_value": 1.0,
    "gripper_closed_value": 0.0,
    "proprio_layout": "eef_axisangle_fingers",
    # eef_pose quaternion -> axis-angle: "shortest" (angle <= pi; our datasets) or "robosuite"
    # (angle = 2 acos(w), up to 2 pi: LIBERO's data and the released LIBERO checkpoints)
    "eef_axis_angle": "shortest",
    "arm_names": [""],  # names of the arm action columns; [""] = defaults for the action space
    "action_scale": [0.0],  # per arm column factor to SI units; [0.0] = 1 for every column
}

# what each parameter means; `live` ones can be changed with `ros2 param set` (see _validate_live)
PARAMETERS = {
    "checkpoint": Param("checkpoint directory; empty = random-weight `preset` (demos and tests only)"),
    "preset": Param("model size of the random-weight model (no checkpoint)"),
    "device": Param("torch device: auto, cpu, cuda or cuda:N"),
    "engine": Param("inference engine: eager, or optimized (static shapes, on-device preprocessing, CUDA graphs)",
                    choices=("eager", "optimized")),
    "seed": Param("random-weight seed (no checkpoint)", range=(0, 2**31 - 1)),
    "unnorm_key": Param("dataset key of the checkpoint's statistics (when it holds several)"),
    "warmup_iterations": Param("predictions run before the node reports ready", range=(0, 100)),
    "camera_topics": Param("camera inputs, primary camera first, then the wrist camera; a topic ending in "
                           "/compressed is a sensor_msgs/CompressedImage (JPEG or PNG, e.g. "
                           "camera/color/image_raw/compressed), any other a sensor_msgs/Image"),
    "camera_qos": Param("QoS of the camera subscriptions: sensor_data (best effort, depth 5; matches every "
                        "camera driver) or reliable (depth 5; only matches reliable publishers)",
                        choices=CAMERA_QOS),
    "joint_state_topic": Param("sensor_msgs/JointState input"),
    "arm_joint_names": Param("the 7 arm joints, in the model's order"),
    "finger_joint_names": Param("the 2 finger joints (proprio layouts with fingers)"),
    "eef_pose_topic": Param("geometry_msgs/PoseStamped of the hand TCP; empty = forward kinematics from the joints"),
    "max_skew": Param("largest spread of the camera stamps in one observation (s)", range=(0.0, 10.0), live=True),
    "max_age": Param("oldest acceptable input at inference time (s)", range=(0.0, 60.0), live=True),
    "image_width": Param("expected camera width in pixels; 0 = any (the processor resizes)", range=(0, 8192)),
    "image_height": Param("expected camera height in pixels; 0 = any", range=(0, 8192)),
    "instruction": Param("initial instruction (empty: wait for one; change it with ~/set_instruction, the "
                         "instruction topic or an ExecuteInstruction goal)"),
    "instruction_topic": Param("std_msgs/String instructions"),
    "max_instruction_chars": Param("longest accepted instruction (characters)", range=(1, 100000), live=True),
    "success_topic": Param("std_msgs/Bool; true ends an ExecuteInstruction goal with success"),
    "default_max_duration": Param("time limit of goals that give none (s)", range=(0.0, 86400.0), live=True),
    "trigger": Param("when to predict: request (on the executor's chunk requests) or rate (at rate_hz)",
                     choices=("request", "rate")),
    "rate_hz": Param("prediction rate with trigger rate (Hz)", range=(0.01, 1000.0)),
    "request_topic": Param("std_msgs/Header chunk requests (trigger request)"),
    "chunk_topic": Param("ActionChunk output"),
    "trajectory_topic": Param("JointTrajectory mirror of joint_position chunks"),
    "status_topic": Param("PolicyStatus output"),
    "status_rate_hz": Param("PolicyStatus rate (Hz)", range=(0.01, 1000.0)),
    "frame_id": Param("frame_id of the chunks"),
    "io_from_checkpoint": Param("use the checkpoint's training.json (written by our trainer) over the I/O keys"),
    "action_space": Param("meaning of the model's arm columns", choices=tuple(ACTION_SPACE_IDS)),
    "dt": Param("time between chunk rows (s)", range=(0.0001, 10.0)),
    "has_gripper": Param("the model outputs a gripper column"),
    "gripper_index": Param("model-output column of the gripper", range=(0, 1000)),
    "gripper_open_value": Param("model value meaning open"),
    "gripper_closed_value": Param("model value meaning closed"),
    "proprio_layout": Param("what the proprio vector holds",
                            choices=("joints", "joints_fingers", "joints_gripper_width", "eef_axisangle_fingers")),
    "eef_axis_angle": Param("eef_pose quaternion -> axis-angle: shortest (angle <= pi) or robosuite "
                            "(LIBERO checkpoints)", choices=("shortest", "robosuite")),
    "arm_names": Param("names of the arm action columns; [''] = the defaults of the action space"),
    "action_scale": Param("factor per arm column to SI units; [0.0] = 1 for every column (not with a "
                          "checkpoint whose training.json defines the I/O)", live=True),
}
check_specs(DEFAULTS, PARAMETERS)


@dataclass
class _Request:
    observation_stamp: float
    images: list
    proprio: np.ndarray
    instruction: str


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy_node")
        self.p = declare(self, DEFAULTS, PARAMETERS)
        self.engine = None
        self.ready = False
        self.warmup_ms = 0.0  # the last warm-up prediction (ms)
        self._lock = threading.Lock()
        self.instruction = ""
        self.sequence = 0
        self.chunks_published = 0
        self.refusals = 0
        self.last_refusal = ""
        self._last_warn = 0.0
        self._joint_cache: dict[str, float] = {}
        self._success_flag = False
        self.worker: InferenceWorker | None = None
        self.io = None
        self.assembler = None
        self._io_from_training = False
        self._stopping = False
        self._last_no_instruction_warn = -float("inf")
        self.frames_received: dict[str, int] = {}  # camera name -> messages received (decodable or not)

    # ------------------------------------------------------------------ bring-up
    def load(self) -> None:
        """Validate parameters, load and warm up the model. Raises with a clear message on failure."""
        from vla_adapter_ros.inference.engine import InferenceEngine

        p = self.p
        arm_names = [n for n in p["arm_names"] if n]
        if p["eef_axis_angle"] not in ("shortest", "robosuite"):
            raise ValueError(f"eef_axis_angle must be 'shortest' or 'robosuite', got {p['eef_axis_angle']!r}")
        from vla_adapter_ros.launch_args import check_device

        check_device(p["device"])
        source = p["checkpoint"] or f"random-weight preset {p['preset']!r}"
        self.get_logger().info(f"loading model from {source} on device {p['device']}")
        start = time.monotonic()
        if p["engine"] not in ("eager", "optimized"):
            raise ValueError(f"engine must be 'eager' or 'optimized', got {p['engine']!r}")
        engine_type, options = InferenceEngine, {}
        if p["engine"] == "optimized":
            from vla_adapter_ros.inference.fast_engine import FastInferenceEngine

            engine_type = FastInferenceEngine
            if p["image_width"] > 0:  # shapes are fixed at load time; other sizes take the logged slow path
                options["image_sizes"] = [(int(p["image_height"]), int(p["image_width"]))] * len(p["camera_topics"])
        self.engine = engine_type.load(
            checkpoint=p["checkpoint"] or None, preset=p["preset"], device=p["device"],
            seed=int(p["seed"]), unnorm_key=p["unnorm_key"] or None, **options,
        )
        if self.engine.random_weights:
            self.get_logger().warning(
                f"RANDOM WEIGHTS ({self.engine.model_id}): actions are meaningless; for tests and demos only"
            )
        io = dict(
            action_space=p["action_space"], dt=float(p["dt"]),
            gripper_index=int(p["gripper_index"]) if p["has_gripper"] else None,
            gripper_open_value=float(p["gripper_open_value"]),
            gripper_closed_value=float(p["gripper_closed_value"]),
            proprio_layout=p["proprio_layout"], action_scale=[float(x) for x in p["action_scale"] if x],
        )
        trained = io_from_checkpoint(p["checkpoint"]) if p["checkpoint"] and p["io_from_checkpoint"] else None
        if trained is not None:  # our own checkpoints say what their numbers mean
            io.update(trained)
            self._io_from_training = True
            self.get_logger().info(f"action/proprio spec from the checkpoint's training.json: {trained}")
        self.io = IOSpec(action_dim=self.engine.action_dim, arm_names=arm_names, **io)
        if self.io.proprio_dim != self.engine.proprio_dim:
            raise IOSpecError(
                f"proprio_layout {self.io.proprio_layout!r} gives {self.io.proprio_dim} values, "
                f"the model expects {self.engine.proprio_dim}"
            )
        if len(p["camera_topics"]) != self.engine.num_images:
            raise ValueError(
                f"{len(p['camera_topics'])} camera_topics configured, the model expects {self.engine.num_images} images"
            )
        warm = self.engine.warmup(int(p["warmup_iterations"]))
        self.warmup_ms = float(warm[-1]) if warm else 0.0  # in PolicyStatus: the demo paces the sim by it
        self.get_logger().info(
            f"model {self.engine.model_id} ready on {self.engine.device} ({p['engine']} engine) "
            f"in {time.monotonic() - start:.1f} s "
            f"(warm-up: {', '.join(f'{t:.0f} ms' for t in warm)})"
        )
        if p["eef_pose_topic"] == "" and self.io.proprio_layout.startswith("eef"):
            from vla_adapter_ros.control.kinematics import FrankaKinematics

            self.kinematics = FrankaKinematics()
        if p["instruction"]:
            self.instruction = validate_instruction(p["instruction"], int(p["max_instruction_chars"]))
        live_parameters(self, PARAMETERS, self.p, validate=self._validate_live, apply=self._apply_live)

    # ------------------------------------------------------------------ live parameters
    def _validate_live(self, values: dict, changes: dict) -> str | None:
        if "action_scale" in changes:
            if self._io_from_training:
                return ("action_scale: this checkpoint's training.json defines the action units (io_from_checkpoint "
                        "is true); the parameter is not used")
            try:
                self._io_with_scale(values["action_scale"])
            except IOSpecError as exc:
                return f"action_scale: {exc}"
        return None

    def _io_with_scale(self, action_scale) -> IOSpec:
        import dataclasses

        return dataclasses.replace(self.io, action_scale=[float(x) for x in action_scale if x])

    def _apply_live(self, changes: dict) -> None:
        if "action_scale" in changes and self.io is not None:
            self.io = self._io_with_scale(changes["action_scale"])  # the next chunk uses it
        if self.assembler is not None:
            for key in ("max_skew", "max_age"):
                if key in changes:
                    setattr(self.assembler, key, float(changes[key]))

    def start(self) -> None:
        """Create the ROS interfaces (after a successful load) and start inference."""
        p = self.p
        size = (int(p["image_height"]), int(p["image_width"])) if p["image_width"] > 0 else None
        states = ["joints"] + (["eef_pose"] if p["eef_pose_topic"] else [])
        # refusals name the camera by its full topic name (a duplicate topic gets its position appended)
        topics = [self.resolve_topic_name(t) for t in p["camera_topics"]]
        self.camera_names = [t if topics.count(t) == 1 else f"{t}#{i}" for i, t in enumerate(topics)]
        self.assembler = ObservationAssembler(
            self.camera_names, states, max_skew=float(p["max_skew"]), max_age=float(p["max_age"]),
            image_size=size, state_sizes={"joints": 7, "eef_pose": 7},
        )
        self.input_topics = [self.resolve_topic_name(t) for t in [*p["camera_topics"], p["joint_state_topic"]] + (
            [p["eef_pose_topic"]] if p["eef_pose_topic"] else [])]

        compressed = [t for t in topics if is_compressed_topic(t)]
        if compressed:
            try:
                import PIL  # noqa: F401 (decodes JPEG / PNG)
            except ImportError:
                raise RuntimeError(f"camera topics {compressed} are sensor_msgs/CompressedImage (they end in "
                                   f"{COMPRESSED_SUFFIX}); decoding them needs Pillow: pip install pillow") from None
        sensors = MutuallyExclusiveCallbackGroup()
        camera_qos = camera_qos_profile(p["camera_qos"])
        self.frames_received = dict.fromkeys(self.camera_names, 0)
        for name, topic in zip(self.camera_names, p["camera_topics"]):
            if is_compressed_topic(topic):
                self.create_subscription(CompressedImage, topic, lambda m, n=name: self._on_compressed(n, m),
                                         camera_qos, callback_group=sensors)
            else:
                self.create_subscription(Image, topic, lambda m, n=name: self._on_image(n, m),
                                         camera_qos, callback_group=sensors)
        self.create_subscription(JointState, p["joint_state_topic"], self._on_joint_state,
                                 qos_profile_sensor_data, callback_group=sensors)
        if p["eef_pose_topic"]:
            self.create_subscription(PoseStamped, p["eef_pose_topic"], self._on_pose,
                                     qos_profile_sensor_data, callback_group=sensors)

        control = MutuallyExclusiveCallbackGroup()
        self.chunk_pub = self.create_publisher(ActionChunk, p["chunk_topic"], 10)
        self.trajectory_pub = self.create_publisher(JointTrajectory, p["trajectory_topic"], 10)
        self.status_pub = self.create_publisher(PolicyStatus, p["status_topic"], 10)
        self.create_subscription(String, p["instruction_topic"], self._on_instruction_topic, 10,
                                 callback_group=control)
        self.create_subscription(Bool, p["success_topic"], self._on_success, 10, callback_group=control)
        self.create_service(SetInstruction, "~/set_instruction", self._on_set_instruction,
                            callback_group=control)
        self.create_service(Trigger, "~/stop", self._on_stop, callback_group=control)
        self.action_server = ActionServer(
            self, ExecuteInstruction, "~/execute_instruction",
            execute_callback=self._execute, goal_callback=self._on_goal,
            cancel_callback=lambda _g: CancelResponse.ACCEPT, callback_group=ReentrantCallbackGroup(),
        )
        if p["trigger"] == "request":
            self.create_subscription(Header, p["request_topic"], lambda _m: self._trigger(requested=True), 10,
                                     callback_group=control)
        elif p["trigger"] == "rate":
            self.create_timer(1.0 / float(p["rate_hz"]), self._trigger, callback_group=control)
        else:
            raise ValueError(f"trigger must be 'request' or 'rate', got {p['trigger']!r}")
        self.create_timer(1.0 / float(p["status_rate_hz"]), self._publish_status, callback_group=control)
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics, 1.0, callback_group=control)
        self.worker = InferenceWorker(self._run_model, self._on_model_result)
        watch_clock(self)
        self.ready = True
        self.get_logger().info(
            f"ready: {len(self.camera_names)} cameras "
            f"({', '.join(('CompressedImage ' if is_compressed_topic(t) else 'Image ') + t for t in topics)}"
            f"; QoS {p['camera_qos']}), trigger={p['trigger']}, chunks on {self.resolve_topic_name(p['chunk_topic'])}"
        )

    # ------------------------------------------------------------------ refusals
    def _refuse(self, reason: str) -> None:
        with self._lock:
            self.refusals += 1
            self.last_refusal = reason
        now = time.monotonic()
        if now - self._last_warn > 2.0:  # throttled: a broken camera must not flood the log
            self._last_warn = now
            self.get_logger().warning(reason)

    # ------------------------------------------------------------------ inputs
    def _on_image(self, name: str, msg: Image) -> None:
        self.frames_received[name] += 1
        try:
            rgb = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        except ImageDecodeError as exc:
            self._refuse(f"{name}: {exc}")
            return
        self._add_image(name, msg.header.stamp, rgb)

    def _on_compressed(self, name: str, msg: CompressedImage) -> None:
        self.frames_received[name] += 1
        try:
            rgb = decode_compressed(msg.format, msg.data)
        except ImageDecodeError as exc:
            self._refuse(f"{name}: {exc}")
            return
        except Exception as exc:  # whatever the decoder raises: a refusal, never a dead callback
            self._refuse(f"{name}: cannot decode compressed image: {type(exc).__name__}: {exc}")
            return
        self._add_image(name, msg.header.stamp, rgb)

    def _add_image(self, name: str, stamp, rgb: np.ndarray) -> None:
        """Raw and decoded compressed images take the same path from here (stamps, sync, size checks)."""
        try:
            self.assembler.add_image(name, stamp_seconds(stamp), rgb)
        except InputRejected as exc:
            self._refuse(f"{name}: {exc}" if not str(exc).startswith(name) else str(exc))

    def _on_joint_state(self, msg: JointState) -> None:
        if len(msg.position) != len(msg.name):
            self._refuse(f"joint_states: {len(msg.name)} names but {len(msg.position)} positions")
            return
        cache = self._joint_cache
        cache.update(zip(msg.name, msg.position))
        arm = self.p["arm_joint_names"]
        if all(n in cache for n in arm) and any(n in msg.name for n in arm):
            try:
                self.assembler.add_state("joints", stamp_seconds(msg.header.stamp), [cache[n] for n in arm])
            except InputRejected as exc:
                for n in arm:  # a non-finite arm joint must not linger in the cache
                    cache.pop(n, None)
                self._refuse(str(exc))

    def _on_pose(self, msg: PoseStamped) -> None:
        pos, ori = msg.pose.position, msg.pose.orientation
        try:
            self.assembler.add_state("eef_pose", stamp_seconds(msg.header.stamp),
                                     [pos.x, pos.y, pos.z, ori.x, ori.y, ori.z, ori.w])
        except InputRejected as exc:
            self._refuse(str(exc))

    # ------------------------------------------------------------------ instructions
    def _set_instruction(self, text: str) -> tuple[bool, str]:
        try:
            cleaned = validate_instruction(text, int(self.p["max_instruction_chars"]))
        except InstructionError as exc:
            self._refuse(f"instruction refused: {exc}")
            return False, f"refused: {exc}"
        with self._lock:
            self.instruction = cleaned
        self.get_logger().info(f"instruction: {cleaned!r}")
        return True, f"instruction set: {cleaned}"

    def _on_set_instruction(self, request, response):
        response.success, response.message = self._set_instruction(request.instruction)
        return response

    def _on_instruction_topic(self, msg: String) -> None:
        self._set_instruction(msg.data)

    def _on_success(self, msg: Bool) -> None:
        if msg.data:
            self._success_flag = True

    def _on_stop(self, _request, response):
        self._stop_policy("stop requested")
        response.success, response.message = True, "stopped: no instruction, executor told to hold"
        return response

    def _stop_policy(self, reason: str) -> None:
        """Clear the instruction and tell the executor to drop its queue and hold (empty chunk)."""
        with self._lock:
            self.instruction = ""
        stop = ActionChunk()
        stop.header.stamp = self.get_clock().now().to_msg()
        stop.header.frame_id = self.p["frame_id"]
        stop.action_space = ACTION_SPACE_IDS[self.io.action_space]
        stop.horizon, stop.action_dim, stop.dt = 0, self.io.arm_dim, self.io.dt
        stop.names = list(self.io.arm_names)
        stop.model_id = self.engine.model_id
        self.chunk_pub.publish(stop)
        self.get_logger().info(f"policy stopped ({reason})")

    # ------------------------------------------------------------------ ExecuteInstruction action
    def _on_goal(self, goal) -> GoalResponse:
        try:
            validate_instruction(goal.instruction, int(self.p["max_instruction_chars"]))
        except InstructionError as exc:
            self._refuse(f"goal refused: {exc}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute(self, goal_handle):
        request = goal_handle.request
        limit = request.max_duration if request.max_duration > 0 else float(self.p["default_max_duration"])
        self._success_flag = False
        ok, message = self._set_instruction(request.instruction)
        # Durations in the node's clock: simulation time when use_sim_time is on.
        goal_instruction = validate_instruction(request.instruction, int(self.p["max_instruction_chars"])) if ok else None
        start, first_chunk = now_seconds(self), self.chunks_published
        result = ExecuteInstruction.Result()
        state = "running"
        while rclpy.ok():
            if self._stopping:
                goal_handle.abort()
                result.success, result.message = False, "policy node shutting down"
                break
            elapsed = now_seconds(self) - start
            chunks = self.chunks_published - first_chunk
            if not ok:
                goal_handle.abort()
                result.success, result.message = False, message
                break
            if goal_handle.is_cancel_requested:
                self._stop_policy("goal cancelled")
                goal_handle.canceled()
                result.success, result.message = False, "cancelled: arm told to hold"
                break
            if self._success_flag:
                self._stop_policy("task reported success")
                goal_handle.succeed()
                result.success, result.message = True, "task reported success"
                break
            if elapsed > limit:
                self._stop_policy("time limit")
                goal_handle.abort()
                result.success, result.message = False, f"no success within {limit:.1f} s"
                break
            if self.instruction != goal_instruction:
                self._stop_policy("instruction replaced")
                goal_handle.abort()
                result.success, result.message = False, "instruction replaced by another request"
                break
            state = "running" if chunks else "waiting for observations"
            goal_handle.publish_feedback(ExecuteInstruction.Feedback(chunks=chunks, elapsed=elapsed, state=state))
            time.sleep(0.1)
        result.chunks = self.chunks_published - first_chunk
        result.elapsed = now_seconds(self) - start
        return result

    # ------------------------------------------------------------------ inference
    def _trigger(self, requested: bool = False) -> None:
        if not self.ready or self.worker is None or self._stopping:
            return
        with self._lock:
            instruction = self.instruction
        if not instruction:
            if requested:  # the executor wants actions, but there is no task: say how to give one
                self._warn_no_instruction()
            return
        if self.worker.busy:
            return  # a chunk is already on its way
        try:
            obs = self.assembler.assemble(now_seconds(self))
            proprio = self._proprio(obs)
        except (ObservationRefused, IOSpecError) as exc:
            self._refuse(f"no chunk: {exc}")
            return
        self.worker.submit(_Request(obs.stamp, obs.images, proprio, instruction))

    def _warn_no_instruction(self) -> None:
        now = time.monotonic()
        if now - self._last_no_instruction_warn < 10.0:
            return
        self._last_no_instruction_warn = now
        service = f"{self.get_fully_qualified_name()}/set_instruction"
        self.get_logger().warning(
            f"chunk request ignored: no instruction is set. Set one with: ros2 service call {service} "
            f"vla_adapter_ros/srv/SetInstruction \"{{instruction: 'pick up the red cube'}}\" "
            f"(or publish on {self.resolve_topic_name(self.p['instruction_topic'])}, or send an ExecuteInstruction "
            "goal)")

    def _proprio(self, obs) -> np.ndarray:
        q = obs.state["joints"]
        fingers = [self._joint_cache.get(n) for n in self.p["finger_joint_names"]]
        fingers = None if any(f is None for f in fingers) else np.array(fingers)
        eef_pos = eef_rot = None
        if self.io.proprio_layout.startswith("eef"):
            from vla_adapter_ros.control.kinematics import matrix_to_axis_angle

            if "eef_pose" in obs.state:
                x, y, z, qx, qy, qz, qw = obs.state["eef_pose"]
                eef_pos = np.array([x, y, z])
                eef_rot = quaternion_to_axis_angle([qx, qy, qz, qw], shortest=self.p["eef_axis_angle"] == "shortest")
            else:
                pose = self.kinematics.fk(q)
                eef_pos, eef_rot = pose[:3, 3], matrix_to_axis_angle(pose[:3, :3])
        return build_proprio(self.io.proprio_layout, q, fingers, eef_pos, eef_rot)

    def _run_model(self, request: _Request):
        start = time.perf_counter()
        actions = self.engine.predict(request.images, request.instruction, request.proprio)
        return actions, (time.perf_counter() - start) * 1e3

    def _on_model_result(self, request: _Request, result, error) -> None:
        if self._stopping:
            return  # shutting down: publish nothing more
        if error is not None:
            self._refuse(f"inference failed: {type(error).__name__}: {error}")
            return
        actions, inference_ms = result
        with self._lock:
            if request.instruction != self.instruction:
                return  # instruction changed or stopped while computing: this chunk is obsolete
        arm, closure = self.io.split(actions)
        msg = ActionChunk()
        msg.header.stamp = seconds_to_stamp(request.observation_stamp)
        msg.header.frame_id = self.p["frame_id"]
        msg.names = list(self.io.arm_names)
        msg.action_space = ACTION_SPACE_IDS[self.io.action_space]
        msg.horizon, msg.action_dim = arm.shape
        msg.actions = arm.astype(np.float32).reshape(-1).tolist()
        msg.dt = self.io.dt
        msg.gripper = [] if closure is None else closure.astype(np.float32).tolist()
        msg.instruction = request.instruction
        msg.model_id = self.engine.model_id
        msg.sequence = self.sequence
        msg.inference_ms = float(inference_ms)
        self.chunk_pub.publish(msg)
        if self.io.action_space == "joint_position":
            traj = JointTrajectory()
            traj.header = msg.header
            traj.joint_names = list(self.io.arm_names)
            for i, row in enumerate(arm):
                t = i * self.io.dt
                traj.points.append(JointTrajectoryPoint(positions=row.tolist(), time_from_start=seconds_to_duration(t)))
            self.trajectory_pub.publish(traj)
        with self._lock:
            self.sequence += 1
            self.chunks_published += 1

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        now = now_seconds(self)
        status = PolicyStatus()
        status.header.stamp = self.get_clock().now().to_msg()
        status.ready = self.ready
        status.model_id = self.engine.model_id
        status.device = self.engine.device
        with self._lock:
            status.instruction = self.instruction
            status.chunks_published = self.chunks_published
            status.refusals = self.refusals
            status.last_refusal = self.last_refusal
        status.inference_p50_ms = self.worker.latency.percentile(50)
        status.inference_p95_ms = self.worker.latency.percentile(95)
        status.warmup_ms = self.warmup_ms
        ages = self.assembler.ages(now)
        status.input_names = list(self.input_topics)
        status.input_ages_ms = [-1.0 if a is None else float(a * 1e3) for a in ages.values()]
        self.status_pub.publish(status)

    def _diagnostics(self):
        """/diagnostics: what the status says, with a level (WARN while loading or on random weights)."""
        with self._lock:
            values = {"ready": self.ready, "instruction": self.instruction, "chunks_published": self.chunks_published,
                      "refusals": self.refusals, "last_refusal": self.last_refusal}
        values.update(model_id=self.engine.model_id, device=self.engine.device,
                      random_weights=self.engine.random_weights)
        if self.worker is not None:
            values.update(inference_p50_ms=self.worker.latency.percentile(50),
                          inference_p95_ms=self.worker.latency.percentile(95))
        if self.assembler is not None:
            values["input_age_ms"] = {k: -1.0 if a is None else a * 1e3
                                      for k, a in self.assembler.ages(now_seconds(self)).items()}
        level = "WARN" if not self.ready or self.engine.random_weights else "OK"
        message = ("loading" if not self.ready else "ready, random weights" if self.engine.random_weights
                   else "ready")
        return diagnostic_status(f"{self.get_fully_qualified_name().lstrip('/')}: policy", values, level=level, message=message,
                                 hardware_id=self.engine.device)

    def shutdown(self) -> None:
        """Stop inference before the ROS context goes (a running prediction may finish, unpublished)."""
        self._stopping = True
        if self.worker is not None:
            self.worker.stop(timeout=1.0)
        if self.frames_received:
            self.get_logger().info("camera frames received: " + ", ".join(
                f"{name} {count}" for name, count in self.frames_received.items()))


def main(argv: list[str] | None = None) -> int:
    def setup(node: PolicyNode) -> None:
        node.load()
        node.start()

    return run_node(PolicyNode, "policy_node", argv, setup=setup, teardown=PolicyNode.shutdown, num_threads=4)


if __name__ == "__main__":
    sys.exit(main())
