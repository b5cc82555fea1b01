"""Delta chunks (JOINT_DELTA, EEF_DELTA) are anchored at the observation: row i is the motion over
[stamp + i dt, stamp + (i + 1) dt], all rows are integrated from the joint state measured at the stamp
(interpolated; in dry run the simulated reference there) and target i is for stamp + (i + 1) dt; only
then are the past targets dropped. And ~/resync forgets the gripper state."""

import numpy as np
import pytest

from vla_adapter_ros.control.chunk import EEF_DELTA, JOINT_DELTA, JOINT_POSITION, Chunk
from vla_adapter_ros.control.executor_core import ANCHOR_MAX_SAMPLES, ExecutorCore, ExecutorState
from vla_adapter_ros.control.gripper import CLOSED
from vla_adapter_ros.control.kinematics import rotation_error
from vla_adapter_ros.control.limits import load_robot_limits

LIMITS = load_robot_limits("fr3_sim")
Q0 = np.array(LIMITS.start_pose)
NAMES = list(LIMITS.joint_names)
DT = LIMITS.control_dt
W = np.array([0.5, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0])  # rad/s: the arm's motion in the "moved" tests


def rested_core(**kw):
    """An enabled (RUNNING) core whose arm rested at Q0 for t = -0.03 .. 0 (samples 10 ms apart)."""
    kw.setdefault("require_start_pose", False)
    core = ExecutorCore(LIMITS, **kw)
    for k in range(-3, 1):
        assert core.on_joint_state(Q0, 0.01 * k)
    ok, message = core.enable(0.0)
    assert ok and core.state == ExecutorState.RUNNING, message
    return core


def moving_arm(core, until):
    """Measured states of an arm moving q(t) = Q0 + W t for 0 < t <= until, every 4 ms (no ticks)."""
    for k in range(1, int(round(until / 0.004)) + 1):
        t = 0.004 * k
        assert core.on_joint_state(Q0 + W * t, t)


def x_rows(n, dx=0.01):
    return np.tile([dx, 0.0, 0.0, 0.0, 0.0, 0.0], (n, 1))


def test_probe_scenario_arm_at_rest_first_kept_target_is_two_rows_ahead():
    core = ExecutorCore(LIMITS, require_start_pose=False, trajectory_points=2)
    for k in range(10):  # at rest, t = 0 .. 0.09 s
        core.on_joint_state(Q0, 0.01 * k)
    assert core.enable(0.09)[0]
    r = core.on_chunk(Chunk(0.0, 0.05, EEF_DELTA, [], x_rows(4)), 0.09)  # arrives 0.09 s after the stamp
    assert r.accepted, r.reason
    # targets after rows 0..3 are for 0.05, 0.10, 0.15, 0.20: the one at 0.05 is past
    assert r.first_index == 1 and r.kept == 3
    np.testing.assert_allclose(core.scheduler.times, [0.10, 0.15, 0.20], rtol=0, atol=1e-12)
    kin = core.kinematics
    p0, r0 = kin.fk(Q0)[:3, 3], kin.fk(Q0)[:3, :3]
    for k, q in enumerate(core.scheduler.targets):
        pose = kin.fk(q)
        np.testing.assert_allclose(pose[:3, 3] - p0, [0.01 * (k + 2), 0.0, 0.0], atol=2e-3)
        assert np.linalg.norm(rotation_error(r0, pose[:3, :3])) < 2e-3
    assert abs(kin.fk_position(core.scheduler.targets[0])[0] - p0[0] - 0.02) < 2e-3


