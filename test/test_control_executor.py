"""ExecutorCore state machine: enable/disable, start gate, estop latch, timeout hold, go_home,
and a full chunk -> command pipeline checked against the limits."""

import numpy as np
import pytest

from vla_adapter_ros.control.chunk import JOINT_DELTA, JOINT_POSITION, Chunk
from vla_adapter_ros.control.executor_core import ExecutorCore, ExecutorState, reorder_joint_state
from vla_adapter_ros.control.limits import load_robot_limits

FR3 = load_robot_limits("fr3")
READY = np.array(FR3.start_pose)
DT = FR3.control_dt


class SimRobot:
    """Perfect position tracking: measured state = last commanded position."""

    def __init__(self, core, q):
        self.core, self.q, self.now = core, np.array(q, float), 0.0
        self.commands = []
        for k in (2, 1, 0):  # a short history at rest: enable confirms the arm rests before adopting it
            core.on_joint_state(self.q, self.now - k * DT)

    def tick(self, n=1, publish_state=True):
        out = None
        for _ in range(n):
            out = self.core.tick(self.now)
            self.commands.append(out)
            if out is not None and not out.dry_run:
                self.q = out.positions.copy()
            self.now = round(self.now + DT, 9)
            if publish_state:
                self.core.on_joint_state(self.q, self.now)
        return out


def core_at(q=READY, **kw):
    core = ExecutorCore(FR3, **kw)
    return core, SimRobot(core, q)


def moving_chunk(stamp, start, n=10, dt=0.1, step=0.01, gripper=None, seq=0):
    rows = start[None, :] + step * np.arange(1, n + 1)[:, None] * np.ones(7)
    return Chunk(stamp, dt, JOINT_POSITION, list(FR3.joint_names), rows, gripper, seq)


def positions(robot):
    return np.array([c.positions for c in robot.commands if c is not None])


def assert_limits(q_stream):
    v = np.diff(q_stream, axis=0) / DT
    a = np.diff(v, axis=0) / DT
    j = np.diff(a, axis=0) / DT
    assert np.all(q_stream >= FR3.soft_q_min - 1e-12) and np.all(q_stream <= FR3.soft_q_max + 1e-12)
    assert np.all(np.abs(v) <= FR3.v_max * (1 + 1e-9) + 1e-6)
    assert np.all(np.abs(a) <= FR3.a_max * (1 + 1e-9) + 1e-6)
    assert np.all(np.abs(j) <= FR3.j_max * (1 + 1e-9) + 1e-6)


def test_disabled_sends_nothing_and_rejects_chunks():
    core, robot = core_at()
    assert core.state == ExecutorState.DISABLED
    assert robot.tick(10) is None
    r = core.on_chunk(moving_chunk(0.0, READY), 0.0)
    assert not r.accepted and "disabled" in r.reason


def test_enable_needs_fresh_joint_state():
    core = ExecutorCore(FR3)
    ok, msg = core.enable(0.0)
    assert not ok and "joint state" in msg
    core.on_joint_state(READY, 0.0)
    ok, _ = core.enable(FR3.joint_state_timeout + 0.05)
    assert not ok
    ok, msg = core.enable(0.01)  # fresh, but one sample cannot show that the arm rests
    assert not ok and "joint states within" in msg
    core.on_joint_state(READY, 0.004)
    core.on_joint_state(READY, 0.008)
    ok, _ = core.enable(0.01)
    assert ok and core.state == ExecutorState.RUNNING


def test_start_pose_gate_and_go_home_converges():
    away = READY + np.array([0.3, -0.2, 0.25, 0.2, -0.3, 0.2, 0.4])
    core, robot = core_at(away)
    ok, msg = core.enable(0.0)
    assert ok and core.state == ExecutorState.IDLE and "start pose" in msg
    ok, msg = core.start(0.0)
    assert not ok and "go_home" in msg
    assert not core.on_chunk(moving_chunk(0.0, READY), 0.0).accepted
    robot.tick(5)
    assert np.allclose(robot.q, away)  # holding: no motion while idle
    assert core.go_home()[0] and core.state == ExecutorState.HOMING
    for _ in range(3000):
        robot.tick()
        if core.state != ExecutorState.HOMING:
            break
    assert core.state == ExecutorState.IDLE
    assert np.max(np.abs(robot.q - READY)) <= 1e-3
    assert_limits(positions(robot))
    ok, _ = core.start(robot.now)
    assert ok and core.state == ExecutorState.RUNNING


