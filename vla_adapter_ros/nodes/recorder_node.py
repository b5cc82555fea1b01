"""Recorder node: demonstration episodes -> one rosbag2 (MCAP) bag each.

A thin rclpy adapter over `data.bag_io.BagRecorder`. Subscribes with `raw=True` to the configured
topics (`topics`: "TOPIC: TYPE" strings, e.g. "joint_states: sensor_msgs/msg/JointState") and
hands the serialized bytes with their receive time to the recorder while an episode is open. The
receive time is when the middleware received the message, on this node's clock (simulation time
when run with use_sim_time), so a callback backlog does not shift it; a message received before
~/start is not recorded even if its callback runs after it.

Services:
  ~/start    vla_adapter_ros/srv/SetInstruction  open a bag; the instruction becomes the episode
             metadata (with this node's parameters). Refused while recording, for an empty
             instruction, or when a `required_topics` topic is silent (nothing for `max_age` s).
  ~/stop     std_srvs/SetBool   close the bag; data = success flag. Message: the bag directory.
  ~/discard  std_srvs/Trigger   delete the open bag; when idle, delete the last saved one (once).
Bags go to `output_dir`/<episode name> (written under `output_dir`/.partial until stopped).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool, Trigger

from vla_adapter_ros.nodes.common import Param, check_specs, declare, live_parameters, run_node
from vla_adapter_ros.srv import SetInstruction

DEFAULTS = {
    "output_dir": "recordings",  # bag root (created if missing)
    "topics": [  # "TOPIC: TYPE"
        "camera/agentview/image_raw: sensor_msgs/msg/Image",
        "camera/wrist/image_raw: sensor_msgs/msg/Image",
        "joint_states: sensor_msgs/msg/JointState",
        "eef_pose: geometry_msgs/msg/PoseStamped",
        "vla/instruction: std_msgs/msg/String",
        "fr3_arm_controller/joint_trajectory: trajectory_msgs/msg/JointTrajectory",
        "gripper/command: std_msgs/msg/Float64",
        "vla/action_chunk: vla_adapter_ros/msg/ActionChunk",
    ],
    # topics that must have delivered a message within max_age s for ~/start to accept
    "required_topics": ["camera/agentview/image_raw", "camera/wrist/image_raw", "joint_states"],
    "max_age": 1.0,  # s (this node's clock)
    "storage": "mcap",  # mcap | sqlite3
    "qos_depth": 100,
    "reliable": True,  # False: best-effort subscriptions
    "robot": "franka",
    "operator": "",
    "status_period": 5.0,  # s of wall time between status lines while recording (0 = none)
}


# what each parameter means; `live` ones can be changed with `ros2 param set`
PARAMETERS = {
    "output_dir": Param("bag root directory (created if missing)"),
    "topics": Param("what to record: 'TOPIC: pkg/msg/Type' strings"),
    "required_topics": Param("topics that must have delivered a message within max_age for ~/start to accept"),
    "max_age": Param("required topics: oldest acceptable last message at ~/start (s, this node's clock)",
                     range=(0.0, 3600.0), live=True),
    "storage": Param("bag storage format", choices=("mcap", "sqlite3")),
    "qos_depth": Param("subscription queue depth", range=(1, 100000)),
    "reliable": Param("reliable subscriptions (false: best effort)"),
    "robot": Param("robot name written into each episode's metadata"),
    "operator": Param("operator name written into each episode's metadata; used from the next ~/start on",
                      live=True),
    "status_period": Param("wall time between status lines while recording (s); 0 = none", range=(0.0, 3600.0)),
}
check_specs(DEFAULTS, PARAMETERS)


def declare_lists(node: Node, defaults: dict) -> dict:
    """`common.declare` with this node's descriptors (a list parameter set to [] reads as [])."""
    return declare(node, defaults, PARAMETERS)


def message_class(msgtype: str):
    """'pkg/msg/Type' -> the generated Python class (ValueError if it cannot be imported)."""
    import importlib

    pkg, kind, name = msgtype.split("/")
    try:
        cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"unknown message type {msgtype!r} ({type(exc).__name__}: {exc})") from exc
    if not hasattr(cls, "_TYPE_SUPPORT") and not hasattr(type(cls), "__import_type_support__"):
        raise ValueError(f"{msgtype!r} is not a ROS message type")
    return cls