def test_eef_delta_anchor_is_the_measured_state_at_the_stamp_not_at_arrival():
    core = rested_core(max_tracking_error=0.0)
    moving_arm(core, 0.2)
    stamp, now = 0.102, 0.2  # the stamp lies between two samples (0.100, 0.104)
    r = core.on_chunk(Chunk(stamp, 0.05, EEF_DELTA, [], x_rows(4)), now)
    assert r.accepted, r.reason
    assert r.first_index == 1 and r.kept == 3  # target times 0.152 (past), 0.202, 0.252, 0.302
    np.testing.assert_allclose(core.scheduler.times, stamp + 0.05 * np.arange(2, 5), rtol=0, atol=1e-12)
    kin = core.kinematics
    anchor = Q0 + W * stamp  # the arm moves linearly: the interpolation is exact
    p_anchor = kin.fk_position(anchor)
    first = kin.fk_position(core.scheduler.targets[0])
    np.testing.assert_allclose(first, p_anchor + [0.02, 0.0, 0.0], atol=1e-3)
    assert np.linalg.norm(rotation_error(kin.fk(anchor)[:3, :3], kin.fk(core.scheduler.targets[0])[:3, :3])) < 2e-3
    # not from where the arm was at arrival, nor from the executor's reference (still at Q0)
    for wrong in (Q0 + W * now, core.filter.q):
        assert np.linalg.norm(first - (kin.fk_position(wrong) + [0.02, 0.0, 0.0])) > 0.01


def test_joint_delta_targets_are_the_state_at_the_stamp_plus_the_cumulative_rows():
    core = rested_core(max_tracking_error=0.0)
    moving_arm(core, 0.2)
    rows = np.random.default_rng(3).uniform(-0.01, 0.01, (6, 7))
    stamp, dt, now = 0.1013, 0.03, 0.17
    r = core.on_chunk(Chunk(stamp, dt, JOINT_DELTA, NAMES, rows), now)
    assert r.accepted, r.reason
    times = stamp + dt * np.arange(1, 7)  # 0.1313 0.1613 (past) | 0.1913 0.2213 0.2513 0.2813
    assert r.first_index == 2 and r.kept == 4
    np.testing.assert_allclose(core.scheduler.times, times[2:], rtol=0, atol=1e-12)
    expected = Q0 + W * stamp + np.cumsum(rows, axis=0)
    np.testing.assert_allclose(core.scheduler.targets, expected[2:], rtol=0, atol=1e-12)


def test_joint_delta_columns_in_another_order_are_reordered_before_integrating():
    core = rested_core(max_tracking_error=0.0)
    rows = np.tile(0.001 * np.arange(1, 8), (3, 1))
    r = core.on_chunk(Chunk(0.0, 0.05, JOINT_DELTA, NAMES[::-1], rows[:, ::-1].copy()), 0.0)
    assert r.accepted and r.first_index == 0
    np.testing.assert_allclose(core.scheduler.targets, Q0 + np.cumsum(rows, axis=0), rtol=0, atol=1e-12)


def test_no_joint_state_near_the_stamp_rejects_the_delta_chunk_and_queues_nothing():
    core = rested_core()  # the last sample is at t = 0
    core.on_joint_state(Q0, 0.31)  # stamped after the arrival below: from the future, not used
    for space, rows in ((JOINT_DELTA, np.full((4, 7), 1e-3)), (EEF_DELTA, x_rows(4))):
        r = core.on_chunk(Chunk(0.3, 0.05, space, NAMES if space == JOINT_DELTA else [], rows), 0.305)
        assert not r.accepted
        assert r.reason == ("no joint state within 0.100 s of the observation stamp 0.300: "
                            "cannot anchor the deltas")
    assert core.scheduler.empty and core.scheduler.last_accepted_stamp is None
    assert core.chunks_rejected == 2 and core.chunks_accepted == 0
    st = core.status(0.305)
    assert st.last_chunk_reject_reason.startswith("no joint state within")
    # other rejections keep their reasons (a stale chunk is stale, not unanchored)
    assert core.on_chunk(Chunk(-5.0, 0.05, JOINT_DELTA, NAMES, np.zeros((4, 7))), 0.305).reason.startswith("stale")
    # a sample just within joint_state_timeout of the stamp anchors it
    core.on_joint_state(Q0 + 0.01, 0.21)
    r = core.on_chunk(Chunk(0.3, 0.05, JOINT_DELTA, NAMES, np.full((4, 7), 1e-3)), 0.305)
    assert r.accepted, r.reason
    np.testing.assert_allclose(core.scheduler.targets[0], Q0 + 0.01 + 1e-3, rtol=0, atol=1e-12)


