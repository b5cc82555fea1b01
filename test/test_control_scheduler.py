"""ActionScheduler: latency compensation, blending, refill threshold, rejection reasons."""

import math

import numpy as np
import pytest

from vla_adapter_ros.control.chunk import EEF_DELTA, JOINT_DELTA, JOINT_POSITION, Chunk, stamp_to_seconds
from vla_adapter_ros.control.kinematics import READY_POSE, FrankaKinematics, axis_angle_to_matrix, rotation_error
from vla_adapter_ros.control.scheduler import ActionScheduler

NAMES = [f"fr3_joint{i}" for i in range(1, 8)]
RATE_DT = 0.004  # 250 Hz control


def chunk(stamp, values, dt=0.1, space=JOINT_POSITION, names=NAMES, gripper=None, seq=0):
    """values: (H,) per-row scalar broadcast to 7 joints, or an (H, D) array."""
    a = np.asarray(values, dtype=float)
    if a.ndim == 1:
        a = np.repeat(a[:, None], 7, axis=1)
    return Chunk(stamp, dt, space, names, a, None if gripper is None else np.asarray(gripper, float), seq)


def sched(**kw):
    kw.setdefault("blend_mode", "replace")
    return ActionScheduler(NAMES, **kw)


def test_stamp_to_seconds():
    assert stamp_to_seconds(12, 500_000_000) == 12.5


def test_chunk_from_flat_is_row_major():
    c = Chunk.from_flat(1.0, 0.1, JOINT_POSITION, NAMES, 2, 7, np.arange(14), [0.0, 1.0], 5)
    np.testing.assert_array_equal(c.actions[1], np.arange(7, 14))
    with pytest.raises(ValueError, match="actions"):
        Chunk.from_flat(1.0, 0.1, JOINT_POSITION, NAMES, 3, 7, np.arange(14))


def test_latency_compensation_drops_exact_past_rows():
    s = sched()
    r = s.add_chunk(chunk(10.0, np.arange(10)), now=10.25)
    assert r.accepted and r.first_index == 3 and r.kept == 7
    assert r.latency == pytest.approx(0.25)
    np.testing.assert_allclose(s.times, 10.0 + 0.1 * np.arange(3, 10))
    np.testing.assert_allclose(s.targets[:, 0], np.arange(3, 10))
    # Before the first kept row the first kept target is held, then linear interpolation.
    assert s.sample(10.26).positions[0] == pytest.approx(3.0)
    assert s.sample(10.35).positions[0] == pytest.approx(3.5)
    assert s.sample(10.9).positions[0] == pytest.approx(9.0)


def test_row_exactly_at_now_is_kept():
    s = sched()
    r = s.add_chunk(chunk(10.0, np.arange(10)), now=10.2)
    assert r.first_index == 2


def test_no_latency_keeps_everything():
    s = sched()
    r = s.add_chunk(chunk(5.0, np.arange(8)), now=5.0)
    assert r.first_index == 0 and r.kept == 8


def test_empty_queue_and_exhaustion_give_none():
    s = sched()
    assert s.sample(0.0) is None
    s.add_chunk(chunk(1.0, [1.0, 2.0]), now=1.0)
    assert s.sample(1.1).positions[0] == pytest.approx(2.0)
    assert s.sample(1.19).positions[0] == pytest.approx(2.0)  # last row held one dt
    assert s.sample(1.21) is None
    assert s.empty and s.sample(1.3) is None


def test_sampling_at_control_rate_is_linear():
    s = sched()
    s.add_chunk(chunk(0.0, [0.0, 1.0, 3.0]), now=0.0)
    for t in np.arange(0.0, 0.2, RATE_DT):
        expected = np.interp(t, [0.0, 0.1, 0.2], [0.0, 1.0, 3.0])
        assert s.sample(t).positions[0] == pytest.approx(expected)


