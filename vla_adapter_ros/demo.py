"""`vla-adapter-ros demo`: the whole stack in simulation, end to end, on any machine.

Starts sim_node + policy_node + executor_node (config/sim_stack.yaml) as separate processes over
real ROS 2 middleware, then for each episode: resets the simulation (seeded), enables the executor,
sends an ExecuteInstruction goal to the policy and waits for success or the time limit. Prints one
line per episode with a progress bar (simulated time within the episode), and writes to the output
folder: a video of both cameras per episode (MP4 with the instruction, time and verdict; GIF on request
or when no ffmpeg writer is installed), a plot of commanded vs measured joints and gripper per episode
against the robot's limits, summary.json and the nodes' log.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np


SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "sim_checkpoint"


def resolve_checkpoint(value: str) -> str:
    """'' -> the shipped simulation checkpoint (if this install has it), 'random' -> '' (random weights),
    anything else -> that directory, absolute."""
    if value == "random":
        return ""
    if value == "":
        return str(SHIPPED_CHECKPOINT) if (SHIPPED_CHECKPOINT / "config.yaml").is_file() else ""
    return str(Path(value).expanduser().resolve())


def _stack_file() -> Path:
    from vla_adapter_ros.paths import config_dir

    return config_dir() / "sim_stack.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", "--task", dest="tasks", nargs="+", default=["reach_red"], metavar="TASK",
                        help="reach_red | push_blue_left | lift_green (several: evaluated in turn)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per task")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first episode (then +1 each)")
    parser.add_argument("--checkpoint", default="",
                        help="checkpoint directory (default: the shipped simulation checkpoint "
                             "vla_adapter_ros/assets/sim_checkpoint if this install has one, else random weights; "
                             "'random': the random-weight model)")
    parser.add_argument("--max-duration", type=float, default=0.0,
                        help="simulated seconds per episode (default 0: the task's own limit, as collect and replay "
                             "use)")
    parser.add_argument("--output", default="outputs/demo",
                        help="folder for the videos, joint plots, summary.json and nodes.log")
    parser.add_argument("--startup-timeout", type=float, default=300.0,
                        help="seconds to wait for the nodes (a node that exits stops the wait at once)")
    parser.add_argument("--media", choices=("mp4", "gif", "none"), default="mp4",
                        help="per-episode video of both cameras with the instruction, time and verdict: mp4 "
                             "(falls back to gif when imageio-ffmpeg is missing), gif, or none (no video and no "
                             "joint plot)")
    parser.add_argument("--no-media", action="store_true", help="same as --media none")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per episode stays)")
    parser.add_argument("--real-time-factor", type=_real_time_factor, default="auto",
                        help="upper bound of simulated / wall time; below 1 gives a slow CPU's policy the inference "
                             "time a fast machine would have. auto: the fastest (at most 1) at which the policy's "
                             "warm-up prediction time lets it keep up with the executor, said at start")
    parser.add_argument("--instruction", default="",
                        help="send this instruction for every task instead of the task's own (e.g. a language-blind "
                             "baseline trained with one fixed instruction; default: each task's own)")
    parser.add_argument("--params", action="append", default=[], metavar="YAML",
                        help="extra ROS parameter file for the nodes, after the demo's own (repeatable; later files "
                             "win); a node or parameter the nodes do not declare is an error (default: none)")


def _real_time_factor(text: str):
    """'auto' or a number (checked in preflight)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number, got {text!r}") from None


def preflight(args: argparse.Namespace) -> str:
    """Check the arguments before any node starts; returns the resolved checkpoint ('' = random weights).
    PreflightError (one line per problem) names the argument and the cause."""
    from vla_adapter_ros.stack_session import PreflightError, check_checkpoint_dir, check_params, check_tasks
    from vla_adapter_ros.supervisor import load_stack

    check_tasks(args.tasks)
    for flag, value, ok in (("--episodes", args.episodes, args.episodes >= 1),
                            ("--real-time-factor", args.real_time_factor,
                             args.real_time_factor == "auto" or args.real_time_factor > 0),
                            ("--max-duration", args.max_duration, args.max_duration >= 0),
                            ("--startup-timeout", args.startup_timeout, args.startup_timeout > 0)):
        if not ok:
            raise PreflightError(f"{flag} must be {'at least 1' if flag == '--episodes' else 'positive'}"
                                 f"{' or 0' if flag == '--max-duration' else ''}, got {value}")
    checkpoint = resolve_checkpoint(args.checkpoint)
    if checkpoint:
        try:
            check_checkpoint_dir(checkpoint)
        except PreflightError as exc:
            raise PreflightError(f"--checkpoint: {exc}") from None
    check_params(load_stack(_stack_file()), list(getattr(args, "params", []) or []))
    return checkpoint


