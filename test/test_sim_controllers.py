"""The simulated JointTrajectoryController / forward controller behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from vla_adapter_ros.sim.controllers import TrajectoryFollower


def test_trajectory_starts_at_current_reference_and_reaches_points():
    f = TrajectoryFollower(np.zeros(2))
    f.set_trajectory(10.0, [0.5, 1.0], [[1.0, 2.0], [2.0, 2.0]], [[2.0, 0.0], [0.0, 0.0]])
    q, v = f.sample(10.0)
    np.testing.assert_allclose(q, [0.0, 0.0]) and np.testing.assert_allclose(v, [0.0, 0.0])
    q, v = f.sample(10.5)
    np.testing.assert_allclose(q, [1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(v, [2.0, 0.0], atol=1e-12)
    q, _ = f.sample(10.25)  # cannot go back in time, but a fresh follower can check the midpoint
    g = TrajectoryFollower(np.zeros(2))
    g.set_trajectory(0.0, [0.5], [[1.0, 2.0]], [[2.0, 0.0]])
    q_mid, v_mid = g.sample(0.25)
    # cubic Hermite midpoint: (p0 + p1)/2 + T/8 (v0 - v1)
    np.testing.assert_allclose(q_mid, [0.5 + 0.5 / 8 * (0 - 2.0), 1.0])
    q, v = f.sample(11.5)  # past the end: hold the last point at rest
    np.testing.assert_allclose(q, [2.0, 2.0]) and np.testing.assert_allclose(v, [0.0, 0.0])


def test_new_trajectory_replaces_the_old_one_from_the_current_state():
    f = TrajectoryFollower(np.zeros(1))
    f.set_trajectory(0.0, [1.0], [[1.0]])
    q_half, v_half = f.sample(0.5)
    f.set_trajectory(0.5, [0.5], [[0.0]])
    q, v = f.sample(0.5)
    np.testing.assert_allclose(q, q_half) and np.testing.assert_allclose(v, v_half)  # continuous
    q, _ = f.sample(1.0)
    np.testing.assert_allclose(q, [0.0])


def test_forward_position_and_bad_commands():
    f = TrajectoryFollower(np.zeros(3))
    f.set_position([0.1, 0.2, 0.3])
    np.testing.assert_allclose(f.sample(5.0)[0], [0.1, 0.2, 0.3])
    for bad in ([0.0, 0.0], [np.nan, 0, 0]):
        with pytest.raises(ValueError):
            f.set_position(bad)
    with pytest.raises(ValueError):
        f.set_trajectory(0.0, [0.5, 0.4], [[0, 0, 0], [1, 1, 1]])  # times not increasing
    with pytest.raises(ValueError):
        f.set_trajectory(0.0, [0.5], [[0, np.inf, 0]])
    with pytest.raises(ValueError):
        f.set_trajectory(0.0, [], np.zeros((0, 3)))
    np.testing.assert_allclose(f.sample(6.0)[0], [0.1, 0.2, 0.3])  # still holding the last good command
