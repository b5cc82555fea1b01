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
