"""Start a set of nodes as child processes and keep them together (`vla-adapter-ros up`).

For machines without `ros2 launch`. Unlike `ros2 run`, every signal reaches every child: SIGINT or
SIGTERM to the supervisor sends SIGINT to all children, escalates to SIGTERM and then SIGKILL after
timeouts, and reaps them all. When one child exits, the others are stopped too (a robot stack with a
dead node is not a stack). Output lines are prefixed with the node name.

A stack file (YAML) names the nodes; parameter files are resolved relative to the stack file:

    nodes:
      - name: policy_node
        module: vla_adapter_ros.nodes.policy_node   # python -m <module>
        params: [policy.yaml]
        args: []                                    # extra --ros-args, e.g. ["-p", "policy_node:device:=cpu"]
"""

from __future__ import annotations

import ast
import collections
import difflib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable

import yaml


# ------------------------------------------------------------------------------ middleware environment
LARGE_DATA_PROFILE = "fastdds_large_data.xml"  # resource/ of the checkout or share/vla_adapter_ros/resource
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")  # Fast DDS 3 / 2 names
FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")  # read only FASTRTPS_...; Kilted's rmw warns when it is set
_CHECKOUT_RESOURCE = Path(__file__).resolve().parent.parent / "resource"


def large_data_profile() -> Path | None:
    """The shipped Fast DDS profile for full-size images (resource/fastdds_large_data.xml), or None."""
    candidate = _CHECKOUT_RESOURCE / LARGE_DATA_PROFILE
    if candidate.is_file():
        return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        candidate = Path(get_package_share_directory("vla_adapter_ros")) / "resource" / LARGE_DATA_PROFILE
    except Exception:  # no ROS index, or the package is not in it
        return None
    return candidate if candidate.is_file() else None


def middleware_environment(environ=os.environ) -> dict[str, str]:
    """Environment variables to add for the nodes the package starts: the large-data Fast DDS profile
    (16 MiB shared-memory segments; with the defaults most 640x480 frames at 30 Hz are lost).

    Nothing when the user chose a profile (FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE) or Fast DDS's
    builtin transports (FASTDDS_BUILTIN_TRANSPORTS), when another RMW than rmw_fastrtps_* is selected,
    or when the file is not found."""
    if any(environ.get(name, "").strip() for name in (*PROFILE_VARIABLES, "FASTDDS_BUILTIN_TRANSPORTS")):
        return {}
    rmw = environ.get("RMW_IMPLEMENTATION", "").strip()
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return {}
    profile = large_data_profile()
    if profile is None:
        return {}
    fast_dds_2 = environ.get("ROS_DISTRO", "").strip().lower() in FAST_DDS_2_DISTROS
    return {PROFILE_VARIABLES[1] if fast_dds_2 else PROFILE_VARIABLES[0]: str(profile)}


class StackError(ValueError):
    """A malformed stack file, or a parameter file the nodes would misread (unknown node or key)."""


CLOCK_SOURCES = ("sim_node", "libero_node")  # nodes that publish a stack's simulated clock


def namespace_parameters(node: str, namespace: str) -> dict:
    """Parameters a node of ours needs in `namespace`: the simulation prefixes its frames with it
    ("robot1/base", ...), because /tf is one global topic that namespaced sims share."""
    if namespace and node == "sim_node":
        return {"tf_prefix": namespace.strip("/") + "/"}
    return {}


def namespace_arguments(namespace: str, own_clock: bool) -> list[str]:
    """ROS arguments that move a node into `namespace` ('' : none); with `own_clock` its /clock too
    (a namespaced simulation keeps its own clock, <namespace>/clock, next to other stacks)."""
    if not namespace:
        return []
    return ["-r", f"__ns:={namespace}"] + (["-r", "/clock:=clock"] if own_clock else [])


