"""Executor node: action chunks in, safe smooth controller commands out at control rate.

A thin rclpy adapter over `control.ExecutorCore` (scheduler + safety filter + gripper hysteresis +
state machine). Outputs (parameter `output`):
  jtc      trajectory_msgs/JointTrajectory for a ros2_control JointTrajectoryController: a short
           trajectory (1-3 points with positions, velocities, accelerations, time_from_start),
           header stamp 0 = start now;
  forward  std_msgs/Float64MultiArray positions for a forward position controller;
  sim      sensor_msgs/JointState commands (Isaac Sim style /joint_command);
  eef_delta  std_msgs/Float64MultiArray [dx dy dz drx dry drz gripper] per tick for a Cartesian
           controller, layout label step | wait | hold (EEF_DELTA chunks only, no IK; see
           control.eef_output.EefDeltaCore).
Dry-run publishes the same commands on ~/dry_run/joint_trajectory and sends nothing to the robot.
The real-robot configuration starts disabled: nothing moves before ~/enable.

Services: ~/enable (SetBool; false = stop smoothly, then send nothing), ~/start, ~/pause, ~/resume,
~/stop, ~/go_home, ~/estop, ~/reset and ~/resync (Trigger). ~/resync is allowed only while disabled:
it forgets the last command sent, so the next ~/enable starts from the measured position (use it
after the arm's controller was restarted at a new position, e.g. after a reflex / error recovery).

Threads: the control tick, status, services and joint states run on one single-threaded executor.
A chunk message is only parsed there; converting it (an EEF_DELTA chunk runs IK for every row, tens
of ms) happens on one worker thread (`ChunkWorker`), so no control tick waits for it. The worker keeps
at most the newest pending chunk: an older one still waiting when a newer one arrives is dropped and
counted as rejected ("superseded by a newer chunk before it was processed"); a pending stop chunk is
never dropped by a newer non-stop chunk. The process sets a 0.5 ms GIL switch interval for the same
reason (see `main`).

Joint-state watchdog: ages are measured with the node's own clock (sim time with use_sim_time), not
with the message header stamps, which a driver may set wrong (a stamp in the future would otherwise
look fresh for seconds). Each arm joint's receive time is recorded (`JointStateCache`); the core is
given the OLDEST receive time of the arm joints as the state's stamp, so a joint is only fresh when it
was itself updated (joint states may arrive split into several messages, e.g. arm and gripper).
Nothing reaches the core before every arm joint was received once. Names that are not arm joints are
ignored; a message whose name and position lengths differ is ignored (counted, logged throttled).

Status: status_topic (ExecutorStatus, status_rate_hz) and /diagnostics (diagnostic_msgs, 1 Hz: state,
hold reason, interventions, tick timing p50/p99; ERROR on estop, WARN while holding enabled; see
nodes/diagnostics.py). While holding, the hold reason is never empty; when chunk requests have gone
unanswered for longer than policy_timeout_s, it says that the policy stopped answering.

Real-time: with realtime_priority > 0 the control thread asks for SCHED_FIFO at that priority (needs
CAP_SYS_NICE or an rtprio limit); one log line says whether it got it. Start-up never fails for it.

A control tick never raises: an internal error is logged with its traceback, latches the estop
("internal error in tick: ..."), and that tick sends nothing; the following ticks brake.
"""

from __future__ import annotations

import collections
import errno
import math
import os
import sys
import threading
import time
import traceback
from typing import Callable, Optional, Sequence

import numpy as np

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, Float64MultiArray, Header
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_adapter_ros.control import Chunk, ExecutorCore, ExecutorState, load_robot_limits
from vla_adapter_ros.control.executor_core import QUEUE_EMPTY
from vla_adapter_ros.msg import ActionChunk, ExecutorStatus
from vla_adapter_ros.nodes.common import (
    Param,
    check_specs,
    declare,
    live_parameters,
    now_seconds,
    run_node,
    seconds_to_duration,
    stamp_seconds,
    watch_clock,
)
from vla_adapter_ros.nodes.diagnostics import DiagnosticsPublisher, diagnostic_status

OUTPUTS = ("jtc", "forward", "sim", "eef_delta")
GRIPPER_OUTPUTS = ("none", "topic", "franka", "auto")
BLEND_MODES = ("replace", "crossfade", "ensemble")