class _Recorder:
    """Collects camera frames, measured joints and commanded joints (arm and gripper) of one episode.
    Times are simulation stamps (s)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.clear()

    def clear(self):
        with self.lock:
            self.frames: dict[str, list[np.ndarray]] = {"agentview": [], "wrist": []}
            self.frame_stamps: dict[str, list[float]] = {"agentview": [], "wrist": []}
            self.measured: list[tuple[float, np.ndarray]] = []
            self.commanded: list[tuple[float, np.ndarray]] = []
            self.gripper_measured: list[tuple[float, float]] = []  # width, m
            self.gripper_commanded: list[tuple[float, float]] = []  # width, m

    def elapsed(self) -> float:
        """Simulated seconds recorded so far (0 before the second joint state)."""
        with self.lock:
            return self.measured[-1][0] - self.measured[0][0] if self.measured else 0.0


def executor_parameter(param_files, key: str, default, kind=str):
    """The value of executor_node parameter `key` that its parameter files set last (`default` when none does)."""
    import yaml

    value = default
    for path in param_files:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for section in ("/**", "executor_node", "/executor_node"):
            params = (data.get(section) or {}).get("ros__parameters") if isinstance(data, dict) else None
            if isinstance(params, dict) and key in params and params[key] not in ("", None):
                try:
                    value = kind(params[key])
                except (TypeError, ValueError):
                    continue
    return value


def executor_robot(param_files) -> str:
    """The robot limits file the executor runs with: the last `robot` that the executor's parameter
    files set (default fr3_sim, config/executor_sim.yaml's)."""
    return executor_parameter(param_files, "robot", "fr3_sim")


KEEP_UP_MARGIN = 0.7  # of the executor's refill lead time that one prediction may use
MIN_REAL_TIME_FACTOR = 0.02


def keep_up_real_time_factor(prediction_ms: float, refill_threshold_s: float, margin: float = KEEP_UP_MARGIN) -> float:
    """The fastest simulated/wall time ratio (at most 1) at which the policy keeps up.

    The executor asks for the next chunk when `refill_threshold_s` of simulated time is left in its queue;
    the answer takes `prediction_ms` of wall time, during which the simulation advances that times the
    real-time factor. Keeping that within `margin` of the lead time means the queue never runs dry (an
    empty queue is a hold, which a real robot would have to live with, but a demo need not)."""
    if not prediction_ms > 0 or not refill_threshold_s > 0:
        return 1.0
    factor = margin * refill_threshold_s / (prediction_ms / 1e3)
    return float(min(1.0, max(MIN_REAL_TIME_FACTOR, factor)))


def _write_media(out_dir: Path, episode: int, rec: _Recorder, fmt: str, label, title: str, entry: dict,
                 limits=None) -> str:
    """Video of both cameras and the joint plot of one episode; their names go into `entry` ("video", and
    "gif" as well for a GIF); returns a note ('' or why an MP4 became a GIF)."""
    from vla_adapter_ros import media

    with rec.lock:
        video, note = media.write_episode_video(out_dir / f"episode_{episode:02d}", rec.frames, rec.frame_stamps,
                                                label, fmt)
        if video is not None:
            entry["video"] = video.name
            if video.suffix == ".gif":
                entry["gif"] = video.name
        plot = out_dir / f"joints_{episode:02d}.png"
        if media.write_plot(plot, rec.measured, rec.commanded, [f"fr3_joint{j}" for j in range(1, 8)], title,
                            limits, rec.gripper_measured, rec.gripper_commanded):
            entry["plot"] = plot.name
    return note


def _episode_progress(bar, done: int, elapsed_s: float, limit_s: float, text: str) -> None:
    """Move the bar to `done` whole episodes plus the simulated fraction of the current one."""
    fraction = min(max(elapsed_s / limit_s, 0.0), 0.999) if limit_s > 0 else 0.0
    bar.n = round(done + fraction, 3)
    bar.set_description_str(f"episode {text}" + (f" t={elapsed_s:4.1f}/{limit_s:.1f} s sim" if limit_s > 0 else ""),
                            refresh=False)
    bar.refresh()


def _disable_and_wait(session, enable, request_type, status: dict, timeout: float = 10.0) -> None:
    """Disable the executor and wait until it reports `disabled`: while it is still `stopping` it keeps
    commanding the decelerating reference, which would pull a teleported arm back."""
    session.call(enable, request_type.Request(data=False))
    if not session.spin_until(lambda: status.get("state") == "disabled", timeout):
        raise RuntimeError(f"executor did not come to rest within {timeout:.0f} s (state {status.get('state')})")


def _enable_at_start(session, enable, request_type, status: dict, resync=None, timeout: float = 15.0) -> None:
    """Enable the executor once its joint state shows the arm at the start pose (after a reset the state
    it holds may still be the pre-teleport one for a moment on a busy machine).

    The simulation reset restarted the arm's controller at the new pose, so the executor is told to
    forget its last command first (`~/resync`); enable is retried while the executor is not yet sure
    that the arm rests (it needs a few consistent joint states)."""
    from std_srvs.srv import Trigger

    status.pop("at_start_pose", None)
    if not session.spin_until(lambda: status.get("at_start_pose") == 1, timeout):
        raise RuntimeError(f"the arm is not at the start pose {timeout:.0f} s after the reset")
    if resync is not None:
        answer = session.call(resync, Trigger.Request())
        if not answer.success:
            raise RuntimeError(f"executor resync refused: {answer.message}")
    deadline = time.monotonic() + timeout
    while True:
        enabled = session.call(enable, request_type.Request(data=True))
        if enabled.success and "holding" not in enabled.message:
            return
        if enabled.success or time.monotonic() > deadline or "at rest" not in enabled.message and \
                "joint states" not in enabled.message:
            raise RuntimeError(f"executor did not start: {enabled.message}")
        session.spin_until(lambda: False, 0.1)


def _pace_the_simulation(session, refill_threshold_s: float, timeout: float = 30.0) -> float:
    """--real-time-factor auto: read the policy's warm-up prediction time from its status, set sim_node's
    real_time_factor (a live parameter) to what lets the policy keep up, and say so. Returns the factor."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    from vla_adapter_ros.msg import PolicyStatus

    seen: list = []
    subscription = session.node.create_subscription(
        PolicyStatus, "/vla/policy/status", lambda msg: seen.append(msg) if msg.ready else None, 10)
    try:
        if not session.spin_until(lambda: bool(seen), timeout):
            print("real-time factor 1.0 (auto: no policy status within "
                  f"{timeout:.0f} s; pass --real-time-factor to choose one)", flush=True)
            return 1.0
    finally:
        session.node.destroy_subscription(subscription)
    prediction_ms = float(seen[-1].warmup_ms)
    factor = keep_up_real_time_factor(prediction_ms, refill_threshold_s)
    if factor < 1.0:
        client = session.node.create_client(SetParameters, "/sim_node/set_parameters")
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=factor)
        answer = session.call(client, SetParameters.Request(parameters=[Parameter(name="real_time_factor",
                                                                                  value=value)]))
        if not answer.results or not answer.results[0].successful:
            reason = answer.results[0].reason if answer.results else "no result"
            raise RuntimeError(f"sim_node refused real_time_factor {factor:.2f}: {reason}")
    print(f"real-time factor {factor:.2f} (auto: one prediction took {prediction_ms:.0f} ms at warm-up and the "
          f"executor asks for the next chunk {refill_threshold_s:.2f} s of simulated time ahead; "
          "--real-time-factor F to choose)", flush=True)
    return factor


def success_table(results: list[dict], tasks: list[str]) -> dict:
    """Per-task successes / episodes / rate, and their average over the tasks (each task weighs the same)."""
    table = {}
    for task in tasks:
        done = [r for r in results if r["task"] == task]
        wins = sum(r["success"] for r in done)
        table[task] = {"episodes": len(done), "successes": wins, "success_rate": wins / len(done) if done else 0.0}
    rates = [v["success_rate"] for v in table.values() if v["episodes"]]
    table["average"] = {"episodes": sum(v["episodes"] for v in table.values()),
                        "successes": sum(v["successes"] for v in table.values()),
                        "success_rate": sum(rates) / len(rates) if rates else 0.0}
    return table


def format_table(table: dict) -> str:
    width = max(len(k) for k in table)
    lines = [f"{'task':<{width}}  success", f"{'-' * width}  -------------"]
    for task, v in table.items():
        lines.append(f"{task:<{width}}  {v['successes']:>3}/{v['episodes']:<3} {100 * v['success_rate']:5.1f} %")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from vla_adapter_ros.stack_session import PreflightError, isolate_ros_graph, report_preflight_failure

    try:
        checkpoint = preflight(args)  # before anything starts or is written
    except PreflightError as exc:
        return report_preflight_failure("demo", exc)
    print(isolate_ros_graph(), flush=True)  # its own nodes only, never a real robot's controller
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64
    from std_srvs.srv import SetBool, Trigger
    from tqdm import tqdm
    from trajectory_msgs.msg import JointTrajectory

    from vla_adapter_ros.action import ExecuteInstruction
    from vla_adapter_ros.msg import ExecutorStatus
    from vla_adapter_ros.sim.tasks import get_task
    from vla_adapter_ros.srv import ResetEpisode
    from vla_adapter_ros.stack_session import StackSession, StartupError, report_startup_failure, report_stopped_run
    from vla_adapter_ros.supervisor import load_stack

    out_dir = Path(args.output).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = out_dir / "demo_params.yaml"
    overrides.write_text(
        "sim_node:\n  ros__parameters:\n"
        f"    task: {json.dumps(args.tasks[0])}\n    seed: {int(args.seed)}\n"
        f"    real_time_factor: {1.0 if args.real_time_factor == 'auto' else float(args.real_time_factor)}\n"
        "policy_node:\n  ros__parameters:\n"
        f"    checkpoint: {json.dumps(checkpoint)}\n"
        f"    default_max_duration: {float(args.max_duration or 12.0)}\n"
    )
    stack = load_stack(_stack_file())
    extra_params = [overrides, *[Path(p).resolve() for p in args.params]]
    session = StackSession(stack, out_dir / "nodes.log", "vla_demo", extra_params=extra_params)
    print(f"starting sim + policy + executor (logs: {session.log_path}); policy: {checkpoint or 'random weights'}",
          flush=True)
    from vla_adapter_ros import media

    media_format, media_note = media.resolve_format("none" if args.no_media else args.media)
    if media_note:
        print(f"demo: {media_note}", flush=True)
    limits = None
    executor_files = [*[p for spec in stack if spec.name == "executor_node" for p in spec.params], *extra_params]
    if media_format != "none":
        limits = media.JointLimits.load(executor_robot(executor_files))
    real_time_factor = {"value": 1.0 if args.real_time_factor == "auto" else float(args.real_time_factor)}
    rec = _Recorder()
    state = {"recording": False}

    def stamp_of(msg) -> float:
        return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9

    def on_image(name):
        def callback(msg):
            if state["recording"] and media_format != "none":
                frame = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
                with rec.lock:
                    rec.frames[name].append(frame.copy())
                    rec.frame_stamps[name].append(stamp_of(msg))
        return callback

    def on_joints(msg):
        state["stamp"] = t = stamp_of(msg)
        if state["recording"] and len(msg.position) >= 7:
            fingers = [p for n, p in zip(msg.name, msg.position) if "finger_joint" in n]
            with rec.lock:
                rec.measured.append((t, np.array(msg.position[:7])))
                if fingers:
                    rec.gripper_measured.append((t, float(sum(fingers))))
                if not rec.gripper_commanded and "gripper_width" in state:  # the setpoint in force at the start
                    rec.gripper_commanded.append((t, state["gripper_width"]))

    def on_command(msg):
        # JTC headers are stamped 0 ("start now"): time a command by the newest simulation stamp.
        if state["recording"] and msg.points:
            with rec.lock:
                if rec.measured:
                    rec.commanded.append((rec.measured[-1][0], np.array(msg.points[0].positions)))

    def on_gripper(msg):
        # 0 open .. 1 closed -> the finger width it asks for (m); sent on open/close events only, so the last
        # one is kept for the next episode's start, and it is timed by the newest simulation stamp
        state["gripper_width"] = media.GRIPPER_WIDTH_MAX_M * (1.0 - min(max(float(msg.data), 0.0), 1.0))
        if state["recording"] and "stamp" in state:
            with rec.lock:
                rec.gripper_commanded.append((state["stamp"], state["gripper_width"]))

    results = []
    code = 0
    started = False
    bar = None
    with session:
        node = session.node
        node.create_subscription(Image, "/camera/agentview/image_raw", on_image("agentview"), 10)
        node.create_subscription(Image, "/camera/wrist/image_raw", on_image("wrist"), 10)
        node.create_subscription(JointState, "/joint_states", on_joints, 50)
        node.create_subscription(JointTrajectory, "/fr3_arm_controller/joint_trajectory", on_command, 50)
        node.create_subscription(Float64, "/gripper/command", on_gripper, 50)
        executor_status: dict = {}

        def on_status(msg):
            executor_status.update(state=msg.state, at_start_pose=msg.at_start_pose)

        node.create_subscription(ExecutorStatus, "/vla/executor/status", on_status, 10)
        reset = node.create_client(ResetEpisode, "/sim_node/reset_episode")
        enable = node.create_client(SetBool, "/executor_node/enable")
        resync = node.create_client(Trigger, "/executor_node/resync")
        goal_client = ActionClient(node, ExecuteInstruction, "/policy_node/execute_instruction")
        try:
            session.wait_up(lambda: reset.service_is_ready() and enable.service_is_ready()
                            and goal_client.server_is_ready(), args.startup_timeout)
            started = True
            if args.real_time_factor == "auto":
                real_time_factor["value"] = _pace_the_simulation(
                    session, executor_parameter(executor_files, "refill_threshold_s", 0.3, float))
            session.log.flush()
            if "RANDOM WEIGHTS" in session.log_path.read_text():
                print("NOTE: no trained checkpoint given: the policy has RANDOM WEIGHTS, so episodes are expected "
                      "to fail; the demo shows the plumbing (pass --checkpoint DIR for a trained model)", flush=True)
            runs = [(task, i) for task in args.tasks for i in range(args.episodes)]
            bar = tqdm(total=len(runs), desc="episodes", unit="ep", disable=args.no_progress,
                       bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
            for n, (task, i) in enumerate(runs):
                seed = args.seed + i
                _disable_and_wait(session, enable, SetBool, executor_status)
                episode = session.call(reset, ResetEpisode.Request(task=task, seed=seed))
                if not episode.success:
                    raise RuntimeError(f"reset failed: {episode.message}")
                _enable_at_start(session, enable, SetBool, executor_status, resync)
                rec.clear()
                state["recording"] = True
                start = time.monotonic()
                instruction = args.instruction or episode.instruction
                limit = args.max_duration or get_task(task).max_duration_s
                send = goal_client.send_goal_async(ExecuteInstruction.Goal(instruction=instruction,
                                                                           max_duration=limit))
                if not session.spin_until(send.done, 30) or not send.result().accepted:
                    raise RuntimeError("the policy rejected the goal")
                result_future = send.result().get_result_async()
                where = f"{n + 1}/{len(runs)} {task}"
                shown = [0.0]

                def episode_over():
                    now = time.monotonic()
                    if now - shown[0] >= 0.25:  # simulated time out of the episode's limit
                        shown[0] = now
                        _episode_progress(bar, n, rec.elapsed(), limit, where)
                    return result_future.done()

                if not session.spin_until(episode_over, limit * 20 + 60):
                    raise RuntimeError("the episode did not end")
                state["recording"] = False
                outcome = result_future.result()
                # success is the simulator's verdict (the policy node ends the goal when /vla/task_success rises)
                success = outcome.status == GoalStatus.STATUS_SUCCEEDED and outcome.result.success
                entry = {"episode": n, "task": task, "seed": seed, "instruction": instruction,
                         "success": bool(success), "sim_seconds": round(outcome.result.elapsed, 2),
                         "wall_seconds": round(time.monotonic() - start, 2), "chunks": int(outcome.result.chunks),
                         "message": outcome.result.message}
                if media_format != "none":
                    label = media.EpisodeLabel(instruction, f"{task}  seed {seed}  episode {n}", limit, bool(success))
                    note = _write_media(out_dir, n, rec, media_format, label,
                                        f"{task} seed {seed}: {'success' if success else 'failure'}", entry, limits)
                    if note:
                        bar.write(f"demo: episode {n}: {note}")
                results.append(entry)
                _episode_progress(bar, n + 1, 0.0, 0.0, f"{where} done")
                bar.write(f"episode {n}: {task} seed {seed}: {'SUCCESS' if success else 'FAILURE'} "
                          f"({entry['sim_seconds']} s sim, {entry['chunks']} chunks) - {entry['message']}")
            session.call(enable, SetBool.Request(data=False))
        except StartupError as exc:  # said now; the other nodes are stopped when the session closes
            report_startup_failure("demo", exc, session.log_path)
        except (RuntimeError, KeyboardInterrupt) as exc:
            if report_stopped_run("demo", session, exc, started):
                code = 1
        finally:
            state["recording"] = False
            if bar is not None:
                bar.close()
    if not started:  # the run never started: no table, no summary, no media
        return 1
    per_task = success_table(results, args.tasks)
    summary = {"tasks": args.tasks, "episodes": results, "per_task": per_task,
               "success_rate": per_task["average"]["success_rate"],
               "checkpoint": checkpoint or "random weights", "instruction_override": args.instruction,
               "real_time_factor": real_time_factor["value"],
               "real_time_factor_chosen": "auto" if args.real_time_factor == "auto" else "given"}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_table(per_task), flush=True)
    print(f"outputs in {out_dir}", flush=True)
    if len(results) < args.episodes * len(args.tasks):
        code = 1
    return code
