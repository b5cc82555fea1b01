"""Small helpers shared by the rclpy nodes (parameters, time, process exit)."""

from __future__ import annotations

import sys
from typing import Any

from rclpy.node import Node
from rclpy.time import Time


def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


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