DEFAULTS = {
    "robot": "fr3",  # bundled limits (config/robots/<robot>.yaml) or a path to a limits file
    "control_rate_hz": 0.0,  # 0 = the robot file's control_dt
    "output": "jtc",
    "jtc_topic": "fr3_arm_controller/joint_trajectory",
    "forward_topic": "forward_position_controller/commands",
    "sim_topic": "joint_command",
    "eef_delta_topic": "eef_delta_command",  # output eef_delta
    "max_step_translation_m": 0.01,  # output eef_delta: clamp of each step's translation (m)
    "max_step_rotation_rad": 0.05,  # output eef_delta: clamp of each step's rotation (rad)
    "trajectory_points": 2,
    "joint_state_topic": "joint_states",
    "chunk_topic": "vla/action_chunk",
    "request_topic": "vla/request_chunk",
    "request_period": 0.1,  # s, minimum time between chunk requests while the queue is low
    "status_topic": "vla/executor/status",
    "status_rate_hz": 10.0,
    "blend_mode": "crossfade",  # replace | crossfade | ensemble
    "crossfade_steps": 4,
    "ensemble_decay": 0.01,
    "refill_threshold_s": 0.3,
    "finish_distance": 0.05,  # rad: queue dry -> finish the last target if this close, else brake
    "eef_keep_in_workspace": True,  # EEF-delta rows stop inside the workspace box (false: the filter holds)
    "eef_workspace_margin_m": 0.01,  # m inside the box where they stop
    "require_start_pose": True,
    "dry_run": False,
    "auto_enable": False,  # real robots: False (call ~/enable); simulation may enable at start
    "gripper_output": "none",  # none | topic (Float64 0 open..1 closed) | franka (Move/Grasp) | auto
    "gripper_topic": "gripper/command",
    "gripper_action_ns": "fr3_gripper",
    "gripper_open_width": 0.08,
    "gripper_speed": 0.1,
    "grasp_force": 20.0,
    "grasp_epsilon": 0.08,
    "gripper_open_threshold": 0.3,
    "gripper_close_threshold": 0.7,
    "policy_timeout_s": 1.0,  # s of unanswered chunk requests before the status blames the policy
    "realtime_priority": 0,  # SCHED_FIFO priority of the control thread; 0 = off (robot PC: e.g. 10; see README)
}

# what each parameter means; `live` ones can be changed with `ros2 param set` (see _validate_live)
PARAMETERS = {
    "robot": Param("robot limits: a bundled name (config/robots/<robot>.yaml: fr3, panda, ...) or a path to "
                   "a limits file"),
    "control_rate_hz": Param("control rate in Hz; 0 = the robot file's control_dt", range=(0.0, 10000.0)),
    "output": Param("command output: jtc (JointTrajectory), forward (Float64MultiArray positions), "
                    "sim (JointState), eef_delta (Cartesian steps)", choices=OUTPUTS),
    "jtc_topic": Param("JointTrajectory command topic (output jtc)"),
    "forward_topic": Param("Float64MultiArray position command topic (output forward)"),
    "sim_topic": Param("JointState command topic (output sim)"),
    "eef_delta_topic": Param("Float64MultiArray [dx dy dz drx dry drz gripper] command topic (output eef_delta)"),
    "max_step_translation_m": Param("output eef_delta: clamp of each step's translation (m)", range=(0.0, 1.0)),
    "max_step_rotation_rad": Param("output eef_delta: clamp of each step's rotation (rad)", range=(0.0, 3.2)),
    "trajectory_points": Param("points per JointTrajectory message (later points brake to rest)", range=(1, 3)),
    "joint_state_topic": Param("sensor_msgs/JointState input"),
    "chunk_topic": Param("ActionChunk input"),
    "request_topic": Param("std_msgs/Header chunk requests (published while the queue is low)"),
    "request_period": Param("minimum time between chunk requests while the queue is low (s)",
                            range=(0.0, 10.0), live=True),
    "status_topic": Param("ExecutorStatus output"),
    "status_rate_hz": Param("ExecutorStatus rate (Hz)", range=(0.1, 1000.0)),
    "blend_mode": Param("how a new chunk joins the queue", choices=BLEND_MODES, live=True),
    "crossfade_steps": Param("blend_mode crossfade: steps over which the new chunk fades in", range=(0, 1000),
                             live=True),
    "ensemble_decay": Param("blend_mode ensemble: exponential weight decay per older prediction",
                            range=(0.0, 10.0), live=True),
    "refill_threshold_s": Param("ask for the next chunk when less than this much of the queue is left (s)",
                                range=(0.0, 10.0), live=True),
    "finish_distance": Param("queue dry: finish the last target if this close (rad), else brake",
                             range=(0.0, 3.2), live=True),
    "eef_keep_in_workspace": Param("EEF-delta rows stop eef_workspace_margin_m inside the workspace box along an "
                                   "axis that would leave it (false: as given; the safety filter holds on a target "
                                   "outside)"),
    "eef_workspace_margin_m": Param("how far inside the workspace box EEF-delta rows stop (m)", range=(0.0, 0.1)),
    "require_start_pose": Param("enable/start only near the robot file's start_pose"),
    "dry_run": Param("compute and publish the commands on ~/dry_run/* only; actuate nothing (never changes "
                     "on a running node: restart it)"),
    "auto_enable": Param("enable at start-up (simulation only; a real robot waits for ~/enable)"),
    "gripper_output": Param("gripper commands: none, topic (std_msgs/Float64 0 open..1 closed on gripper_topic), "
                            "franka (franka_msgs Move/Grasp actions, needs franka_ros2), auto (franka when "
                            "franka_msgs is installed, else none with a warning)", choices=GRIPPER_OUTPUTS),
    "gripper_topic": Param("gripper command topic (gripper_output topic)"),
    "gripper_action_ns": Param("namespace of the franka gripper actions (gripper_output franka)"),
    "gripper_open_width": Param("franka gripper: opening width (m)", range=(0.0, 0.08), live=True),
    "gripper_speed": Param("franka gripper: speed (m/s)", range=(0.001, 0.2), live=True),
    "grasp_force": Param("franka gripper: grasp force (N)", range=(0.0, 140.0), live=True),
    "grasp_epsilon": Param("franka gripper: grasp width tolerance, inner and outer (m)", range=(0.0, 0.08),
                           live=True),
    "gripper_open_threshold": Param("gripper closure below this opens (hysteresis; < gripper_close_threshold)",
                                    range=(0.0, 1.0), live=True),
    "gripper_close_threshold": Param("gripper closure above this closes (hysteresis; > gripper_open_threshold)",
                                     range=(0.0, 1.0), live=True),
    "policy_timeout_s": Param("chunk requests unanswered for longer than this (s): the status and /diagnostics "
                              "report that the policy stopped answering (a report only; the hold itself "
                              "comes from the empty queue)", range=(0.01, 3600.0), live=True),
    "realtime_priority": Param("SCHED_FIFO priority of the control thread; 0 = normal scheduling (default: a "
                               "real-time thread preempts every normal process on the machine, e.g. a policy "
                               "running on the CPU). On a robot PC use e.g. 10 (below ros2_control's "
                               "controller_manager at 50). Needs CAP_SYS_NICE or an rtprio limit; without them "
                               "the node logs why and runs normally", range=(0, 98)),
}
check_specs(DEFAULTS, PARAMETERS)

