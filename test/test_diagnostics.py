"""/diagnostics message building (nodes/diagnostics.py, pure functions), the executor's policy watch and
real-time request, and the executor's diagnostic values on an in-process node (never spun).

Over real middleware: test_executor_node.py (the executor publishes /diagnostics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("diagnostic_msgs")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402

from vla_adapter_ros.nodes.diagnostics import (  # noqa: E402
    assess,
    diagnostic_array,
    diagnostic_status,
    format_value,
    key_values,
    level_name,
)


def _values(status):
    return {kv.key: kv.value for kv in status.values}


def test_levels_follow_the_state():
    estop = diagnostic_status("executor", {"state": "estop", "estop_reason": "operator", "holding": True,
                                           "enabled": True, "hold_reason": "estop latched: operator"})
    assert estop.level == DiagnosticStatus.ERROR and "operator" in estop.message
    holding = diagnostic_status("executor", {"state": "running", "enabled": True, "holding": True,
                                             "hold_reason": "no chunk from the policy for 2.3 s"})
    assert holding.level == DiagnosticStatus.WARN and "no chunk from the policy" in holding.message
    disabled = diagnostic_status("executor", {"state": "disabled", "enabled": False, "holding": True,
                                              "hold_reason": "disabled: nothing is sent"})
    assert disabled.level == DiagnosticStatus.OK
    running = diagnostic_status("executor", {"state": "running", "enabled": True, "holding": False, "dry_run": True})
    assert running.level == DiagnosticStatus.OK and "dry run" in running.message
    warned = diagnostic_status("executor", {"state": "running", "enabled": True, "holding": False,
                                            "warning": "control tick p99 5 ms > period 4 ms"})
    assert warned.level == DiagnosticStatus.WARN and "p99" in warned.message
    assert assess({"error": "model failed"})[0] == "ERROR"
    assert assess({})[0] == "OK"
    # enabled defaults to "not disabled" when absent
    assert assess({"state": "idle", "holding": True, "hold_reason": "idle"})[0] == "WARN"


def test_explicit_level_and_message_win():
    status = diagnostic_status("policy_node: policy", {"rate_hz": 12.5, "model": "tiny"}, level="WARN",
                               message="slow", hardware_id="cuda:0")
    assert status.level == DiagnosticStatus.WARN and status.message == "slow"
    assert status.name == "policy_node: policy" and status.hardware_id == "cuda:0"
    assert _values(status) == {"rate_hz": "12.5", "model": "tiny"}
    assert diagnostic_status("x", {}, level=2).level == DiagnosticStatus.ERROR
    assert diagnostic_status("x", {}, level=DiagnosticStatus.STALE).level == DiagnosticStatus.STALE
    with pytest.raises(ValueError):
        level_name("BAD")
    with pytest.raises(ValueError):
        level_name(7)


def test_values_are_formatted_and_flattened():
    assert format_value(None) == "" and format_value(True) == "true" and format_value(False) == "false"
    assert format_value(1.23456789) == "1.235" and format_value(float("nan")) == "nan"
    assert format_value(3) == "3" and format_value([1.0, "a"]) == "1, a"
    kvs = key_values({"a": 1, "clips": {"velocity_limit": 2, "jerk_limit": 0}, "b": "x"})
    assert [(kv.key, kv.value) for kv in kvs] == [("a", "1"), ("clips.velocity_limit", "2"),
                                                  ("clips.jerk_limit", "0"), ("b", "x")]


def test_array_wraps_one_or_many():
    one = diagnostic_status("a", {})
    array = diagnostic_array(one)
    assert isinstance(array, DiagnosticArray) and list(array.status) == [one]
    assert len(diagnostic_array([one, diagnostic_status("b", {})]).status) == 2


# ---------------------------------------------------------------------------- executor helpers
rclpy = pytest.importorskip("rclpy")

from vla_adapter_ros.control import load_robot_limits  # noqa: E402
from vla_adapter_ros.nodes.executor_node import ExecutorNode, PolicyWatch, request_realtime  # noqa: E402

READY = np.array(load_robot_limits("fr3").start_pose)


def test_policy_watch_names_a_silent_policy():
    watch = PolicyWatch(timeout_s=1.0)
    assert watch.problem(100.0) is None and watch.silent_for(100.0) is None
    watch.requested(100.0)
    watch.requested(100.1)
    assert watch.problem(100.9) is None  # within the timeout
    problem = watch.problem(102.4)
    assert "no chunk from the policy for 2.4 s" in problem and "2 requests unanswered" in problem
    assert "is policy_node running?" in problem and "no chunk received since" in problem
    watch.answered(102.5, sequence=7)
    assert watch.problem(110.0) is None  # answered, nothing requested since
    watch.requested(111.0)
    problem = watch.problem(113.3)
    assert "for 2.3 s" in problem and "last chunk at t=102.500 s, 10.8 s ago, sequence 7" in problem
    watch.idle()  # the queue is full again: nothing is awaited
    assert watch.problem(120.0) is None
    wall = PolicyWatch(timeout_s=0.5)
    wall.answered(1.7e9, 3)
    wall.requested(1.7e9 + 1)
    assert "last chunk at " in wall.problem(1.7e9 + 2) and "ago" in wall.problem(1.7e9 + 2)


def test_request_realtime_never_raises(monkeypatch):
    import os

    assert request_realtime(0) == (False, "real-time scheduling: off (realtime_priority 0)")

    def denied(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", denied)
    ok, line = request_realtime(10)
    assert not ok and line.startswith("real-time scheduling not available (EPERM)") and "CAP_SYS_NICE" in line

    def granted(pid, policy, param):
        granted.calls.append((pid, policy, param.sched_priority))

    granted.calls = []
    monkeypatch.setattr(os, "sched_setscheduler", granted)
    assert request_realtime(10) == (True, "real-time scheduling: SCHED_FIFO priority 10")
    assert granted.calls == [(0, os.SCHED_FIFO, 10)]
    monkeypatch.delattr(os, "sched_setscheduler")
    assert not request_realtime(10)[0]


@pytest.fixture
def node(rclpy_context):
    from rclpy.parameter import Parameter

    made = ExecutorNode(context=rclpy_context, parameter_overrides=[
        Parameter("control_rate_hz", value=100.0), Parameter("require_start_pose", value=False),
        Parameter("policy_timeout_s", value=0.5)])
    yield made
    made.shutdown()
    made.destroy_node()


@pytest.mark.ros
def test_executor_diagnostics_from_its_status(node):
    assert not node.realtime  # only main() asks for real-time scheduling (never an in-process test)
    status = node._diagnostics()
    values = _values(status)
    assert status.level == DiagnosticStatus.OK and values["state"] == "disabled"
    assert values["hold_reason"].startswith("disabled") and values["enabled"] == "false"
    assert "interventions.velocity_limit" in values and values["realtime"] == "off"
    now = node._now()
    for k in range(5, -1, -1):
        node.core.on_joint_state(READY, now - 0.01 * k)
    assert node.core.enable(node._now())[0]
    node._publish_command = lambda command: None
    for _ in range(5):
        node._tick()
    status = node._diagnostics()
    values = _values(status)
    assert status.level == DiagnosticStatus.WARN and values["holding"] == "true"
    assert "waiting for a chunk" in values["hold_reason"]
    assert math.isfinite(float(values["tick_ms_p50"])) and math.isfinite(float(values["tick_ms_p99"]))
    # requests unanswered for longer than policy_timeout_s: the policy is named
    node.policy_watch.idle()
    node.policy_watch.requested(node._now() - 2.0)
    s, reason = node._status()
    assert s.holding and reason.startswith("no chunk from the policy for 2.") and "policy_node" in reason
    assert "no chunk from the policy" in node._diagnostics().message
    node.core.reject_unparsable_chunk("too late", 3)  # the rejection stays in the reason
    assert node._status()[1].endswith("; last chunk rejected: too late"), node._status()[1]
    node.core.estop("test estop")
    node._tick()
    status = node._diagnostics()
    assert status.level == DiagnosticStatus.ERROR and "test estop" in status.message
