"""SafetyFilter: limits hold for random and adversarial target streams, checked by finite
differences of the output stream; rejections hold smoothly and are counted.

Tolerance: the filter's output satisfies the bounds exactly in exact arithmetic (velocity,
acceleration and jerk are the first, second and third differences of the emitted positions).
Float rounding of q + v*dt at |q| ~ 3 rad and dt = 4 ms perturbs the recovered jerk by ~1e-8
rad/s^3, so bounds are checked as ``|x| <= bound * (1 + 1e-9) + 1e-6`` (units of x), and
positions against the soft limits with 1e-12 rad.
"""

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vla_adapter_ros.control.limits import load_robot_limits
from vla_adapter_ros.control.safety import SafetyFilter

FR3 = load_robot_limits("fr3")
PANDA = load_robot_limits("panda")
# For pure dynamics tests the jump and workspace checks are switched off (they hold instead).
FR3_FREE = dataclasses.replace(FR3, max_jump_rad=100.0)
PANDA_FREE = dataclasses.replace(PANDA, max_jump_rad=100.0)
REL, ABS = 1e-9, 1e-6
# CI: a fixed, bounded set of examples. Deeper local fuzzing: CONTROL_FUZZ_EXAMPLES=2000.
FUZZ_EXAMPLES = int(os.environ.get("CONTROL_FUZZ_EXAMPLES", "40"))
FUZZ_DERANDOMIZE = "CONTROL_FUZZ_EXAMPLES" not in os.environ


def make(limits=FR3_FREE, q0=None, workspace=False):
    f = SafetyFilter(limits, check_workspace=workspace)
    f.reset(np.array(limits.start_pose if q0 is None else q0))
    return f


def run(f, targets, t0=0.0, measured_follows=True):
    """Step the filter through targets at its rate; returns positions incl. the initial one."""
    out = [f.q.copy(), ]
    now = t0
    outputs = []
    for target in targets:
        if measured_follows:
            f.set_measured(f.q, now)
        o = f.step(target, now)
        outputs.append(o)
        out.append(o.position)
        now += f.dt
    return np.array(out), outputs


def assert_within_limits(f, positions, v0=None, a0=None):
    dt = f.dt
    assert np.all(np.isfinite(positions))
    assert np.all(positions >= f.lo - 1e-12) and np.all(positions <= f.hi + 1e-12)
    v = np.diff(positions, axis=0) / dt
    a = np.diff(np.vstack([np.zeros((1, 7)), v]) if v0 is None else v, axis=0) / dt
    j = np.diff(np.vstack([np.zeros((1, 7)), a]), axis=0) / dt
    assert np.all(np.abs(v) <= f.v_max * (1 + REL) + ABS), np.max(np.abs(v) / f.v_max)
    assert np.all(np.abs(a) <= f.a_max * (1 + REL) + ABS), np.max(np.abs(a) / f.a_max)
    assert np.all(np.abs(j) <= f.j_max * (1 + REL) + ABS), np.max(np.abs(j) / f.j_max)


# ---- adversarial streams ------------------------------------------------------------------------
def target_strategy(limits):
    lo, hi = np.array(limits.q_min), np.array(limits.q_max)
    finite_vec = st.lists(st.floats(-1.0, 1.0), min_size=7, max_size=7).map(
        lambda u: lo + (np.array(u) + 1) / 2 * (hi - lo) * 1.4 - 0.2 * (hi - lo))
    return st.one_of(
        finite_vec,  # anywhere, up to 20% beyond the hardware limits
        st.just(None),
        st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 1e300, 0.0]), min_size=7, max_size=7).map(np.array),
        st.lists(st.floats(-3, 3), min_size=0, max_size=9).filter(lambda l: len(l) != 7),
        st.just("not a target"),
    )


@st.composite
def streams(draw, limits):
    """Piecewise-constant adversarial target stream: (target, hold-ticks) segments."""
    segments = draw(st.lists(st.tuples(target_strategy(limits), st.integers(1, 60)), min_size=1, max_size=12))
    stream = []
    for target, ticks in segments:
        stream.extend([target] * ticks)
    return stream


@pytest.mark.parametrize("limits", [FR3_FREE, PANDA_FREE], ids=["fr3", "panda"])
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=FUZZ_DERANDOMIZE, database=None)
@given(data=st.data())
def test_adversarial_streams_stay_within_all_limits(limits, data):
    stream = data.draw(streams(limits))
    lo, hi = limits.soft_q_min, limits.soft_q_max
    q0 = data.draw(st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7).map(lambda u: lo + np.array(u) * (hi - lo)))
    f = make(limits, q0)
    positions, outputs = run(f, stream + [None] * 150)  # finish with a hold
    assert_within_limits(f, positions)
    assert f.clip_counts["position_net"] == 0
    for o in outputs:
        assert np.all(np.isfinite(o.velocity)) and np.all(np.isfinite(o.acceleration))
    assert f.is_stopped  # the final hold reached rest