def test_start_gate_can_be_disabled():
    core, robot = core_at(READY + 0.3, require_start_pose=False)
    assert core.enable(0.0)[0] and core.state == ExecutorState.RUNNING


def test_policy_pipeline_follows_chunks_within_limits_and_gripper_events_once():
    core, robot = core_at()
    core.enable(0.0)
    # Policy: every 0.2 s a chunk stamped 0.05 s earlier (inference latency), gripper closes mid-way.
    target = READY.copy()
    for k in range(15):
        now = robot.now
        grip = np.full(10, 1.0 if k >= 7 else 0.0)
        r = core.on_chunk(moving_chunk(max(now - 0.05, 0.0), target, step=0.004, gripper=grip, seq=k), now)
        assert r.accepted, r.reason
        robot.tick(50)
        target = robot.q.copy()
        st = core.status(robot.now)
        assert st.state == "running" and st.last_chunk_latency == pytest.approx(min(now, 0.05))
    q_stream = positions(robot)
    assert_limits(q_stream)
    assert np.max(q_stream[:, 0] - READY[0]) > 0.1  # it actually moved along the chunks
    events = [c.gripper_event for c in robot.commands if c.gripper_event is not None]
    assert [e.state for e in events] == ["open", "closed"]
    st = core.status(robot.now)
    assert st.chunks_accepted == 15 and st.chunks_rejected == 0
    assert st.queue_depth > 0 and st.clip_counts["invalid_command"] == 0


def test_queue_exhaustion_holds_and_needs_chunk():
    core, robot = core_at()
    core.enable(0.0)
    assert core.needs_chunk(0.0)
    core.on_chunk(moving_chunk(0.0, READY, n=5, step=0.005), 0.0)
    assert not core.needs_chunk(0.0) or core.scheduler.refill_threshold_s >= 0.4
    robot.tick(400)
    last = robot.commands[-1]
    assert last.holding and last.hold_reason is None
    assert np.all(last.velocities == 0.0)
    assert core.needs_chunk(robot.now)


def test_joint_state_timeout_holds_while_running():
    core, robot = core_at()
    core.enable(0.0)
    core.on_chunk(moving_chunk(0.0, READY, n=30, step=0.01), 0.0)
    robot.tick(50)
    assert not robot.commands[-1].holding
    robot.tick(100, publish_state=False)  # state stream stops
    late = robot.commands[-1]
    assert late.holding and late.hold_reason == "joint_state_timeout"
    assert np.all(late.velocities == 0.0)
    assert_limits(positions(robot))  # the stop was smooth
    assert "joint_state_timeout" in core.status(robot.now).last_safety_event


def test_estop_latches_until_reset():
    core, robot = core_at()
    core.enable(0.0)
    core.on_chunk(moving_chunk(0.0, READY, n=30, step=0.01), 0.0)
    robot.tick(60)
    assert np.max(np.abs(core.filter.v)) > 0.05
    ok, _ = core.estop("test")
    assert ok and core.state == ExecutorState.ESTOP
    for call in (lambda: core.enable(robot.now), lambda: core.start(robot.now), core.resume, core.go_home,
                 core.pause, core.disable):
        assert not call()[0]
        assert core.state == ExecutorState.ESTOP
    assert not core.on_chunk(moving_chunk(robot.now, robot.q), robot.now).accepted
    robot.tick(300)
    assert all(c.holding for c in robot.commands[-300:])
    assert np.all(robot.commands[-1].velocities == 0.0)
    assert_limits(positions(robot))  # braked smoothly
    assert core.status(robot.now).estop_reason == "test"
    ok, _ = core.reset(robot.now)
    assert ok and core.state == ExecutorState.IDLE and core.estop_reason is None
    assert core.start(robot.now)[0] == core.at_start_pose()  # gate applies after reset
    core.stop()
    assert core.go_home()[0]


def test_pause_resume_stop_disable():
    core, robot = core_at()
    core.enable(0.0)
    core.on_chunk(moving_chunk(0.0, READY, n=30, step=0.01), 0.0)
    robot.tick(40)
    assert core.pause()[0] and core.scheduler.empty
    assert not core.on_chunk(moving_chunk(robot.now, robot.q), robot.now).accepted
    robot.tick(200)
    assert np.all(robot.commands[-1].velocities == 0.0)
    assert core.resume()[0] and core.state == ExecutorState.RUNNING
    assert core.on_chunk(moving_chunk(robot.now, robot.q, seq=2), robot.now).accepted
    robot.tick(40)
    assert core.disable()[0] and core.state == ExecutorState.STOPPING
    robot.tick(300)
    assert core.state == ExecutorState.DISABLED
    assert robot.commands[-1] is None
    assert_limits(positions(robot))
    assert core.enable(robot.now)[0]


