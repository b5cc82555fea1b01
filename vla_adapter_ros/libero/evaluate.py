"""`vla-adapter-ros libero-eval`: a checkpoint on the LIBERO benchmark through our own ROS nodes.

Per suite, starts libero_node (from the LIBERO environment, `.venv-libero`, see
scripts/setup_libero.sh), policy_node and executor_node (`output: eef_delta`, from this
environment) as child processes, then for every task and episode: disables the executor, resets
the bridge to the task and initial state (episode i uses initial state i, as the official
evaluation), enables the executor, sends the instruction as an ExecuteInstruction goal and waits
until the bridge reports the episode done (success, or the suite's step limit). Prints the
per-suite success table in the paper's format and writes OUT/summary.json and OUT/nodes_<suite>.log.

Released checkpoints are one per suite: pass `--checkpoint libero_spatial=DIR ...` (or one DIR for
every suite). Without --checkpoint the random-weight `tiny` model runs: it proves the plumbing only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from vla_adapter_ros.libero.core import NUM_STEPS_WAIT, PAPER_COLUMNS, SUITES, success_table
from vla_adapter_ros.supervisor import NodeSpec

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SUITES = list(PAPER_COLUMNS)


def _config_dir() -> Path:
    if (ROOT / "config" / "libero.yaml").is_file():  # a checkout
        return ROOT / "config"
    from ament_index_python.packages import get_package_share_directory  # an installed package

    return Path(get_package_share_directory("vla_adapter_ros")) / "config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", action="append", default=[], metavar="[SUITE=]DIR",
                        help="checkpoint directory for every suite, or SUITE=DIR per suite (repeatable; "
                             "default: none, the random-weight tiny model: plumbing only)")
    parser.add_argument("--suites", nargs="+", default=DEFAULT_SUITES, choices=list(SUITES), metavar="SUITE",
                        help=f"suites to evaluate (default: {' '.join(DEFAULT_SUITES)})")
    parser.add_argument("--episodes-per-task", type=int, default=50, help="episodes per task (official: 50)")
    parser.add_argument("--tasks", type=int, nargs="+", default=None, metavar="INDEX",
                        help="task indices to run in every suite (default: all)")
    parser.add_argument("--first-init-state", type=int, default=0,
                        help="initial state of the first episode of each task (then +1)")
    parser.add_argument("--max-steps", type=int, default=0,
                        help="policy steps per episode (0: the suite's official limit, 220/280/300/520)")
    parser.add_argument("--device", default="auto", help="policy device: auto | cpu | cuda | cuda:N")
    parser.add_argument("--unnorm-key", default="", help="dataset key of the checkpoint's statistics "
                        "(default: the checkpoint's only key; released LIBERO checkpoints: <suite>_no_noops)")
    parser.add_argument("--libero-python", default=str(ROOT / ".venv-libero" / "bin" / "python"),
                        help="interpreter of the LIBERO environment (scripts/setup_libero.sh)")
    parser.add_argument("--output", default="outputs/libero_eval", help="folder for summary.json and logs")
    parser.add_argument("--startup-timeout", type=float, default=600.0,
                        help="seconds to wait for the nodes (a node that exits stops the wait at once)")
    parser.add_argument("--episode-timeout", type=float, default=0.0,
                        help="wall s per episode before giving up (default 0: 5 s per step, at least 600)")
    parser.add_argument("--no-progress", action="store_true",
                        help="accepted as by the other long-running commands; libero-eval has no progress bar "
                             "(one line per episode)")


@dataclass
class ExternalPythonNodeSpec(NodeSpec):
    """A node run by another environment's interpreter (the supervisor runs the others with ours).

    The ROS wheels' start-up hook marks the environment as prepared and puts this venv's lib/ on
    LD_LIBRARY_PATH; both are removed so the other interpreter prepares its own."""

    python: str = ""

    def argv(self, extra_params=(), *args, **kwargs) -> list[str]:
        argv = super().argv(extra_params, *args, **kwargs)
        return [*_foreign_env(), self.python, *argv[1:]]


def _foreign_env() -> list[str]:
    """`env` prefix that starts another venv's interpreter without this venv's ROS preparation."""
    ours = str(Path(sys.prefix).resolve())
    kept = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
            if p and not str(Path(p).resolve()).startswith(ours)]
    return ["env", "-u", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", f"LD_LIBRARY_PATH={os.pathsep.join(kept)}"]


def checkpoints_by_suite(entries: list[str], suites: list[str]) -> dict[str, str]:
    """["DIR"] or ["libero_spatial=DIR", ...] -> {suite: absolute DIR or "" (random weights)}."""
    default, per_suite = "", {}
    for entry in entries:
        suite, sep, path = entry.partition("=")
        if sep and suite in SUITES:
            per_suite[suite] = path
        elif sep and not Path(entry).exists():
            raise ValueError(f"--checkpoint {entry!r}: unknown suite {suite!r}")
        elif default:
            raise ValueError("--checkpoint: give one DIR for every suite, or SUITE=DIR entries")
        else:
            default = entry
    out = {}
    for suite in suites:
        path = per_suite.get(suite, default)
        if path and not Path(path).expanduser().is_dir():
            raise ValueError(f"checkpoint for {suite}: {path} is not a directory")
        out[suite] = str(Path(path).expanduser().resolve()) if path else ""
    return out


def node_specs(libero_python: str) -> list[NodeSpec]:
    config = _config_dir()
    return [
        ExternalPythonNodeSpec("libero_node", "vla_adapter_ros.nodes.libero_node", [config / "libero.yaml"],
                               python=libero_python),
        NodeSpec("policy_node", "vla_adapter_ros.nodes.policy_node",
                 [config / "policy.yaml", config / "policy_libero.yaml"]),
        NodeSpec("executor_node", "vla_adapter_ros.nodes.executor_node",
                 [config / "executor.yaml", config / "executor_libero.yaml"]),
    ]


def _overrides(suite: str, first_task: int, checkpoint: str, args: argparse.Namespace) -> str:
    max_steps = int(args.max_steps) if args.max_steps > 0 else SUITES[suite]
    return (
        "libero_node:\n  ros__parameters:\n"
        f"    task: {json.dumps(f'{suite}/{first_task}')}\n"
        f"    init_state: {int(args.first_init_state)}\n    max_steps: {max_steps}\n"
        "policy_node:\n  ros__parameters:\n"
        f"    checkpoint: {json.dumps(checkpoint)}\n    device: {json.dumps(args.device)}\n"
        f"    unnorm_key: {json.dumps(args.unnorm_key)}\n"
        # the bridge ends the episode; the goal only must not end first
        f"    default_max_duration: {float(10 * (max_steps + NUM_STEPS_WAIT) * 0.05 + 60):.1f}\n"
    )


def _episode_number(message: str) -> int:
    match = re.match(r"episode (\d+):", message)
    if not match:
        raise RuntimeError(f"unexpected reset answer {message!r}")
    return int(match.group(1))


def _run_suite(suite: str, checkpoint: str, args: argparse.Namespace, out_dir: Path, tasks: list[int],
               on_startup_failure=None) -> list[dict]:
    """The episodes of one suite. A node that exits during start-up raises StartupError at once;
    `on_startup_failure(error, log_path)` is called first, before the other nodes are stopped."""
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from std_msgs.msg import String
    from std_srvs.srv import SetBool

    from vla_adapter_ros.action import ExecuteInstruction
    from vla_adapter_ros.srv import ResetEpisode
    from vla_adapter_ros.stack_session import StackSession, StartupError

    params = out_dir / f"params_{suite}.yaml"
    params.write_text(_overrides(suite, tasks[0], checkpoint, args))
    session = StackSession(node_specs(args.libero_python), out_dir / f"nodes_{suite}.log", "vla_libero_eval",
                           extra_params=[params])
    policy = "checkpoint " + checkpoint if checkpoint else "RANDOM WEIGHTS: plumbing only"
    print(f"{suite}: starting libero_node + policy_node + executor_node ({policy}; logs: {session.log_path})",
          flush=True)
    status: dict = {}
    results: list[dict] = []

    def on_status(msg):
        status.update(json.loads(msg.data))

    with session:
        node = session.node
        node.create_subscription(String, "/libero/episode", on_status, 10)
        reset = node.create_client(ResetEpisode, "/libero_node/reset_episode")
        enable = node.create_client(SetBool, "/executor_node/enable")
        goals = ActionClient(node, ExecuteInstruction, "/policy_node/execute_instruction")
        try:  # StartupError at once when a node exits (its reason), or after the timeout
            session.wait_up(lambda: reset.service_is_ready() and enable.service_is_ready()
                            and goals.server_is_ready(), args.startup_timeout)
        except StartupError as exc:
            if on_startup_failure is not None:
                on_startup_failure(exc, session.log_path)
            raise
        max_steps = int(args.max_steps) if args.max_steps > 0 else SUITES[suite]
        timeout = args.episode_timeout or max(600.0, 5.0 * (max_steps + NUM_STEPS_WAIT))
        for task in tasks:
            for k in range(args.episodes_per_task):
                init_state = args.first_init_state + k
                session.call(enable, SetBool.Request(data=False))
                answer = session.call(reset, ResetEpisode.Request(task=f"{suite}/{task}", seed=init_state),
                                      timeout=300.0)
                if not answer.success:
                    raise RuntimeError(f"reset {suite}/{task} failed: {answer.message}")
                number = _episode_number(answer.message)
                start = time.monotonic()
                # the policy holds the instruction before the executor asks for the first chunk
                # (the bridge freezes until that chunk comes)
                feedback = []
                sent = goals.send_goal_async(ExecuteInstruction.Goal(instruction=answer.instruction),
                                             feedback_callback=feedback.append)
                if not session.spin_until(sent.done, 60) or not sent.result().accepted:
                    raise RuntimeError("the policy rejected the goal")
                handle = sent.result()
                result = handle.get_result_async()
                if not session.spin_until(lambda: feedback or result.done(), 60):
                    raise RuntimeError("the policy did not start the goal")
                enabled = session.call(enable, SetBool.Request(data=True))
                if not enabled.success:
                    raise RuntimeError(f"executor refused to enable: {enabled.message}")
                done = session.spin_until(lambda: status.get("episode") == number and status.get("done"), timeout)
                if not done:
                    raise RuntimeError(f"{suite}/{task} init state {init_state}: the episode did not end "
                                       f"within {timeout:.0f} s (last status {status}); see {session.log_path}")
                session.call(enable, SetBool.Request(data=False))
                if not result.done():
                    handle.cancel_goal_async()
                session.spin_until(result.done, 30)
                outcome = result.result() if result.done() else None
                entry = {"suite": suite, "task": task, "init_state": init_state, "instruction": answer.instruction,
                         "success": bool(status["success"]), "steps": status["step"],
                         "hold_steps": status["hold_steps"], "wall_seconds": round(time.monotonic() - start, 1),
                         "chunks": int(outcome.result.chunks) if outcome is not None else -1,
                         "policy": outcome.result.message if outcome is not None else "no result",
                         "policy_succeeded": outcome is not None and outcome.status == GoalStatus.STATUS_SUCCEEDED}
                results.append(entry)
                print(f"  {suite}/{task} init {init_state}: {'SUCCESS' if entry['success'] else 'failure'} "
                      f"after {entry['steps']} steps ({entry['hold_steps']} holds, {entry['chunks']} chunks, "
                      f"{entry['wall_seconds']} s)", flush=True)
    return results


def preflight(args: argparse.Namespace) -> dict[str, str]:
    """Check the arguments before any node starts; returns the checkpoint of each suite ('' = random weights).
    PreflightError names the argument and the cause."""
    from vla_adapter_ros.stack_session import PreflightError, check_checkpoint_dir, check_params

    if not Path(args.libero_python).is_file():
        raise PreflightError(f"no LIBERO environment at {args.libero_python}: run scripts/setup_libero.sh "
                             "(or pass --libero-python)")
    try:
        checkpoints = checkpoints_by_suite(args.checkpoint, args.suites)
    except ValueError as exc:
        raise PreflightError(str(exc)) from None
    for suite, path in checkpoints.items():
        if path:
            try:
                check_checkpoint_dir(path)
            except PreflightError as exc:
                raise PreflightError(f"--checkpoint ({suite}): {exc}") from None
    if args.episodes_per_task < 1:
        raise PreflightError(f"--episodes-per-task must be at least 1, got {args.episodes_per_task}")
    if args.tasks is not None and min(args.tasks) < 0:
        raise PreflightError(f"--tasks: task indices start at 0, got {min(args.tasks)}")
    if args.first_init_state < 0 or args.max_steps < 0:
        raise PreflightError("--first-init-state and --max-steps must not be negative")
    check_params(node_specs(args.libero_python))
    return checkpoints


def run(args: argparse.Namespace) -> int:
    from vla_adapter_ros.stack_session import (
        PreflightError,
        StartupError,
        isolate_ros_graph,
        report_preflight_failure,
        report_startup_failure,
    )

    try:
        checkpoints = preflight(args)  # before anything starts or is written
    except PreflightError as exc:
        return report_preflight_failure("libero-eval", exc)
    print(isolate_ros_graph(), flush=True)  # its own nodes only, never a real robot's controller
    out_dir = Path(args.output).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    episodes: list[dict] = []
    rates: dict[str, float] = {}
    code = 0
    finished = 0  # suites that ran to the end

    def on_startup_failure(exc, log_path):  # said at once, before the other nodes are stopped
        if not finished:
            report_startup_failure("libero-eval", exc, log_path)

    for suite in args.suites:
        tasks = args.tasks if args.tasks is not None else list(range(_suite_size(args.libero_python, suite)))
        try:
            results = _run_suite(suite, checkpoints[suite], args, out_dir, tasks, on_startup_failure)
        except StartupError as exc:
            if not finished:  # the run never started: no summary
                return 1
            print(f"libero-eval stopped in {suite}: {exc}", flush=True)
            code = 1
            break
        except (RuntimeError, KeyboardInterrupt) as exc:
            print(f"libero-eval stopped in {suite}: {exc or 'interrupted'}", flush=True)
            code = 1
            break
        finished += 1
        episodes += results
        if results:
            rates[suite] = sum(r["success"] for r in results) / len(results)
    table = success_table(rates) if rates else "(no finished suite)"
    summary = {"checkpoints": {s: c or "random weights (tiny)" for s, c in checkpoints.items()},
               "episodes_per_task": args.episodes_per_task, "max_steps": args.max_steps or "official",
               "success_rate": rates, "table": table, "episodes": episodes}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\nLIBERO success rate (%)\n" + table, flush=True)
    print(f"summary: {out_dir / 'summary.json'}", flush=True)
    return code


def _suite_size(libero_python: str, suite: str) -> int:
    """Number of tasks of a suite, asked from the LIBERO environment (this one has no libero)."""
    import subprocess

    code = f"from vla_adapter_ros.libero.episode import suite_size; print(suite_size({suite!r}))"
    out = subprocess.run([*_foreign_env(), libero_python, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])