def test_late_and_out_of_order_samples_are_put_in_their_place():
    core = rested_core(max_tracking_error=0.0)
    for t in (0.008, 0.004, 0.012):  # 0.004 arrives after 0.008
        core.on_joint_state(Q0 + W * t, t)
    r = core.on_chunk(Chunk(0.006, 0.01, JOINT_DELTA, NAMES, np.zeros((3, 7))), 0.012)
    assert r.accepted, r.reason
    np.testing.assert_allclose(core.scheduler.targets[0], Q0 + W * 0.006, rtol=0, atol=1e-12)


def test_dry_run_anchors_at_the_simulated_reference():
    core = rested_core(dry_run=True, blend_mode="replace")
    plan = Q0 + np.outer(0.01 * np.arange(1, 21), np.ones(7))  # the reference moves toward +0.2 rad
    assert core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, NAMES, plan), 0.0).accepted
    commands, now = [], 0.0
    for _ in range(50):
        commands.append(core.tick(now))
        now = round(now + DT, 9)
        core.on_joint_state(Q0, now)  # the real arm does not move in dry run
    stamp = 40 * DT  # the time of tick 40, whose simulated arm stood where tick 39 sent it
    anchor = commands[39].positions
    assert np.max(np.abs(anchor - Q0)) > 0.01 and np.max(np.abs(anchor - core.filter.q)) > 1e-3
    rows = np.full((8, 7), 2e-3)
    r = core.on_chunk(Chunk(stamp, 0.05, JOINT_DELTA, NAMES, rows), now)  # arrives at tick 50 (0.20 s)
    assert r.accepted, r.reason
    assert r.first_index == 0 and r.kept == 8  # targets at stamp + 0.05 .. stamp + 0.40
    np.testing.assert_allclose(core.scheduler.times[-8:], stamp + 0.05 * np.arange(1, 9), rtol=0, atol=1e-12)
    np.testing.assert_allclose(core.scheduler.targets[-8:], anchor + np.cumsum(rows, axis=0), rtol=0, atol=1e-12)


def test_dry_run_without_a_simulated_reference_near_the_stamp_rejects():
    core = rested_core(dry_run=True)  # enable at t = 0 logs the reference there
    r = core.on_chunk(Chunk(-0.2, 0.05, JOINT_DELTA, NAMES, np.zeros((8, 7))), 0.0)
    assert not r.accepted and r.reason == ("no simulated reference (dry run) within 0.100 s of the observation "
                                           "stamp -0.200: cannot anchor the deltas")
    assert core.on_chunk(Chunk(-0.05, 0.05, JOINT_DELTA, NAMES, np.zeros((8, 7))), 0.0).accepted


def test_joint_position_timing_is_unchanged_and_a_period_before_the_deltas():
    core = rested_core()
    rows = Q0 + np.outer(0.01 * np.arange(1, 5), np.ones(7))
    r = core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, NAMES, rows), 0.09)
    assert r.accepted and r.first_index == 2 and r.kept == 2  # rows at 0.10, 0.15 (absolute: stamp + i dt)
    np.testing.assert_allclose(core.scheduler.times, [0.10, 0.15], rtol=0, atol=1e-12)
    np.testing.assert_allclose(core.scheduler.targets, rows[2:], rtol=0, atol=1e-15)
    # the same motion as deltas: the target after row i is for stamp + (i + 1) dt
    core = rested_core(blend_mode="replace")
    r = core.on_chunk(Chunk(0.0, 0.05, JOINT_DELTA, NAMES, np.full((4, 7), 0.01)), 0.09)
    assert r.accepted and r.first_index == 1 and r.kept == 3
    np.testing.assert_allclose(core.scheduler.times, [0.10, 0.15, 0.20], rtol=0, atol=1e-12)
    np.testing.assert_allclose(core.scheduler.targets, rows[1:], rtol=0, atol=1e-12)
    # an absolute chunk needs no anchor: accepted with no joint state near its stamp
    core = rested_core()
    assert core.on_chunk(Chunk(0.4, 0.05, JOINT_POSITION, NAMES, rows), 0.45).accepted