def test_tracking_error_latches_estop():
    core, robot = core_at(max_tracking_error=0.05)
    core.enable(0.0)
    core.on_chunk(moving_chunk(0.0, READY, n=30, step=0.01), 0.0)
    for _ in range(400):
        core.tick(robot.now)
        robot.now = round(robot.now + DT, 9)
        core.on_joint_state(READY, robot.now)  # robot does not follow
        if core.state == ExecutorState.ESTOP:
            break
    assert core.state == ExecutorState.ESTOP and "tracking error" in core.estop_reason


def test_dry_run_marks_commands_and_simulates_tracking():
    core, robot = core_at(dry_run=True)
    core.enable(0.0)
    core.on_chunk(moving_chunk(0.0, READY, n=20, step=0.01), 0.0)
    robot.tick(200)
    cmds = [c for c in robot.commands if c is not None]
    assert all(c.dry_run for c in cmds)
    assert np.allclose(robot.q, READY)  # the sim robot ignored dry-run commands
    assert cmds[-1].positions[0] > READY[0] + 0.05  # but the reference moved
    assert core.state == ExecutorState.RUNNING


def test_joint_delta_chunks_start_from_the_reference():
    core, robot = core_at()
    core.enable(0.0)
    deltas = np.full((10, 7), 0.002)
    r = core.on_chunk(Chunk(0.0, 0.1, JOINT_DELTA, list(FR3.joint_names), deltas), 0.0)
    assert r.accepted
    np.testing.assert_allclose(core.scheduler.targets[-1], READY + 0.02)


def test_trajectory_points_end_at_rest():
    """If the controller gets no further message, the trajectory it holds ends at rest."""
    core, robot = core_at(trajectory_points=3)
    core.enable(0.0)
    core.on_chunk(moving_chunk(0.0, READY, n=30, step=0.01), 0.0)
    cmd = robot.tick(60)
    assert np.max(np.abs(cmd.velocities)) > 0.1  # moving fast
    times = [p.time_from_start for p in cmd.points]
    assert times[0] == pytest.approx(DT) and times[0] < times[1] < times[2]
    np.testing.assert_array_equal(cmd.points[0].positions, cmd.positions)
    np.testing.assert_array_equal(cmd.points[-1].velocities, 0.0)
    np.testing.assert_array_equal(cmd.points[-1].accelerations, 0.0)
    # the stop is kinematic, not a step: travel ~ v T / 2 over T >= 1.5 v / a_max
    travel = np.abs(cmd.points[-1].positions - cmd.positions)
    assert np.all(travel <= np.abs(cmd.velocities) * (times[-1] - DT) / 2 + np.abs(cmd.accelerations) * (times[-1] - DT) ** 2 / 12 + 1e-9)
    assert times[-1] - DT >= 1.5 * np.max(np.abs(cmd.velocities) / FR3.a_max) - 1e-12
    assert cmd.joint_names == FR3.joint_names
    core2, robot2 = core_at(trajectory_points=1)
    core2.enable(0.0)
    assert len(robot2.tick(1).points) == 1


def test_invalid_joint_state_is_ignored():
    core, robot = core_at()
    assert not core.on_joint_state([np.nan] * 7, 0.0)
    assert not core.on_joint_state([0.0] * 3, 0.0)
    assert not core.on_joint_state(["a"] * 7, 0.0)
    assert not core.on_joint_state(READY, None)
    assert not core.on_joint_state(None, 0.0)
    assert core.status(0.0).clip_counts["invalid_joint_state"] == 5


def test_reorder_joint_state():
    names = list(reversed(FR3.joint_names)) + ["fr3_finger_joint1"]
    pos = list(range(7, 0, -1)) + [0.04]
    np.testing.assert_array_equal(reorder_joint_state(names, pos, FR3.joint_names), np.arange(1, 8))
    assert reorder_joint_state(names[:3], pos[:3], FR3.joint_names) is None


def test_workspace_violating_start_pose_is_a_config_error():
    import dataclasses

    bad = dataclasses.replace(FR3, workspace_max=np.array([0.85, 0.6, 0.3]))
    with pytest.raises(ValueError, match="start_pose"):
        ExecutorCore(bad)


