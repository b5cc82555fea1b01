"""The chunk -> executor -> controller path without ROS: a fast, deterministic model of
executor_node -> sim_node for measurements and tests (pure Python).

One loop plays both nodes with the real cores: :class:`~vla_adapter_ros.control.ExecutorCore`
(configured from the executor's parameter files, as executor_node does) ticks at its control rate and
its trajectories drive the simulation's :class:`~vla_adapter_ros.sim.controllers.TrajectoryFollower`
exactly as sim_node applies them; cameras tick at ``camera_dt``; a chunk request is answered by a
``source`` with a chunk stamped at the newest camera time that arrives ``latency_s`` later. What the
real nodes add (middleware, threads, wall-clock jitter) is not modelled: the ROS path is measured with
``vla-adapter-ros replay`` and tested in test/test_oracle_stack.py.

    result = run_chunk_episode("push_blue_left", 1000, OracleSource())
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from vla_adapter_ros.control import Chunk, ExecutorCore, load_robot_limits
from vla_adapter_ros.control.chunk import EEF_DELTA
from vla_adapter_ros.sim.controllers import TrajectoryFollower
from vla_adapter_ros.sim.env import GRIPPER_MAX_WIDTH_M, FrankaSimEnv
from vla_adapter_ros.sim.oracle import DEFAULT_DT, DEFAULT_HORIZON, ORACLE_MAX_SPEED, ExpertOracle
from vla_adapter_ros.sim.tasks import get_task


def executor_parameters(files=None, extra=()) -> dict:
    """executor_node's parameters from its parameter files (default: executor.yaml + executor_sim.yaml,
    as the simulation stack starts it), then ``extra`` files; later files win."""
    from vla_adapter_ros.paths import config_dir

    files = [*(files or [config_dir() / "executor.yaml", config_dir() / "executor_sim.yaml"]), *extra]
    params: dict = {}
    for f in files:
        data = yaml.safe_load(Path(f).read_text()) or {}
        params.update((data.get("executor_node") or {}).get("ros__parameters") or {})
    return params


def executor_core(params: dict) -> ExecutorCore:
    """An ExecutorCore configured like executor_node with these parameters."""
    limits = load_robot_limits(params.get("robot", "fr3"))
    rate = float(params.get("control_rate_hz", 0.0))
    return ExecutorCore(
        limits, dt=1.0 / rate if rate > 0 else None, blend_mode=params.get("blend_mode", "crossfade"),
        crossfade_steps=int(params.get("crossfade_steps", 4)), ensemble_decay=float(params.get("ensemble_decay", 0.01)),
        refill_threshold_s=float(params.get("refill_threshold_s", 0.3)),
        require_start_pose=bool(params.get("require_start_pose", True)),
        gripper_open_threshold=float(params.get("gripper_open_threshold", 0.3)),
        gripper_close_threshold=float(params.get("gripper_close_threshold", 0.7)),
        trajectory_points=int(params.get("trajectory_points", 1)),
        finish_distance=float(params.get("finish_distance", 0.05)),
        eef_keep_in_workspace=bool(params.get("eef_keep_in_workspace", True)),
        eef_workspace_margin_m=float(params.get("eef_workspace_margin_m", 0.01)))


class OracleSource:
    """Chunks from :class:`~vla_adapter_ros.sim.oracle.ExpertOracle` (planned at the first request)."""

    def __init__(self, horizon: int = DEFAULT_HORIZON, dt: float = DEFAULT_DT, max_speed: float = ORACLE_MAX_SPEED,
                 limits=None, **options):
        self.horizon, self.dt, self.max_speed = horizon, dt, max_speed
        self.limits = limits
        self.options = options
        self.oracle = None

    def reset(self, env, task) -> None:
        self.oracle = ExpertOracle(task, self.horizon, self.dt, self.max_speed,
                                   limits=self.limits, **self.options)

    def chunk(self, env, t_obs: float, pose_obs: np.ndarray):
        if not self.oracle.started:
            self.oracle.reset(env)
        c = self.oracle.chunk(t_obs, pose_obs)
        return c.arm, c.closure, self.dt


@dataclass
class ChunkEpisode:
    task: str
    seed: int
    success: bool
    sim_time_s: float
    chunks_accepted: int = 0
    chunks_rejected: int = 0
    clip_counts: dict = field(default_factory=dict)
    max_joint_speed: float = 0.0  # rad/s, measured
    max_tool_speed: float = 0.0  # m/s, measured
    state: str = ""
    reject_reasons: list = field(default_factory=list)
    log: list = field(default_factory=list)  # (t, tcp position) every camera frame
    poses: list = field(default_factory=list)  # tool pose (4x4) every camera frame, with record_poses
    closures: list = field(default_factory=list)  # gripper closure in effect every camera frame, with record_poses


def run_chunk_episode(task_name: str, seed: int, source, env: FrankaSimEnv | None = None, params: dict | None = None,
                      start_jitter: float = 0.0, max_duration_s: float | None = None, latency_s: float = 0.02,
                      camera_dt: float = 0.1, step_dt: float = 0.004, request_period: float | None = None,
                      stop_on_success: bool = True, record_poses: bool = False) -> ChunkEpisode:
    """One episode: reset (task, seed), enable the executor, serve chunks from ``source`` on request until
    success or the task's time limit (simulation seconds).

    ``source``: ``reset(env, task)``, ``chunk(env, t_obs, pose_obs) -> (arm rows, closure or None, dt) or None``
    for the newest camera frame (time ``t_obs``, tool pose ``pose_obs`` then) and, optionally,
    ``observe(env, t)``, called at every camera frame (before any chunk of that frame is asked for)."""
    task = get_task(task_name)
    env = env or FrankaSimEnv()
    params = dict(executor_parameters() if params is None else params)
    task.reset(env, seed, start_jitter)
    core = executor_core(params)
    follower = TrajectoryFollower(env.joint_positions())
    source.reset(env, task)
    limit = task.max_duration_s if max_duration_s is None else max_duration_s
    period = float(params.get("request_period", 0.1)) if request_period is None else request_period
    substeps = max(1, int(round(step_dt / env.timestep)))
    t0 = env.sim_time
    out = ChunkEpisode(task_name, seed, False, 0.0)
    cam_t, cam_pose = None, None
    next_cam = t0
    last_request = -math.inf
    pending: list[tuple[float, Chunk]] = []
    sequence = 0
    prev_q, prev_p = env.joint_positions(), env.eef_pose().position
    enabled = False
    while env.sim_time - t0 < limit - 1e-9:
        q_ref, qd_ref = follower.sample(env.sim_time)
        env.set_joint_targets(q_ref, qd_ref)
        env.step(substeps)
        now = env.sim_time
        q = env.joint_positions()
        pose = env.eef_pose()
        out.max_joint_speed = max(out.max_joint_speed, float(np.max(np.abs(q - prev_q))) / step_dt)
        out.max_tool_speed = max(out.max_tool_speed, float(np.linalg.norm(pose.position - prev_p)) / step_dt)
        prev_q, prev_p = q, pose.position
        core.on_joint_state(q, now)
        if now + 1e-9 >= next_cam:
            next_cam += camera_dt
            cam_t, cam_pose = now, pose.matrix()
            if hasattr(source, "observe"):  # a source that looks at the scene keeps this frame's images
                source.observe(env, now)
            out.log.append((now - t0, pose.position.copy()))
            if record_poses:  # what a recording's camera frames and gripper commands hold
                out.poses.append(cam_pose)
                out.closures.append(1.0 - env.gripper_width_target / GRIPPER_MAX_WIDTH_M)
        if not enabled:
            ok, message = core.enable(now)
            enabled = ok
            if not ok and "try again" not in message:
                raise RuntimeError(f"executor refused to enable: {message}")
        while pending and pending[0][0] <= now + 1e-9:
            _, chunk = pending.pop(0)
            result = core.on_chunk(chunk, now)
            if not result.accepted:
                out.reject_reasons.append(result.reason)
        command = core.tick(now)
        if command is not None:
            follower.set_trajectory(now, [p.time_from_start for p in command.points],
                                    [p.positions for p in command.points], [p.velocities for p in command.points])
            if command.gripper_event is not None:
                env.set_gripper(0.0 if command.gripper_event.closed else GRIPPER_MAX_WIDTH_M)
        if core.needs_chunk(now) and now - last_request >= period and cam_t is not None and not pending:
            last_request = now
            made = source.chunk(env, cam_t, cam_pose)
            if made is not None:
                arm, closure, dt = made
                sequence += 1
                pending.append((now + latency_s, Chunk(cam_t, dt, EEF_DELTA, [], np.asarray(arm),
                                                       None if closure is None else np.asarray(closure), sequence)))
        if task.success(env):
            out.success = True
            if stop_on_success:
                break
    status = core.status(env.sim_time)
    out.sim_time_s = env.sim_time - t0
    out.chunks_accepted, out.chunks_rejected = status.chunks_accepted, status.chunks_rejected
    out.clip_counts = {k: v for k, v in status.clip_counts.items() if v}
    out.state = status.state
    return out
