"""Small helpers shared by the rclpy nodes (parameters, time, process exit)."""

from __future__ import annotations

import signal
import sys
from typing import Any, Callable

import rclpy
from builtin_interfaces.msg import Duration
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.time import Time


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time or Duration -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_duration(seconds: float) -> Duration:
    """Float seconds (>= 0) -> builtin_interfaces/Duration (nanosec always < 1e9)."""
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return Duration(sec=sec, nanosec=nanosec)


def seconds_to_stamp(seconds: float):
    return Time(nanoseconds=int(round(seconds * 1e9))).to_msg()


def now_seconds(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def declare(node: Node, defaults: dict[str, Any]) -> dict[str, Any]:
    """Declare parameters with defaults (overridable by params files / -p) and return their values."""
    values = {}
    for name, default in defaults.items():
        node.declare_parameter(name, default)
        values[name] = node.get_parameter(name).value
    return values


def fatal(node: Node | None, message: str) -> int:
    """Log a start-up failure clearly and return the exit code for main()."""
    if node is not None:
        node.get_logger().fatal(message)
    print(f"[FATAL] {message}", file=sys.stderr, flush=True)
    return 1


class _SingleThreaded(SingleThreadedExecutor):
    # A SIGINT can shut the context down while the executor's constructor runs; rclpy's __del__ then
    # reads an attribute the constructor never set and prints a traceback. A class-level default keeps
    # that half-built executor's finaliser quiet.
    _sigint_gc = None


class _MultiThreaded(MultiThreadedExecutor):
    _sigint_gc = None


def run_node(
    make_node: Callable[[], Node],
    name: str,
    argv: list[str] | None = None,
    setup: Callable[[Node], None] | None = None,
    teardown: Callable[[Node], None] | None = None,
    num_threads: int = 2,
) -> int:
    """The whole life of a node process: init, build + `setup` (any failure: one clear line and exit
    code 1, never a hang), spin an executor (`num_threads` 1: single-threaded) until Ctrl-C /
    shutdown, `teardown`, clean up. Returns the process exit code."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # inherited from a non-interactive shell's background job: SIGINT is how the supervisor and
        # ros2 launch ask a node to stop gracefully, so take it back
        signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = None
    try:
        node = make_node()
        if setup is not None:
            setup(node)
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C during a long start (model loading): no traceback
            print(f"{name}: interrupted while starting", file=sys.stderr, flush=True)
            code = 0
        else:
            code = fatal(node, f"{name}: cannot start: {type(exc).__name__}: {exc}")
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        return code
    executor = None
    try:
        # a SIGINT that came during setup has already shut the context down: stop cleanly, no traceback
        if rclpy.ok():
            executor = _SingleThreaded() if num_threads == 1 else _MultiThreaded(num_threads=num_threads)
            executor.add_node(node)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real failure; otherwise a shutdown raced the executor's creation
            raise
    finally:
        if teardown is not None:
            teardown(node)
        if executor is not None:
            executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
