"""ExecutorCore regressions from the adversarial review (issue 14): measured states the limits do
not allow, steps at (re)start, spiked samples, future stamps, estop-tick gripper goals, a tick
that raises, oversized chunks, and chunk conversion that must not block the control tick."""

import threading

import numpy as np
import pytest

from vla_adapter_ros.control.chunk import EEF_DELTA, JOINT_POSITION, MAX_CHUNK_ROWS, Chunk
from vla_adapter_ros.control.executor_core import ExecutorCore, ExecutorState
from vla_adapter_ros.control.limits import load_robot_limits
from vla_adapter_ros.control.scheduler import MAX_QUEUE_ROWS

FR3 = load_robot_limits("fr3")
READY = np.array(FR3.start_pose)
DT = FR3.control_dt


class Arm:
    """A position-controlled arm: follows the commands (or not: frozen), publishes its joints."""

    def __init__(self, core, q, now=0.0):
        self.core, self.q, self.now, self.frozen = core, np.array(q, float), now, False
        self.sent = []  # every Command emitted (None ticks excluded)
        for k in (2, 1, 0):
            core.on_joint_state(self.q, now - k * DT)

    def tick(self, n=1):
        out = None
        for _ in range(n):
            out = self.core.tick(self.now)
            if out is not None:
                self.sent.append(out)
                if not self.frozen:
                    self.q = out.positions.copy()
            self.now = round(self.now + DT, 9)
            self.core.on_joint_state(self.q, self.now)
        return out


def finite_differences_ok(positions, v, a, j):
    q = np.array(positions)
    dv = np.diff(q, axis=0) / DT
    da = np.diff(dv, axis=0) / DT
    dj = np.diff(da, axis=0) / DT
    return (np.all(np.abs(dv) <= v * (1 + 1e-6) + 1e-9), np.all(np.abs(da) <= a * (1 + 1e-6) + 1e-6),
            np.all(np.abs(dj) <= j * (1 + 1e-6) + 1e-3))


def assert_continuous(commands, start=None):
    """The stream (preceded by `start` at rest, if given) moves within the effective limits."""
    q = [c.positions for c in commands]
    if start is not None:
        q = [start, start, start] + q
    assert all(finite_differences_ok(q, FR3.v_max, FR3.a_max, FR3.j_max))


@pytest.mark.parametrize("offset", [1e-4, 0.01, 0.3])
def test_measured_state_beyond_the_hard_limit_is_refused_and_nothing_moves(offset):
    q = READY.copy()
    q[5] = FR3.q_min[5] - offset  # e.g. q6 = 0.3 on an FR3: a valid Panda pose
    core = ExecutorCore(FR3)
    arm = Arm(core, q)
    ok, message = core.enable(0.0)
    assert not ok and core.state == ExecutorState.DISABLED
    assert "fr3_joint6" in message and "robot file" in message and "nothing was sent" in message
    assert arm.tick(50) is None and arm.sent == []


def test_measured_state_inside_the_margin_is_refused_too():
    q = READY.copy()
    q[0] = FR3.q_max[0] - 0.5 * FR3.position_margin[0]
    core = ExecutorCore(FR3, require_start_pose=False)
    Arm(core, q)
    ok, message = core.enable(0.0)
    assert not ok and "fr3_joint1" in message and "position_margin" in message


def test_a_spiked_sample_is_not_adopted_at_enable():
    core = ExecutorCore(FR3)
    arm = Arm(core, READY)
    spiked = READY.copy()
    spiked[2] += 0.05
    core.on_joint_state(spiked, DT)
    ok, message = core.enable(DT)
    assert not ok and "disagree" in message and "fr3_joint3" in message
    arm.tick(60)  # the spike ages out of the rest window
    assert core.enable(arm.now)[0]
    arm.tick(5)
    assert_continuous(arm.sent, start=READY)
    np.testing.assert_allclose(arm.sent[0].positions, READY, atol=1e-12)


def test_frozen_arm_estop_reset_and_restart_never_step():
    core = ExecutorCore(FR3, max_tracking_error=0.05)
    arm = Arm(core, READY)
    assert core.enable(0.0)[0]
    rows = READY + np.outer(np.arange(1, 41) * 0.01, np.ones(7))
    assert core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, list(FR3.joint_names), rows), 0.0).accepted
    arm.tick(100)
    arm.frozen = True  # the arm stops following: tracking error -> estop
    for _ in range(500):
        arm.tick()
        if core.state == ExecutorState.ESTOP:
            break
    assert core.state == ExecutorState.ESTOP and "tracking error" in core.estop_reason
    arm.tick(100)
    ok, message = core.reset(arm.now)
    assert ok and core.state == ExecutorState.IDLE  # holds the reference: no re-basing
    arm.tick(20)
    assert_continuous(arm.sent)  # including the ticks around estop and reset
    ok, message = core.start(arm.now)
    assert not ok and "does not follow" in message and "resync" in message
    assert not core.go_home()[0]
    assert core.disable()[0]
    arm.tick(5)
    assert core.state == ExecutorState.DISABLED
    ok, message = core.enable(arm.now)  # the controller may still hold the last command
    assert not ok and "resync" in message
    n_sent = len(arm.sent)
    assert core.resync()[0]  # the arm's controller was restarted where the arm is
    arm.tick(5)
    frozen_at = arm.q.copy()
    assert core.enable(arm.now)[0]  # from the measured position, at rest
    arm.frozen = False
    arm.tick(5)
    new = arm.sent[n_sent:]
    np.testing.assert_allclose(new[0].positions, frozen_at, atol=1e-12)
    assert_continuous(new, start=frozen_at)


