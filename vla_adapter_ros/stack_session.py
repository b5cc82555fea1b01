"""A node stack run by the supervisor on a background thread, plus one in-process client node that
drives it over ROS (what `vla-adapter-ros demo` and `collect` do).

    with StackSession(specs, log_path, "vla_demo") as session:
        client = session.node.create_client(...)
        session.spin_until(client.service_is_ready, 60)
        reply = session.call(client, request)

Waiting stops early when a node of the stack exits (`stack_exited`) or, if given, when the
`interrupted` event is set. Closing shuts the client down, then stops and reaps every node.

`wait_up` waits for the stack's services and raises StartupError with the reason a node gave for
exiting (its `[FATAL] ...` line) the moment one exits. The `check_*` functions validate a command's
arguments before any node starts (PreflightError): tasks, checkpoint directories (cheaply: config and
the safetensors header, no weights loaded), parameter files.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from pathlib import Path

from vla_adapter_ros.supervisor import NodeSpec, StackError, Supervisor, check_parameter_files


class StartupError(RuntimeError):
    """The stack did not come up: a node exited (the message is its reason) or the start-up timed out."""


class PreflightError(ValueError):
    """A command's arguments would make a node fail: found before any node starts."""


PRIVATE_DOMAINS = (100, 200)  # [first, last) ROS_DOMAIN_ID picked for a self-contained stack


def isolate_ros_graph(environ=os.environ) -> str:
    """Keep a self-contained stack (demo, collect, libero-eval) to itself: discovery on this machine only
    and, unless the user chose a ROS_DOMAIN_ID, a private one. Two stacks on one machine would otherwise
    mix their topics, and a simulation's commands (e.g. /fr3_arm_controller/joint_trajectory) could reach
    a real controller running on the same computer. Returns a line saying which domain is used."""
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if environ.get("ROS_DOMAIN_ID", "").strip():
        return f"ROS_DOMAIN_ID={environ['ROS_DOMAIN_ID']} (from the environment)"
    first, last = PRIVATE_DOMAINS
    environ["ROS_DOMAIN_ID"] = str(first + os.getpid() % (last - first))
    return (f"ROS_DOMAIN_ID={environ['ROS_DOMAIN_ID']} (private to this run; export ROS_DOMAIN_ID to choose one, "
            "e.g. to watch it with ros2 topic echo)")