def namespaced_parameter_file(path: str | Path, namespace: str, directory: str | Path) -> Path:
    """A copy of parameter file `path` in `directory` whose node sections apply inside `namespace`.

    ROS matches a section `executor_node:` only to /executor_node; in /robot1 the node is
    /robot1/executor_node. Sections named relatively become `<namespace>/<node>`; absolute names and
    wildcards (`/**`, `/**/node`) stay as they are. Unreadable files are returned unchanged: the node
    reports them. Used by `up --namespace` and the launch files' `namespace` argument."""
    path = Path(path)
    if not namespace:
        return path
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return path
    if not isinstance(data, dict):
        return path
    moved = {(key if str(key).startswith("/") else f"{namespace}/{key}"): body for key, body in data.items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{len(list(directory.iterdir())):02d}_{path.name}"
    target.write_text(f"# {path} for namespace {namespace}\n" + yaml.safe_dump(moved, sort_keys=False))
    return target


@dataclass
class NodeSpec:
    name: str
    module: str
    params: list[Path] = field(default_factory=list)
    args: list[str] = field(default_factory=list)

    def argv(self, extra_params: list[Path] = (), namespace: str = "", own_clock: bool = False,
             scratch: str | Path | None = None) -> list[str]:
        """The node's command line; in a `namespace`, its parameter files are rewritten into `scratch`
        (see `namespaced_parameter_file`)."""
        ros_args = ["-r", f"__node:={self.name}", *namespace_arguments(namespace, own_clock)]
        for path in [*self.params, *extra_params]:
            if namespace:
                if scratch is None:
                    raise ValueError("a namespaced node needs a scratch directory for its parameter files")
                path = namespaced_parameter_file(path, namespace, scratch)
            ros_args += ["--params-file", str(path)]
        for key, value in namespace_parameters(self.name, namespace).items():  # after the files: they win
            ros_args += ["-p", f"{key}:={value}"]
        return [sys.executable, "-m", self.module, "--ros-args", *ros_args, *self.args]


def load_stack(path: str | Path) -> list[NodeSpec]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise StackError(f"{path}: cannot read stack file: {exc}") from exc
    except yaml.YAMLError as exc:
        raise StackError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
        raise StackError(f"{path}: expected a mapping with a non-empty 'nodes' list")
    specs, names = [], set()
    for i, entry in enumerate(data["nodes"]):
        where = f"{path}: nodes[{i}]"
        if not isinstance(entry, dict):
            raise StackError(f"{where}: expected a mapping")
        unknown = set(entry) - {"name", "module", "params", "args"}
        if unknown:
            raise StackError(f"{where}: unknown keys {sorted(unknown)}")
        name, module = entry.get("name"), entry.get("module")
        if not isinstance(name, str) or not name.isidentifier():
            raise StackError(f"{where}: 'name' must be a valid node name, got {name!r}")
        if name in names:
            raise StackError(f"{where}: duplicate node name {name!r}")
        if not isinstance(module, str) or not module:
            raise StackError(f"{where}: 'module' (python -m target) is required")
        params = []
        for p in entry.get("params") or []:
            resolved = (path.parent / p).resolve()
            if not resolved.is_file():
                raise StackError(f"{where}: parameter file {p!r} not found (looked at {resolved})")
            params.append(resolved)
        args = entry.get("args") or []
        if not all(isinstance(a, str) for a in args):
            raise StackError(f"{where}: 'args' must be a list of strings")
        names.add(name)
        specs.append(NodeSpec(name, module, params, list(args)))
    return specs


# ---------------------------------------------------------------------------------------------
# parameter files: every key must be a parameter the node declares (checked before any node starts)
# ---------------------------------------------------------------------------------------------
ROS_NODE_PARAMETERS = ("use_sim_time", "start_type_description_service")  # declared by every rclpy node
PACKAGE_NODES = ("sim_node", "policy_node", "executor_node", "recorder_node", "libero_node")
_WILDCARDS = ("**", "*")
_declared_cache: dict[str, frozenset[str] | None] = {}


def _defaults_keys_from_source(path: Path) -> frozenset[str] | None:
    """Keys of the module-level ``DEFAULTS = {...}`` literal, read without importing the module (no ROS,
    no side effects); None when the module has no such literal with plain string keys."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == "DEFAULTS" for t in targets) and isinstance(node.value, ast.Dict):
            keys = node.value.keys
            if all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in keys):
                return frozenset(k.value for k in keys)
            return None
    return None


def declared_parameters(module: str) -> frozenset[str] | None:
    """Names of the parameters the node run by ``python -m module`` declares: the keys of its module-level
    DEFAULTS dict (what ``nodes.common.declare`` declares) plus rclpy's own; None when unknown (a module of
    another package, or one without DEFAULTS): its parameter files are not checked."""
    if module not in _declared_cache:
        keys = None
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            keys = _defaults_keys_from_source(Path(spec.origin))
            if keys is None and "DEFAULTS" in Path(spec.origin).read_text():
                try:  # DEFAULTS built in another way: import the module (rclpy import, no node is started)
                    defaults = getattr(importlib.import_module(module), "DEFAULTS", None)
                    keys = frozenset(defaults) if isinstance(defaults, dict) else None
                except Exception:
                    keys = None
        _declared_cache[module] = None if keys is None else keys | frozenset(ROS_NODE_PARAMETERS)
    return _declared_cache[module]


def _flatten(params: dict, prefix: str = "") -> Iterable[str]:
    """ROS reads nested mappings under ros__parameters as dotted names."""
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name


def _closest(word: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, sorted(options), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _node_of_section(key: str) -> str:
    """'policy_node', '/policy_node', '/ns/policy_node', '/**/policy_node' -> 'policy_node'; '/**' -> '**'."""
    last = str(key).strip("/").rsplit("/", 1)[-1]
    return "**" if last in _WILDCARDS or not last else last


def check_parameter_file(path: str | Path, nodes: dict[str, frozenset[str] | None]) -> list[str]:
    """Problems of one ROS parameter file for a stack whose nodes are ``{node name: declared names or None}``:
    a section for a node that is neither in the stack nor one of this package's nodes, or a key the node
    does not declare (with the closest declared name). Returns one line per problem, [] when the file is fine."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        return [f"{path}: cannot read parameter file: {exc.strerror or exc}"]
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {' '.join(str(exc).split())}"]
    if data is None:
        return []
    if not isinstance(data, dict):
        return [f"{path}: expected a mapping of node names to 'ros__parameters:'"]
    problems: list[str] = []
    sections = list(data.items())
    while sections:
        section, body = sections.pop(0)
        if isinstance(body, dict) and "ros__parameters" not in body and body and \
                all(isinstance(v, dict) for v in body.values()):
            sections[:0] = [(f"{section}/{k}", v) for k, v in body.items()]  # namespace: node: ros__parameters
            continue
        node = _node_of_section(section)
        label = str(section) if node == "**" else node
        if node == "**":
            known_sets = [k for k in nodes.values() if k is not None]
            known = frozenset().union(*known_sets) if known_sets else None
        elif node in nodes:
            known = nodes[node]
        elif node in PACKAGE_NODES:  # a file shared with another stack: still check its keys
            known = declared_parameters(f"vla_adapter_ros.nodes.{node}")
        else:
            problems.append(f"{path}: node {node!r} is not part of this stack (nodes: {', '.join(nodes)})"
                            + _closest(node, [*nodes, *PACKAGE_NODES]))
            continue
        params = body.get("ros__parameters") if isinstance(body, dict) else None
        if params is None and isinstance(body, dict) and "ros__parameters" in body:
            continue  # an empty section
        if not isinstance(params, dict):
            problems.append(f"{path}: {label}: expected 'ros__parameters:' with a mapping under the node name")
            continue
        if known is None:
            continue
        for name in _flatten(params):
            if name in known or name.startswith("qos_overrides."):
                continue
            problems.append(f"{path}: {label}: unknown parameter {name!r}" + _closest(name, known))
    return problems