def test_estop_while_disabled_sends_nothing_and_resets_to_disabled():
    core, robot = core_at()
    core.enable(0.0)
    robot.tick(5)
    core.disable()
    robot.tick(5)
    assert core.state == ExecutorState.DISABLED
    assert core.estop("operator")[0] and core.state == ExecutorState.ESTOP
    assert robot.tick(5) is None  # a stale reference is never replayed
    assert not core.enable(robot.now)[0]
    ok, msg = core.reset(robot.now)
    assert ok and core.state == ExecutorState.DISABLED
    assert robot.tick() is None
    assert core.enable(robot.now)[0]


@pytest.mark.parametrize("mode", ["replace", "crossfade", "ensemble"])
def test_random_policy_and_sensor_faults_never_break_limits(mode):
    """Seeded stress: erratic chunks (jumps, NaN rows, late, out of order, EEF-free), joint-state
    dropouts and a lagging robot; the command stream must stay within all limits."""
    rng = np.random.default_rng({"replace": 1, "crossfade": 2, "ensemble": 3}[mode])
    core = ExecutorCore(FR3, blend_mode=mode, max_tracking_error=0.0)
    q = READY.copy()
    now = 0.0
    for t in (-0.008, -0.004, 0.0):
        core.on_joint_state(q, t)
    assert core.enable(now)[0]
    sent = []
    for k in range(3000):
        if k % 40 == 0:
            stamp = now - rng.uniform(0.0, 0.4) if rng.random() > 0.1 else now - 2.0
            rows = q + np.cumsum(rng.normal(0, 0.02, (8, 7)), axis=0)
            if rng.random() < 0.1:
                rows[rng.integers(8)] = np.nan
            if rng.random() < 0.1:
                rows += rng.normal(0, 1.0, 7)  # a wild chunk: jump or beyond limits
            space = JOINT_DELTA if rng.random() < 0.3 else JOINT_POSITION
            if space == JOINT_DELTA:
                rows = rng.normal(0, 0.01, (8, 7))
            core.on_chunk(Chunk(stamp, 0.1, space, list(FR3.joint_names), rows, rng.random(8), k), now)
        cmd = core.tick(now)
        assert cmd is not None and np.all(np.isfinite(cmd.positions))
        sent.append(cmd.positions)
        q = q + 0.5 * (cmd.positions - q)  # lagging robot
        now = round(now + DT, 9)
        if rng.random() > 0.02 and not (1000 <= k < 1100):  # drops + one long outage
            core.on_joint_state(q + rng.normal(0, 1e-4, 7), now)
    assert_limits(np.array(sent))
    st = core.status(now)
    assert st.chunks_accepted > 10 and st.chunks_rejected > 0
    assert st.clip_counts["joint_state_timeout"] > 0 and st.clip_counts["position_net"] == 0


def test_empty_chunk_means_stop():
    core, robot = core_at()
    core.enable(0.0)
    core.on_chunk(moving_chunk(0.0, READY, n=30, step=0.01), 0.0)
    robot.tick(60)
    assert not robot.commands[-1].holding
    stop = Chunk.from_flat(0.0, 0.1, JOINT_POSITION, [], 0, 7, [])  # old stamp: still honoured
    assert stop.is_stop and not moving_chunk(0.0, READY).is_stop
    r = core.on_chunk(stop, robot.now)
    assert r.accepted and "stop" in r.reason and core.scheduler.empty
    robot.tick(200)
    assert robot.commands[-1].holding and np.all(robot.commands[-1].velocities == 0.0)
    assert core.state == ExecutorState.RUNNING  # a new chunk resumes motion
    assert_limits(positions(robot))


def test_queue_exhaustion_comes_to_rest_at_the_last_target():
    """The end of the last chunk is where the arm stops (not wherever the reference was braking)."""
    core, robot = core_at()
    core.enable(0.0)
    chunk = moving_chunk(0.0, READY, n=8, step=0.0125)  # ~0.25 rad/s on every joint, then queue dry
    core.on_chunk(chunk, 0.0)
    robot.tick(500)
    last_target = chunk.actions[-1]
    final = robot.commands[-1]
    np.testing.assert_allclose(final.positions, last_target, atol=1e-4)
    assert final.holding and np.all(final.velocities == 0.0)
    # overshoot is bounded by the braking distance from the chunk's speed under the acc/jerk limits
    travel = np.array([c.positions for c in robot.commands]) - READY
    speed = 0.0125 / chunk.dt
    brake = speed**2 / (2 * core.limits.a_max) + speed * core.limits.a_max / core.limits.j_max
    assert np.all(travel.max(axis=0) <= (last_target - READY) + brake + 1e-6)


