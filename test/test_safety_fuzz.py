"""safety_fuzz: the independent-limit checkers on hand-made streams, a short seeded fuzz run of the
executor cores (must find nothing), determinism, and the `vla-adapter-ros safety-fuzz` command."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from vla_adapter_ros import cli
from vla_adapter_ros.control import safety_fuzz as sf
from vla_adapter_ros.control.limits import load_robot_limits

FR3 = sf.HARD["fr3"]
READY = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])  # tool point well inside the box
DT = 0.004


def point(p, v=None, a=None, tfs=DT):
    p = np.asarray(p, float)
    return SimpleNamespace(positions=p, velocities=np.zeros(7) if v is None else np.asarray(v, float),
                           accelerations=np.zeros(7) if a is None else np.asarray(a, float), time_from_start=tfs)


def command(p, v=None, a=None, more=()):
    first = point(p, v, a)
    return SimpleNamespace(positions=first.positions, velocities=first.velocities, accelerations=first.accelerations,
                           points=(first, *more), gripper_event=None)


def check_stream(samples, dt=DT, gap_after=True):
    """Feed (p, v, a) samples to a JointChecker; returns the violation kinds and the report."""
    report = sf.Report()
    checker = sf.JointChecker(FR3, dt, report)
    for p, v, a in samples:
        checker.command(command(p, v, a))
    if gap_after:
        checker.gap()
    return set(report.violations), report


def cubic_stream(amplitude, duration, dt=DT):
    """Rest-to-rest smoothstep p = q0 + A (3 s^2 - 2 s^3) on joint 1, with its exact v and a."""
    out = []
    for t in np.arange(0, int(round(duration / dt)) + 1) * dt:
        s = t / duration
        e = np.eye(7)[0]
        out.append((READY + e * amplitude * (3 * s ** 2 - 2 * s ** 3), e * amplitude * (6 * s - 6 * s ** 2) / duration,
                    e * amplitude * (6 - 12 * s) / duration ** 2))
    return out


def test_independent_tables_are_the_datasheet_values():
    assert FR3.q_min[5] == 0.5445 and FR3.q_max[3] == -0.1518 and FR3.dq[4] == 5.26
    panda = sf.HARD["panda"]
    assert panda.ddq.tolist() == [15, 7.5, 10, 12.5, 15, 20, 20] and panda.cart[0] == 1.7
    # the robot file the cores run with must not claim more than the datasheet
    assert np.all(load_robot_limits("fr3").dq_max <= FR3.dq + 1e-12)


def test_position_step_is_flagged_as_velocity_acceleration_and_jerk():
    still = [(READY, None, None)] * 5
    stepped = READY + np.eye(7)[0] * 0.05  # 12.5 rad/s at 250 Hz
    kinds, report = check_stream(still + [(stepped, None, None)] * 5)
    assert {"velocity", "acceleration", "jerk"} <= kinds
    assert report.violations["velocity"]["worst_ratio"] == pytest.approx(0.05 / DT / 2.62)
    assert report.violations["velocity"]["first"]["desc"].startswith("joint 1")
    # a step far below the velocity limit still breaks the acceleration limit (1 mrad: 62.5 rad/s^2)
    kinds, _ = check_stream(still + [(READY + np.eye(7)[0] * 1e-3, None, None)] * 5)
    assert "acceleration" in kinds and "velocity" not in kinds


def test_smooth_cubic_passes_and_the_same_cubic_too_fast_fails():
    kinds, report = check_stream(cubic_stream(0.3, 1.0))
    assert kinds == set(), report.violations
    kinds, _ = check_stream(cubic_stream(0.3, 0.1))  # 180 rad/s^2
    assert {"acceleration", "interp_acceleration"} <= kinds


def test_quintic_hermite_meets_its_end_conditions_and_is_exact_for_quintics():
    rng = np.random.default_rng(0)
    s0, s1 = tuple(rng.normal(size=(3, 7))), tuple(rng.normal(size=(3, 7)))
    T = 0.004
    pos, vel, acc, _ = sf.quintic(s0, s1, T, np.array([0.0, T]))
    for got, want in zip((pos, vel, acc), zip(s0, s1)):
        np.testing.assert_allclose(got, np.array(want), atol=1e-9)
    c = rng.normal(size=6)  # a quintic polynomial is reproduced from its own end states
    poly = np.polynomial.Polynomial(c)
    state = lambda t: tuple(np.full(7, poly.deriv(k)(t)) for k in range(3))  # noqa: E731
    t = np.linspace(0, 0.5, 11)
    pos, vel, acc, jerk = sf.quintic(state(0.0), state(0.5), 0.5, t)
    np.testing.assert_allclose(pos[:, 0], poly(t), atol=1e-9)
    np.testing.assert_allclose(jerk[:, 0], poly.deriv(3)(t), rtol=1e-7, atol=1e-6)


def test_interpolation_flags_declared_derivatives_inconsistent_with_positions():
    # the smooth cubic's positions (fine as finite differences) declared at rest: the controller's quintic
    # has to stop at every point and start again
    positions_only = [(p, None, None) for p, _, _ in cubic_stream(0.3, 1.0)]
    kinds, _ = check_stream(positions_only)
    assert "interp_jerk" in kinds and not kinds & {"velocity", "acceleration", "jerk"}
    # the same through the checker's cached basis and through quintic() directly
    report = sf.Report()
    checker = sf.JointChecker(FR3, DT, report)
    s0 = (READY, np.zeros(7), np.zeros(7))
    s1 = (READY + 1e-3, np.zeros(7), np.zeros(7))
    checker._spline("interp", s0, s1, DT)
    jerk = sf.quintic(s0, s1, DT, np.linspace(0, DT, 5))[3]
    assert report.violations["interp_jerk"]["worst"]["value"] == pytest.approx(np.abs(jerk).max())


def test_restart_step_trajectory_end_and_position_checks():
    report = sf.Report()
    checker = sf.JointChecker(FR3, DT, report)
    checker.command(command(READY))
    checker.gap()
    checker.command(command(READY + 3e-6))  # one jerk-limited step from the held point, at rest: fine
    assert report.violations == {}
    checker.gap()
    checker.command(command(READY + 1e-4))  # a 0.1 mrad step from rest: over the jerk limit, not a re-basing
    assert "interp_jerk" in report.violations and "restart_step" not in report.violations
    checker.gap()
    checker.command(command(READY + 2e-3))  # a re-based start
    assert {"restart_step", "acceleration", "jerk"} <= set(report.violations)
    checker.gap()
    checker.command(command(READY + 0.2), allow_restart=True)  # moved by hand + resync: allowed
    assert report.violations["restart_step"]["count"] == 1
    moving_end = point(READY, np.full(7, 0.1), None, tfs=2 * DT)
    checker.command(command(READY + 0.2, more=(moving_end,)))
    assert "trajectory_end_moving" in report.violations
    outside = READY.copy()
    outside[5] = 0.3  # a valid Panda pose, below FR3's q6 limit
    checker.gap()
    checker.command(command(outside), allow_restart=True)
    assert "position" in report.violations


def test_eef_checker_flags_a_velocity_step_but_not_a_ramp():
    report = sf.Report()
    checker = sf.EefChecker(FR3, DT, report)
    checker.anchor(np.array([0.5, 0.0, 0.4]))
    for _ in range(5):
        checker.command(np.array([0.001, 0, 0, 0, 0, 0]))  # 0.25 m/s at once: 62.5 m/s^2
    assert {"cart_acceleration", "cart_jerk"} <= set(report.violations)
    report = sf.Report()
    checker = sf.EefChecker(FR3, DT, report)
    checker.anchor(np.array([0.5, 0.0, 0.4]))
    speed = np.concatenate([np.linspace(0, 0.2, 200), np.full(50, 0.2), np.linspace(0.2, 0, 200)])
    for v in speed:
        checker.command(np.array([0, v * DT, 0, 0, 0, 0]))
    checker.gap()
    assert report.violations == {}
    for _ in range(450):  # y: 0.2 m (the ramp) + 0.45 m > 0.6 m + 1 cm
        checker.command(np.array([0, 0.001, 0, 0, 0, 0]))
    assert "workspace" in report.violations


def test_eef_core_adapter_builds_a_core_at_the_requested_rate():
    core = sf.make_eef_core(load_robot_limits("panda"), 0.05)
    assert core.dt == pytest.approx(0.05)


def test_short_fuzz_run_finds_no_violation():
    report = sf.run_fuzz(ticks=20_000, seed=0)  # ~20 s on one core
    assert report["ticks"] == 20_000 and len(report["ticks_per_family"]) >= 5
    assert report["total_violations"] == 0, sf.format_summary(report)


def test_fuzz_is_deterministic_for_a_seed_and_an_episode_reproduces():
    a, b = sf.run_fuzz(ticks=800, seed=1), sf.run_fuzz(ticks=800, seed=1)
    assert a["info"]["ticks_per_state"].get("running", 0) > 100  # the cores were really driven
    for rep in (a, b):
        rep.pop("elapsed_s"), rep.pop("ticks_per_s")
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
    one = sf.run_fuzz(seed=1, episode=0)  # what --seed 1 --episode 0 runs: the first episode, in full
    assert one["episodes"] == 1 and one["ticks"] == sf.Episode(1, 0, sf.Report()).n_ticks and "events" in one


def test_cli_smoke(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    code = cli.main(["safety-fuzz", "--ticks", "400", "--seed", "3", "--no-progress", "--json", str(out)])
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert code == (1 if data["total_violations"] else 0)
    assert data["ticks"] == 400 and data["seed"] == 3
    assert "ticks per scenario family" in text and "violations by kind" in text


# Episodes in which the fuzzer found real faults of earlier executor versions (issue 14): an estop
# during a disable undone by reset + start (seed 0, ep 1 and 18), a braking delta stream reversing
# (ep 14), a commanded tool path leaving the box (ep 10), a dry-run re-enable stepping back to the
# real arm (seed 1, ep 88), a joint-space path bulging out of the workspace box (seed 2026, ep 231), the
# continuation after a stall computed from an epoch-time float difference (0.2 us off: 1.14x the jerk limit
# in a 1 ms JTC segment; seed 2028, ep 114); the check's own model: a resync without a move (seed 2028, ep 94),
# a first command after a gap one jerk-limited step (4 urad) from the held one (seed 2029, ep 151).
@pytest.mark.parametrize("seed,episode", [(0, 1), (0, 10), (0, 14), (0, 18), (1, 88), (2026, 231), (2028, 94),
                                          (2028, 114), (2029, 151)])
def test_fuzz_found_regressions_stay_fixed(seed, episode):
    report = sf.run_fuzz(1_000_000, seed, episode=episode)
    assert report["total_violations"] == 0, sf.format_summary(report)


@pytest.mark.parametrize("episode", [3, 10])
def test_stalls_are_checked_and_a_step_back_after_one_is_caught(episode, monkeypatch):
    """Stalls: the core is not ticked for a while and the controller follows the last trajectory's stop.
    The executor continues from there (0 violations); one that continued from its own reference (the
    behaviour before issue 14's CI fix) is caught by the independent checks."""
    report = sf.run_fuzz(seed=1, episode=episode, cores=("joint",))
    assert sum(report["info"]["stalls"].values()) >= 2
    assert report["violations"] == {}, sf.format_summary(report)
    from vla_adapter_ros.control.safety import SafetyFilter

    monkeypatch.setattr(SafetyFilter, "follow_stop", lambda self, *args, **kwargs: None)
    report = sf.run_fuzz(seed=1, episode=episode, cores=("joint",))
    assert {"velocity", "acceleration", "jerk"} & set(report["violations"]), report["violations"]
