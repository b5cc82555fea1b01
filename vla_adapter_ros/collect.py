"""`vla-adapter-ros collect`: record scripted-expert demonstrations in simulation, one bag per episode.

Starts sim_node in oracle mode (the scripted expert answers the executor's chunk requests with
ActionChunks, as a policy node would), executor_node with the simulation's parameter files (the same
limits and path a learned policy's chunks take) and recorder_node (use_sim_time) as child processes,
then for each task and each seed: disable the executor, reset the episode, start a recording with the
task's instruction, resync and enable the executor, wait for the task's success flag
(/vla/task_success) or the time limit, let the scene settle, and stop the recording (success) or
discard it (failure; `--keep-failures` keeps it, marked success=false). The bags hold what the
executor really commanded and how the arm really moved. Next to each bag, sim_episode.json names its
scene (task, seed, start jitter), for `vla-adapter-ros replay`.

`--direct`: the old way, without the executor: sim_node's expert drives the JTC and gripper topics
itself, faster than the executor's limits allow (its demonstrations are not executable as recorded).

Writes OUT/bags/<episode>/ (rosbag2 MCAP + metadata with the instruction), OUT/collect_params.yaml,
OUT/nodes.log and OUT/summary.json. Convert the bags with (actions: the next measured pose minus the
measured pose):

    vla-adapter-ros convert OUT/bags/episode_* DATASET \\
        --cameras /camera/agentview/image_raw /camera/wrist/image_raw --gripper-command /gripper/command
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from pathlib import Path

TASKS = ("reach_red", "push_blue_left", "lift_green")
RECORDED_TOPICS = [
    "/camera/agentview/image_raw: sensor_msgs/msg/Image",
    "/camera/wrist/image_raw: sensor_msgs/msg/Image",
    "/joint_states: sensor_msgs/msg/JointState",
    # not /eef_pose: the converter uses the forward kinematics of the joints (the sim's TCP to ~1e-12 m),
    # and a second 250 Hz stream makes the recorder fall behind on small machines
    "/fr3_arm_controller/joint_trajectory: trajectory_msgs/msg/JointTrajectory",
    "/gripper/command: std_msgs/msg/Float64",
    "/vla/action_chunk: vla_adapter_ros/msg/ActionChunk",  # the chunks the executor got (not with --direct)
]
CONVERT_FLAGS = "--cameras /camera/agentview/image_raw /camera/wrist/image_raw --gripper-command /gripper/command"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), metavar="TASK", help="tasks to record")
    parser.add_argument("--episodes", type=int, default=10, help="episodes (seeds) per task")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode of every task (then +1)")
    parser.add_argument("--output", default="outputs/collect", help="folder for bags/, nodes.log and summary.json")
    parser.add_argument("--max-duration", type=float, default=0.0,
                        help="simulated seconds per episode before it counts as failed (default 0: the task's limit)")
    parser.add_argument("--settle", type=float, default=0.5, help="simulated seconds recorded after success")
    parser.add_argument("--start-jitter", type=float, default=0.0,
                        help="0..1: start every episode from a seeded random arm pose (1 = TCP +-8/12/5 cm, "
                        "yaw +-0.3 rad): keeps the policy from reading the goal off the arm's pose")
    parser.add_argument("--keep-failures", action="store_true", help="keep failed episodes (success=false)")
    parser.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"),
                        help="camera image height and width in pixels (what the bags store)")
    parser.add_argument("--camera-rate", type=float, default=10.0, help="camera frames per simulated second")
    parser.add_argument("--real-time-factor", type=float, default=1.0,
                        help="upper bound of simulated / wall time (higher: faster collection if the CPU keeps up)")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for the nodes (a node that exits stops the wait at once)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--direct", action="store_true",
                        help="old mode: the expert drives the controller directly, without the executor and its "
                             "limits (demonstrations a learned policy's executor cannot reproduce)")
    parser.add_argument("--params", action="append", default=[], metavar="YAML",
                        help="extra ROS parameter file for the nodes, after collect's own (repeatable; later files "
                             "win); a node or parameter the nodes do not declare is an error (default: none)")


def _params_yaml(args: argparse.Namespace, bags: Path) -> str:
    h, w = (int(x) for x in args.image_size)
    first = args.tasks[0]
    direct = bool(getattr(args, "direct", False))
    topics = [t for t in RECORDED_TOPICS if not (direct and t.startswith("/vla/action_chunk"))]
    executor = "" if direct else (
        "executor_node:\n  ros__parameters:\n    auto_enable: false\n"
        # random start poses are not the start pose the real-robot gate expects
        f"    require_start_pose: {'false' if args.start_jitter > 0 else 'true'}\n")
    return (
        "sim_node:\n  ros__parameters:\n"
        f"    task: {json.dumps(first)}\n    seed: {int(args.seed)}\n"
        f"    expert: {'true' if direct else 'false'}\n    oracle: {'false' if direct else 'true'}\n"
        f"    real_time_factor: {float(args.real_time_factor)}\n"
        f"    start_jitter: {float(args.start_jitter)}\n"
        f"    camera_rate_hz: {float(args.camera_rate)}\n    image_width: {w}\n    image_height: {h}\n"
        "recorder_node:\n  ros__parameters:\n    use_sim_time: true\n"
        f"    output_dir: {json.dumps(str(bags))}\n"
        f"    topics: {json.dumps(topics)}\n"
        "    status_period: 0.0\n"
        + executor
    )


def _node_specs(params: Path | None, direct: bool = False, extra=()):
    """sim_node, executor_node (not with --direct) and recorder_node with their parameter files, then
    ``params`` (collect's own overrides; None: left out, for the checks before it is written), then ``extra``."""
    from vla_adapter_ros.paths import config_dir
    from vla_adapter_ros.supervisor import NodeSpec

    config = config_dir()
    last = ([params] if params is not None else []) + [Path(p).resolve() for p in extra]
    recorder_defaults = [config / "recorder.yaml"] if (config / "recorder.yaml").is_file() else []
    specs = [NodeSpec("sim_node", "vla_adapter_ros.nodes.sim_node", [config / "sim.yaml", *last])]
    if not direct:  # the executor of the simulation stack, with its parameter files
        specs.append(NodeSpec("executor_node", "vla_adapter_ros.nodes.executor_node",
                              [config / "executor.yaml", config / "executor_sim.yaml", *last]))
    specs.append(NodeSpec("recorder_node", "vla_adapter_ros.nodes.recorder_node", [*recorder_defaults, *last]))
    return specs


def preflight(args: argparse.Namespace) -> dict[str, float]:
    """Check the arguments before any node starts; returns each task's time limit. PreflightError names
    the argument and the cause."""
    from vla_adapter_ros.stack_session import PreflightError, check_params, check_tasks

    check_tasks(args.tasks)
    if args.episodes < 1:
        raise PreflightError(f"--episodes must be at least 1, got {args.episodes}")
    from vla_adapter_ros.sim.tasks import check_start_jitter, get_task

    try:
        check_start_jitter(args.start_jitter)
    except ValueError as exc:
        raise PreflightError(str(exc)) from None
    for flag, value in (("--real-time-factor", args.real_time_factor), ("--camera-rate", args.camera_rate),
                        ("--startup-timeout", args.startup_timeout)):
        if not value > 0:
            raise PreflightError(f"{flag} must be positive, got {value}")
    if min(args.image_size) < 1:
        raise PreflightError(f"--image-size must be positive, got {' '.join(map(str, args.image_size))}")
    check_params(_node_specs(None, bool(args.direct), getattr(args, "params", []) or []))
    return {t: (args.max_duration or get_task(t).max_duration_s) for t in args.tasks}


def run(args: argparse.Namespace) -> int:
    from vla_adapter_ros.stack_session import PreflightError, isolate_ros_graph, report_preflight_failure

    try:
        limits = preflight(args)  # before anything starts or is written
    except PreflightError as exc:
        return report_preflight_failure("collect", exc)
    print(isolate_ros_graph(), flush=True)  # its own nodes only, never a real robot's controller

    from rclpy.signals import SignalHandlerOptions
    from std_srvs.srv import SetBool, Trigger
    from tqdm import tqdm

    from vla_adapter_ros.data.convert import SIM_EPISODE_FILE
    from vla_adapter_ros.sim_episodes import SimEpisodes
    from vla_adapter_ros.srv import SetInstruction
    from vla_adapter_ros.stack_session import StackSession, StartupError, report_startup_failure

    direct = bool(args.direct)
    out_dir = Path(args.output).expanduser().resolve()
    bags = out_dir / "bags"  # the recorder creates it
    out_dir.mkdir(parents=True, exist_ok=True)
    params = out_dir / "collect_params.yaml"
    params.write_text(_params_yaml(args, bags))
    log_path = out_dir / "nodes.log"
    interrupted = threading.Event()

    def on_signal(*_):
        interrupted.set()

    session = StackSession(_node_specs(params, direct, args.params), log_path, "vla_collect", log_mode="a",
                           interrupted=interrupted,
                           # Ctrl-C is ours: it ends the episode cleanly
                           rclpy_init_kwargs={"signal_handler_options": SignalHandlerOptions.NO})
    print(f"starting sim ({'expert, direct' if direct else 'expert as the policy'}) + "
          f"{'' if direct else 'executor + '}recorder (logs: {log_path})", flush=True)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    session.start()
    node = session.node
    spin_until, call = session.spin_until, session.call
    episodes = SimEpisodes(session, executor=not direct)
    start = node.create_client(SetInstruction, "/recorder_node/start")
    stop = node.create_client(SetBool, "/recorder_node/stop")
    discard = node.create_client(Trigger, "/recorder_node/discard")

    results: list[dict] = []
    code = 0
    recording = False
    started = False
    bar = None
    t_start = time.monotonic()
    try:
        session.wait_up(lambda: episodes.wait_ready(0.0) and all(c.service_is_ready() for c in (start, stop, discard)),
                        args.startup_timeout)
        started = True
        total = len(args.tasks) * args.episodes
        bar = tqdm(total=total, unit="ep", disable=args.no_progress, dynamic_ncols=True)
        for task in args.tasks:
            for k in range(args.episodes):
                seed = int(args.seed) + k
                r = episodes.reset(task, seed)  # executor disabled first; the new scene has settled
                instruction = r.instruction
                # the recorder refuses while a camera is silent (e.g. right after start-up): retry briefly
                deadline = time.monotonic() + 20.0
                while True:
                    s = call(start, SetInstruction.Request(instruction=instruction))
                    if s.success or time.monotonic() > deadline or "silent" not in s.message:
                        break
                    spin_until(lambda: False, 0.5)
                if not s.success:
                    raise RuntimeError(f"recorder start refused: {s.message}")
                recording = True
                episodes.enable()  # the expert's first chunk is requested now
                outcome = episodes.wait_outcome(limits[task], settle_s=float(args.settle))
                if interrupted.is_set() or session.stack_exited:
                    raise KeyboardInterrupt
                ok = outcome.success
                if outcome.timed_out:
                    print(f"collect: {task} seed {seed}: simulation time stopped advancing")
                if ok or args.keep_failures:
                    res = call(stop, SetBool.Request(data=ok))
                    path = res.message if res.success else ""
                    if not res.success:
                        print(f"collect: stop failed: {res.message}")
                    elif Path(path).is_dir():  # the scene of this bag, for `replay`
                        (Path(path) / SIM_EPISODE_FILE).write_text(json.dumps(
                            {"task": task, "seed": seed, "start_jitter": float(args.start_jitter),
                             "instruction": instruction, "path": "direct" if direct else "executor"}))
                else:
                    call(discard, Trigger.Request())
                    path = ""
                recording = False
                size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if path else 0
                results.append({"task": task, "seed": seed, "instruction": instruction, "success": ok,
                                "bag": path, "bag_bytes": size, "sim_s": round(outcome.sim_s, 3),
                                "wall_s": round(outcome.wall_s, 3)})
                bar.set_postfix_str(f"{task} seed {seed}: {'ok' if ok else 'FAILED'} ({outcome.sim_s:.1f} s)")
                bar.update(1)
        episodes.disable()
    except StartupError as exc:  # said now; the nodes are stopped when the session closes
        report_startup_failure("collect", exc, log_path)
        code = 1
    except KeyboardInterrupt:
        if session.stack_exited and not interrupted.is_set():
            print(f"collect: {session.exit_reason()} (see {log_path})", flush=True)
            code = 1
        else:
            print("collect: interrupted", flush=True)
            code = 130
    except RuntimeError as exc:
        reason = session.exit_reason() if session.stack_exited else str(exc)
        print(f"collect: {reason} (see {log_path})", flush=True)
        code = 1
    finally:
        if bar is not None:
            bar.close()
        if recording and not session.stack_exited:
            try:
                call(discard, Trigger.Request(), timeout=5.0, interruptible=False)
                print("collect: discarded the episode being recorded")
            except Exception:
                pass
        session.close()
        for s, handler in previous.items():
            signal.signal(s, handler)

    if not started:  # the run never started: no summary
        return code or 1
    wall = time.monotonic() - t_start
    saved = [r for r in results if r["bag"]]
    per_task = {t: {"episodes": sum(r["task"] == t for r in results),
                    "successes": sum(r["task"] == t and r["success"] for r in results)} for t in args.tasks}
    summary = {"output": str(out_dir), "bags_dir": str(bags), "episodes": len(results), "bags": len(saved),
               "successes": sum(r["success"] for r in results), "per_task": per_task,
               "bag_bytes_total": sum(r["bag_bytes"] for r in saved), "wall_s": round(wall, 1),
               "episodes_per_min": round(60.0 * len(results) / wall, 2) if wall > 0 else 0.0,
               "results": results}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{len(saved)} bags written ({summary['bag_bytes_total'] / 1e6:.1f} MB), "
          f"{summary['successes']}/{len(results)} episodes succeeded, {wall:.0f} s")
    for t, v in per_task.items():
        print(f"  {t}: {v['successes']}/{v['episodes']}")
    print(f"output: {out_dir}")
    if saved:
        print(f"convert: vla-adapter-ros convert {bags}/episode_* DATASET_DIR {CONVERT_FLAGS}")
    if code == 0 and len(results) < len(args.tasks) * args.episodes:
        code = 1
    return code


def main(argv=None) -> int:
    from vla_adapter_ros.cli import HelpFormatter

    parser = argparse.ArgumentParser(prog="vla-adapter-ros collect", description=__doc__, formatter_class=HelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