def test_disable_then_enable_within_one_tick_continues_the_last_command():
    core = ExecutorCore(FR3, require_start_pose=False)
    arm = Arm(core, READY)
    assert core.enable(0.0)[0]
    target = READY + 0.01
    core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, list(FR3.joint_names), np.tile(target, (4, 1))), 0.0)
    arm.tick(30)
    arm.frozen = True  # the arm lags a few mrad behind the last command
    arm.tick(200)
    assert core.disable()[0]
    arm.tick()
    lag = np.max(np.abs(arm.q - core.filter.q))
    assert core.state == ExecutorState.DISABLED and lag > 1e-4
    assert core.enable(arm.now)[0]
    arm.tick(3)
    assert_continuous(arm.sent)  # no step to the measured position


def test_resync_only_while_disabled():
    core = ExecutorCore(FR3)
    arm = Arm(core, READY)
    core.enable(0.0)
    ok, message = core.resync()
    assert not ok and "disabled" in message
    arm.tick()


def test_joint_state_from_the_future_is_not_fresh():
    core = ExecutorCore(FR3)
    for k in range(3):
        core.on_joint_state(READY, 5.0 + k * DT)
    ok, message = core.enable(0.0)
    assert not ok and "fresh" in message


def test_no_gripper_goal_on_the_tick_that_latches_an_estop():
    core = ExecutorCore(FR3, max_tracking_error=0.001)
    arm = Arm(core, READY)
    core.enable(0.0)
    rows = READY + np.outer(np.arange(1, 11) * 0.02, np.ones(7))
    core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, list(FR3.joint_names), rows, np.ones(10)), 0.0)
    arm.frozen = True
    events = []
    for _ in range(200):
        cmd = arm.tick()
        events.append((core.state, cmd.gripper_event))
    estop_at = next(i for i, (state, _) in enumerate(events) if state == ExecutorState.ESTOP)
    assert all(event is None for _, event in events[estop_at:])


def test_a_tick_that_raises_latches_estop_and_still_brakes(monkeypatch):
    core = ExecutorCore(FR3)
    arm = Arm(core, READY)
    core.enable(0.0)
    arm.tick(3)

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(core.scheduler, "sample", broken)
    cmd = arm.tick()
    assert core.state == ExecutorState.ESTOP and "boom" in core.estop_reason
    assert cmd is not None and cmd.holding
    assert_continuous(arm.sent)


def test_oversized_or_absurd_chunks_are_rejected():
    core = ExecutorCore(FR3)
    Arm(core, READY)
    core.enable(0.0)
    rows = np.tile(READY, (MAX_CHUNK_ROWS + 1, 1))
    r = core.on_chunk(Chunk(0.0, 0.01, JOINT_POSITION, [], rows), 0.0)
    assert not r.accepted and "rows" in r.reason
    for dt in (1e38, 1e-9, 0.0, float("nan")):
        r = core.on_chunk(Chunk(0.0, dt, JOINT_POSITION, [], rows[:8]), 0.0)
        assert not r.accepted and "dt" in r.reason
    # a queue is bounded: chunks stamped ever later keep the earlier rows, until the cap
    accepted = 0
    for k in range(40):
        r = core.on_chunk(Chunk(0.1 * k + 0.001, 0.001, JOINT_POSITION, [], np.tile(READY, (100, 1))), 0.0)
        accepted += r.accepted
        if not r.accepted:
            assert "queue full" in r.reason or "future" in r.reason
    assert core.scheduler.times.size <= MAX_QUEUE_ROWS