def test_random_jumping_targets_many_seeds():
    rng = np.random.default_rng(0)
    for limits in (FR3_FREE, PANDA_FREE):
        for _ in range(10):
            f = make(limits, rng.uniform(limits.soft_q_min, limits.soft_q_max))
            stream, current = [], None
            for k in range(800):
                if current is None or rng.random() < 0.05:
                    current = rng.uniform(limits.q_min - 0.5, limits.q_max + 0.5)
                stream.append(current)
            positions, _ = run(f, stream)
            assert_within_limits(f, positions)
            assert f.clip_counts["position_net"] == 0


def test_nyquist_oscillation_and_sudden_reversals():
    f = make()
    q0 = np.array(FR3.start_pose)
    stream = [q0 + 0.2 * (-1) ** k for k in range(500)]  # flips every tick
    stream += [q0 + 0.2] * 100 + [q0 - 0.2] * 100 + [q0 + 0.2] * 3 + [q0 - 0.2] * 3
    positions, _ = run(f, stream)
    assert_within_limits(f, positions)
    # Nyquist input does not become a Nyquist output: motion stays bounded and slow.
    assert np.max(np.abs(positions - q0)) < 0.21


def test_targets_beyond_limits_stop_at_soft_limits_from_full_speed():
    for limits in (FR3_FREE, PANDA_FREE):
        for side in (+1, -1):
            f = make(limits)
            beyond = np.array(limits.q_max if side > 0 else limits.q_min) + side * 1.0
            positions, _ = run(f, [beyond] * 3000)
            assert_within_limits(f, positions)
            edge = f.hi if side > 0 else f.lo
            np.testing.assert_allclose(positions[-1], edge, atol=1e-6)
            assert f.clip_counts["position_limit"] == 3000


def test_position_dependent_velocity_bound_allows_stopping():
    f = make()
    lo_bound, hi_bound = f.position_velocity_bounds(f.hi)
    np.testing.assert_array_equal(hi_bound, 0.0)
    assert np.all(lo_bound < 0)
    # Velocity bound shrinks monotonically toward the limit.
    d = np.linspace(0.5, 0.0, 50)
    ups = np.array([f.position_velocity_bounds(f.hi - di)[1] for di in d])
    assert np.all(np.diff(ups, axis=0) <= 1e-15)
    # From the bound at any distance, maximal braking stops before the limit.
    for di in (0.001, 0.01, 0.05, 0.2):
        f = make()
        q = np.array(f.hi - di)
        v = f.position_velocity_bounds(q)[1]
        f.q, f.v, f.a = q, v, np.zeros(7)
        positions, _ = run(f, [None] * 400)
        assert np.all(positions <= f.hi + 1e-12)


def test_hold_decelerates_smoothly_to_rest():
    f = make()
    q0 = np.array(FR3.start_pose)
    run(f, [q0 + 0.6] * 120)  # cruising at the velocity bound, acceleration back at zero
    np.testing.assert_allclose(np.abs(f.v), f.v_max)
    np.testing.assert_allclose(f.a, 0.0, atol=1e-9)
    v_start = f.v.copy()
    positions, outputs = run(f, [None] * 200)
    vel = np.array([o.velocity for o in outputs])
    assert all(o.holding for o in outputs)
    # speed decays monotonically to exactly zero, no sign reversal, no position step
    for j in range(7):
        s = np.sign(v_start[j]) * vel[:, j]
        assert np.all(s >= -1e-12) and np.all(np.diff(s) <= 1e-12)
    assert f.is_stopped
    assert np.max(np.abs(np.diff(positions, axis=0))) <= np.max(f.v_max) * f.dt + 1e-12
    # stopping distance is the kinematic one: v^2/(2a) plus the jerk ramp, not a step
    travel = np.abs(positions[-1] - positions[0])
    assert np.all(travel <= np.abs(v_start) ** 2 / (2 * f.a_max) + np.abs(v_start) * (f.a_max / f.j_max + 2 * f.dt) + 1e-9)