def test_the_anchor_log_covers_chunk_max_age_and_stays_bounded():
    core = rested_core(max_tracking_error=0.0)
    now = 0.0
    for k in range(1, 3001):  # 3 s of 1 kHz joint states, ticks at 250 Hz
        now = round(0.001 * k, 9)
        core.on_joint_state(Q0 + 1e-3 * np.sin(now) * np.ones(7), now)
        if k % 4 == 0:
            core.tick(now)
    window = LIMITS.chunk_max_age + LIMITS.joint_state_timeout
    assert len(core._measured_log) <= (window + 0.5) * 1000 + 5
    assert core._measured_log[0][0] <= now - window  # old enough for any chunk the scheduler accepts
    stamp = now - 0.95 * LIMITS.chunk_max_age
    r = core.on_chunk(Chunk(stamp, 0.2, JOINT_DELTA, NAMES, np.zeros((8, 7))), now)
    assert r.accepted, r.reason
    np.testing.assert_allclose(core.scheduler.targets[-1], Q0 + 1e-3 * np.sin(stamp), atol=1e-9)
    # without ticks (nothing trims by time) the log is capped
    for k in range(ANCHOR_MAX_SAMPLES + 100):
        core.on_joint_state(Q0, now + 1e-4 * k)
    assert len(core._measured_log) == ANCHOR_MAX_SAMPLES


def test_the_rest_check_history_still_guards_enable():
    core = ExecutorCore(LIMITS, require_start_pose=False)
    core.on_joint_state(Q0, -0.008)
    core.on_joint_state(Q0 + 0.05, -0.004)  # a spike
    core.on_joint_state(Q0, 0.0)
    ok, message = core.enable(0.0)
    assert not ok and "disagree" in message


class PerfectArm:
    def __init__(self, core):
        self.core, self.now, self.events = core, 0.0, []

    def tick(self, n):
        for _ in range(n):
            cmd = self.core.tick(self.now)
            q = Q0 if cmd is None else cmd.positions
            if cmd is not None and cmd.gripper_event is not None:
                self.events.append(cmd.gripper_event.state)
            self.now = round(self.now + DT, 9)
            self.core.on_joint_state(q, self.now)


def test_resync_forgets_the_gripper_so_the_next_value_is_an_event():
    core = rested_core()
    arm = PerfectArm(core)
    hold = np.tile(Q0, (4, 1))
    assert core.on_chunk(Chunk(0.0, 0.05, JOINT_POSITION, NAMES, hold, np.ones(4)), 0.0).accepted
    arm.tick(10)
    assert arm.events == [CLOSED] and core.gripper.state == CLOSED
    assert core.disable()[0]
    arm.tick(50)
    assert core.state == ExecutorState.DISABLED
    ok, message = core.resync()
    assert ok and "resynced" in message
    assert core.gripper.state is None
    # e.g. the simulation was reset (gripper opened): the next "closed" is sent again
    assert core.enable(arm.now)[0]
    assert core.on_chunk(Chunk(arm.now, 0.05, JOINT_POSITION, NAMES, hold, np.ones(4)), arm.now).accepted
    arm.tick(10)
    assert arm.events == [CLOSED, CLOSED]


def test_refused_resync_keeps_the_gripper_state():
    core = rested_core()
    core.gripper.update(1.0)
    ok, _ = core.resync()
    assert not ok and core.gripper.state == CLOSED


@pytest.mark.parametrize("space", [JOINT_DELTA, EEF_DELTA])
def test_a_delta_chunk_entirely_in_the_past_is_rejected_before_any_conversion(space):
    core = rested_core()
    rows = np.zeros((4, 7 if space == JOINT_DELTA else 6))
    r = core.on_chunk(Chunk(0.0, 0.05, space, NAMES if space == JOINT_DELTA else [], rows), 0.21)
    assert not r.accepted and "past" in r.reason
    r = core.on_chunk(Chunk(0.0, 0.05, space, NAMES if space == JOINT_DELTA else [], rows), 0.2)
    assert r.accepted and r.first_index == 3 and r.kept == 1  # the last target, at stamp + 4 dt