def parse_topics(entries, resolve=lambda name: name) -> dict[str, str]:
    """["TOPIC: TYPE", ...] -> {resolve(topic): 'pkg/msg/Type'}; ValueError on a malformed entry.

    `resolve` turns a relative name into the node's namespaced one (the bag stores full names)."""
    from vla_adapter_ros.data.bag_io import normalize_type_name

    topics: dict[str, str] = {}
    for entry in entries:
        topic, sep, msgtype = str(entry).partition(":")
        topic, msgtype = topic.strip(), msgtype.strip()
        if not sep or not topic.strip("/~") or not msgtype or msgtype.count("/") not in (1, 2) \
                or " " in topic or " " in msgtype:
            raise ValueError(f"topics: expected 'TOPIC: pkg/msg/Type', got {entry!r}")
        topic = resolve(topic)
        if topic in topics:
            raise ValueError(f"topics: {topic} listed twice")
        topics[topic] = normalize_type_name(msgtype)
    if not topics:
        raise ValueError("topics: nothing to record")
    return topics


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder_node")
        self.p = p = declare_lists(self, DEFAULTS)
        from vla_adapter_ros.data.bag_io import BagRecorder

        self.topics = parse_topics(p["topics"], self.resolve_topic_name)  # relative names move with a namespace
        self.required = [self.resolve_topic_name(t) for t in p["required_topics"]]
        missing = [t for t in self.required if t not in self.topics]
        if missing:
            raise ValueError(f"required_topics {missing} are not in topics")
        classes = {}
        for topic, msgtype in self.topics.items():
            try:
                classes[topic] = message_class(msgtype)
            except ValueError as exc:
                raise ValueError(f"topics: {topic}: {exc}") from exc
        root = Path(str(p["output_dir"])).expanduser()
        if not str(p["output_dir"]).strip():
            raise ValueError("output_dir is empty")
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".write_test_{id(self)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ValueError(f"output_dir {str(root)!r} is not a writable directory ({exc})") from exc
        self.root = root.resolve()
        self.recorder = BagRecorder(self.root, topics=self.topics, storage=str(p["storage"]))
        unknown = [f"{t} ({m})" for t, m in self.topics.items() if m not in self.recorder.typestore.types]
        if unknown:
            raise ValueError(f"the bag type store does not know {unknown}")
        self._started_wall = 0.0
        self._last_saved: Path | None = None  # ~/discard while idle deletes it
        self._start_system_ns = 0  # system time of ~/start: earlier receptions are not recorded
        self._system = Clock(clock_type=ClockType.SYSTEM_TIME)

        qos = QoSProfile(depth=int(p["qos_depth"]), reliability=ReliabilityPolicy.RELIABLE if p["reliable"]
                         else ReliabilityPolicy.BEST_EFFORT)
        for topic, cls in classes.items():
            self.create_subscription(cls, topic, self._callback(topic, self.topics[topic]), qos, raw=True)
        self.create_service(SetInstruction, "~/start", self._on_start)
        self.create_service(SetBool, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/discard", self._on_discard)
        if float(p["status_period"]) > 0:
            self.create_timer(float(p["status_period"]), self._status)
        live_parameters(self, PARAMETERS, self.p)
        self.get_logger().info(f"ready: {len(self.topics)} topics -> {self.root} ({p['storage']})")

    # ------------------------------------------------------------------ data
    def _callback(self, topic: str, msgtype: str):
        recorder = self.recorder

        clock, system = self.get_clock(), self._system

        def callback(raw: bytes, info) -> None:
            received = int(info["received_timestamp"])
            late = system.now().nanoseconds - received if received > 0 else 0
            t_ns = clock.now().nanoseconds - max(0, late)  # reception time on this node's clock
            try:
                if received and received < self._start_system_ns:
                    recorder.observe(topic, t_ns)  # received before ~/start: not part of the episode
                    return
                recorder.write(topic, msgtype, raw, t_ns)
            except Exception as exc:  # storage failure: say so, keep the node alive
                self.get_logger().error(f"{topic}: write failed: {exc}", throttle_duration_sec=2.0)

        return callback

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ services
    def _on_start(self, request, response):
        from vla_adapter_ros.data.bag_io import EpisodeMetadata, RecorderError, check_fresh

        instruction = request.instruction.strip()
        response.success = False
        if self.recorder.recording:
            response.message = f"already recording {self.recorder.episode_dir}"
        elif not instruction:
            response.message = "empty instruction"
        else:
            silent = check_fresh(self.recorder.last_seen, self._now(), float(self.p["max_age"]),
                                 required=self.required)
            if silent:
                response.message = f"silent topics (nothing for {self.p['max_age']} s): {', '.join(silent)}"
            else:
                self._start_system_ns = self._system.now().nanoseconds
                config = {**self.p, "topics": dict(self.topics), "node": self.get_fully_qualified_name()}
                meta = EpisodeMetadata(instruction=instruction, operator=str(self.p["operator"]),
                                       robot=str(self.p["robot"]), config=config)
                try:
                    path = self.recorder.start(meta)
                except RecorderError as exc:
                    response.message = str(exc)
                else:
                    self._started_wall = time.monotonic()
                    response.success, response.message = True, str(path)
                    self.get_logger().info(f"recording {path.name}: {instruction!r}")
        if not response.success:
            self.get_logger().warning(f"start refused: {response.message}")
        return response

    def _on_stop(self, request, response):
        from vla_adapter_ros.data.bag_io import RecorderError

        try:
            counts = self.recorder.counts
            path = self.recorder.stop(success=bool(request.data))
        except RecorderError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(f"stop refused: {exc}")
            return response
        self._last_saved = path
        response.success, response.message = True, str(path)
        self.get_logger().info(f"saved {path} ({'success' if request.data else 'failure'}, "
                               f"{sum(counts.values())} messages, {time.monotonic() - self._started_wall:.1f} s)")
        return response

    def _on_discard(self, _request, response):
        path = self.recorder.discard()
        what = "discarded the open episode"
        if path is None and self._last_saved is not None and self._last_saved.is_dir():
            path, self._last_saved = self._last_saved, None
            shutil.rmtree(path)
            what = "deleted the last saved episode"
        if path is None:
            response.success, response.message = False, "nothing to discard"
        else:
            response.success, response.message = True, f"{what} {path}"
            self.get_logger().info(response.message)
        return response

    def _status(self) -> None:
        if not self.recorder.recording:
            return
        counts = self.recorder.counts
        self.get_logger().info(
            f"recording {self.recorder.episode_dir.name}: {time.monotonic() - self._started_wall:.0f} s, "
            + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))

    def shutdown(self) -> None:
        """Ctrl-C while recording: keep nothing half-written."""
        path = self.recorder.discard()
        if path is not None:
            self.get_logger().warning(f"shutdown while recording: discarded {path}")


def main(argv: list[str] | None = None) -> int:
    # single-threaded: the fastest rclpy executor, and every callback is short
    return run_node(RecorderNode, "recorder_node", argv, teardown=RecorderNode.shutdown, num_threads=1)


if __name__ == "__main__":
    sys.exit(main())
