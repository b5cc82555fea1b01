"""Helpers for tests that run ROS 2 nodes over real middleware in separate processes.

Every test gets its own DDS domain (`ROS_DOMAIN_ID`) and discovery limited to this machine
(`ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`), so tests never see each other or anything on the
network. Child processes run in their own process group and are always stopped and reaped, also
when the test fails (see `ProcessGroup.close`).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
PEERS = Path(__file__).resolve().parent / "peers"

_domain_counter = itertools.count()


def unique_domain_id() -> int:
    """A DDS domain id that no other test of this run (or of a parallel run) is likely to use.

    Ids 1..100 are used; with LOCALHOST discovery each id maps to its own ports.
    """
    return 1 + (os.getpid() * 7 + next(_domain_counter)) % 100


def ros_environment(domain_id: int) -> dict[str, str]:
    """The environment for a child process (and for the test process itself) in one test domain."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        RCUTILS_LOGGING_BUFFERED_STREAM="0",
        RCUTILS_COLORIZED_OUTPUT="0",
    )
    # ROS_LOCALHOST_ONLY is deprecated in favour of the discovery range: leave it unset.
    env.pop("ROS_LOCALHOST_ONLY", None)
    prefix = Path(sys.prefix)
    if (prefix / "share" / "ament_index").is_dir():
        paths = [str(prefix)] + [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        env["AMENT_PREFIX_PATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class ChildProcess:
    """One child process with its output captured to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: we can signal it and everything it starts
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float) -> int:
        """Wait for the child to exit by itself and return its exit code; fail with its output if it still
        runs after `timeout` s (close() then stops it)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still runs after {timeout:.0f} s:\n{self.output()[-3000:]}") from None

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        """Wait until `text` appears in the output; fail with the output if the child exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode} before printing {text!r}:\n"
                    + self.output()
                )
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not print {text!r} within {timeout}s:\n" + self.output())

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL; always reaps. Returns the exit code."""
        for sig, grace in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            self._signal_group(sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        # Whatever the child left in its process group goes too.
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self._log.close()
        return self.proc.returncode


class ProcessGroup:
    """The child processes of one test, stopped and reaped by `close()` in reverse start order."""

    def __init__(self, domain_id: int, log_dir: Path):
        self.domain_id = domain_id
        self.env = ros_environment(domain_id)
        self.log_dir = log_dir
        self.children: list[ChildProcess] = []

    def start(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> ChildProcess:
        env = dict(self.env)
        env.update(extra_env or {})
        child = ChildProcess(name, argv, env, self.log_dir)
        self.children.append(child)
        return child

    def start_python(self, name: str, script: Path | str, *args: str) -> ChildProcess:
        return self.start(name, [sys.executable, str(script), *args])

    def close(self) -> dict[str, int]:
        codes = {}
        for child in reversed(self.children):
            codes[child.name] = child.stop()
        return codes


def spin_until(executor, predicate: Callable[[], bool], timeout: float) -> bool:
    """Spin a rclpy executor until `predicate()` is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()
