"""`vla-adapter-ros collect`: record scripted-expert demonstrations in simulation, one bag per episode.

Starts sim_node (expert mode: the scripted expert publishes its actions on the JTC and gripper
topics and the simulation follows them) and recorder_node (use_sim_time) as child processes, then
for each task and each seed: reset the episode, start a recording with the task's instruction, wait
for the task's success flag (/vla/task_success) or the time limit, let the scene settle, and stop
the recording (success) or discard it (failure; `--keep-failures` keeps it, marked success=false).

Writes OUT/bags/<episode>/ (rosbag2 MCAP + metadata with the instruction), OUT/collect_params.yaml,
OUT/nodes.log and OUT/summary.json. Convert the bags with:

    vla-adapter-ros convert OUT/bags/episode_* DATASET \\
        --cameras /camera/agentview/image_raw /camera/wrist/image_raw \\
        --command /fr3_arm_controller/joint_trajectory --gripper-command /gripper/command
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
]
CONVERT_FLAGS = ("--cameras /camera/agentview/image_raw /camera/wrist/image_raw "
                 "--command /fr3_arm_controller/joint_trajectory --gripper-command /gripper/command")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"tasks to record (default: {' '.join(TASKS)})")
    parser.add_argument("--episodes", type=int, default=10, help="episodes (seeds) per task")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode of every task (then +1)")
    parser.add_argument("--output", default="outputs/collect", help="folder for bags/, logs and summary.json")
    parser.add_argument("--max-duration", type=float, default=0.0,
                        help="simulated seconds per episode before it counts as failed (0: the task's limit)")
    parser.add_argument("--settle", type=float, default=0.5, help="simulated seconds recorded after success")
    parser.add_argument("--start-jitter", type=float, default=0.0,
                        help="0..1: start every episode from a seeded random arm pose (1 = TCP +-8/12/5 cm, "
                        "yaw +-0.3 rad): keeps the policy from reading the goal off the arm's pose")
    parser.add_argument("--keep-failures", action="store_true", help="keep failed episodes (success=false)")
    parser.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--camera-rate", type=float, default=10.0, help="camera frames per simulated second")
    parser.add_argument("--real-time-factor", type=float, default=1.0,
                        help="upper bound of simulated / wall time (higher: faster collection if the CPU keeps up)")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="s to wait for the nodes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _params_yaml(args: argparse.Namespace, bags: Path) -> str:
    h, w = (int(x) for x in args.image_size)
    first = args.tasks[0]
    return (
        "sim_node:\n  ros__parameters:\n"
        f"    task: {json.dumps(first)}\n    seed: {int(args.seed)}\n"
        f"    expert: true\n    real_time_factor: {float(args.real_time_factor)}\n"
        f"    start_jitter: {float(args.start_jitter)}\n"
        f"    camera_rate_hz: {float(args.camera_rate)}\n    image_width: {w}\n    image_height: {h}\n"
        "recorder_node:\n  ros__parameters:\n    use_sim_time: true\n"
        f"    output_dir: {json.dumps(str(bags))}\n"
        f"    topics: {json.dumps(RECORDED_TOPICS)}\n"
        "    status_period: 0.0\n"
    )


def _node_specs(params: Path):
    from vla_adapter_ros.supervisor import NodeSpec

    from vla_adapter_ros.paths import config_dir

    config = config_dir()
    recorder_defaults = [config / "recorder.yaml"] if (config / "recorder.yaml").is_file() else []
    return [
        NodeSpec("sim_node", "vla_adapter_ros.nodes.sim_node", [config / "sim.yaml", params]),
        NodeSpec("recorder_node", "vla_adapter_ros.nodes.recorder_node", [*recorder_defaults, params]),
    ]


def run(args: argparse.Namespace) -> int:
    from vla_adapter_ros.stack_session import isolate_ros_graph

    print(isolate_ros_graph(), flush=True)  # its own nodes only, never a real robot's controller
    if args.episodes < 1 or not args.tasks:
        print("collect: need at least one task and one episode")
        return 2
    try:
        from vla_adapter_ros.sim.tasks import check_start_jitter, get_task

        check_start_jitter(args.start_jitter)
        limits = {t: (args.max_duration or get_task(t).max_duration_s) for t in args.tasks}
    except (KeyError, ValueError) as exc:
        print(f"collect: {exc}")
        return 2

    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Bool
    from std_srvs.srv import SetBool, Trigger
    from tqdm import tqdm

    from vla_adapter_ros.srv import ResetEpisode, SetInstruction
    from vla_adapter_ros.stack_session import StackSession

    out_dir = Path(args.output).expanduser().resolve()
    bags = out_dir / "bags"
    bags.mkdir(parents=True, exist_ok=True)
    params = out_dir / "collect_params.yaml"
    params.write_text(_params_yaml(args, bags))
    log_path = out_dir / "nodes.log"
    interrupted = threading.Event()

    def on_signal(*_):
        interrupted.set()

    session = StackSession(_node_specs(params), log_path, "vla_collect", log_mode="a", interrupted=interrupted,
                           # Ctrl-C is ours: it ends the episode cleanly
                           rclpy_init_kwargs={"signal_handler_options": SignalHandlerOptions.NO})
    print(f"starting sim (expert) + recorder (logs: {log_path})", flush=True)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    session.start()
    node = session.node
    spin_until, call = session.spin_until, session.call
    # success counts only after a False seen since the reset (a True of the previous episode may be in flight)
    state = {"success": False, "armed": False, "sim_time": None}

    def on_success(msg):
        state["armed"] = state["armed"] or not msg.data
        state["success"] = bool(msg.data) and state["armed"]

    node.create_subscription(Bool, "/vla/task_success", on_success, 10)
    node.create_subscription(Clock, "/clock",
                             lambda m: state.__setitem__("sim_time", m.clock.sec + m.clock.nanosec * 1e-9),
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    reset = node.create_client(ResetEpisode, "/sim_node/reset_episode")
    start = node.create_client(SetInstruction, "/recorder_node/start")
    stop = node.create_client(SetBool, "/recorder_node/stop")
    discard = node.create_client(Trigger, "/recorder_node/discard")

    def sim_wait(seconds):  # simulated seconds (the sim may run slower than real time)
        if state["sim_time"] is None:
            spin_until(lambda: state["sim_time"] is not None, 10.0)
        t_end = (state["sim_time"] or 0.0) + seconds
        return spin_until(lambda: (state["sim_time"] or 0.0) >= t_end, 60.0 + 20.0 * seconds)

    results: list[dict] = []
    code = 0
    recording = False
    bar = None
    t_start = time.monotonic()
    try:
        ready = spin_until(lambda: all(c.service_is_ready() for c in (reset, start, stop, discard)),
                           args.startup_timeout)
        if not ready:
            if not interrupted.is_set():
                print(f"collect: the nodes did not come up (see {log_path})")
                code = 1
            raise KeyboardInterrupt
        total = len(args.tasks) * args.episodes
        bar = tqdm(total=total, unit="ep", disable=args.no_progress, dynamic_ncols=True)
        for task in args.tasks:
            for k in range(args.episodes):
                seed = int(args.seed) + k
                r = call(reset, ResetEpisode.Request(task=task, seed=seed))
                if not r.success:
                    raise RuntimeError(f"reset_episode({task}, {seed}) failed: {r.message}")
                instruction = r.instruction
                state["success"] = state["armed"] = False
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
                t0_sim = state["sim_time"] or 0.0
                t0_wall = time.monotonic()
                done = spin_until(lambda: state["success"] or (state["sim_time"] or 0.0) - t0_sim >= limits[task],
                                  60.0 + 20.0 * limits[task])
                if interrupted.is_set() or session.stack_exited:
                    raise KeyboardInterrupt
                ok = bool(state["success"])
                if not done:
                    print(f"collect: {task} seed {seed}: simulation time stopped advancing")
                if ok:
                    sim_wait(float(args.settle))
                sim_s = (state["sim_time"] or 0.0) - t0_sim
                if ok or args.keep_failures:
                    res = call(stop, SetBool.Request(data=ok))
                    path = res.message if res.success else ""
                    if not res.success:
                        print(f"collect: stop failed: {res.message}")
                else:
                    call(discard, Trigger.Request())
                    path = ""
                recording = False
                size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if path else 0
                results.append({"task": task, "seed": seed, "instruction": instruction, "success": ok,
                                "bag": path, "bag_bytes": size, "sim_s": round(sim_s, 3),
                                "wall_s": round(time.monotonic() - t0_wall, 3)})
                bar.set_postfix_str(f"{task} seed {seed}: {'ok' if ok else 'FAILED'} ({sim_s:.1f} s)")
                bar.update(1)
    except KeyboardInterrupt:
        if not code:
            print("collect: interrupted" if interrupted.is_set() or not session.stack_exited
                  else f"collect: a node exited (see {log_path})")
            code = 130 if interrupted.is_set() else 1
    except RuntimeError as exc:
        print(f"collect: {exc} (see {log_path})")
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
    parser = argparse.ArgumentParser(prog="vla-adapter-ros collect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