SUPERSEDED = "superseded by a newer chunk before it was processed"
DIAGNOSTICS_PERIOD_S = 1.0


def request_realtime(priority: int) -> tuple[bool, str]:
    """Ask for SCHED_FIFO ``priority`` for the calling thread (Linux: threads it starts later inherit
    it). Never raises: returns (granted, one log line)."""
    priority = int(priority)
    if priority <= 0:
        return False, "real-time scheduling: off (realtime_priority 0)"
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None or not hasattr(os, "SCHED_FIFO"):
        return False, "real-time scheduling not available on this platform (no sched_setscheduler); see README"
    try:
        setter(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else type(exc).__name__
        return False, (f"real-time scheduling not available ({code}): run with CAP_SYS_NICE / rtprio limits "
                       "(e.g. ulimit -r 99, docker --cap-add SYS_NICE --ulimit rtprio=99); see README")
    except Exception as exc:  # (a bad priority value, ...): never fail the start-up for it
        return False, f"real-time scheduling not available ({exc!r}); see README"
    return True, f"real-time scheduling: SCHED_FIFO priority {priority}"


class PolicyWatch:
    """Whether the chunk requests are answered (runs on the control thread; time in s of ROS time).

    ``requested(now)`` for each request published, ``answered(now, sequence)`` for each chunk message
    received (accepted or not: the policy answers), ``idle()`` while no chunk is needed. ``problem(now)``
    is a sentence once requests have gone unanswered for longer than ``timeout_s``, else None.
    """

    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self.waiting_since: Optional[float] = None  # first request not answered yet
        self.unanswered = 0
        self.last_chunk_time: Optional[float] = None
        self.last_chunk_sequence: Optional[int] = None

    def requested(self, now: float) -> None:
        if self.waiting_since is None:
            self.waiting_since = now
        self.unanswered += 1

    def answered(self, now: float, sequence: Optional[int] = None) -> None:
        self.last_chunk_time, self.last_chunk_sequence = now, sequence
        self.waiting_since, self.unanswered = None, 0

    def idle(self) -> None:
        self.waiting_since, self.unanswered = None, 0

    def silent_for(self, now: float) -> Optional[float]:
        """s since the first unanswered request (None: nothing is awaited)."""
        return None if self.waiting_since is None else max(0.0, now - self.waiting_since)

    def problem(self, now: float) -> Optional[str]:
        silent = self.silent_for(now)
        if silent is None or silent <= self.timeout_s:
            return None
        if self.last_chunk_time is None:
            last = "no chunk received since the executor started"
        else:
            t = self.last_chunk_time
            when = time.strftime("%H:%M:%S", time.localtime(t)) if t > 1e9 else f"t={t:.3f} s"
            last = f"last chunk at {when}, {now - t:.1f} s ago, sequence {self.last_chunk_sequence}"
        return (f"no chunk from the policy for {silent:.1f} s ({self.unanswered} requests unanswered; "
                f"is policy_node running? {last})")


def percentile_ms(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(samples, q)) if len(samples) else float("nan")


class JointStateCache:
    """Latest position and receive time of each arm joint (joint states may arrive split by name).

    Only ``joint_names`` are kept (other names are ignored, so the cache never grows). ``update``
    returns ``(q, oldest)``: the arm positions in ``joint_names`` order and the oldest receive time
    among them, once every arm joint has been received and only when this message carried at least
    one arm joint; otherwise ``(None, nan)``. A message whose name and position lengths differ
    changes nothing (counted in ``malformed``).
    """

    def __init__(self, joint_names: Sequence[str]):
        self.joint_names = tuple(joint_names)
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self.positions = np.full(len(self.joint_names), np.nan)
        self.received = np.full(len(self.joint_names), -np.inf)  # receive time per joint (s)
        self.malformed = 0

    def __len__(self) -> int:
        return int(np.count_nonzero(np.isfinite(self.received)))

    def update(self, names: Sequence[str], positions: Sequence[float],
               now: float) -> tuple[Optional[np.ndarray], float]:
        if len(names) != len(positions):
            self.malformed += 1
            return None, float("nan")
        touched = False
        for name, value in zip(names, positions):
            i = self._index.get(name)
            if i is not None:
                self.positions[i] = float(value)  # a non-finite value is kept: the core rejects it
                self.received[i] = now
                touched = True
        if not touched or not np.all(np.isfinite(self.received)):
            return None, float("nan")
        return self.positions.copy(), float(np.min(self.received))


class ChunkWorker:
    """One thread that hands chunks to ``process`` in arrival order, off the control thread.

    A small latest-wins mailbox: a new chunk replaces a pending (not yet started) one, which goes
    to ``on_dropped``; a pending stop chunk (horizon 0) is kept ahead of a newer non-stop chunk, so
    at most two chunks wait. ``process`` exceptions go to ``on_error`` (the thread keeps running).
    """

    def __init__(self, process: Callable[[Chunk], None], on_dropped: Callable[[Chunk], None],
                 on_error: Callable[[Chunk, BaseException], None], name: str = "chunk_worker"):
        self._process = process
        self._on_dropped = on_dropped
        self._on_error = on_error
        self._pending: list[Chunk] = []
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def submit(self, chunk: Chunk) -> bool:
        """Queue ``chunk`` (never blocks). False if the worker is stopped."""
        with self._cond:
            if self._stopping:
                return False
            keep, dropped = [], []
            for old in self._pending:  # (dataclasses of arrays: no == here)
                (keep if old.is_stop and not chunk.is_stop else dropped).append(old)
            self._pending = keep + [chunk]
            self._cond.notify()
        for old in dropped:
            self._on_dropped(old)
        return True

    def idle(self) -> bool:
        with self._cond:
            return not self._busy and not self._pending

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                chunk = self._pending.pop(0)
                self._busy = True
            try:
                self._process(chunk)
            except Exception as exc:  # reported, never kills the thread
                try:
                    self._on_error(chunk, exc)
                except Exception:
                    pass
            finally:
                with self._cond:
                    self._busy = False

    def stop(self, timeout: float = 2.0) -> bool:
        """Drop pending chunks, let a running one finish (up to ``timeout`` s). True if joined."""
        with self._cond:
            self._stopping = True
            self._pending = []
            self._cond.notify_all()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)
        return not self.thread.is_alive()


class ExecutorNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("executor_node", **node_kwargs)
        self.p = declare(self, DEFAULTS, PARAMETERS)
        p = self.p
        self.limits = load_robot_limits(p["robot"])
        dt = 1.0 / float(p["control_rate_hz"]) if p["control_rate_hz"] > 0 else None
        self.core = ExecutorCore(
            self.limits, dt=dt, blend_mode=p["blend_mode"], crossfade_steps=int(p["crossfade_steps"]),
            ensemble_decay=float(p["ensemble_decay"]), refill_threshold_s=float(p["refill_threshold_s"]),
            require_start_pose=bool(p["require_start_pose"]), dry_run=bool(p["dry_run"]),
            gripper_open_threshold=float(p["gripper_open_threshold"]),
            gripper_close_threshold=float(p["gripper_close_threshold"]),
            # the stop points serve a JointTrajectoryController only (other outputs send one position)
            trajectory_points=int(p["trajectory_points"]) if p["output"] == "jtc" else 1,
            finish_distance=float(p["finish_distance"]),
            eef_keep_in_workspace=bool(p["eef_keep_in_workspace"]),
            eef_workspace_margin_m=float(p["eef_workspace_margin_m"]),
        )
        if p["output"] == "eef_delta":  # task-space stream: same interface, no IK
            from vla_adapter_ros.control.eef_output import EefDeltaCore

            self.core = EefDeltaCore(
                self.limits, dt=self.core.dt, max_translation_m=float(p["max_step_translation_m"]),
                max_rotation_rad=float(p["max_step_rotation_rad"]),
                refill_threshold_s=float(p["refill_threshold_s"]),
                gripper_open_threshold=float(p["gripper_open_threshold"]),
                gripper_close_threshold=float(p["gripper_close_threshold"]), dry_run=bool(p["dry_run"]))
        self.tick_ms = float("nan")
        n_ticks = max(10, int(round(2.0 / self.core.dt)))  # ~2 s of tick timing for /diagnostics
        self._tick_starts: collections.deque = collections.deque(maxlen=n_ticks)  # perf_counter s
        self._tick_durations: collections.deque = collections.deque(maxlen=n_ticks)  # ms
        self._last_request = -math.inf
        self.policy_watch = PolicyWatch(float(p["policy_timeout_s"]))
        self._joint_cache = JointStateCache(self.limits.joint_names)
        self._last_tick_error: Optional[str] = None
        self.chunk_worker = ChunkWorker(self._process_chunk, self._on_chunk_dropped, self._on_chunk_error)

        control = MutuallyExclusiveCallbackGroup()  # one group: callbacks never race the tick
        self.create_subscription(JointState, p["joint_state_topic"], self._on_joint_state,
                                 qos_profile_sensor_data, callback_group=control)
        self.create_subscription(ActionChunk, p["chunk_topic"], self._on_chunk, 10, callback_group=control)
        self.request_pub = self.create_publisher(Header, p["request_topic"], 10)
        self.status_pub = self.create_publisher(ExecutorStatus, p["status_topic"], 10)
        self.dry_run_pub = self.create_publisher(JointTrajectory, "~/dry_run/joint_trajectory", 10)
        if p["output"] == "jtc":
            self.command_pub = self.create_publisher(JointTrajectory, p["jtc_topic"], 10)
        elif p["output"] == "forward":
            self.command_pub = self.create_publisher(Float64MultiArray, p["forward_topic"], 10)
        elif p["output"] == "eef_delta":
            self.command_pub = self.create_publisher(Float64MultiArray, p["eef_delta_topic"], 10)
            self.dry_run_pub = self.create_publisher(Float64MultiArray, "~/dry_run/eef_delta", 10)
        else:
            self.command_pub = self.create_publisher(JointState, p["sim_topic"], 10)
        self._setup_gripper()
        live_parameters(self, PARAMETERS, self.p, validate=self._validate_live, apply=self._apply_live)
        watch_clock(self)

        self.create_service(SetBool, "~/enable", self._on_enable, callback_group=control)
        for name, method in [("pause", self.core.pause), ("resume", self.core.resume),
                             ("go_home", self.core.go_home), ("stop", self.core.stop)]:
            self.create_service(Trigger, f"~/{name}", self._trigger_service(method), callback_group=control)
        self.create_service(Trigger, "~/start", self._trigger_service(lambda: self.core.start(self._now())),
                            callback_group=control)
        self.create_service(Trigger, "~/reset", self._trigger_service(lambda: self.core.reset(self._now())),
                            callback_group=control)
        self.create_service(Trigger, "~/estop", self._trigger_service(lambda: self.core.estop("estop service")),
                            callback_group=control)
        self.create_service(Trigger, "~/resync", self._trigger_service(lambda: self.core.resync()),
                            callback_group=control)
        self.create_timer(self.core.dt, self._tick, callback_group=control)
        self.create_timer(1.0 / float(p["status_rate_hz"]), self._publish_status, callback_group=control)
        self.diagnostics = DiagnosticsPublisher(self, self._diagnostics, DIAGNOSTICS_PERIOD_S, callback_group=control)
        self.realtime = False  # see enter_realtime (called by main, in the thread that spins the node)
        self._auto_enable_pending = bool(p["auto_enable"])
        mode = "DRY RUN (nothing is sent)" if p["dry_run"] else f"output {p['output']}"
        self.get_logger().info(
            f"ready: robot {self.limits.name}, {1.0 / self.core.dt:.0f} Hz, {mode}, "
            f"{'auto-enable' if p['auto_enable'] else 'disabled until ~/enable'}"
        )
        if p["output"] == "forward" and 1.0 / self.core.dt < 999.0:
            self.get_logger().warning(
                f"output forward at {1.0 / self.core.dt:.0f} Hz: a forward position controller applies each "
                "command as a step at its own update rate, so the motion it sees is continuous only when "
                "control_rate_hz equals that rate (1000 for franka_ros2); see README, Safety")

    def enter_realtime(self) -> bool:
        """Ask for SCHED_FIFO (parameter realtime_priority) for the calling thread, which must be the
        one that spins this node (the control thread; the chunk worker, started before, keeps normal
        scheduling). One log line either way; never raises."""
        priority = int(self.p["realtime_priority"])
        self.realtime, line = request_realtime(priority)
        (self.get_logger().info if self.realtime or priority <= 0 else self.get_logger().warning)(line)
        return self.realtime

    # ------------------------------------------------------------------ live parameters
    def _validate_live(self, values: dict, changes: dict) -> Optional[str]:
        if not values["gripper_open_threshold"] < values["gripper_close_threshold"]:
            return (f"gripper_open_threshold ({values['gripper_open_threshold']}) must be below "
                    f"gripper_close_threshold ({values['gripper_close_threshold']})")
        unused = [k for k in ("blend_mode", "crossfade_steps", "ensemble_decay", "finish_distance")
                  if k in changes and self.p["output"] == "eef_delta"]
        if unused:
            return f"{', '.join(unused)}: not used with output eef_delta"
        return None

    def _apply_live(self, changes: dict) -> None:
        core = self.core
        scheduler = getattr(core, "scheduler", None)
        with core._lock:  # noqa: SLF001 (the chunk worker uses the core concurrently)
            if "refill_threshold_s" in changes:
                if scheduler is not None:
                    scheduler.refill_threshold_s = float(changes["refill_threshold_s"])
                else:
                    core.refill_threshold_s = float(changes["refill_threshold_s"])
            if "finish_distance" in changes:
                core.finish_distance = float(changes["finish_distance"])
            if scheduler is not None:
                for key, cast in (("blend_mode", str), ("crossfade_steps", int), ("ensemble_decay", float)):
                    if key in changes:
                        setattr(scheduler, key, cast(changes[key]))
            if "policy_timeout_s" in changes:
                self.policy_watch.timeout_s = float(changes["policy_timeout_s"])
            core.gripper.open_threshold = float(self.p["gripper_open_threshold"])
            core.gripper.close_threshold = float(self.p["gripper_close_threshold"])

    # ------------------------------------------------------------------ gripper
    def _setup_gripper(self) -> None:
        p = self.p
        self.gripper_pub = None
        self.gripper_clients = None
        if p["gripper_output"] == "auto":
            try:
                import franka_msgs.action  # noqa: F401
            except ImportError:
                p["gripper_output"] = "none"
                self.get_logger().warning(
                    "gripper_output auto: franka_msgs is not installed, so NO gripper commands are sent "
                    "(install franka_ros2 for the Franka Hand, or set gripper_output topic)")
            else:
                p["gripper_output"] = "franka"
                self.get_logger().info("gripper_output auto: franka_msgs found, using the franka gripper actions")
        if p["gripper_output"] == "topic":
            self.gripper_pub = self.create_publisher(Float64, p["gripper_topic"], 10)
        elif p["gripper_output"] == "franka":
            try:
                from franka_msgs.action import Grasp, Move
            except ImportError as exc:
                raise RuntimeError("gripper_output 'franka' needs franka_msgs (install franka_ros2, or choose "
                                   "gripper_output none, topic or auto)") from exc
            from rclpy.action import ActionClient

            ns = p["gripper_action_ns"].rstrip("/")
            self.gripper_clients = (Move, Grasp, ActionClient(self, Move, f"{ns}/move"),
                                    ActionClient(self, Grasp, f"{ns}/grasp"))

    def _send_gripper(self, event) -> None:
        if self.core.dry_run:
            return
        if self.core.state == ExecutorState.ESTOP:  # the core sends none then; belt and braces
            self.get_logger().warning(f"gripper -> {event.state} not sent: estop", throttle_duration_sec=2.0)
            return
        if self.gripper_pub is not None:
            self.gripper_pub.publish(Float64(data=1.0 if event.closed else 0.0))
        elif self.gripper_clients is not None:
            move_t, grasp_t, move, grasp = self.gripper_clients
            p = self.p
            if event.closed:
                goal = grasp_t.Goal(width=0.0, speed=float(p["gripper_speed"]), force=float(p["grasp_force"]))
                goal.epsilon.inner = goal.epsilon.outer = float(p["grasp_epsilon"])
                grasp.send_goal_async(goal)
            else:
                move.send_goal_async(move_t.Goal(width=float(p["gripper_open_width"]), speed=float(p["gripper_speed"])))
        self.get_logger().info(f"gripper -> {event.state}")

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return now_seconds(self)

    def _on_joint_state(self, msg: JointState) -> None:
        # Ages by our own clock, not the header stamp (see the module docstring); split messages
        # (arm and gripper separately) are merged by name.
        q, oldest = self._joint_cache.update(msg.name, msg.position, self._now())
        if len(msg.name) != len(msg.position):
            self.get_logger().warning(
                f"joint state ignored: {len(msg.name)} names but {len(msg.position)} positions "
                f"({self._joint_cache.malformed} so far)", throttle_duration_sec=2.0)
            return
        if q is None:
            return
        accepted = self.core.on_joint_state(q, oldest)
        if accepted and self._auto_enable_pending:
            ok, message = self.core.enable(self._now())
            if not ok and "try again" in message:  # not yet sure the arm rests: retry on the next state
                self.get_logger().info(f"auto-enable: {message}", throttle_duration_sec=2.0)
                return
            self._auto_enable_pending = False
            log = self.get_logger().info if ok else self.get_logger().error
            log(f"auto-enable: {message}")

    def _on_chunk(self, msg: ActionChunk) -> None:
        """Parse only (cheap); the conversion runs on the chunk worker thread."""
        self.policy_watch.answered(self._now(), int(msg.sequence))  # any chunk, even a rejected one, is an answer
        try:
            chunk = Chunk.from_flat(stamp_seconds(msg.header.stamp), msg.dt,
                                    msg.action_space, list(msg.names), msg.horizon, msg.action_dim,
                                    msg.actions, list(msg.gripper), msg.sequence)
        except ValueError as exc:
            self.core.reject_unparsable_chunk(str(exc), msg.sequence)
            self.get_logger().warning(f"chunk {msg.sequence} rejected: {exc}")
            return
        if not self.chunk_worker.submit(chunk):
            self.core.reject_unparsable_chunk("executor is shutting down", msg.sequence)

    def _process_chunk(self, chunk: Chunk) -> None:  # chunk worker thread
        result = self.core.on_chunk(chunk, self._now())
        if not result.accepted:
            self.get_logger().warning(f"chunk {chunk.sequence} rejected: {result.reason}",
                                      throttle_duration_sec=2.0)

    def _on_chunk_dropped(self, chunk: Chunk) -> None:
        self.core.reject_unparsable_chunk(SUPERSEDED, chunk.sequence)
        self.get_logger().warning(f"chunk {chunk.sequence} rejected: {SUPERSEDED}", throttle_duration_sec=2.0)

    def _on_chunk_error(self, chunk: Chunk, exc: BaseException) -> None:  # chunk worker thread
        self.core.reject_unparsable_chunk(f"internal error: {exc!r}", chunk.sequence)
        self.get_logger().error(f"chunk {chunk.sequence}: internal error\n"
                                + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def shutdown(self) -> None:
        """Stop the chunk worker (a running conversion may finish; pending chunks are dropped)."""
        if not self.chunk_worker.stop(timeout=2.0):
            self.get_logger().warning("chunk worker still busy at shutdown (daemon thread left behind)")

    # ------------------------------------------------------------------ services
    def _on_enable(self, request, response):
        try:
            state = self.core.state
            if request.data and state not in (ExecutorState.DISABLED, ExecutorState.STOPPING, ExecutorState.ESTOP):
                # idempotent: enabling an enabled executor changes nothing and is no failure
                response.success, response.message = True, f"already enabled ({state.value}): nothing changed"
            else:
                response.success, response.message = (self.core.enable(self._now()) if request.data
                                                      else self.core.disable())
        except Exception as exc:  # as in _trigger_service
            response.success, response.message = False, f"internal error: {exc!r}"
            self.get_logger().error(traceback.format_exc())
        self.get_logger().info(f"{'enable' if request.data else 'disable'}: {response.message}")
        return response

    def _trigger_service(self, method):
        def handler(_request, response):
            try:
                response.success, response.message = method()
            except Exception as exc:  # an exception here would end the executor's spin: answer instead
                response.success, response.message = False, f"internal error: {exc!r}"
                self.get_logger().error(traceback.format_exc())
            self.get_logger().info(f"service: {response.message}")
            return response

        return handler

    # ------------------------------------------------------------------ control tick
    def _tick(self) -> None:
        start = time.perf_counter()
        now = self._now()
        try:
            command = self.core.tick(now)
        except Exception as exc:  # never let a tick raise: latch the estop, send nothing this tick
            self._on_tick_error(exc)
            self.tick_ms = (time.perf_counter() - start) * 1e3
            return
        if command is not None:
            self._publish_command(command)
            if command.gripper_event is not None:
                self._send_gripper(command.gripper_event)
        if not self.core.needs_chunk(now):
            self.policy_watch.idle()
        elif now - self._last_request >= float(self.p["request_period"]):
            self._last_request = now
            header = Header(frame_id="queue_low")
            header.stamp = self.get_clock().now().to_msg()
            self.request_pub.publish(header)
            self.policy_watch.requested(now)
        self.tick_ms = (time.perf_counter() - start) * 1e3
        self._tick_starts.append(start)
        self._tick_durations.append(self.tick_ms)

    def _on_tick_error(self, exc: Exception) -> None:
        text = repr(exc)
        if text != self._last_tick_error:  # once per distinct error, with its traceback
            self._last_tick_error = text
            self.get_logger().error("internal error in tick (estop latched):\n"
                                    + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        try:
            self.core.estop(f"internal error in tick: {text}")
        except Exception:  # the core is broken beyond that: nothing more to do here
            self.get_logger().error("estop after a tick error failed too", throttle_duration_sec=5.0)

    def _trajectory(self, command) -> JointTrajectory:
        traj = JointTrajectory()  # header stamp 0: the controller starts it now
        traj.joint_names = list(command.joint_names)
        for point in command.points:
            out = JointTrajectoryPoint(positions=point.positions.tolist(), velocities=point.velocities.tolist(),
                                       accelerations=point.accelerations.tolist())
            out.time_from_start = seconds_to_duration(point.time_from_start)
            traj.points.append(out)
        return traj

    def _publish_command(self, command) -> None:
        if self.p["output"] == "eef_delta":  # layout label: step | wait | hold (see EefDeltaCore)
            from std_msgs.msg import MultiArrayDimension, MultiArrayLayout

            msg = Float64MultiArray(data=command.values, layout=MultiArrayLayout(
                dim=[MultiArrayDimension(label=command.kind, size=7, stride=7)]))
            (self.dry_run_pub if command.dry_run else self.command_pub).publish(msg)
            return
        if command.dry_run:
            self.dry_run_pub.publish(self._trajectory(command))
            return
        output = self.p["output"]
        if output == "jtc":
            self.command_pub.publish(self._trajectory(command))
        elif output == "forward":
            self.command_pub.publish(Float64MultiArray(data=command.positions.tolist()))
        else:
            msg = JointState(name=list(command.joint_names), position=command.positions.tolist(),
                             velocity=command.velocities.tolist())
            msg.header.stamp = self.get_clock().now().to_msg()
            self.command_pub.publish(msg)

    # ------------------------------------------------------------------ status
    def _status(self):
        """(core status, hold reason): the reason is never empty while holding; a silent policy
        (requests unanswered for longer than policy_timeout_s) is named as the reason while running."""
        now = self._now()
        s = self.core.status(now)
        if not s.holding:
            return s, ""
        reason = s.hold_reason or f"{s.state}: holding"
        policy = self.policy_watch.problem(now) if s.state == ExecutorState.RUNNING.value else None
        if policy is None:
            return s, reason
        # the policy's silence replaces "queue empty"; a more specific hold (joint states, ...) stays first
        if reason.startswith(QUEUE_EMPTY):  # keep what follows, e.g. "; last chunk rejected: ..."
            rest = reason.partition("; ")[2]
            return s, f"{policy}; {rest}" if rest else policy
        return s, f"{reason}; also {policy}"

    def _publish_status(self) -> None:
        s, hold_reason = self._status()
        msg = ExecutorStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.state, msg.dry_run, msg.holding = s.state, s.dry_run, s.holding
        msg.hold_reason = hold_reason
        msg.estop_reason = s.estop_reason or ""
        msg.message = s.message or ""
        msg.queue_depth = int(s.queue_depth)
        msg.queue_remaining_s = float(s.queue_remaining_s)
        msg.needs_chunk = bool(s.needs_chunk)
        msg.chunks_accepted, msg.chunks_rejected = int(s.chunks_accepted), int(self.core.chunks_rejected)
        msg.last_chunk_reject_reason = s.last_chunk_reject_reason or ""
        latency = s.last_chunk_latency
        msg.chunk_latency_ms = float("nan") if latency is None or not math.isfinite(latency) else latency * 1e3
        msg.clip_names = list(s.clip_counts)
        msg.clip_counts = [int(v) for v in s.clip_counts.values()]
        msg.last_safety_event = s.last_safety_event or ""
        msg.at_start_pose = -1 if s.at_start_pose is None else int(s.at_start_pose)
        msg.joint_state_age_ms = float("nan") if s.joint_state_age is None else s.joint_state_age * 1e3
        msg.gripper_state = s.gripper_state or "unknown"
        msg.tick_ms = self.tick_ms
        self.status_pub.publish(msg)

    def tick_timing(self) -> dict:
        """Control tick timing over the last ~2 s: duration p50/p99/max (ms), rate (Hz), period p99 (ms)."""
        durations, starts = list(self._tick_durations), list(self._tick_starts)
        periods = np.diff(starts) * 1e3 if len(starts) > 1 else np.zeros(0)
        return {
            "tick_ms_p50": percentile_ms(durations, 50), "tick_ms_p99": percentile_ms(durations, 99),
            "tick_ms_max": max(durations) if durations else float("nan"),
            "tick_period_ms_p99": percentile_ms(periods, 99),
            "tick_rate_hz": (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 and starts[-1] > starts[0]
            else float("nan"),
        }

    def diagnostic_values(self) -> dict:
        """The executor's status as a plain dict (see nodes/diagnostics.py for the level mapping)."""
        s, hold_reason = self._status()
        now = self._now()
        timing = self.tick_timing()
        silent = self.policy_watch.silent_for(now)
        values = {
            "state": s.state, "enabled": s.state != ExecutorState.DISABLED.value, "holding": s.holding,
            "hold_reason": hold_reason, "estop_reason": s.estop_reason or "", "dry_run": s.dry_run,
            "output": self.p["output"], "control_rate_hz": 1.0 / self.core.dt,
            **timing,
            "realtime": f"SCHED_FIFO {int(self.p['realtime_priority'])}" if self.realtime else "off",
            "queue_depth": int(s.queue_depth), "queue_remaining_s": float(s.queue_remaining_s),
            "chunks_accepted": int(s.chunks_accepted), "chunks_rejected": int(self.core.chunks_rejected),
            "last_chunk_reject_reason": s.last_chunk_reject_reason or "",
            "policy_silent_s": float("nan") if silent is None else silent,
            "interventions": {k: int(v) for k, v in s.clip_counts.items()},
            "interventions_total": int(sum(s.clip_counts.values())),
            "last_safety_event": s.last_safety_event or "",
            "joint_state_age_ms": float("nan") if s.joint_state_age is None else s.joint_state_age * 1e3,
            "gripper_state": s.gripper_state or "unknown", "message": s.message or "",
        }
        if s.state == ExecutorState.RUNNING.value and not s.holding and self.policy_watch.problem(now):
            values["warning"] = self.policy_watch.problem(now)  # still moving, but the queue is running out
        p99 = timing["tick_ms_p99"]
        if s.state != ExecutorState.DISABLED.value and math.isfinite(p99) and p99 > self.core.dt * 1e3:
            values["warning"] = f"control tick p99 {p99:.2f} ms > period {self.core.dt * 1e3:.2f} ms"
        return values

    def _diagnostics(self):
        return diagnostic_status(f"{self.get_fully_qualified_name().lstrip('/')}: executor", self.diagnostic_values(),
                                 hardware_id=self.limits.name)


def main(argv: list[str] | None = None) -> int:
    # Single-threaded: every callback is in one mutually exclusive group (they never race the tick),
    # and rclpy's MultiThreadedExecutor busy-spins while a callback of a busy group waits. Chunk
    # conversion runs on the chunk worker thread instead. With the default 5 ms GIL switch interval
    # a numpy-heavy worker (IK for an EEF_DELTA chunk) could delay a tick by 5 ms at a time (half a
    # 100 Hz period); 0.5 ms lets the control thread take the GIL back quickly.
    sys.setswitchinterval(0.0005)
    # real-time scheduling for the thread that spins the node (this one), requested after the node
    # (and its chunk worker thread) exist
    return run_node(ExecutorNode, "executor_node", argv, setup=ExecutorNode.enter_realtime,
                    teardown=ExecutorNode.shutdown, num_threads=1)


if __name__ == "__main__":
    sys.exit(main())