def check_parameter_files(specs: list[NodeSpec], extra_params: Iterable[str | Path] = ()) -> None:
    """Before a stack starts: every parameter file its nodes get (their own, then the ``extra_params`` given
    to every node) names only nodes of the stack (or of this package) and parameters those nodes declare.
    StackError with one line per problem, e.g.
    ``my.yaml: sim_node: unknown parameter 'real_time_factr' (did you mean 'real_time_factor'?)``."""
    nodes = {spec.name: declared_parameters(spec.module) for spec in specs}
    problems, seen = [], set()
    for spec in specs:
        for path in [*spec.params, *extra_params]:
            path = Path(path)
            if path in seen:
                continue
            seen.add(path)
            if not path.is_file():
                problems.append(f"{path}: parameter file not found")
                continue
            problems += check_parameter_file(path, nodes)
    if problems:
        raise StackError("\n".join(problems))


# the one-line reason a node gives when it cannot start (nodes.common.fatal), without rclpy's prefix
_FATAL = re.compile(r"^\[FATAL\]\s*(?:\[[0-9.]+\]\s*\[[^\]]*\]:\s*)?(?P<message>.*)$")


def failure_reason(lines: Iterable[str]) -> str:
    """A node's own explanation of its exit, from the last lines it printed: its ``[FATAL] ...`` line, else
    the last line of a Python traceback (``SomeError: ...``), else its last line ('' when it printed nothing)."""
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        match = _FATAL.match(line)
        if match and match.group("message"):
            return match.group("message")
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line):
            return line
    return lines[-1] if lines else ""