class StackSession:
    def __init__(self, specs: list[NodeSpec], log_path: Path, client_name: str, extra_params=(),
                 log_mode: str = "w", interrupted: threading.Event | None = None, rclpy_init_kwargs=None):
        self.log_path = Path(log_path)
        self.log = open(self.log_path, log_mode)
        self.supervisor = Supervisor(specs, extra_params=list(extra_params), out=self.log)
        self.interrupted = interrupted
        self._client_name = client_name
        self._init_kwargs = dict(rclpy_init_kwargs or {})
        self._exit: dict[str, int] = {}
        self._thread = threading.Thread(target=lambda: self._exit.setdefault("code", self.supervisor.run()),
                                        daemon=True)
        self.node = None
        self.executor = None

    def __enter__(self) -> "StackSession":
        return self.start()

    def start(self) -> "StackSession":
        """Start the stack and the client node (pair with `close()`, or use `with`)."""
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._thread.start()
        rclpy.init(**self._init_kwargs)
        self.node = rclpy.create_node(self._client_name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    @property
    def stack_exited(self) -> bool:
        """A node of the stack exited (the supervisor then stops the rest)."""
        return self.supervisor.first_exit is not None or "code" in self._exit

    def exit_reason(self) -> str:
        """'NODE exited with code N: <the reason it printed>' once a node exited, else ''."""
        return self.supervisor.exit_reason()

    def wait_up(self, predicate, timeout: float) -> None:
        """Spin until `predicate()` holds (the stack's services are ready). StartupError at once when a node
        exits (with that node's reason), or after `timeout` s; KeyboardInterrupt when interrupted."""
        if self.spin_until(predicate, timeout):
            return
        if self.stack_exited:
            raise StartupError(self.exit_reason() or "a node exited during start-up")
        if self.interrupted is not None and self.interrupted.is_set():
            raise KeyboardInterrupt
        raise StartupError(f"the nodes did not come up within {timeout:.0f} s")

    def spin_until(self, predicate, timeout: float, interruptible: bool = True) -> bool:
        """Process client callbacks until `predicate()` holds; False on timeout, stack exit or
        (if `interruptible`) interruption."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.stack_exited or (interruptible and self.interrupted is not None and self.interrupted.is_set()):
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return predicate()

    def call(self, client, request, timeout: float = 30.0, interruptible: bool = True):
        """Call a service and return its response; RuntimeError if none comes in time."""
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout, interruptible):
            raise RuntimeError(f"{client.srv_name}: no answer within {timeout} s")
        return future.result()

    def close(self, stop_timeout: float = 60.0) -> None:
        import rclpy

        if self.node is not None:
            self.node.destroy_node()
            self.executor.shutdown()
            self.node = None
        rclpy.try_shutdown()
        self.supervisor.request_stop()
        if self._thread.is_alive():
            self._thread.join(stop_timeout)
        self.log.close()


def report_startup_failure(command: str, exc: BaseException, log_path: Path, out=None) -> None:
    """The terminal lines of a run that never started: the reason, and where the nodes' output is."""
    out = out if out is not None else sys.stderr
    print(f"{command}: {exc}", file=out, flush=True)
    print(f"{command}: the run did not start; no results written (nodes' output: {log_path})", file=out, flush=True)


def report_preflight_failure(command: str, exc: BaseException | str, out=None) -> int:
    """One terminal line per problem a preflight check found; returns the exit code (2: bad arguments)."""
    out = out if out is not None else sys.stderr
    for line in str(exc).splitlines():
        print(f"{command}: {line}", file=out, flush=True)
    return 2


def report_stopped_run(command: str, session: StackSession, exc: BaseException, started: bool) -> bool:
    """What a command says when its stack stopped (a node exited, an error, Ctrl-C): mid-run, 'COMMAND stopped:
    REASON' on stdout; before the run started, the start-up failure lines (or, for a plain Ctrl-C, that nothing
    was written). Returns whether the run failed after it had started (its exit code is then 1)."""
    reason = session.exit_reason() if session.stack_exited else str(exc) or "interrupted"
    if started:
        print(f"{command} stopped: {reason}", flush=True)
        return True
    if session.stack_exited or not isinstance(exc, KeyboardInterrupt):
        report_startup_failure(command, StartupError(reason), session.log_path)
    else:
        print(f"{command}: interrupted before the nodes came up; no results written", file=sys.stderr, flush=True)
    return False


# ---------------------------------------------------------------------------------------------
# preflight: argument checks before any node starts
# ---------------------------------------------------------------------------------------------
def check_tasks(tasks) -> None:
    """Every task name is a simulation task (PreflightError naming the unknown one and the known ones)."""
    try:
        from vla_adapter_ros.sim.tasks import get_task
    except (ImportError, RuntimeError) as exc:  # no mujoco, or an unusable MUJOCO_GL
        raise PreflightError(f"the simulation cannot be loaded: {type(exc).__name__}: {exc} "
                             "(see vla-adapter-ros info)") from None
    if not tasks:
        raise PreflightError("give at least one task")
    for task in tasks:
        try:
            get_task(task)
        except (KeyError, ValueError) as exc:
            raise PreflightError(str(exc).strip("'\"")) from None


def check_params(specs: list[NodeSpec], extra_params=()) -> None:
    """The stack's and the user's parameter files name only nodes of the stack and parameters they declare."""
    try:
        check_parameter_files(specs, extra_params)
    except StackError as exc:
        raise PreflightError(str(exc)) from None


MODEL_FILE, CONFIG_FILE, STATS_FILE = "model.safetensors", "config.yaml", "dataset_statistics.json"


def check_safetensors_header(path: Path) -> None:
    """A safetensors file whose header parses and whose tensors lie inside the file (reads the header only)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise PreflightError(f"{path}: not a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n < 2 or 8 + n > size:
                raise PreflightError(f"{path}: not a safetensors file (no valid header in its {size} bytes)")
            header = json.loads(f.read(n).decode("utf-8"))
    except OSError as exc:
        raise PreflightError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreflightError(f"{path}: not a safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise PreflightError(f"{path}: not a safetensors file (header is not a JSON object)")
    data = size - 8 - n
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise PreflightError(f"{path}: corrupt safetensors header (tensor {name!r})")
        end = max(end, offsets[1])
    if end != data:
        raise PreflightError(f"{path}: corrupt or truncated safetensors file (the header describes {end} bytes "
                             f"of tensor data, the file holds {data})")


def check_checkpoint_dir(path) -> None:
    """What the policy node loads first, checked in milliseconds: the directory exists, its config parses,
    its statistics are JSON and model.safetensors has a sound header. PreflightError names the file."""
    path = Path(path)
    if not path.is_dir():
        raise PreflightError(f"{path}: checkpoint directory not found" if not path.exists()
                             else f"{path}: not a directory (a checkpoint is a directory)")
    official = any(path.glob("action_head--*.pt")) or (
        (path / "config.json").is_file() and not (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).is_file())
    if official:  # the released layout (see model/checkpoint.py)
        try:
            json.loads((path / "config.json").read_text())
        except OSError:
            raise PreflightError(f"{path / 'config.json'}: file not found") from None
        except json.JSONDecodeError as exc:
            raise PreflightError(f"{path / 'config.json'}: cannot parse JSON: {exc}") from None
    else:
        from vla_adapter_ros.model.config import ConfigError, VLAAdapterConfig  # no torch

        if not (path / CONFIG_FILE).is_file():
            raise PreflightError(f"{path / CONFIG_FILE}: file not found (not a checkpoint directory?)")
        try:
            VLAAdapterConfig.load(path / CONFIG_FILE)
        except (ConfigError, OSError, ValueError, TypeError) as exc:
            msg = str(exc)
            raise PreflightError(msg if str(path) in msg else f"{path / CONFIG_FILE}: {msg}") from None
        stats = path / STATS_FILE
        try:
            json.loads(stats.read_text())
        except FileNotFoundError:
            raise PreflightError(f"{stats}: file not found") from None
        except (OSError, ValueError) as exc:
            raise PreflightError(f"{stats}: cannot read JSON: {exc}") from None
    if not (path / MODEL_FILE).is_file():
        raise PreflightError(f"{path / MODEL_FILE}: file not found")
    check_safetensors_header(path / MODEL_FILE)
