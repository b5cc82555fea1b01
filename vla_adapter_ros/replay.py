"""`vla-adapter-ros replay`: closed-loop checks of the chunk -> executor -> simulation path, without a model.

    vla-adapter-ros replay DATASET [--tasks ...] [--episodes N]      # dataset replay
    vla-adapter-ros replay --oracle --tasks ... --episodes 30 --seed 1000   # the scripted expert as the policy

Starts sim_node + executor_node with the simulation's parameter files (config/sim.yaml,
config/executor.yaml + config/executor_sim.yaml, as the demo starts them) and runs episodes as the demo
does: disable the executor, reset the scene (task, seed), ~/resync, ~/enable, then wait for the task's
success flag or its time limit (simulated seconds). The policy is replaced by

* dataset replay: each recorded episode's own dataset actions, served as ActionChunks exactly as
  policy_node would serve a model's: on each chunk request of the executor, stamped with the newest
  camera frame's time, ``horizon`` rows from the frame of that time on (frame k = round((t - t0) / dt),
  t0 = the first request's frame, dt = the dataset's frame period), arm columns in SI units, gripper
  column -> closure through the dataset's io spec (vla_adapter_ros.inference.io_spec.IOSpec.split), in the
  same scene (task, seed and start jitter from the episode's sim_episode record, written by `collect`);
* ``--oracle``: sim_node's oracle mode (the scripted expert's plan for the current state, as chunks).

A perfect policy succeeds where these succeed; where they fail, the plumbing (labels, limits, executor)
is at fault, not the model. Prints a per-task success table; writes OUT/summary.json and OUT/nodes.log.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TASKS = ("reach_red", "push_blue_left", "lift_green")
EEF_NAMES = ["eef_dx", "eef_dy", "eef_dz", "eef_drx", "eef_dry", "eef_drz"]


# ---------------------------------------------------------------------------------------------
# pure parts (no ROS)
# ---------------------------------------------------------------------------------------------
@dataclass
class ReplayEpisode:
    index: int  # dataset episode index
    task: str
    seed: int
    start_jitter: float
    instruction: str
    actions: np.ndarray  # (N, action_dim) dataset actions, as stored


@dataclass
class DatasetInfo:
    path: Path
    dt: float
    io: object  # IOSpec
    episodes: list = field(default_factory=list)  # ReplayEpisode
    skipped: int = 0  # episodes without a sim_episode record


def load_replay_dataset(path) -> DatasetInfo:
    """The episodes of a converted dataset that carry their simulation scene (``sim_episode``)."""
    import pyarrow.parquet as pq

    from vla_adapter_ros.data.convert import ConvertError, LeRobotFrames
    from vla_adapter_ros.inference.io_spec import IOSpec

    frames = LeRobotFrames(path)
    ours = frames.info.get("vla_adapter_ros") or {}
    if not ours.get("dt"):
        raise ConvertError(f"{path}: meta/info.json has no frame period (vla_adapter_ros.dt)")
    io = IOSpec(action_space=ours.get("action_space", "eef_delta"), dt=float(ours["dt"]),
                action_dim=int(frames.action.shape[1]), gripper_index=ours.get("gripper_index"),
                gripper_open_value=float(ours.get("gripper_open_value", 1.0)),
                gripper_closed_value=float(ours.get("gripper_closed_value", 0.0)),
                proprio_layout=ours.get("proprio_layout", "eef_axisangle_fingers"))
    meta = pq.read_table(str(Path(path) / "meta/episodes/chunk-000/file-000.parquet")).to_pylist()
    info = DatasetInfo(Path(path), float(ours["dt"]), io)
    for row in meta:
        sim = json.loads(row.get("sim_episode") or "{}")
        if not sim.get("task"):
            info.skipped += 1
            continue
        rows = frames.episode_index == row["episode_index"]
        order = np.argsort(frames.frame_index[rows])
        info.episodes.append(ReplayEpisode(int(row["episode_index"]), str(sim["task"]), int(sim["seed"]),
                                           float(sim.get("start_jitter", 0.0)), str(row["tasks"][0]),
                                           frames.action[rows][order].astype(np.float64)))
    return info


class ReplayChunker:
    """An episode's dataset actions as a policy's chunks: the rows from the frame of the observation on.

    actions: (N, action_dim) as stored in the dataset; io: the dataset's IOSpec (split into SI arm columns and
    gripper closure); horizon: rows per chunk. Time is aligned at the first observation (frame 0); past the
    episode's end the chunk holds: zero deltas (the last row for joint positions), the last gripper value.
    """

    def __init__(self, actions, io, horizon: int = 8):
        self.actions = np.asarray(actions, dtype=np.float64)
        if self.actions.ndim != 2 or len(self.actions) == 0:
            raise ValueError(f"actions must be (N >= 1, dim), got {self.actions.shape}")
        self.io = io
        self.horizon = int(horizon)
        self.t0: float | None = None

    def frame_at(self, t_obs: float) -> int:
        if self.t0 is None:
            self.t0 = float(t_obs)
        return max(0, int(round((t_obs - self.t0) / self.io.dt)))

    def chunk(self, t_obs: float) -> tuple[np.ndarray, np.ndarray | None, int]:
        """(arm rows (horizon, arm_dim) in SI units, gripper closure (horizon,) or None, first frame index)."""
        k = self.frame_at(t_obs)
        n = len(self.actions)
        rows = self.actions[min(k, n):k + self.horizon]
        if len(rows) < self.horizon:  # past the end: hold
            hold = self.actions[-1].copy()
            if self.io.action_space != "joint_position":
                arm_cols = [c for c in range(hold.size) if c != self.io.gripper_index]
                hold[arm_cols] = 0.0
            rows = np.concatenate([rows, np.repeat(hold[None], self.horizon - len(rows), axis=0)])
        arm, closure = self.io.split(rows)
        return arm, closure, k


def _header_stamp(raw: bytes) -> float:
    """Header stamp (s) of a CDR message whose first field is std_msgs/Header (sensor_msgs/Image)."""
    endian = "<" if raw[1] & 1 else ">"
    sec, nsec = struct.unpack_from(endian + "iI", raw, 4)
    return sec + nsec * 1e-9


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", nargs="?", metavar="DATASET",
                        help="dataset made by `convert` from `collect` bags (not with --oracle)")
    parser.add_argument("--oracle", action="store_true", help="the scripted expert as the policy (sim_node oracle mode)")
    parser.add_argument("--tasks", "--task", dest="tasks", nargs="+", default=None, metavar="TASK",
                        help="tasks (default: oracle: all three; replay: every task of the dataset)")
    parser.add_argument("--episodes", type=int, default=0,
                        help="episodes per task (default 0: oracle 3; replay: all, else at most this many)")
    parser.add_argument("--seed", type=int, default=1000, help="oracle: seed of the first episode (then +1 each)")
    parser.add_argument("--start-jitter", type=float, default=0.0, help="oracle: seeded random start poses (0..1)")
    parser.add_argument("--max-duration", type=float, default=0.0,
                        help="simulated seconds per episode (default 0: the task's own limit)")
    parser.add_argument("--horizon", type=int, default=8, help="replay: rows per chunk (as the model's chunk)")
    parser.add_argument("--real-time-factor", type=float, default=1.0, help="upper bound of simulated / wall time")
    parser.add_argument("--image-size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"),
                        help="camera size (only the frames' stamps matter here; small is cheap)")
    parser.add_argument("--output", default="outputs/replay", help="folder for summary.json and nodes.log")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for the nodes (a node that exits stops the wait at once)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per episode stays)")
    parser.add_argument("--params", action="append", default=[], metavar="YAML",
                        help="extra ROS parameter file for the nodes, after replay's own (repeatable; later files "
                             "win), e.g. other limits; a node or parameter the nodes do not declare is an error "
                             "(default: none)")


def _params_yaml(args, first_task: str, first_seed: int, start_jitter: float) -> str:
    h, w = (int(x) for x in args.image_size)
    return (
        "sim_node:\n  ros__parameters:\n"
        f"    task: {json.dumps(first_task)}\n    seed: {int(first_seed)}\n"
        f"    oracle: {'true' if args.oracle else 'false'}\n"
        f"    real_time_factor: {float(args.real_time_factor)}\n    start_jitter: {float(start_jitter)}\n"
        f"    image_width: {w}\n    image_height: {h}\n"
        "executor_node:\n  ros__parameters:\n    auto_enable: false\n"
        # random start poses are not the start pose the real-robot gate expects
        f"    require_start_pose: {'false' if start_jitter > 0 else 'true'}\n"
    )


def node_specs(params: Path | None, extra=()):
    """sim_node and executor_node with the simulation stack's parameter files, then ``params`` (None: left out,
    for the checks before it is written), then ``extra``."""
    from vla_adapter_ros.paths import config_dir
    from vla_adapter_ros.supervisor import NodeSpec

    config = config_dir()
    last = ([params] if params is not None else []) + [Path(p).resolve() for p in extra]
    return [
        NodeSpec("sim_node", "vla_adapter_ros.nodes.sim_node", [config / "sim.yaml", *last]),
        NodeSpec("executor_node", "vla_adapter_ros.nodes.executor_node",
                 [config / "executor.yaml", config / "executor_sim.yaml", *last]),
    ]


def _plan(args) -> tuple[list[tuple[str, int, object]], float, object]:
    """[(task, seed, ReplayEpisode or None)], the start jitter, and the dataset (None for the oracle)."""
    from vla_adapter_ros.sim.tasks import check_start_jitter, get_task

    for flag, value in (("--real-time-factor", args.real_time_factor), ("--horizon", args.horizon),
                        ("--startup-timeout", args.startup_timeout)):
        if not value > 0:
            raise ValueError(f"{flag} must be positive, got {value}")
    if args.episodes < 0 or args.max_duration < 0:
        raise ValueError("--episodes and --max-duration must not be negative")
    if args.oracle:
        if args.dataset:
            raise ValueError("--oracle takes no dataset")
        tasks = args.tasks or list(TASKS)
        for t in tasks:
            get_task(t)
        check_start_jitter(args.start_jitter)
        n = args.episodes or 3
        return [(t, args.seed + i, None) for t in tasks for i in range(n)], args.start_jitter, None
    if not args.dataset:
        raise ValueError("give a DATASET to replay, or --oracle")
    data = load_replay_dataset(args.dataset)
    if not data.episodes:
        raise ValueError(f"{args.dataset}: no episode with a simulation scene (sim_episode; record with `collect`)")
    jitter = data.episodes[0].start_jitter
    chosen, per_task = [], {}
    for ep in data.episodes:
        if args.tasks and ep.task not in args.tasks:
            continue
        if ep.start_jitter != jitter:
            raise ValueError(f"episodes with different start jitter ({jitter}, {ep.start_jitter}): replay them "
                             "from datasets of one jitter each")
        if args.episodes and per_task.get(ep.task, 0) >= args.episodes:
            continue
        per_task[ep.task] = per_task.get(ep.task, 0) + 1
        chosen.append((ep.task, ep.seed, ep))
    if not chosen:
        raise ValueError(f"no episode of tasks {args.tasks} in {args.dataset}")
    return chosen, jitter, data


def run(args: argparse.Namespace) -> int:
    from vla_adapter_ros.stack_session import check_params, isolate_ros_graph, report_preflight_failure

    try:  # everything checked before anything starts or is written
        runs, jitter, data = _plan(args)
        check_params(node_specs(None, args.params))
    except (KeyError, ValueError, OSError) as exc:  # also ConvertError, PreflightError (ValueErrors)
        message = str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc)
        if isinstance(exc, OSError):
            message = f"{getattr(exc, 'filename', '') or args.dataset}: {exc.strerror or exc}"
        return report_preflight_failure("replay", message)
    print(isolate_ros_graph(), flush=True)
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from tqdm import tqdm

    from vla_adapter_ros.demo import format_table, success_table
    from vla_adapter_ros.msg import ActionChunk
    from vla_adapter_ros.sim.tasks import get_task
    from vla_adapter_ros.sim_episodes import SimEpisodes
    from vla_adapter_ros.stack_session import StackSession, StartupError, report_startup_failure, report_stopped_run

    out_dir = Path(args.output).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    params = out_dir / "replay_params.yaml"
    params.write_text(_params_yaml(args, runs[0][0], runs[0][1], jitter))
    what = "oracle (scripted expert chunks)" if args.oracle else f"dataset replay of {args.dataset}"
    session = StackSession(node_specs(params, args.params), out_dir / "nodes.log", "vla_replay")
    print(f"starting sim + executor (logs: {session.log_path}); policy: {what}", flush=True)
    results, code = [], 0
    started = False
    source = {"chunker": None, "stamp": None, "sequence": 0, "instruction": ""}
    with session:
        node = session.node
        chunk_pub = node.create_publisher(ActionChunk, "/vla/action_chunk", 10)

        def on_image(raw):
            source["stamp"] = _header_stamp(raw)

        def on_request(_msg):  # as policy_node: the newest observation, the rows from its time on
            chunker, stamp = source["chunker"], source["stamp"]
            if chunker is None or stamp is None:
                return
            arm, closure, _ = chunker.chunk(stamp)
            msg = ActionChunk()
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(round((stamp - int(stamp)) * 1e9))
            msg.header.frame_id = "base"
            io = chunker.io
            msg.names = list(io.arm_names)
            msg.action_space = {"joint_position": 0, "joint_delta": 1, "eef_delta": 2}[io.action_space]
            msg.horizon, msg.action_dim = arm.shape
            msg.actions = arm.astype(np.float32).reshape(-1).tolist()
            msg.dt = io.dt
            msg.gripper = [] if closure is None else closure.astype(np.float32).tolist()
            msg.instruction, msg.model_id = source["instruction"], "dataset-replay"
            msg.sequence = source["sequence"]
            source["sequence"] += 1
            chunk_pub.publish(msg)

        if not args.oracle:
            node.create_subscription(Image, "/camera/agentview/image_raw", on_image, qos_profile_sensor_data,
                                     raw=True)
            node.create_subscription(Header, "/vla/request_chunk", on_request, 10)
        episodes = SimEpisodes(session)
        try:
            session.wait_up(lambda: episodes.wait_ready(0.0), args.startup_timeout)
            started = True
            bar = tqdm(runs, desc="episodes", unit="ep", disable=args.no_progress)
            for n, (task, seed, ep) in enumerate(bar):
                limit = args.max_duration or get_task(task).max_duration_s
                source["chunker"] = None
                reply = episodes.reset(task, seed)
                if ep is not None:
                    source.update(chunker=ReplayChunker(ep.actions, data.io, args.horizon), stamp=None,
                                  instruction=ep.instruction)
                counts = dict(episodes.executor_counts)
                episodes.enable()
                outcome = episodes.wait_outcome(limit)
                source["chunker"] = None
                if outcome.timed_out:
                    raise RuntimeError(f"{task} seed {seed}: simulated time stopped advancing")
                entry = {"episode": n, "task": task, "seed": seed, "instruction": reply.instruction,
                         "success": outcome.success, "sim_seconds": round(outcome.sim_s, 2),
                         "wall_seconds": round(outcome.wall_s, 2),
                         "executor": episodes.executor_counts_since(counts)}
                if ep is not None:
                    entry["dataset_episode"] = ep.index
                    entry["dataset_frames"] = int(len(ep.actions))
                results.append(entry)
                bar.write(f"episode {n}: {task} seed {seed}: {'SUCCESS' if outcome.success else 'FAILURE'} "
                          f"({entry['sim_seconds']} s sim, {outcome.wall_s:.0f} s wall; executor: {entry['executor']})")
            episodes.disable()
        except StartupError as exc:  # said now; the other nodes are stopped when the session closes
            report_startup_failure("replay", exc, session.log_path)
        except (RuntimeError, KeyboardInterrupt) as exc:
            if report_stopped_run("replay", session, exc, started):
                code = 1
    if not started:  # the run never started: no table, no summary
        return 1
    tasks = list(dict.fromkeys(task for task, _, _ in runs))
    per_task = success_table(results, tasks)
    summary = {"mode": "oracle" if args.oracle else "replay", "dataset": args.dataset, "start_jitter": jitter,
               "episodes": results, "per_task": per_task, "success_rate": per_task["average"]["success_rate"]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_table(per_task), flush=True)
    print(f"outputs in {out_dir}", flush=True)
    if len(results) < len(runs):
        code = 1
    return code


def main(argv=None) -> int:
    from vla_adapter_ros.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="vla-adapter-ros replay", description=__doc__, formatter_class=HelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