class Supervisor:
    """Runs the children; `run()` blocks until all are gone and returns the stack's exit code."""

    def __init__(self, specs: list[NodeSpec], extra_params: list[Path] = (), out: IO[str] = sys.stdout,
                 stop_timeout: float = 10.0, env: dict[str, str] | None = None, namespace: str = ""):
        self.specs = specs
        self.namespace = namespace  # '' or an absolute namespace (launch_args.check_namespace)
        self._scratch: tempfile.TemporaryDirectory | None = None  # namespaced copies of the parameter files
        self.extra_params = list(extra_params)
        self.out = out
        self.stop_timeout = stop_timeout
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}
        self.first_exit: tuple[str, int] | None = None  # (node, exit code) of the first child that exited
        self.tails: dict[str, collections.deque] = {}  # the last lines of each child's output
        self.pumps: dict[str, threading.Thread] = {}
        self._stop_requested = threading.Event()
        self._print_lock = threading.Lock()

    def _pump(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._print_lock:
                self.tails[name].append(line)
                print(f"[{name}] {line}", file=self.out, flush=True)
        stream.close()

    def exit_reason(self, wait: float = 2.0) -> str:
        """'NODE exited with code N: <its reason>' for the first child that exited ('' while none has).
        Waits up to ``wait`` s for the rest of that child's output."""
        if self.first_exit is None:
            return ""
        name, code = self.first_exit
        pump = self.pumps.get(name)
        if pump is not None:
            pump.join(wait)
        with self._print_lock:
            reason = failure_reason(self.tails.get(name, ()))
        reason = reason.removeprefix(f"{name}: ")  # fatal() lines name the node: once is enough
        how = f"code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}" if -code in \
            signal.valid_signals() else f"code {code}"
        return f"{name} exited with {how}" + (f": {reason}" if reason else " (it printed nothing)")

    def _start(self) -> list[threading.Thread]:
        pumps = []
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(middleware_environment(env))  # full-size images over Fast DDS, unless the user chose
        own_clock = any(spec.name in CLOCK_SOURCES for spec in self.specs)
        scratch = None
        if self.namespace:
            self._scratch = tempfile.TemporaryDirectory(prefix="vla_adapter_ros_params_")
            scratch = self._scratch.name
        for spec in self.specs:
            argv = spec.argv(self.extra_params, self.namespace, own_clock, scratch)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            self.children[spec.name] = proc
            self.tails[spec.name] = collections.deque(maxlen=40)
            pump = threading.Thread(target=self._pump, args=(spec.name, proc.stdout), daemon=True)
            pump.start()
            pumps.append(pump)
            self.pumps[spec.name] = pump
            self._say(f"started {(self.namespace + '/' + spec.name).lstrip('/')} (pid {proc.pid})")
        return pumps

    def _say(self, text: str) -> None:
        with self._print_lock:
            print(f"[up] {text}", file=self.out, flush=True)

    def request_stop(self, *_args) -> None:
        self._stop_requested.set()

    def _signal_all(self, sig: int) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def _stop_all(self) -> None:
        for sig, grace in ((signal.SIGINT, self.stop_timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            alive = [n for n, p in self.children.items() if p.poll() is None]
            if not alive:
                break
            if sig != signal.SIGINT:
                self._say(f"escalating to {signal.Signals(sig).name} for {', '.join(alive)}")
            self._signal_all(sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(p.poll() is None for p in self.children.values()):
                time.sleep(0.05)
        for proc in self.children.values():
            proc.wait()

    def run(self) -> int:
        pumps = self._start()
        first_exit: tuple[str, int] | None = None
        try:
            while not self._stop_requested.is_set():
                for name, proc in self.children.items():
                    if proc.poll() is not None:
                        first_exit = self.first_exit = (name, proc.returncode)
                        break
                if first_exit:
                    self._say(f"{first_exit[0]} exited with code {first_exit[1]}: stopping the stack")
                    break
                self._stop_requested.wait(0.1)
        finally:
            self._stop_all()
            for pump in pumps:
                pump.join(2.0)
            if self._scratch is not None:
                self._scratch.cleanup()
        codes = {n: p.returncode for n, p in self.children.items()}
        self._say("stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
        if first_exit is None:
            return 0  # stopped on request
        code = first_exit[1]
        return code if code >= 0 else 128 - code  # killed by a signal: shell convention


def run_stack(path: str | Path, extra_params: list[Path] = (), namespace: str = "") -> int:
    from vla_adapter_ros.launch_args import check_namespace

    try:
        namespace = check_namespace(namespace)
    except ValueError as exc:
        raise StackError(str(exc)) from None
    specs = load_stack(path)
    check_parameter_files(specs, extra_params)  # a typo in a key is an error, not a silently ignored line
    supervisor = Supervisor(specs, extra_params, namespace=namespace)
    previous = {sig: signal.signal(sig, supervisor.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
