"""/diagnostics (diagnostic_msgs/DiagnosticArray) for the nodes: pure message building + a 1 Hz publisher.

``diagnostic_status(name, values)`` turns a plain dict of a node's status into one
``diagnostic_msgs/DiagnosticStatus`` (a pure function: no node, no clock). The level and message
are derived from well-known keys unless given:

  ERROR  state == "estop", or a non-empty ``error``;
  WARN   ``holding`` while ``enabled`` (the reason from ``hold_reason``), or a non-empty ``warning``;
  OK     otherwise (message: ``message`` or ``state``).

Every value becomes a ``KeyValue`` (nested dicts are flattened as ``key.sub``; floats with 4
significant digits, bools as true/false, None as ""). ``DiagnosticsPublisher`` publishes what a
callback returns on /diagnostics at a fixed period (1 Hz by default), so rqt_robot_monitor and the
diagnostic_aggregator see the node; a failing callback is logged (throttled), never raised.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR, STALE = "OK", "WARN", "ERROR", "STALE"
LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR,
          STALE: DiagnosticStatus.STALE}
TOPIC = "/diagnostics"

__all__ = ["DiagnosticsPublisher", "ERROR", "LEVELS", "OK", "STALE", "TOPIC", "WARN", "assess",
           "diagnostic_array", "diagnostic_status", "format_value", "key_values", "level_name"]


def format_value(value: Any) -> str:
    """A value as KeyValue text: floats with 4 significant digits (nan/inf as such), bools as
    true/false, None as "", sequences comma-separated."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def key_values(values: Mapping[str, Any], prefix: str = "") -> list[KeyValue]:
    """Flatten ``values`` into KeyValues in insertion order (a nested dict becomes ``key.sub``)."""
    out = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(key_values(value, prefix=f"{name}."))
        else:
            out.append(KeyValue(key=name, value=format_value(value)))
    return out


def assess(values: Mapping[str, Any]) -> tuple[str, str]:
    """(level name, message) from the well-known keys of a status dict (see the module docstring)."""
    state = str(values.get("state") or "")
    suffix = " (dry run)" if values.get("dry_run") else ""
    if state == "estop":
        reason = values.get("estop_reason") or "estop latched"
        return ERROR, f"estop: {reason}{suffix}"
    if values.get("error"):
        return ERROR, f"{values['error']}{suffix}"
    if values.get("holding") and values.get("enabled", state not in ("", "disabled")):
        reason = values.get("hold_reason") or "holding"
        return WARN, f"{state + ', ' if state else ''}holding: {reason}{suffix}"
    if values.get("warning"):
        return WARN, f"{values['warning']}{suffix}"
    return OK, f"{values.get('message') or state or 'ok'}{suffix}"


def level_name(level: Union[str, int, bytes]) -> str:
    """"OK" / "WARN" / "ERROR" / "STALE" for a level given as a name, an int or the message's byte."""
    if isinstance(level, str):
        name = level.upper()
        if name not in LEVELS:
            raise ValueError(f"level: one of {sorted(LEVELS)}, got {level!r}")
        return name
    number = level[0] if isinstance(level, (bytes, bytearray)) else int(level)
    for name, byte in LEVELS.items():
        if byte[0] == number:
            return name
    raise ValueError(f"level: 0..3, got {level!r}")


def diagnostic_status(name: str, values: Mapping[str, Any], level: Union[str, int, bytes, None] = None,
                      message: Optional[str] = None, hardware_id: str = "") -> DiagnosticStatus:
    """One DiagnosticStatus from a status dict. ``level``/``message`` default to :func:`assess`."""
    auto_level, auto_message = assess(values)
    msg = DiagnosticStatus()
    msg.name = name
    msg.hardware_id = hardware_id
    msg.level = LEVELS[level_name(auto_level if level is None else level)]
    msg.message = auto_message if message is None else message
    msg.values = key_values(values)
    return msg


def diagnostic_array(statuses: Union[DiagnosticStatus, Iterable[DiagnosticStatus]], stamp=None) -> DiagnosticArray:
    """A DiagnosticArray of one or several statuses; ``stamp``: a builtin_interfaces/Time."""
    array = DiagnosticArray()
    if stamp is not None:
        array.header.stamp = stamp
    array.status = [statuses] if isinstance(statuses, DiagnosticStatus) else list(statuses)
    return array


class DiagnosticsPublisher:
    """Publish ``build()`` (a DiagnosticStatus or a list of them) on /diagnostics every ``period_s``.

    ``build`` runs in the node's executor (give ``callback_group`` to serialise it with other
    callbacks); an exception there is logged (throttled) and that period publishes nothing.
    """

    def __init__(self, node, build: Callable[[], Union[DiagnosticStatus, Iterable[DiagnosticStatus]]],
                 period_s: float = 1.0, callback_group=None, topic: str = TOPIC):
        self.node = node
        self.build = build
        self.publisher = node.create_publisher(DiagnosticArray, topic, 10)
        self.timer = node.create_timer(float(period_s), self.publish, callback_group=callback_group)
        self.published = 0

    def publish(self) -> None:
        try:
            array = diagnostic_array(self.build(), self.node.get_clock().now().to_msg())
            self.publisher.publish(array)
            self.published += 1
        except Exception as exc:  # diagnostics never take a node down
            self.node.get_logger().warning(f"/diagnostics not published: {exc!r}", throttle_duration_sec=10.0)