def test_step_response_converges_without_overshoot():
    f = make()
    q0 = np.array(FR3.start_pose)
    target = q0 + np.array([0.2, -0.1, 0.05, 0.15, -0.2, 0.1, 0.3])
    positions, _ = run(f, [target] * 1500)
    assert_within_limits(f, positions)
    np.testing.assert_allclose(positions[-1], target, atol=1e-6)
    direction = np.sign(target - q0)
    overshoot = np.max((positions - target) * direction, axis=0)
    assert np.all(overshoot <= 1e-9)


def test_smooth_target_is_tracked_closely():
    f = make()
    q0 = np.array(FR3.start_pose)
    ts = np.arange(1500) * f.dt
    stream = [q0 + 0.15 * np.sin(2 * np.pi * 0.3 * t) for t in ts]  # peak 0.28 rad/s
    positions, _ = run(f, stream)
    assert_within_limits(f, positions)
    err = np.abs(positions[1:] - np.array(stream))
    assert np.max(err[250:]) < 2e-3  # after settling: within 2 mrad of the moving target


def test_invalid_commands_hold_and_are_counted():
    f = make(FR3)
    q0 = np.array(FR3.start_pose)
    run(f, [q0 + 0.1] * 20)
    for bad, n in (([np.nan] * 7, 1), ([0.0] * 6, 2), (np.full(7, np.inf), 3), ("x", 4), (np.zeros((7, 1)), 5)):
        f.set_measured(f.q, 1.0)
        o = f.step(bad, 1.0)
        assert o.holding and o.hold_reason == "invalid_command"
        assert f.clip_counts["invalid_command"] == n
        assert np.all(np.isfinite(o.position))
    assert "invalid_command" in f.last_event


def test_joint_state_timeout_holds():
    f = make(FR3)
    q0 = np.array(FR3.start_pose)
    o = f.step(q0, 0.0)
    assert o.holding and o.hold_reason == "joint_state_timeout"  # never received
    f.set_measured(q0, 0.0)
    assert not f.step(q0 + 0.01, 0.05).holding
    o = f.step(q0 + 0.01, 0.0 + FR3.joint_state_timeout + 0.01)
    assert o.holding and o.hold_reason == "joint_state_timeout"
    assert "age" in f.last_event
    assert not f.set_measured([np.nan] * 7, 0.2)
    assert f.clip_counts["invalid_joint_state"] == 1


def test_jump_from_measured_holds():
    f = make(FR3)
    q0 = np.array(FR3.start_pose)
    f.set_measured(q0, 0.0)
    target = q0.copy()
    target[2] += FR3.max_jump_rad + 0.01
    o = f.step(target, 0.0)
    assert o.holding and o.hold_reason == "jump_from_measured"
    assert "fr3_joint3" in f.last_event
    target[2] = q0[2] + FR3.max_jump_rad - 0.01
    assert not f.step(target, 0.0).holding


def test_workspace_box_holds():
    f = make(dataclasses.replace(FR3, max_jump_rad=10.0), workspace=True)
    q0 = np.array(FR3.start_pose)
    f.set_measured(q0, 0.0)
    low = q0.copy()
    low[3] = -1.0  # stretches the elbow: tool point high above x max / z max box
    p = f.kinematics.fk_position(np.clip(low, f.lo, f.hi))
    assert np.any(p < FR3.workspace_min) or np.any(p > FR3.workspace_max)
    o = f.step(low, 0.0)
    assert o.holding and o.hold_reason == "workspace"
    assert "outside box" in f.last_event
    assert not f.step(q0, 0.0).holding


def test_start_outside_soft_limits_never_moves_outward():
    f = make(FR3_FREE, q0=np.array(FR3.start_pose))
    q = np.array(FR3.start_pose)
    q[0] = FR3.q_max[0] - 0.05  # inside hardware limits, beyond the soft limit
    f.reset(q)
    positions, _ = run(f, [None] * 50 + [q + 0.5] * 50)
    assert np.all(positions[:, 0] <= q[0] + 1e-12)
    positions, _ = run(f, [q - 0.3] * 500)  # an inward target is reached smoothly
    assert positions[-1, 0] < f.hi[0]