def test_chunk_conversion_does_not_hold_the_lock():
    """EEF_DELTA rows run the IK: meanwhile a control tick from another thread must not wait."""
    core = ExecutorCore(FR3)
    arm = Arm(core, READY)
    core.enable(0.0)
    original = core.scheduler.prepare_chunk
    ticked = []

    def prepare_while_ticking(*args, **kwargs):
        t = threading.Thread(target=lambda: ticked.append(core.tick(arm.now)))
        t.start()
        t.join(timeout=5.0)
        return original(*args, **kwargs)

    core.scheduler.prepare_chunk = prepare_while_ticking
    rows = np.tile([0.0005, 0, 0, 0, 0, 0], (MAX_CHUNK_ROWS, 1))
    r = core.on_chunk(Chunk(0.0, DT, EEF_DELTA, [], rows), 0.0)
    assert ticked and ticked[0] is not None  # the tick ran during the conversion
    assert r.accepted, r.reason


def test_a_chunk_converted_across_a_pause_is_dropped():
    core = ExecutorCore(FR3)
    Arm(core, READY)
    core.enable(0.0)
    original = core.scheduler.prepare_chunk

    def prepare_then_pause(*args, **kwargs):
        out = original(*args, **kwargs)
        core.pause()
        return out

    core.scheduler.prepare_chunk = prepare_then_pause
    r = core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, [], np.tile(READY, (4, 1))), 0.0)
    assert not r.accepted and core.scheduler.empty


def test_an_estop_during_a_disable_does_not_undo_the_disable():
    core = ExecutorCore(FR3)
    arm = Arm(core, READY)
    core.enable(0.0)
    rows = READY + np.outer(np.arange(1, 41) * 0.01, np.ones(7))
    core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, list(FR3.joint_names), rows), 0.0)
    arm.tick(100)
    assert core.disable()[0] and core.state == ExecutorState.STOPPING
    core.estop("operator")
    ok, message = core.reset(arm.now)
    assert ok and core.state == ExecutorState.STOPPING and "disabling" in message
    assert not core.start(arm.now)[0]  # running again needs enable
    arm.tick(300)
    assert core.state == ExecutorState.DISABLED
    assert_continuous(arm.sent)


def test_dry_run_re_enable_continues_the_simulated_reference():
    core = ExecutorCore(FR3, dry_run=True, require_start_pose=False)
    arm = Arm(core, READY)
    arm.frozen = True  # the real arm never moves in dry run
    assert core.enable(0.0)[0]
    rows = READY + np.outer(np.arange(1, 11) * 0.01, np.ones(7))
    core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, list(FR3.joint_names), rows), 0.0)
    arm.tick(300)
    assert core.disable()[0]
    arm.tick(300)
    assert core.state == ExecutorState.DISABLED
    assert np.max(np.abs(core.filter.q - arm.q)) > 0.05  # the simulated reference moved away
    assert core.enable(arm.now)[0]
    arm.tick(5)
    assert_continuous(arm.sent)  # the dry-run stream shows no step back to the real arm


def _controller_at(command, elapsed):
    """Where a trajectory controller is `elapsed` s after reaching the command's first point,
    with no newer message: on the quartic stop the message ends with (or held there, 1 point)."""
    from vla_adapter_ros.control.safety import quartic_stop

    first = command.points[0]
    if len(command.points) == 1:
        return first.positions, np.zeros(7)
    end = command.points[-1]
    duration = end.time_from_start - first.time_from_start
    q, v, _ = quartic_stop(first.positions, first.velocities, first.accelerations, duration, elapsed)
    return q, v


@pytest.mark.parametrize("points", [1, 2, 3])
@pytest.mark.parametrize("late_ticks", [1, 3, 25, 400])
def test_a_late_tick_continues_from_where_the_controller_is(points, late_ticks):
    """The process stalls (GC, a loaded machine, a lost /clock message): meanwhile the controller
    finished the last message (its first point, then its stop). The next command must continue
    from there, not from where the executor's reference was before the stall (a step back)."""
    core = ExecutorCore(FR3, trajectory_points=points)
    arm = Arm(core, READY)
    assert core.enable(0.0)[0] and core.state == ExecutorState.RUNNING
    rows = READY + np.outer(np.arange(1, 41) * 0.01, [1, -1, 1, -1, 1, 1, 1])
    assert core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, list(FR3.joint_names), rows), 0.0).accepted
    arm.tick(150)  # moving at speed now
    before = arm.sent[-1]
    assert np.max(np.abs(before.velocities)) > 0.2
    late = late_ticks * DT
    arm.now = round(arm.now + late, 9)  # the stall: no tick for `late` seconds
    core.on_joint_state(arm.q, arm.now)
    arm.tick()
    after = arm.sent[-1]
    q_ctrl, v_ctrl = _controller_at(before, late)
    # one period from the controller's state, within the velocity and acceleration bounds
    assert np.all(np.abs(after.positions - q_ctrl) <= FR3.v_max * DT * (1 + 1e-6))
    assert np.all(np.abs(after.velocities - v_ctrl) <= FR3.a_max * DT * (1 + 1e-6) + 1e-9)
    assert core.filter.clip_counts["late_tick"] == 1
    arm.tick(100)
    assert_continuous(arm.sent[-101:])
