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

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml


class StackError(ValueError):
    """A malformed stack file."""


@dataclass
class NodeSpec:
    name: str
    module: str
    params: list[Path] = field(default_factory=list)
    args: list[str] = field(default_factory=list)

    def argv(self, extra_params: list[Path] = ()) -> list[str]:
        ros_args = ["-r", f"__node:={self.name}"]
        for path in [*self.params, *extra_params]:
            ros_args += ["--params-file", str(path)]
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


class Supervisor:
    """Runs the children; `run()` blocks until all are gone and returns the stack's exit code."""

    def __init__(self, specs: list[NodeSpec], extra_params: list[Path] = (), out: IO[str] = sys.stdout,
                 stop_timeout: float = 10.0, env: dict[str, str] | None = None):
        self.specs = specs
        self.extra_params = list(extra_params)
        self.out = out
        self.stop_timeout = stop_timeout
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}
        self._stop_requested = threading.Event()
        self._print_lock = threading.Lock()

    def _pump(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._print_lock:
                print(f"[{name}] {line}", file=self.out, flush=True)
        stream.close()

    def _start(self) -> list[threading.Thread]:
        pumps = []
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        for spec in self.specs:
            proc = subprocess.Popen(spec.argv(self.extra_params), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            self.children[spec.name] = proc
            pump = threading.Thread(target=self._pump, args=(spec.name, proc.stdout), daemon=True)
            pump.start()
            pumps.append(pump)
            self._say(f"started {spec.name} (pid {proc.pid})")
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
                        first_exit = (name, proc.returncode)
                        break
                if first_exit:
                    self._say(f"{first_exit[0]} exited with code {first_exit[1]}: stopping the stack")
                    break
                self._stop_requested.wait(0.1)
        finally:
            self._stop_all()
            for pump in pumps:
                pump.join(2.0)
        codes = {n: p.returncode for n, p in self.children.items()}
        self._say("stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
        if first_exit is None:
            return 0  # stopped on request
        code = first_exit[1]
        return code if code >= 0 else 128 - code  # killed by a signal: shell convention


def run_stack(path: str | Path, extra_params: list[Path] = ()) -> int:
    supervisor = Supervisor(load_stack(path), extra_params)
    previous = {sig: signal.signal(sig, supervisor.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