def quintic(p0, p1, T):
    """Quintic Hermite between (q, v, a) states p0 and p1 over T, as a quintic-spline controller
    (ros2_controllers' JTC with positions, velocities and accelerations) interpolates; returns
    a function t -> (q, v, a, jerk)."""
    (q0, v0, a0), (q1, v1, a1) = p0, p1
    h = q1 - q0 - v0 * T - a0 * T * T / 2
    dv = v1 - v0 - a0 * T
    da = a1 - a0
    c3 = (20 * h - 8 * dv * T + da * T * T) / (2 * T ** 3)
    c4 = (-30 * h + 14 * dv * T - 2 * da * T * T) / (2 * T ** 4)
    c5 = (12 * h - 6 * dv * T + da * T * T) / (2 * T ** 5)

    def at(t):
        return (q0 + v0 * t + a0 * t * t / 2 + c3 * t ** 3 + c4 * t ** 4 + c5 * t ** 5,
                v0 + a0 * t + 3 * c3 * t * t + 4 * c4 * t ** 3 + 5 * c5 * t ** 4,
                a0 + 6 * c3 * t + 12 * c4 * t * t + 20 * c5 * t ** 3,
                6 * c3 + 24 * c4 * t + 60 * c5 * t * t)
    return at


def test_quintic_interpolation_at_1khz_stays_within_the_bounds():
    """The reference is a C2 cubic per period, so a quintic-spline controller sampling it at
    1 kHz sees acceleration <= A and jerk <= J everywhere, not only at the 250 Hz instants."""
    rng = np.random.default_rng(11)
    f = make(FR3_FREE, rng.uniform(FR3.soft_q_min + 0.3, FR3.soft_q_max - 0.3))
    stream, current = [], None
    for _ in range(1500):
        if current is None or rng.random() < 0.03:
            current = rng.uniform(FR3.q_min - 0.2, FR3.q_max + 0.2)
        stream.append(current if rng.random() > 0.1 else None)
    prev = (f.q.copy(), f.v.copy(), f.a.copy())
    ts = np.arange(1, 5) * 0.001  # 1 kHz samples inside each 4 ms period
    for target in stream:
        f.set_measured(f.q, 0.0)
        o = f.step(target, 0.0)
        seg = quintic(prev, (o.position, o.velocity, o.acceleration), f.dt)
        for t in ts:
            q, v, a, j = seg(t)
            assert np.all(np.abs(a) <= f.a_max * (1 + 1e-6) + 1e-6)
            assert np.all(np.abs(j) <= f.j_max * (1 + 1e-6) + 1e-6)
            assert np.all(np.abs(v) <= f.v_max * (1 + 1e-6) + 1e-9)
        # the quintic through the knots is the filter's own cubic (no wiggle between knots)
        a0, a1 = prev[2], o.acceleration
        t = 0.002
        cubic = prev[0] + prev[1] * t + a0 * t * t / 2 + (a1 - a0) / f.dt * t ** 3 / 6
        np.testing.assert_allclose(seg(t)[0], cubic, atol=1e-9)
        prev = (o.position, o.velocity, o.acceleration)


def test_stop_points_end_at_rest_smoothly_and_leave_the_state_alone():
    f = make()
    q0 = np.array(FR3.start_pose)
    for targets in ([q0 + 0.3] * 10, [q0 + 0.6] * 120, [q0 - 0.4] * 40 + [q0 + 0.4] * 5):
        run(f, targets)
        snapshot = (f.q.copy(), f.v.copy(), f.a.copy(), dict(f.clip_counts))
        points = f.stop_points(2)
        np.testing.assert_array_equal(f.q, snapshot[0])
        np.testing.assert_array_equal(f.v, snapshot[1])
        assert f.clip_counts == snapshot[3]
        (t1, q1, v1, a1), (t2, q2, v2, a2) = points
        assert 0 < t1 < t2
        np.testing.assert_array_equal(v2, 0.0)
        np.testing.assert_array_equal(a2, 0.0)
        # the controller's quintic from the current state to the rest point, sampled at 1 kHz
        seg = quintic((f.q, f.v, f.a), (q2, v2, a2), t2)
        for t in np.arange(0.0, t2, 0.001):
            q, v, a, j = seg(t)
            assert np.all(np.abs(a) <= f.a_max * (1 + 1e-9) + 1e-9)
            assert np.all(np.abs(j) <= f.j_max * (1 + 1e-9) + 1e-9)
            assert np.all(q >= f.lo - 1e-9) and np.all(q <= f.hi + 1e-9)
        # and it passes through the midpoint the filter reported
        np.testing.assert_allclose(seg(t1)[0], q1, atol=1e-9)
    f = make()  # at rest: the stop is where it is
    (_, q1, v1, a1), = f.stop_points(1)
    np.testing.assert_array_equal(q1, f.q)


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError):
        SafetyFilter(FR3).step(None, 0.0)
    with pytest.raises(ValueError, match="reset"):
        SafetyFilter(FR3).reset([0.0] * 6)
    with pytest.raises(ValueError, match="braking_fraction"):
        SafetyFilter(FR3, braking_fraction=0.0)