def test_replace_mode_overwrites_the_tail_and_drops_old_rows_after_new_end():
    s = sched(blend_mode="replace")
    s.add_chunk(chunk(0.0, np.zeros(10)), now=0.0)
    s.add_chunk(chunk(0.3, np.ones(3)), now=0.3)
    np.testing.assert_allclose(s.times, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    np.testing.assert_allclose(s.targets[:, 0], [0, 0, 0, 1, 1, 1])


def test_crossfade_exact_values():
    s = sched(blend_mode="crossfade", crossfade_steps=3)
    s.add_chunk(chunk(0.0, np.zeros(10)), now=0.0)
    s.add_chunk(chunk(0.3, np.ones(6)), now=0.3)
    np.testing.assert_allclose(s.targets[:, 0], [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1])
    # Where the old plan has ended the new rows are taken as they are.
    s2 = sched(blend_mode="crossfade", crossfade_steps=3)
    s2.add_chunk(chunk(0.0, np.zeros(5)), now=0.0)  # rows at 0.0..0.4
    s2.add_chunk(chunk(0.3, np.ones(4)), now=0.3)  # rows at 0.3..0.6
    np.testing.assert_allclose(s2.targets[:, 0], [0, 0, 0, 0.25, 0.5, 1, 1])


def test_crossfade_interpolates_the_old_plan_at_misaligned_times():
    s = sched(blend_mode="crossfade", crossfade_steps=1)
    s.add_chunk(chunk(0.0, [0.0, 1.0, 2.0, 3.0]), now=0.0)
    s.add_chunk(chunk(0.15, [10.0, 10.0]), now=0.15)  # rows at 0.15, 0.25
    # old plan at 0.15 is 1.5; weight 1/2 -> 5.75; second row fully new.
    np.testing.assert_allclose(s.targets[:, 0], [0.0, 1.0, 5.75, 10.0])


def test_ensemble_matches_act_weighted_average():
    m = 0.5
    s = sched(blend_mode="ensemble", ensemble_decay=m)
    s.add_chunk(chunk(0.0, np.zeros(6)), now=0.0)
    s.add_chunk(chunk(0.1, np.ones(5)), now=0.1)
    s.add_chunk(chunk(0.2, 2 * np.ones(4)), now=0.2)
    w = np.exp(-m * np.arange(3))  # oldest prediction weighs most
    expect_t02 = (w[0] * 0 + w[1] * 1 + w[2] * 2) / w.sum()
    expect_t01 = (w[0] * 0 + w[1] * 1) / w[:2].sum()
    # rows: 0.0 (first chunk only), 0.1 (two predictions), 0.2..0.5 (three predictions)
    got = s.targets[:, 0]
    assert got[0] == pytest.approx(0.0)
    assert got[1] == pytest.approx(expect_t01)
    np.testing.assert_allclose(got[2:], expect_t02)


def policy_stream(mode, seed=0):
    """Chunks every 0.2 s (latency 0.06 s) whose plans disagree by a random offset; returns
    the 250 Hz sampled target stream."""
    rng = np.random.default_rng(seed)
    s = ActionScheduler(NAMES, blend_mode=mode, crossfade_steps=4, ensemble_decay=0.05)
    out = []
    t = 0.0
    next_chunk = 0.0
    while t < 4.0:
        if t >= next_chunk - 1e-12:
            stamp = next_chunk - 0.06 if next_chunk > 0 else 0.0
            base = 0.1 * np.sin(stamp + 0.1 * np.arange(8))  # true plan sampled from the stamp
            plan = base + rng.uniform(-0.03, 0.03)  # each chunk disagrees by an offset
            assert s.add_chunk(chunk(stamp, plan), now=t).accepted
            next_chunk += 0.2
        out.append(s.sample(t).positions[0])
        t = round(t + RATE_DT, 9)
    return np.array(out)


def max_velocity_jump(stream):
    v = np.diff(stream) / RATE_DT
    return np.max(np.abs(np.diff(v)))


def test_blending_reduces_boundary_discontinuities():
    jumps = {mode: max_velocity_jump(policy_stream(mode)) for mode in ("replace", "crossfade", "ensemble")}
    assert jumps["crossfade"] < 0.5 * jumps["replace"]
    assert jumps["ensemble"] < 0.5 * jumps["replace"]
    # And the positions themselves: no step larger than the biggest crossfade step.
    for mode in ("crossfade", "ensemble"):
        assert np.max(np.abs(np.diff(policy_stream(mode)))) < np.max(np.abs(np.diff(policy_stream("replace"))))


def test_needs_chunk_threshold():
    s = sched(refill_threshold_s=0.25)
    assert s.needs_chunk(0.0)  # empty
    s.add_chunk(chunk(0.0, np.zeros(6)), now=0.0)  # last row at 0.5
    assert not s.needs_chunk(0.2)
    assert s.remaining_time(0.2) == pytest.approx(0.3)
    assert not s.needs_chunk(0.249)
    assert s.needs_chunk(0.251)
    assert s.depth(0.25) == 3


def test_out_of_order_duplicate_and_stale_are_rejected_with_reasons():
    s = sched(chunk_max_age=0.5)
    assert s.add_chunk(chunk(1.0, np.zeros(5)), now=1.05).accepted
    before = s.targets.copy()
    r = s.add_chunk(chunk(0.9, np.ones(20)), now=1.1)
    assert not r.accepted and r.reason.startswith("out of order")
    r = s.add_chunk(chunk(1.0, np.ones(20)), now=1.1)
    assert not r.accepted and r.reason.startswith("out of order")
    r = s.add_chunk(chunk(1.1, np.ones(20)), now=1.7)
    assert not r.accepted and r.reason.startswith("stale")
    r = s.add_chunk(chunk(5.0, np.ones(20)), now=1.7)
    assert not r.accepted and "future" in r.reason
    np.testing.assert_array_equal(s.targets, before)
    assert s.rejected_count == 4


def test_all_rows_in_the_past_rejected():
    s = sched()
    r = s.add_chunk(chunk(1.0, np.zeros(3)), now=1.3)
    assert not r.accepted and "past" in r.reason


@pytest.mark.parametrize(
    "bad,why",
    [
        (dict(values=np.full((3, 7), np.nan)), "NaN"),
        (dict(values=np.zeros((3, 6))), "columns"),
        (dict(values=np.zeros(3), dt=0.0), "dt"),
        (dict(values=np.zeros(3), dt=float("nan")), "dt"),
        (dict(values=np.zeros(3), names=["a"] * 7), "names"),
        (dict(values=np.zeros(3), gripper=[0.0, 1.0]), "gripper"),
        (dict(values=np.zeros(3), gripper=[0.0, np.inf, 1.0]), "gripper"),
        (dict(values=np.zeros(3), space=7), "action_space"),
        (dict(values=np.zeros((0, 7))), "horizon"),
        (dict(values=np.zeros((3, 7)), space=EEF_DELTA), "EEF_DELTA needs 6"),
    ],
)
def test_malformed_chunks_rejected(bad, why):
    s = sched()
    r = s.add_chunk(chunk(1.0, **bad), now=1.0, reference_q=np.zeros(7))
    assert not r.accepted and why in r.reason
    assert s.empty


def test_names_are_reordered():
    s = sched()
    values = np.tile(np.arange(7.0), (2, 1))
    perm = list(reversed(NAMES))
    r = s.add_chunk(Chunk(0.0, 0.1, JOINT_POSITION, perm, values[:, ::-1].copy()), now=0.0)
    assert r.accepted
    np.testing.assert_allclose(s.targets[0], np.arange(7.0))


def test_joint_delta_integrates_every_row_from_the_state_at_the_stamp():
    """Delta row i is the motion over [stamp + i dt, stamp + (i + 1) dt]: all rows are summed from
    reference_q (the state at the stamp), target i is for stamp + (i + 1) dt, then the past ones go."""
    s = sched()
    ref = np.array(READY_POSE)
    deltas = np.tile(0.01 * np.arange(1, 6)[:, None], (1, 7))
    r = s.add_chunk(chunk(0.0, deltas, space=JOINT_DELTA), now=0.15, reference_q=ref)
    assert r.accepted and r.first_index == 1 and r.kept == 4  # the target at 0.1 is past, 0.2 is not
    np.testing.assert_allclose(s.times, [0.2, 0.3, 0.4, 0.5])
    np.testing.assert_allclose(s.targets, (ref + np.cumsum(deltas, axis=0))[1:])
    r = sched().add_chunk(chunk(0.0, deltas, space=JOINT_DELTA), now=0.0)
    assert not r.accepted and "reference_q" in r.reason
    r = sched().prepare_chunk(chunk(0.0, deltas, space=JOINT_DELTA), 0.0, reference_problem="no state near the stamp")
    assert not r.accepted and r.reason == "no state near the stamp"
    # a delta chunk is in the past only once its last target (stamp + H dt) is
    assert sched().add_chunk(chunk(0.0, deltas, space=JOINT_DELTA), now=0.45, reference_q=ref).kept == 1
    assert "past" in sched().add_chunk(chunk(0.0, deltas, space=JOINT_DELTA), now=0.55, reference_q=ref).reason


def test_eef_delta_follows_the_requested_tool_path():
    kin = FrankaKinematics()
    s = ActionScheduler(NAMES, blend_mode="replace", kinematics=kin)
    steps = np.zeros((8, 6))
    steps[:, 0] = 0.005  # 5 mm per step along x
    steps[:, 5] = 0.01  # 0.01 rad per step about z
    r = s.add_chunk(chunk(0.0, steps, space=EEF_DELTA), now=0.0, reference_q=np.array(READY_POSE))
    assert r.accepted, r.reason
    np.testing.assert_allclose(s.times, 0.1 * np.arange(1, 9))  # the pose after row i: at the end of its period
    start = kin.fk(READY_POSE)
    for i, q in enumerate(s.targets):
        pose = kin.fk(q)
        np.testing.assert_allclose(pose[:3, 3], start[:3, 3] + [0.005 * (i + 1), 0, 0], atol=1e-3)
        want = axis_angle_to_matrix([0, 0, 0.01 * (i + 1)]) @ start[:3, :3]
        assert np.linalg.norm(rotation_error(want, pose[:3, :3])) < 1e-3


def test_eef_delta_rows_stop_at_the_workspace_box_and_never_pull_in():
    kin = FrankaKinematics()
    start = kin.fk_position(READY_POSE)
    floor = start[2] - 0.02  # a box whose floor is 2 cm below the tool
    lo, hi = np.array([0.0, -1.0, floor]), np.array([1.0, 1.0, 1.0])
    s = ActionScheduler(NAMES, blend_mode="replace", kinematics=kin, eef_workspace=(lo, hi))
    steps = np.zeros((8, 6))
    steps[:, 1] = 0.01  # 1 cm per step to the left ...
    steps[:, 2] = -0.01  # ... and 1 cm down: into the floor after two rows
    assert s.add_chunk(chunk(0.0, steps, space=EEF_DELTA), now=0.0, reference_q=np.array(READY_POSE)).accepted
    for i, q in enumerate(s.targets):
        p = kin.fk_position(q)
        np.testing.assert_allclose(p[1], start[1] + 0.01 * (i + 1), atol=1e-3)  # the sideways motion goes on
        np.testing.assert_allclose(p[2], max(start[2] - 0.01 * (i + 1), floor), atol=1e-3)  # down to the floor
    # the same rows without the box: the targets go below it
    free = ActionScheduler(NAMES, blend_mode="replace", kinematics=kin)
    free.add_chunk(chunk(0.0, steps, space=EEF_DELTA), now=0.0, reference_q=np.array(READY_POSE))
    assert kin.fk_position(free.targets[-1])[2] == pytest.approx(start[2] - 0.08, abs=1e-3)
    # a tool already below the floor is not pulled up (no jump), only kept from going further down
    below = ActionScheduler(NAMES, blend_mode="replace", kinematics=kin,
                            eef_workspace=(lo + [0, 0, 0.05], hi))
    below.add_chunk(chunk(0.0, steps, space=EEF_DELTA), now=0.0, reference_q=np.array(READY_POSE))
    for q in below.targets:
        assert kin.fk_position(q)[2] == pytest.approx(start[2], abs=1e-3)


def test_gripper_is_zero_order_hold_and_optional():
    s = sched()
    s.add_chunk(chunk(0.0, np.zeros(3), gripper=[0.0, 1.0, 0.2]), now=0.0)
    assert s.sample(0.05).gripper == 0.0
    assert s.sample(0.15).gripper == 1.0
    s2 = sched()
    s2.add_chunk(chunk(0.0, np.zeros(3)), now=0.0)
    assert s2.sample(0.05).gripper is None


def test_constructor_validation():
    with pytest.raises(ValueError, match="blend_mode"):
        ActionScheduler(NAMES, blend_mode="mix")
    with pytest.raises(ValueError, match="refill_threshold_s"):
        ActionScheduler(NAMES, refill_threshold_s=math.nan)


@pytest.mark.parametrize("mode", ["replace", "crossfade", "ensemble"])
def test_random_arrivals_keep_queue_invariants(mode):
    """Seeded stress: random latencies, dt, horizons and arrival gaps. The queue stays sorted,
    samples are finite, and every blended target is a convex combination of chunk rows (stays
    within the range of all values sent)."""
    rng = np.random.default_rng(7)
    s = ActionScheduler(NAMES, blend_mode=mode, crossfade_steps=3, ensemble_decay=0.1, chunk_max_age=0.5)
    now, lo, hi = 0.0, np.inf, -np.inf
    last_stamp = -np.inf
    for _ in range(300):
        now += rng.uniform(0.0, 0.3)
        stamp = now - rng.uniform(-0.05, 0.6)
        dt = rng.choice([0.02, 0.05, 0.1])
        rows = rng.uniform(-1, 1, (int(rng.integers(1, 20)), 7))
        r = s.add_chunk(chunk(stamp, rows, dt=dt), now=now)
        if r.accepted:
            assert stamp > last_stamp and r.latency <= 0.5
            last_stamp = stamp
            lo, hi = min(lo, rows.min()), max(hi, rows.max())
        elif stamp > last_stamp and now - stamp <= 0.5 and stamp - now <= 0.5:
            assert "past" in r.reason
        times = s.times
        assert np.all(np.diff(times) > 0)
        for t in now + rng.uniform(0, 0.5, 5):
            smp = s.sample(t) if not s.empty else None
            if smp is not None:
                assert np.all(np.isfinite(smp.positions))
                assert np.all(smp.positions >= lo - 1e-9) and np.all(smp.positions <= hi + 1e-9)
