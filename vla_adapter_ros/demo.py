"""`vla-adapter-ros demo`: the whole stack in simulation, end to end, on any machine.

Starts sim_node + policy_node + executor_node (config/sim_stack.yaml) as separate processes over
real ROS 2 middleware, then for each episode: resets the simulation (seeded), enables the executor,
sends an ExecuteInstruction goal to the policy and waits for success or the time limit. Prints one
line per episode with a progress bar, and writes to the output folder: a GIF of both cameras per
episode, a plot of commanded vs measured joints per episode, summary.json and the nodes' log.
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
                        help="folder for the GIFs, joint plots, summary.json and nodes.log")
    parser.add_argument("--startup-timeout", type=float, default=300.0,
                        help="seconds to wait for the nodes (a node that exits stops the wait at once)")
    parser.add_argument("--no-media", action="store_true", help="skip GIFs and plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per episode stays)")
    parser.add_argument("--real-time-factor", type=float, default=1.0,
                        help="upper bound of simulated / wall time; below 1 gives a slow CPU's policy the inference "
                             "time a fast machine would have (evaluations on small machines)")
    parser.add_argument("--instruction", default="",
                        help="send this instruction for every task instead of the task's own (e.g. a language-blind "
                             "baseline trained with one fixed instruction; default: each task's own)")
    parser.add_argument("--params", action="append", default=[], metavar="YAML",
                        help="extra ROS parameter file for the nodes, after the demo's own (repeatable; later files "
                             "win); a node or parameter the nodes do not declare is an error (default: none)")


def preflight(args: argparse.Namespace) -> str:
    """Check the arguments before any node starts; returns the resolved checkpoint ('' = random weights).
    PreflightError (one line per problem) names the argument and the cause."""
    from vla_adapter_ros.stack_session import PreflightError, check_checkpoint_dir, check_params, check_tasks
    from vla_adapter_ros.supervisor import load_stack

    check_tasks(args.tasks)
    for flag, value, ok in (("--episodes", args.episodes, args.episodes >= 1),
                            ("--real-time-factor", args.real_time_factor, args.real_time_factor > 0),
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
    """Collects camera frames, measured joints and commanded joints of one episode."""

    def __init__(self):
        self.lock = threading.Lock()
        self.frames: dict[str, list[np.ndarray]] = {"agentview": [], "wrist": []}
        self.measured: list[tuple[float, np.ndarray]] = []
        self.commanded: list[tuple[float, np.ndarray]] = []

    def clear(self):
        with self.lock:
            self.frames = {"agentview": [], "wrist": []}
            self.measured, self.commanded = [], []


def _write_media(out_dir: Path, episode: int, rec: _Recorder, title: str, entry: dict) -> None:
    """GIF of both cameras and the joint plot of one episode; their names go into `entry`."""
    with rec.lock:
        gif = out_dir / f"episode_{episode:02d}.gif"
        if _write_gif(gif, rec.frames):
            entry["gif"] = gif.name
        plot = out_dir / f"joints_{episode:02d}.png"
        if _write_plot(plot, rec.measured, rec.commanded, [f"fr3_joint{j}" for j in range(1, 8)], title):
            entry["plot"] = plot.name


def _write_gif(path: Path, frames: dict[str, list[np.ndarray]], fps: float = 10.0) -> bool:
    from PIL import Image

    count = min(len(v) for v in frames.values())
    if count == 0:
        return False
    images = [Image.fromarray(np.concatenate([frames[k][i] for k in frames], axis=1)) for i in range(count)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return True


def _write_plot(path: Path, measured, commanded, names, title: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not measured:
        return False
    t0 = measured[0][0]
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.6 * len(names)), sharex=True)
    tm = np.array([t - t0 for t, _ in measured])
    qm = np.array([q for _, q in measured])
    tc = np.array([t - t0 for t, _ in commanded]) if commanded else np.zeros(0)
    qc = np.array([q for _, q in commanded]) if commanded else np.zeros((0, len(names)))
    for j, ax in enumerate(axes):
        ax.plot(tm, qm[:, j], label="measured", lw=1.2)
        if len(tc):
            ax.plot(tc, qc[:, j], "--", label="commanded", lw=1.0)
        ax.set_ylabel(names[j], fontsize=7)
    axes[0].legend(loc="upper right", fontsize=7)
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlabel("time [s]")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


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
    import sys

    from vla_adapter_ros.stack_session import PreflightError, isolate_ros_graph

    try:
        checkpoint = preflight(args)  # before anything starts or is written
    except PreflightError as exc:
        for line in str(exc).splitlines():
            print(f"demo: {line}", file=sys.stderr, flush=True)
        return 2
    print(isolate_ros_graph(), flush=True)  # its own nodes only, never a real robot's controller
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from sensor_msgs.msg import Image, JointState
    from std_srvs.srv import SetBool, Trigger
    from tqdm import tqdm
    from trajectory_msgs.msg import JointTrajectory

    from vla_adapter_ros.action import ExecuteInstruction
    from vla_adapter_ros.msg import ExecutorStatus
    from vla_adapter_ros.sim.tasks import get_task
    from vla_adapter_ros.srv import ResetEpisode
    from vla_adapter_ros.stack_session import StackSession, StartupError, report_startup_failure
    from vla_adapter_ros.supervisor import load_stack

    out_dir = Path(args.output).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = out_dir / "demo_params.yaml"
    overrides.write_text(
        "sim_node:\n  ros__parameters:\n"
        f"    task: {json.dumps(args.tasks[0])}\n    seed: {int(args.seed)}\n"
        f"    real_time_factor: {float(args.real_time_factor)}\n"
        "policy_node:\n  ros__parameters:\n"
        f"    checkpoint: {json.dumps(checkpoint)}\n"
        f"    default_max_duration: {float(args.max_duration or 12.0)}\n"
    )
    session = StackSession(load_stack(_stack_file()), out_dir / "nodes.log", "vla_demo",
                           extra_params=[overrides, *[Path(p).resolve() for p in args.params]])
    print(f"starting sim + policy + executor (logs: {session.log_path}); policy: {checkpoint or 'random weights'}",
          flush=True)
    rec = _Recorder()
    state = {"recording": False}

    def on_image(name):
        def callback(msg):
            if state["recording"]:
                frame = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
                with rec.lock:
                    rec.frames[name].append(frame.copy())
        return callback

    def on_joints(msg):
        if state["recording"] and len(msg.position) >= 7:
            with rec.lock:
                rec.measured.append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, np.array(msg.position[:7])))

    def on_command(msg):
        # JTC headers are stamped 0 ("start now"): time a command by the newest simulation stamp.
        if state["recording"] and msg.points:
            with rec.lock:
                if rec.measured:
                    rec.commanded.append((rec.measured[-1][0], np.array(msg.points[0].positions)))

    results = []
    code = 0
    started = False
    with session:
        node = session.node
        node.create_subscription(Image, "/camera/agentview/image_raw", on_image("agentview"), 10)
        node.create_subscription(Image, "/camera/wrist/image_raw", on_image("wrist"), 10)
        node.create_subscription(JointState, "/joint_states", on_joints, 50)
        node.create_subscription(JointTrajectory, "/fr3_arm_controller/joint_trajectory", on_command, 50)
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
            session.log.flush()
            if "RANDOM WEIGHTS" in session.log_path.read_text():
                print("NOTE: no trained checkpoint given: the policy has RANDOM WEIGHTS, so episodes are expected "
                      "to fail; the demo shows the plumbing (pass --checkpoint DIR for a trained model)", flush=True)
            runs = [(task, i) for task in args.tasks for i in range(args.episodes)]
            bar = tqdm(runs, desc="episodes", unit="ep", disable=args.no_progress)
            for n, (task, i) in enumerate(bar):
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
                if not session.spin_until(result_future.done, limit * 20 + 60):
                    raise RuntimeError("the episode did not end")
                state["recording"] = False
                outcome = result_future.result()
                # success is the simulator's verdict (the policy node ends the goal when /vla/task_success rises)
                success = outcome.status == GoalStatus.STATUS_SUCCEEDED and outcome.result.success
                entry = {"episode": n, "task": task, "seed": seed, "instruction": instruction,
                         "success": bool(success), "sim_seconds": round(outcome.result.elapsed, 2),
                         "wall_seconds": round(time.monotonic() - start, 2), "chunks": int(outcome.result.chunks),
                         "message": outcome.result.message}
                if not args.no_media:
                    _write_media(out_dir, n, rec, f"{task} seed {seed}: {'success' if success else 'failure'}", entry)
                results.append(entry)
                bar.write(f"episode {n}: {task} seed {seed}: {'SUCCESS' if success else 'FAILURE'} "
                          f"({entry['sim_seconds']} s sim, {entry['chunks']} chunks) - {entry['message']}")
            session.call(enable, SetBool.Request(data=False))
        except StartupError as exc:  # said now; the other nodes are stopped when the session closes
            report_startup_failure("demo", exc, session.log_path)
        except (RuntimeError, KeyboardInterrupt) as exc:
            reason = session.exit_reason() if session.stack_exited else str(exc) or "interrupted"
            if started:
                print(f"demo stopped: {reason}", flush=True)
                code = 1
            elif session.stack_exited or not isinstance(exc, KeyboardInterrupt):
                report_startup_failure("demo", StartupError(reason), session.log_path)
            else:
                print("demo: interrupted before the nodes came up; no results written", file=sys.stderr, flush=True)
        finally:
            state["recording"] = False
    if not started:  # the run never started: no table, no summary, no media
        return 1
    per_task = success_table(results, args.tasks)
    summary = {"tasks": args.tasks, "episodes": results, "per_task": per_task,
               "success_rate": per_task["average"]["success_rate"],
               "checkpoint": checkpoint or "random weights", "instruction_override": args.instruction}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_table(per_task), flush=True)
    print(f"outputs in {out_dir}", flush=True)
    if len(results) < args.episodes * len(args.tasks):
        code = 1
    return code