# FR3 position-dependent velocity envelope as documented for libfranka ("Limits for Franka
# Research 3"): upper(q) = min(v_max, max(0, -c + sqrt(max(0, k (a_up - q))))), lower(q) =
# max(-v_max, min(0, c - sqrt(max(0, k (q - a_lo))))). Columns: v_max, c, k, a_up, a_lo.
FR3_ENVELOPE = np.array([
    [2.62, 0.30, 12.0, 2.75010, -2.75010],
    [2.62, 0.20, 5.17, 1.79180, -1.79180],
    [2.62, 0.20, 7.00, 2.90650, -2.90650],
    [2.62, 0.30, 8.00, -0.14580, -3.04810],
    [5.26, 0.35, 34.0, 2.81010, -2.81010],
    [4.18, 0.35, 11.0, 4.52050, 0.54092],
    [5.26, 0.35, 34.0, 3.01960, -3.01960],
])


def fr3_envelope(q):
    vmax, c, k, a_up, a_lo = FR3_ENVELOPE.T
    upper = np.minimum(vmax, np.maximum(0.0, -c + np.sqrt(np.maximum(0.0, k * (a_up - q)))))
    lower = np.maximum(-vmax, np.minimum(0.0, c - np.sqrt(np.maximum(0.0, k * (q - a_lo)))))
    return lower, upper


def test_velocity_bounds_lie_inside_the_fr3_hardware_envelope():
    f = make(FR3)
    rng = np.random.default_rng(5)
    for q in rng.uniform(FR3.q_min, FR3.q_max, size=(2000, 7)):
        lo, hi = f.position_velocity_bounds(q)
        env_lo, env_hi = fr3_envelope(q)
        assert np.all(hi <= env_hi + 1e-12) and np.all(lo >= env_lo - 1e-12)


def test_output_stream_respects_the_fr3_envelope_near_limits():
    rng = np.random.default_rng(6)
    for _ in range(5):
        f = make(FR3_FREE, rng.uniform(FR3.soft_q_min, FR3.soft_q_max))
        stream = []
        for _ in range(20):
            stream += [rng.choice([-1, 1], 7) * 10.0] * rng.integers(5, 80)  # slam into limits
        positions, outputs = run(f, stream)
        for o in outputs:
            env_lo, env_hi = fr3_envelope(o.position)
            assert np.all(o.velocity <= env_hi + 1e-9) and np.all(o.velocity >= env_lo - 1e-9)


def test_a_stop_while_braking_does_not_turn_back():
    """Regression (CI, the sim stack's estop under load): braking at ~3 rad/s^2 from 0.47 rad/s,
    the stop the JTC message ends with lasted 1.16 s and turned back 0.06 rad, so a controller that
    got no newer message moved the arm backwards. The shortest stop within the bounds brakes on."""
    from vla_adapter_ros.control.safety import quartic_stop, stop_duration

    f = make()
    v = np.zeros(7)
    a = np.zeros(7)
    v[3], a[3] = -0.47, 2.9
    T = stop_duration(v, a, f.a_max, f.j_max, f.dt)
    assert f.dt <= T <= 3 * 0.47 / 2.9  # the longest stop that does not turn back
    ts = np.linspace(0.0, T, 200)
    vel = np.array([quartic_stop(np.zeros(7), v, a, T, t)[1][3] for t in ts])
    assert np.all(vel <= 1e-12)  # never turns back
    # From every state of the filter's own braking, the stop stays within the bounds and turns back
    # little: one duration serves all joints, so a joint that has almost stopped may turn back a
    # few mrad while the others brake (the old, long stops turned back up to 155 mrad here).
    rng = np.random.default_rng(0)
    q0 = np.array(FR3.start_pose)
    worst = 0.0
    for _ in range(6):
        f = make()
        run(f, [q0 + rng.uniform(-0.8, 0.8, 7)] * int(rng.integers(20, 200)))
        while not f.is_stopped:
            T = stop_duration(f.v, f.a, f.a_max, f.j_max, f.dt)
            samples = [quartic_stop(f.q, f.v, f.a, T, t) for t in np.linspace(0.0, T, 60)]
            path = np.array([s[0] for s in samples])
            assert np.all(np.abs([s[2] for s in samples]) <= f.a_max * (1 + 1e-9))
            turn_back = np.sum(np.abs(np.diff(path, axis=0)), axis=0) - np.abs(path[-1] - path[0])
            worst = max(worst, float(np.max(turn_back)))
            f.set_measured(f.q, 0.0)
            f.step(None, 0.0)
    assert worst < 0.01