def test_queue_exhaustion_brakes_at_once_when_far_behind_the_commands():
    """A dead policy must not leave the arm chasing a target far ahead of the reference."""
    core, robot = core_at(finish_distance=0.05)
    core.enable(0.0)
    chunk = moving_chunk(0.0, READY, n=4, dt=0.05, step=0.05)  # 1 rad/s asked, ~0.5 rad/s allowed
    core.on_chunk(chunk, 0.0)
    robot.tick(400)
    final = robot.commands[-1]
    assert final.holding and np.all(final.velocities == 0.0)
    gap = np.abs(chunk.actions[-1] - final.positions)
    assert np.all(gap > 0.02), "it braked instead of chasing the far target"


def test_unparsable_chunk_is_counted_and_reported_without_touching_the_queue():
    core, robot = core_at()
    robot.tick(2)
    assert core.enable(robot.now)[0]
    assert core.on_chunk(moving_chunk(robot.now, READY, seq=1), robot.now).accepted
    queued = core.status(robot.now).queue_depth
    result = core.reject_unparsable_chunk("actions has 47 values, expected horizon x action_dim = 48", sequence=2)
    assert not result.accepted and result.sequence == 2
    status = core.status(robot.now)
    assert status.chunks_rejected == 1 and status.chunks_accepted == 1 and status.queue_depth == queued
    assert core.last_chunk.reason.startswith("actions has 47 values")


def _check_hold_reason(core, now, where):
    """A hold always has a reason (status); a core that does not hold reports none."""
    status = core.status(now)
    if status.holding:
        assert isinstance(status.hold_reason, str) and status.hold_reason.strip(), (where, status)
    else:
        assert status.hold_reason is None, (where, status)
    return status


@pytest.mark.parametrize("dry_run", [False, True])
def test_every_hold_has_a_reason(dry_run):
    """Drive the core through its states (no chunks, chunks, queue dry, stale and invalid joint states,
    a rejected target, pause, stop, go_home, estop and reset, disable, estop while disabled) and check
    the status after every call and every tick: holding <=> a non-empty hold reason."""
    away = READY + np.array([0.2, 0, 0, 0, 0, 0, 0])  # away from the start pose: enable -> idle
    core, robot = core_at(q=away, dry_run=dry_run)
    seen = {}

    def ticks(n, label, publish_state=True):
        for _ in range(n):
            robot.tick(1, publish_state=publish_state)
            status = _check_hold_reason(core, robot.now, label)
            if status.holding:
                seen.setdefault(label, set()).add(status.hold_reason)

    def call(label, method, *args):
        ok, message = method(*args)
        _check_hold_reason(core, robot.now, label)
        return ok

    status = _check_hold_reason(core, 0.0, "before any tick")
    assert status.holding and "disabled" in status.hold_reason
    ticks(3, "disabled")
    assert call("enable (not at start pose)", core.enable, robot.now) and core.state == ExecutorState.IDLE
    ticks(5, "idle")
    assert any("start pose" in r for r in seen["idle"]), seen["idle"]
    assert call("go_home", core.go_home)
    for _ in range(3000):
        ticks(1, "homing")
        if core.state != ExecutorState.HOMING:
            break
    assert core.state == ExecutorState.IDLE, core.state
    if dry_run:  # the real arm did not move: put it at the start pose
        robot.q = READY.copy()
        ticks(3, "idle")
    assert call("start", core.start, robot.now) and core.state == ExecutorState.RUNNING
    ticks(5, "running, no chunks")
    assert all("waiting for a chunk" in r for r in seen["running, no chunks"]), seen
    core.on_chunk(moving_chunk(robot.now, robot.q, n=10, step=0.005), robot.now)
    ticks(300, "running, chunk then queue dry")
    assert core.status(robot.now).holding
    # a stale chunk is rejected: the hold says so
    result = core.on_chunk(moving_chunk(robot.now - 100.0, robot.q, seq=3), robot.now)
    assert not result.accepted
    ticks(3, "stale chunk")
    assert any("rejected" in r for r in seen["stale chunk"]), seen["stale chunk"]
    # a target far from the measured state
    far = Chunk(robot.now, 0.1, JOINT_POSITION, list(FR3.joint_names), np.tile(robot.q + 1.0, (5, 1)), None, 4)
    core.on_chunk(far, robot.now)
    ticks(20, "far target")
    core.on_joint_state(np.full(7, np.nan), robot.now)  # an invalid joint state is ignored
    _check_hold_reason(core, robot.now, "invalid joint state")
    if not dry_run:
        core.on_chunk(moving_chunk(robot.now, robot.q, n=30, step=0.005, seq=5), robot.now)
        ticks(200, "stale joint state", publish_state=False)  # the joint states stop
        assert any("joint_state_timeout" in r for r in seen["stale joint state"]), seen["stale joint state"]
        ticks(20, "joint states back")
    core.on_chunk(moving_chunk(robot.now, robot.q, n=30, step=0.005, seq=6), robot.now)
    ticks(10, "moving")
    assert call("pause", core.pause)
    ticks(100, "paused")
    assert any("paused" in r for r in seen["paused"])
    assert call("resume", core.resume)
    ticks(5, "resumed")
    assert call("stop", core.stop)
    ticks(50, "stopped")
    assert call("estop", core.estop, "operator pressed the button")
    ticks(100, "estop")
    assert all("operator pressed the button" in r for r in seen["estop"]), seen["estop"]
    assert call("reset", core.reset, robot.now)
    ticks(5, "reset")
    assert call("disable", core.disable)
    ticks(300, "stopping")
    assert core.state == ExecutorState.DISABLED
    assert call("estop while disabled", core.estop, "while disabled")
    ticks(3, "estop while disabled")
    assert any("nothing is being sent" in r for r in seen["estop while disabled"])
    assert call("reset to disabled", core.reset, robot.now)
    ticks(3, "disabled again")
    status = core.status(robot.now)
    assert status.holding and "disabled" in status.hold_reason


