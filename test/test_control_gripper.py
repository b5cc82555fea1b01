"""GripperBinarizer: hysteresis, events only on change, garbage ignored."""

import math

import pytest

from vla_adapter_ros.control.gripper import CLOSED, OPEN, GripperBinarizer


def events(b, values):
    return [e.state for v in values if (e := b.update(v, 0.0)) is not None]


def test_hysteresis_and_change_only_events():
    b = GripperBinarizer(0.3, 0.7, initial_state=OPEN)
    seq = [0.0, 0.5, 0.69, 0.7, 0.9, 1.0, 0.5, 0.31, 0.3, 0.1, 0.0, 0.6, 0.71]
    assert events(b, seq) == [CLOSED, OPEN, CLOSED]
    assert b.event_count == 3


def test_noise_around_a_threshold_does_not_chatter():
    b = GripperBinarizer(0.3, 0.7, initial_state=OPEN)
    seq = [0.5 + 0.19 * (-1) ** k for k in range(100)]  # 0.31 .. 0.69
    assert events(b, seq) == []
    seq = [0.7 + 0.05 * (-1) ** k for k in range(100)]  # 0.65 .. 0.75 crosses close only
    assert events(b, seq) == [CLOSED]


def test_unknown_initial_state_emits_first_value():
    b = GripperBinarizer()
    e = b.update(0.2, 3.5)
    assert e.state == OPEN and e.stamp == 3.5 and not e.closed
    assert b.update(0.25) is None
    assert GripperBinarizer().update(0.9).closed


def test_invalid_values_are_ignored_and_out_of_range_clipped():
    b = GripperBinarizer(initial_state=OPEN)
    for bad in (None, math.nan, math.inf, "x"):
        assert b.update(bad) is None
    assert b.update(5.0).value == 1.0
    assert b.update(-3.0).state == OPEN


def test_reset_sets_state_without_event():
    b = GripperBinarizer(initial_state=OPEN)
    b.reset(CLOSED)
    assert b.update(0.9) is None
    assert b.update(0.1).state == OPEN


@pytest.mark.parametrize("lo,hi", [(0.7, 0.3), (0.5, 0.5), (-0.1, 0.5), (0.2, 1.2)])
def test_threshold_validation(lo, hi):
    with pytest.raises(ValueError, match="open_threshold/close_threshold"):
        GripperBinarizer(lo, hi)
