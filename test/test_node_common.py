"""Time conversions shared by the nodes."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from vla_adapter_ros.nodes.common import seconds_to_duration, seconds_to_stamp, stamp_seconds  # noqa: E402


@pytest.mark.parametrize("seconds, sec, nanosec", [
    (0.0, 0, 0), (0.05, 0, 50_000_000), (1.25, 1, 250_000_000), (2.0, 2, 0),
    (0.9999999999, 1, 0),  # rounds up to the next second, never nanosec == 1e9
])
def test_seconds_to_duration(seconds, sec, nanosec):
    d = seconds_to_duration(seconds)
    assert (d.sec, d.nanosec) == (sec, nanosec)
    assert stamp_seconds(d) == pytest.approx(seconds, abs=1e-9)


def test_stamp_round_trip():
    stamp = seconds_to_stamp(1795500000.123456789)
    assert stamp.sec == 1795500000 and abs(stamp.nanosec - 123456789) <= 256  # float64 resolution
    assert stamp_seconds(stamp) == pytest.approx(1795500000.123456789, abs=1e-6)


def test_closest_declared_name():
    from vla_adapter_ros.nodes.common import closest

    assert closest("chekpoint", ["checkpoint", "device", "preset"]) == "checkpoint"
    assert closest("dryrun", ["dry_run", "auto_enable"]) == "dry_run"
    assert closest("zzz", ["checkpoint"]) == "checkpoint"  # always a suggestion when there is a name
    assert closest("x", []) is None


def test_descriptors():
    from vla_adapter_ros.nodes.common import Param, descriptor

    d = descriptor("rate", 0.0, Param("control rate", range=(0.0, 100.0)))
    assert d.read_only and "restart" in d.description and not d.integer_range
    assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0.0, 100.0)
    d = descriptor("points", 2, Param("points", range=(1, 3), live=True))
    assert not d.read_only and d.integer_range[0].to_value == 3 and "ros2 param set" in d.description
    d = descriptor("mode", "a", Param("mode", choices=("a", "b")))
    assert d.additional_constraints == "one of: a, b" and "(one of: a, b)" in d.description
    with pytest.raises(TypeError):
        descriptor("flag", True, Param("flag", range=(0, 1)))


def test_check_specs_catches_mismatches():
    from vla_adapter_ros.nodes.common import Param, check_specs

    check_specs({"a": 1}, {"a": Param("a", range=(0, 2))})
    with pytest.raises(AssertionError, match="differ"):
        check_specs({"a": 1, "b": 2}, {"a": Param("a")})
    with pytest.raises(AssertionError, match="outside"):
        check_specs({"a": 5}, {"a": Param("a", range=(0, 2))})
    with pytest.raises(AssertionError, match="not in"):
        check_specs({"a": "x"}, {"a": Param("a", choices=("y",))})


def test_declare_refuses_undeclared_overrides_and_bad_choices():
    import rclpy
    from rclpy.parameter import Parameter

    from vla_adapter_ros.nodes.common import Param, declare

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        overrides = [Parameter("spead", value=2.0), Parameter("use_sim_time", value=False)]
        node = rclpy.create_node("declare_test", context=context, parameter_overrides=overrides)
        with pytest.raises(ValueError, match=r"unknown parameter 'spead' \(did you mean 'speed'\?\)"):
            declare(node, {"speed": 1.0}, {"speed": Param("speed")})
        node.destroy_node()
        node = rclpy.create_node("declare_test2", context=context,
                                 parameter_overrides=[Parameter("mode", value="c")])
        with pytest.raises(ValueError, match="mode must be one of a, b; got 'c'"):
            declare(node, {"mode": "a"}, {"mode": Param("mode", choices=("a", "b"))})
        node.destroy_node()
    finally:
        context.try_shutdown()