def test_tick_error_estop_has_a_reason():
    core, robot = core_at()
    core.enable(0.0)
    robot.tick(3)

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    core.scheduler.sample = broken
    robot.tick(3)
    status = _check_hold_reason(core, robot.now, "tick error")
    assert status.state == "estop" and "internal error in tick" in status.hold_reason


@pytest.mark.parametrize("keep", [True, False])
def test_eef_chunk_leaning_into_the_floor_slides_along_it_or_holds(keep):
    """eef_keep_in_workspace: a chunk that moves left and down past the workspace floor keeps moving left at the
    floor (True) or is held by the safety filter (False); the tool never goes below the floor either way."""
    import dataclasses

    from vla_adapter_ros.control.chunk import EEF_DELTA

    kin = ExecutorCore(FR3).kinematics
    start = kin.fk_position(READY)
    floor = start[2] - 0.02
    limits = dataclasses.replace(FR3, workspace_min=[FR3.workspace_min[0], FR3.workspace_min[1], floor])
    core = ExecutorCore(limits, eef_keep_in_workspace=keep)
    robot = SimRobot(core, READY)
    assert core.enable(0.0)[0]
    rows = np.tile([0.0, 0.01, -0.01, 0.0, 0.0, 0.0], (8, 1))  # 1 cm left and 1 cm down per 0.1 s
    for k in range(3):
        assert core.on_chunk(Chunk(robot.now, 0.1, EEF_DELTA, [], rows, None, k), robot.now).accepted
        robot.tick(100)
    tool = np.array([kin.fk_position(c.positions) for c in robot.commands if c is not None])
    assert tool[:, 2].min() >= floor - 1e-6
    if keep:
        assert tool[-1, 1] - start[1] > 0.08  # went on to the left along the floor
        assert tool[-1, 2] == pytest.approx(floor + 0.01, abs=2e-3)  # eef_workspace_margin_m
        assert core.filter.clip_counts["workspace"] < 25  # a few braking-prediction ticks as it reaches the floor
    else:
        assert tool[-1, 1] - start[1] < 0.05  # the first rows past the floor stopped the arm
        assert core.filter.clip_counts["workspace"] > 100  # held for most of the 1.2 s


def test_eef_workspace_margin_is_checked():
    for bad in (-0.001, 0.2, float("nan")):
        with pytest.raises(ValueError, match="eef_workspace_margin_m"):
            ExecutorCore(FR3, eef_workspace_margin_m=bad)
    lo, hi = ExecutorCore(FR3, eef_workspace_margin_m=0.02).scheduler.eef_workspace
    np.testing.assert_allclose(lo, np.array(FR3.workspace_min) + 0.02)
    np.testing.assert_allclose(hi, np.array(FR3.workspace_max) - 0.02)
    assert ExecutorCore(FR3, eef_keep_in_workspace=False).scheduler.eef_workspace is None
