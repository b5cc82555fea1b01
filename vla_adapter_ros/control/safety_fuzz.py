"""``vla-adapter-ros safety-fuzz``: seeded, adversarial property test of the executor cores.

Random scenarios drive ``ExecutorCore`` (joint output) and ``EefDeltaCore`` (``output: eef_delta``)
tick by tick, and every command they emit is checked against *independent* hardware limits: the
tables below are typed in from Franka's datasheets (FR3, Panda/FER), never read from
``config/robots/*.yaml`` or ``RobotLimits``, so a wrong or loosened robot file, a bad margin or a bug
in how the cores derive their limits cannot hide a violation. The cores run with the bundled robot
files (what is deployed); only the checks are independent. The workspace box and the tool point
(FK: Franka DH table, flange 0.107 m, hand TCP 0.1034 m) are constants here too.

Joint output (stream of emitted ``Command``; a ``None`` tick = nothing sent = a gap):
  * ``non_finite``: any position/velocity/acceleration of any trajectory point not finite;
    ``timing``: time_from_start of the points not > 0 and increasing.
  * ``position``: every point's positions inside q_min..q_max (ratio |q - mid| / half range).
  * ``velocity``/``acceleration``/``jerk``: finite differences of the first point's positions at the
    control period dt (= core.dt). A segment starts at rest (padded with its first sample), so the
    ticks after enable, reset, resume, go_home and estop are checked like any other. At a gap the
    controller holds the last command: that zero-velocity sample is checked too.
  * ``restart_step``: the first position after a gap differs from the last one ever sent by more
    than 1 mrad (the controller still holds that one; smaller steps are checked by the finite differences
    from it, at rest), unless the scenario called ``core.resync()``
    since (the operator's statement that the controller was restarted where the arm is, e.g. after a
    hand-guided move). Not checked in dry run (nothing reaches a controller).
  * ``interp_*``: a JointTrajectoryController interpolates from command k-1's first point (position,
    velocity, acceleration) to command k's first point (at its time_from_start) with a quintic
    Hermite spline; sampled at 1 kHz its position, velocity, acceleration and jerk must be within
    limits (a reference whose declared v/a do not match its positions shows up here as jerk).
    A segment's first command is interpolated from rest at its own position.
  * Stalls (joint core, >= 2 points; their own generator, so other draws are unchanged): the core is not
    ticked for 1-79 periods while the controller follows the last message (first point, then its stop), the
    arm and the clock go on; those controller positions continue the finite-difference checks and the next
    command is checked against the controller's state then (``interp``), so a step back after a stall shows.
  * ``trajectory_end_moving``: with >= 2 points the last one must be at rest (|v|, |a| < 1e-9);
    ``points_*``: the quintic between consecutive points, sampled at 1 kHz, within limits.
  * ``workspace``: tool point of the emitted positions outside the box by > 1 cm (only in segments
    that started inside it; FK re-evaluated once the joints moved > 1 mrad in sum: error < 1.2 mm).
  * Info only (``forward_output``): a forward position controller holds each command for dt; that
    staircase sampled at 1 kHz is counted against the limits (breaks them unless dt = 1 ms).
Cartesian output (emitted ``delta`` per tick, velocity = delta / dt; a gap = zero velocity):
  * ``cart_velocity``/``cart_acceleration``/``cart_jerk`` (norm of the translation part) and
    ``cart_rot_*`` (rotation part), finite differences at dt, starting from rest;
  * ``workspace``: the deltas integrated from the FK of the measured joints at enable (not in dry
    run). The simulated arm tracks that integrated pose (one damped least-squares step per tick,
    clamped at the hard joint limits: info ``eef_arm`` counts the ticks where it is).
Both cores:
  * ``enable_gate``: RUNNING reached without ``enable`` since the last ``disable`` or since an
    ``estop`` that came while disabled; for EEF also a nonzero delta then, other than the braking
    right after ``disable`` (until the first zero delta, at most 1 s);
  * ``estop_motion``: motion while ESTOP is latched after the braking came to rest, or braking
    longer than 1 s; ``gripper_after_estop``: a gripper event while ESTOP is latched (incl. the
    tick that latches it);
  * ``exception``: any exception from a core method; ``insane_state``: state unusable after one.

Scenarios: one seeded ``numpy`` Generator per (seed, episode), so a violation reported as
``episode E tick K`` is reproduced by ``vla-adapter-ros safety-fuzz --seed S --episode E`` (same
``--robots``/``--cores``). Families (``FAMILIES``) weight the faults; each episode mixes them:
chunk streams (smooth, jumpy, Nyquist, out-of-range, NaN/inf rows; JOINT_POSITION, JOINT_DELTA,
EEF_DELTA), bad stamps/horizons/dims/dt, joint-state faults (noise, spikes, silence, future stamps,
wrong length, lagging or frozen arm), start states past the hard limits or in the margin zone,
random operator calls (incl. disable+enable in one tick, hand guiding + resync), dry run, both
robots, 250 Hz / 1 kHz (joint) and 20 Hz / 250 Hz (eef).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import dataclass

import numpy as np

from .chunk import EEF_DELTA, JOINT_DELTA, JOINT_POSITION, Chunk
from .eef_output import EefDeltaCore
from .executor_core import ExecutorCore, ExecutorState
from .kinematics import FrankaKinematics, axis_angle_to_matrix, rotation_error
from .limits import load_robot_limits


# ---- independent limits (Franka datasheets; units rad, rad/s, rad/s^2, rad/s^3, m, s) ------------
@dataclass(frozen=True)
class HardLimits:
    q_min: np.ndarray
    q_max: np.ndarray
    dq: np.ndarray
    ddq: np.ndarray
    dddq: np.ndarray
    cart: tuple  # v (m/s), w (rad/s), a (m/s^2), alpha (rad/s^2), jerk (m/s^3), rot. jerk (rad/s^3)


def _v(x) -> np.ndarray:
    return np.broadcast_to(np.asarray(x, dtype=float), (7,)).copy()


HARD = {
    "fr3": HardLimits(_v([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159]),
                      _v([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159]),
                      _v([2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26]), _v(10.0), _v(5000.0),
                      (3.0, 2.5, 9.0, 17.0, 4500.0, 8500.0)),
    "panda": HardLimits(_v([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
                        _v([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]),
                        _v([2.175] * 4 + [2.61] * 3), _v([15, 7.5, 10, 12.5, 15, 20, 20]),
                        _v([7500, 3750, 5000, 6250, 7500, 10000, 10000]),
                        (1.7, 2.5, 13.0, 25.0, 6500.0, 12500.0)),
}
WORKSPACE = (np.array([0.15, -0.6, 0.03]), np.array([0.85, 0.6, 0.9]))  # tool point box (m)
WORKSPACE_TOL = 0.01  # m
RESTART_TOL = 1e-3  # rad: a re-based start (smaller steps: the finite-difference checks from the held one)
REST_TOL = 1e-9
SAMPLE_DT = 1e-3  # controller rate (s)
ESTOP_BRAKE_S = 1.0
FAMILIES = ("smooth", "jumpy", "nyquist", "out_of_range", "bad_chunks", "sensor_faults", "state_machine",
            "start_outside")
BAD_DT = (0.0, -0.01, 1e-9, 1e38, math.nan)


def quintic(s0, s1, T: float, t: np.ndarray):
    """Quintic Hermite from s0 = (p, v, a) at 0 to s1 at T; (pos, vel, acc, jerk) at times t, (len(t), n)."""
    (p0, v0, a0), (p1, v1, a1) = s0, s1
    d = p1 - p0
    c3 = (20 * d - (8 * v1 + 12 * v0) * T - (3 * a0 - a1) * T ** 2) / (2 * T ** 3)
    c4 = (-30 * d + (14 * v1 + 16 * v0) * T + (3 * a0 - 2 * a1) * T ** 2) / (2 * T ** 4)
    c5 = (12 * d - 6 * (v1 + v0) * T - (a0 - a1) * T ** 2) / (2 * T ** 5)
    t = np.asarray(t, dtype=float)[:, None]
    pos = p0 + t * (v0 + t * (a0 / 2 + t * (c3 + t * (c4 + t * c5))))
    vel = v0 + t * (a0 + t * (3 * c3 + t * (4 * c4 + t * 5 * c5)))
    acc = a0 + t * (6 * c3 + t * (12 * c4 + t * 20 * c5))
    jerk = 6 * c3 + t * (24 * c4 + t * 60 * c5)
    return pos, vel, acc, jerk


def box_distance(p: np.ndarray) -> float:
    """Distance (m) of a point outside the workspace box (0 inside)."""
    return float(np.linalg.norm(np.maximum(WORKSPACE[0] - p, 0.0) + np.maximum(p - WORKSPACE[1], 0.0)))


class Report:
    """Violations by kind: count (at most one per kind and command), worst ratio value/limit, first and
    worst example (with ``ctx``: seed, episode, tick, ...). ``keep_all`` also lists every one."""

    def __init__(self, seed: int = 0, keep_all: bool = False):
        self.ctx: dict = {"seed": seed, "episode": None, "tick": None}
        self.violations: dict = {}
        self.info: dict = {"forward_output": {"commands": 0, "over": {"velocity": 0, "acceleration": 0, "jerk": 0},
                                              "worst_ratio": {"velocity": 0.0, "acceleration": 0.0, "jerk": 0.0}}}
        self.all: list | None = [] if keep_all else None

    def add(self, kind: str, value: float, limit, desc: str) -> None:
        ratio = None if not limit else float(value) / float(limit)
        ex = dict(self.ctx, kind=kind, value=float(value), limit=limit, ratio=ratio, desc=desc)
        v = self.violations.setdefault(kind, {"count": 0, "worst_ratio": ratio, "first": ex, "worst": ex,
                                              "episodes": []})
        v["count"] += 1
        if len(v["episodes"]) < 50 and self.ctx["episode"] not in v["episodes"]:
            v["episodes"].append(self.ctx["episode"])
        if ratio is not None and (v["worst_ratio"] is None or not ratio <= v["worst_ratio"]):
            v["worst_ratio"], v["worst"] = ratio, ex
        if self.all is not None and len(self.all) < 20000:
            self.all.append(ex)

    def bump(self, name: str, key: str) -> None:
        """Info counter ``info[name][key] += 1``."""
        counters = self.info.setdefault(name, {})
        counters[key] = counters.get(key, 0) + 1

    def limit(self, kind: str, values: np.ndarray, limits: np.ndarray, what: str = "") -> None:
        """Flag ``kind`` if any |value| (columns = joints, rows = samples) exceeds its limit by > 1e-9 relative."""
        ratios = np.abs(values) / limits
        if ratios.max() <= 1.0 + 1e-9:
            return
        ratios = np.atleast_2d(ratios)
        i = int(np.argmax(ratios))
        j = i % ratios.shape[1]
        value, lim = abs(float(np.atleast_2d(values).flat[i])), float(np.broadcast_to(limits, ratios.shape[1:])[j])
        self.add(kind, value, lim, f"{what}joint {j + 1}: {value:.6g} > {lim:.6g}")


class JointChecker:
    """Consumes the joint Commands a core emits (``command``) and its silent ticks (``gap``)."""

    def __init__(self, hard: HardLimits, dt: float, report: Report, kinematics: FrankaKinematics | None = None):
        self.h, self.dt, self.r = hard, float(dt), report
        self.kin = kinematics or FrankaKinematics()
        self.mid, self.half = (hard.q_max + hard.q_min) / 2, (hard.q_max - hard.q_min) / 2
        self.n_sub = max(1, int(round(self.dt / SAMPLE_DT)))
        self.held = None  # last position ever sent (what the controller holds)
        self.last = None  # the last command (its trajectory is what the controller follows during a stall)
        self.hist = None  # last 3 positions of the current segment; None = in a gap
        self.prev = None  # (p, v, a) of the last command's first point
        self.stair = None
        self.ws_armed, self._fk_q, self._fk_p = False, None, None
        self._basis: dict = {}
        h = 1.0 / SAMPLE_DT
        # rows: 1 kHz velocity, acceleration, jerk of the last n_sub samples of a staircase of n_sub + 3 samples
        d1 = np.diff(np.eye(self.n_sub + 3), axis=0) * h
        d2 = np.diff(d1, axis=0) * h
        n = self.n_sub
        self._stair_op = np.vstack([d1[-n:], d2[-n:], np.diff(d2, axis=0)[-n:] * h])
        self._stair_lim = np.vstack([np.tile(x, (n, 1)) for x in (hard.dq, hard.ddq, hard.dddq)])

    def stall(self, m: int) -> list:
        """The core is not ticked for ``m`` periods (a stalled process): the controller goes on with the last
        message, its first point and then the stop to rest its later points describe (quintics between them).
        Its positions at those instants continue the finite-difference history, and the next command is checked
        against the controller's state then (``interp``) like any other. Returns the positions."""
        last = self.last
        if last is None or self.hist is None or len(last.points) < 2:
            return []
        pts = [(np.asarray(pt.positions, float), np.asarray(pt.velocities, float), np.asarray(pt.accelerations, float))
               for pt in last.points]
        tfs = [float(pt.time_from_start) for pt in last.points]
        states = []
        for j in range(1, m + 1):
            tau = (j + 1) * self.dt  # s after the last command was sent; its first point is due at tfs[0] = dt
            i = next((i for i in range(len(tfs) - 1) if tau < tfs[i + 1]), None)
            if i is None:
                states.append((pts[-1][0], 0.0 * pts[-1][0], 0.0 * pts[-1][0]))
                continue
            pos, vel, acc, _ = quintic(pts[i], pts[i + 1], tfs[i + 1] - tfs[i], [max(tau - tfs[i], 0.0)])
            states.append((pos[0], vel[0], acc[0]))
        for q, _, _ in states:
            self._fd(q, "stall (the controller follows the last trajectory): ")
            self._workspace(q, False)
        self.prev, self.held = states[-1], states[-1][0]
        self.stair = np.array(self.hist)
        return [q for q, _, _ in states]

    def gap(self) -> None:
        if self.hist is not None:
            self._fd(self.hist[-1], "gap (controller holds the last command): ")
        self.hist = None

    def command(self, cmd, allow_restart: bool = False) -> None:
        pts = cmd.points
        arrays = [cmd.positions, cmd.velocities, cmd.accelerations]
        arrays += [x for pt in pts for x in (pt.positions, pt.velocities, pt.accelerations)]
        if not np.isfinite(np.concatenate([np.ravel(x) for x in arrays]).astype(float)).all():
            self.r.add("non_finite", 1, None, "non-finite value in the command")
            self.hist = None
            return
        tfs = [float(pt.time_from_start) for pt in pts]
        if not (tfs and tfs[0] > 0 and all(b > a for a, b in zip(tfs, tfs[1:]))):
            self.r.add("timing", 1, None, f"time_from_start {tfs} not > 0 and increasing")
            tfs = None
        p = np.array(cmd.positions, dtype=float)
        first = self.hist is None
        if first and self.held is not None and not allow_restart:
            # the controller holds the last command at rest: the stream continues from there
            step = float(np.max(np.abs(p - self.held)))
            if step > RESTART_TOL:
                self.r.add("restart_step", step, RESTART_TOL, f"first command after a gap is {step:.3g} rad "
                           "from the last one sent (held by the controller)")
            h = self.held
            self.hist, self.prev, self.stair = [h, h, h], (h, 0.0 * h, 0.0 * h), np.array([h, h, h])
            self._fd(p, "first command after a gap (from the held one, at rest): ")
        elif first:
            self.hist, self.prev, self.stair = [p, p, p], (p, 0.0 * p, 0.0 * p), np.array([p, p, p])
        else:
            self._fd(p)
        self.r.limit("position", np.array([p] + [pt.positions for pt in pts], dtype=float) - self.mid, self.half,
                     "|q - (q_min + q_max) / 2| ")
        if tfs is not None:
            s1 = (np.asarray(pts[0].positions, float), np.asarray(pts[0].velocities, float),
                  np.asarray(pts[0].accelerations, float))
            self._spline("interp", self.prev, s1, tfs[0])
            for a, b, t0, t1 in zip(pts, pts[1:], tfs, tfs[1:]):
                self._spline("points", (a.positions, a.velocities, a.accelerations),
                             (b.positions, b.velocities, b.accelerations), t1 - t0)
            if len(pts) >= 2:
                rest = max(float(np.max(np.abs(pts[-1].velocities))), float(np.max(np.abs(pts[-1].accelerations))))
                if rest >= REST_TOL:
                    self.r.add("trajectory_end_moving", rest, REST_TOL, f"last of {len(pts)} points not at rest")
            self.prev = s1
        self._forward(p)
        self._workspace(p, first)
        self.held = p
        self.last = cmd if tfs is not None else None

    def _fd(self, p: np.ndarray, what: str = "") -> None:
        h0, h1, h2 = self.hist
        dt = self.dt
        self.r.limit("velocity", (p - h2) / dt, self.h.dq, what)
        self.r.limit("acceleration", (p - 2 * h2 + h1) / dt ** 2, self.h.ddq, what)
        self.r.limit("jerk", (p - 3 * h2 + 3 * h1 - h0) / dt ** 3, self.h.dddq, what)
        self.hist = [h1, h2, p]

    def _spline(self, prefix: str, s0, s1, T: float) -> None:
        """Quintic from s0 to s1 over T sampled at 1 kHz: one matrix product (basis cached per T)."""
        basis = self._basis.get(T)
        if basis is None:
            if len(self._basis) > 64:
                self._basis.clear()
            t = np.linspace(0.0, T, max(1, int(round(T / SAMPLE_DT))) + 1)
            e = np.eye(6)  # the spline is linear in (p0, v0, a0, p1, v1, a1): its basis, one column each
            parts = quintic((e[0], e[1], e[2]), (e[3], e[4], e[5]), T, t)
            m = len(t)
            offset = np.vstack([np.tile(self.mid, (m, 1)), np.zeros((3 * m, 7))])
            scale = np.vstack([np.tile(x, (m, 1)) for x in (self.half, self.h.dq, self.h.ddq, self.h.dddq)])
            basis = self._basis[T] = (np.vstack(parts), offset, scale, m)
        matrix, offset, scale, m = basis
        out = matrix @ np.array([*s0, *s1], dtype=float) - offset
        if (np.abs(out) / scale).max() <= 1.0 + 1e-9:
            return
        what = f"{prefix} quintic over {T * 1e3:.3g} ms, "
        for i, name in enumerate(("position", "velocity", "acceleration", "jerk")):
            self.r.limit(f"{prefix}_{name}", out[i * m:(i + 1) * m], scale[i * m], what + "|q - mid| " * (i == 0))

    def _forward(self, p: np.ndarray) -> None:
        """Info: a forward position controller holds p for dt; FD of that staircase at 1 kHz."""
        s = np.vstack([self.stair, np.repeat(p[None], self.n_sub, axis=0)])
        fo = self.r.info["forward_output"]
        fo["commands"] += 1
        ratios = np.abs(self._stair_op @ s) / self._stair_lim
        for i, name in enumerate(("velocity", "acceleration", "jerk")):
            ratio = float(ratios[i * self.n_sub:(i + 1) * self.n_sub].max())
            fo["over"][name] += ratio > 1.0 + 1e-9
            fo["worst_ratio"][name] = max(fo["worst_ratio"][name], ratio)
        self.stair = s[-3:]

    def _workspace(self, p: np.ndarray, first: bool) -> None:
        if self._fk_q is None or np.sum(np.abs(p - self._fk_q)) > 1e-3:
            self._fk_q, self._fk_p = p, self.kin.fk_position(p)
        d = box_distance(self._fk_p)
        if first:
            self.ws_armed = d == 0.0
        elif self.ws_armed and d > WORKSPACE_TOL:
            self.r.add("workspace", d, WORKSPACE_TOL, f"tool point {np.round(self._fk_p, 3).tolist()} {d:.3f} m "
                       "outside the box")


class EefChecker:
    """Consumes the EefCommand deltas a core emits (``command``) and its silent ticks (``gap``)."""

    def __init__(self, hard: HardLimits, dt: float, report: Report):
        self.c, self.dt, self.r = hard.cart, float(dt), report
        self.vel, self.acc, self.active = np.zeros(6), np.zeros(6), False
        self.tool, self.ws_armed = None, False

    def anchor(self, tool_point: np.ndarray) -> None:
        """Tool point (m) from the FK of the measured joints at enable: the workspace integration restarts."""
        self.tool, self.ws_armed = np.array(tool_point, dtype=float), box_distance(tool_point) == 0.0

    def gap(self) -> None:
        if self.active:
            self._fd(np.zeros(6), "gap (nothing sent = zero velocity): ")
        self.vel, self.acc, self.active = np.zeros(6), np.zeros(6), False

    def command(self, delta) -> None:
        d = np.asarray(delta, dtype=float).reshape(-1)
        if d.shape != (6,) or not np.all(np.isfinite(d)):
            self.r.add("non_finite", 1, None, f"delta {d.tolist()} not 6 finite values")
            return
        self.active = True
        self._fd(d / self.dt)
        if self.tool is not None:
            self.tool = self.tool + d[:3]
            dist = box_distance(self.tool)
            if self.ws_armed and dist > WORKSPACE_TOL:
                self.r.add("workspace", dist, WORKSPACE_TOL,
                           f"integrated tool point {np.round(self.tool, 3).tolist()} {dist:.3f} m outside the box")

    def _fd(self, vel: np.ndarray, what: str = "") -> None:
        acc = (vel - self.vel) / self.dt
        jerk = (acc - self.acc) / self.dt
        for k, (name, x) in enumerate((("velocity", vel), ("acceleration", acc), ("jerk", jerk))):
            for kind, n, lim, unit in ((f"cart_{name}", np.linalg.norm(x[:3]), self.c[2 * k], "m"),
                                       (f"cart_rot_{name}", np.linalg.norm(x[3:]), self.c[2 * k + 1], "rad")):
                if n > lim * (1 + 1e-9):
                    self.r.add(kind, n, lim, f"{what}{name} {n:.4g} {unit}{('/s', '/s^2', '/s^3')[k]} > {lim:g}")
        self.vel, self.acc = vel, acc


def make_eef_core(limits, dt: float, **kw):
    """EefDeltaCore across its signature change: ``(limits, dt=...)`` (new) or ``(dt, joint_names)`` (old)."""
    try:
        return EefDeltaCore(limits, dt=dt, **kw)
    except TypeError:
        return EefDeltaCore(dt, limits.joint_names, **kw)


_LIMITS: dict = {}


class Episode:
    """One seeded scenario: draws its configuration, then runs ``n_ticks`` control ticks."""

    def __init__(self, seed: int, index: int, report: Report, robots=("fr3", "panda"), cores=("joint", "eef")):
        rng = self.rng = np.random.default_rng([seed, index])
        u = rng.uniform
        self.index, self.r = index, report
        self.family = FAMILIES[rng.integers(len(FAMILIES))]
        self.robot = robots[rng.integers(len(robots))]
        cores = [c for c in ("joint", "eef") if c in cores]
        self.kind = cores[-1] if rng.random() < 0.3 else cores[0]
        self.rate = int(rng.choice([250, 1000] if self.kind == "joint" else [20, 250]))
        self.dt = 1.0 / self.rate
        self.n_ticks = int(rng.integers(300, 3000))
        self.t0 = float(rng.choice([0.0, 100.0, 1.7e9]))
        self.dry_run = bool(rng.random() < 0.15)
        fam = self.family
        self.p_sensible, self.p_chaos = u(0.02, 0.2), (u(0.01, 0.05) if fam == "state_machine" else u(0.0, 0.004))
        self.p_bad = u(0.2, 0.6) if fam == "bad_chunks" else u(0.0, 0.05)
        self.p_nan = u(0.1, 0.3) if fam == "bad_chunks" else u(0.0, 0.03)
        style_w = {"smooth": 4.0, "jumpy": 0.3, "nyquist": 0.3, "out_of_range": 0.3}
        if fam in style_w:
            style_w[fam] += 4.0
        self.styles, w = list(style_w), np.array(list(style_w.values()))
        self.style_p = w / w.sum()
        faulty = fam == "sensor_faults"
        self.js_mode = str(rng.choice(["perfect", "noisy", "lag", "frozen"], p=[0.4, 0.3, 0.25, 0.05]
                                      if not faulty else [0.1, 0.3, 0.4, 0.2]))
        self.noise = u(1e-5, 1e-3) if self.js_mode == "noisy" or faulty else 0.0
        self.lag = 1.0 - math.exp(-self.dt / u(0.005, 0.05))
        self.freeze_at = int(rng.integers(0, self.n_ticks)) if self.js_mode == "frozen" else -1
        scale = 1.0 if faulty else 0.1
        self.p_fault = {k: scale * p for k, p in (("drop", 0.05), ("spike", 0.01), ("silence", 0.003),
                                                   ("future", 0.002), ("partial", 0.005), ("nan", 0.003))}
        self.silent_until = -1
        limits = _LIMITS.get(self.robot) or _LIMITS.setdefault(self.robot, load_robot_limits(self.robot))
        self.hard = HARD[self.robot]
        self.names = list(limits.joint_names)
        q = np.array(limits.start_pose, dtype=float)
        if fam == "start_outside" or rng.random() < 0.05:
            j, side = int(rng.integers(7)), int(rng.integers(2))
            edge = (self.hard.q_min, self.hard.q_max)[side][j]
            past = rng.choice([10 ** u(-4, math.log10(0.3)), -u(0.0, 0.12)])  # > 0: past the hard limit
            q[j] = edge + (past if side else -past)
            if self.robot == "fr3" and rng.random() < 0.2:
                q[5] = 0.3  # a valid Panda pose, 0.24 rad below FR3's q6 limit
        elif rng.random() < 0.3:
            q = q + rng.normal(0, 0.05, 7)
        self.q_arm = q
        self.kin = FrankaKinematics()
        kw = {"dry_run": self.dry_run}
        if self.kind == "joint":
            blend = str(rng.choice(["replace", "crossfade", "ensemble"]))
            self.core = ExecutorCore(limits, dt=self.dt, blend_mode=blend, trajectory_points=int(rng.integers(1, 4)),
                                     require_start_pose=bool(rng.random() < 0.8), **kw)
            self.check = JointChecker(self.hard, self.core.dt, report, self.kin)
            self.row_dt = float(rng.choice([self.dt, 0.02, 0.05, 0.1]))
            self.space_p = [0.55, 0.35, 0.1]
        else:
            self.core = make_eef_core(limits, self.dt, **kw)
            self.check = EefChecker(self.hard, self.core.dt, report)
            self.row_dt, self.space_p = self.core.dt, [0.05, 0.0, 0.95]
        self.horizon = int(rng.integers(4, 25))
        self.chunk_every = max(1, int(round(u(0.3, 1.2) * self.horizon * self.row_dt / self.dt)))
        self.max_latency = u(0.0, 0.2)
        self.amp = rng.uniform(0, u(0.02, 0.3), 7)
        self.vamp = np.concatenate([rng.uniform(0, 0.15, 3), rng.uniform(0, 0.5, 3)])
        self.w, self.phase = 2 * math.pi * u(0.1, 1.5), rng.uniform(0, 2 * math.pi, 7)
        self.center, self.tc = q.copy(), 0.0
        self.grip, self.use_grip = 0.0, rng.random() < 0.5
        self.last_stamp, self.next_chunk, self.seq = self.t0, 1, 0
        # scenario bookkeeping for the checks
        self.gate_open, self.latched, self.estop_tick, self.estop_rest = False, False, 0, False
        self.gate_tick, self.gate_rest, self.last_moving = 0, True, False
        self.moved, self.resynced, self.pending_move, self.prev_state = False, False, False, None
        self.k, self.now, self.last_sent, self.follow = 0, self.t0, None, None
        # stalls (the process is not scheduled for a while): drawn from a generator of their own
        self.stall_rng = np.random.default_rng([seed, index, 0x57A11])
        self.p_stall = float(self.stall_rng.uniform(0.0, 0.02)) if self.stall_rng.random() < 0.4 else 0.0
        self.t_shift = 0.0  # s the clock ran ahead of k * dt during stalls

    # ---- calls into the core ---------------------------------------------------------------------
    def call(self, name: str, *args):
        try:
            return getattr(self.core, name)(*args)
        except Exception as exc:  # every exception from a core method is a finding
            self.r.add("exception", 1, None, f"{name}: {type(exc).__name__}: {exc}")
            try:
                self.core.status(self.now)
                sane = isinstance(self.core.state, ExecutorState)
            except Exception as exc2:
                sane = False
                exc = exc2
            if not sane:
                self.r.add("insane_state", 1, None, f"after {name}: state {getattr(self.core, 'state', None)} ({exc})")
            return None

    def op(self, name: str) -> None:
        if "+" in name:  # several calls within one tick, e.g. "disable+enable"
            for part in name.split("+"):
                self.op(part)
            return
        if name == "move_arm":  # hand guiding, done once the core is disabled (see operate)
            self.pending_move = True
            return
        if name == "resync" and not hasattr(self.core, "resync"):
            return self.r.bump("calls", "resync: missing")
        before = self.core.state
        res = self.call(name, *((self.now,) if name in ("enable", "start", "reset") else ()))
        ok = isinstance(res, tuple) and bool(res[0])
        self.r.bump("calls", f"{name}: {'ok' if ok else 'refused'}")
        if name == "resync":
            self.resynced = self.resynced or (ok and before == ExecutorState.DISABLED)
        elif name == "enable" and ok:
            self.gate_open = True
            if self.kind == "eef" and not self.dry_run:  # dry run: nothing moves, no workspace to check
                pose = self.kin.fk(self.q_arm)
                self.follow = (pose[:3, 3].copy(), pose[:3, :3].copy())
                self.check.anchor(pose[:3, 3])
        elif name == "disable" and ok:
            self.gate_open, self.gate_tick, self.gate_rest = False, self.k, not self.last_moving
        elif name == "estop" and before == ExecutorState.DISABLED:
            self.gate_open = False
        self.observe()
        if self.r.all is not None:
            self.r.all.append({"tick": self.k, "call": name, "result": str(res)[:120], "state": self.r.ctx["state"]})

    def observe(self) -> None:
        s = self.core.state
        self.r.ctx["state"] = str(getattr(s, "value", s))
        if s == ExecutorState.ESTOP and not self.latched:
            self.latched, self.estop_tick, self.estop_rest = True, self.k, False
        elif s != ExecutorState.ESTOP:
            self.latched = False
        if s == ExecutorState.RUNNING and self.prev_state != ExecutorState.RUNNING:
            if not self.gate_open:  # reported once; the motion that follows is not counted again
                self.r.add("enable_gate", 1, None, f"reached running from {getattr(self.prev_state, 'value', None)} "
                           "without enable since the last disable / estop while disabled")
                self.gate_open = True
            self.center, self.tc = (self.q_arm if self.last_sent is None else self.last_sent).copy(), self.now
        self.prev_state = s

    # ---- the world: arm, joint states, operator, policy ------------------------------------------
    def move_arm(self) -> None:
        """The arm follows what was sent (held through gaps; not after a hand-guided move): the joint
        command, or the integrated tool pose of the EEF deltas (one damped least-squares step per tick)."""
        held = self.follow
        if held is None or self.dry_run or 0 <= self.freeze_at <= self.k:
            return
        if self.kind == "eef":
            f = np.array(self.kin.frames(self.q_arm))
            z, r = f[:7, :3, 2], f[7, :3, 3] - f[:7, :3, 3]  # joint axes, joint origins -> tool point
            jac = np.vstack([np.cross(z, r).T, z.T])  # geometric Jacobian [v; w]
            err = np.concatenate([held[0] - f[7, :3, 3], rotation_error(held[1], f[7, :3, :3])])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), err)
            gain = self.lag if self.js_mode == "lag" else 1.0
            q = self.q_arm + gain * dq
            self.q_arm = np.clip(q, np.minimum(self.hard.q_min, self.q_arm), np.maximum(self.hard.q_max, self.q_arm))
            if np.any(self.q_arm != q):
                self.r.bump("eef_arm", "ticks at a joint limit")
        elif self.js_mode == "lag":
            self.q_arm = self.q_arm + self.lag * (held - self.q_arm)
        else:
            self.q_arm = held.copy()

    def publish(self) -> None:
        rng, p = self.rng, self.p_fault
        u = rng.random(7)  # one draw per fault kind
        if self.k < self.silent_until or u[0] < p["drop"]:
            return
        if u[1] < p["silence"]:
            self.silent_until = self.k + int(rng.uniform(0.05, 0.5) / self.dt)
            return
        q, stamp = self.q_arm + (rng.normal(0.0, self.noise, 7) if self.noise else 0.0), self.now
        if u[2] < p["spike"]:
            q[rng.integers(7)] += rng.choice([-0.05, 0.05])
        if u[3] < p["nan"]:
            q[rng.integers(7)] = np.nan
        if u[4] < p["partial"]:
            q = q[:6] if u[6] < 0.5 else np.append(q, 0.0)
        if u[5] < p["future"]:
            stamp = self.now + rng.uniform(0.05, 1.0)
            self.silent_until = self.k + int(rng.uniform(0.1, 1.5) / self.dt)
        self.call("on_joint_state", q, stamp)

    def operate(self) -> None:
        rng, s = self.rng, self.core.state
        if self.pending_move and s == ExecutorState.DISABLED:
            self.pending_move = False
            lo, hi = np.minimum(self.hard.q_min, self.q_arm), np.maximum(self.hard.q_max, self.q_arm)
            self.q_arm = np.clip(self.q_arm + rng.normal(0, 0.1, 7) * (rng.random(7) < 0.4), lo, hi)
            self.moved, self.follow = True, None
            if self.r.all is not None:
                self.r.all.append({"tick": self.k, "call": "move_arm (hand guiding)", "state": self.r.ctx["state"]})
            if rng.random() < 0.7:
                self.op("resync")
        if self.k == 1 or rng.random() < self.p_sensible:
            sensible = {ExecutorState.DISABLED: ["enable"], ExecutorState.IDLE: ["start", "go_home"],
                        ExecutorState.ESTOP: ["reset"], ExecutorState.PAUSED: ["resume"]}.get(s, [])
            for name in sensible:
                self.op(name)
                if self.core.state != s:
                    break
        if rng.random() < self.p_chaos:
            self.op(str(rng.choice(["enable", "disable", "estop", "pause", "resume", "reset", "go_home", "start",
                                    "stop", "disable+enable", "resync", "move_arm", "disable+estop+reset+start",
                                    "estop+reset+start"],
                                   p=[.1, .1, .06, .08, .08, .08, .06, .08, .08, .08, .06, .08, .03, .03])))

    def target(self, t: np.ndarray) -> np.ndarray:
        s = self.w * (t[:, None] - self.tc)
        return self.center + self.amp * (np.sin(s + self.phase) - np.sin(self.phase))

    def chunk(self) -> Chunk:
        rng, H, dt = self.rng, self.horizon, self.row_dt
        space = int(rng.choice([JOINT_POSITION, JOINT_DELTA, EEF_DELTA], p=self.space_p))
        style = str(rng.choice(self.styles, p=self.style_p))
        stamp = self.now - self.max_latency * rng.uniform(0.8, 1.0)
        t = stamp + dt * np.arange(H)
        if space == EEF_DELTA and self.kind == "joint":
            H, t = min(H, 8), t[:8]  # IK: ~1 ms per row
        if space == JOINT_POSITION:
            rows = self.target(t)
        elif space == JOINT_DELTA:
            rows = np.diff(self.target(np.append(t, t[-1] + dt)), axis=0)  # row i: the motion over [t_i, t_i + dt]
        else:
            rows = self.vamp * np.sin(self.w * (t[:, None] - self.tc) + self.phase[:6]) * dt
        r, j, sign = int(rng.integers(H)), int(rng.integers(rows.shape[1])), rng.choice([-1.0, 1.0])
        if style == "jumpy":
            rows[r:, j] += sign * rng.uniform(0.02, 0.5) * (0.1 if space == EEF_DELTA else 1.0)
        elif style == "nyquist":
            rows += np.where(np.arange(H) % 2, 1.0, -1.0)[:, None] * rng.uniform(1e-3, 0.05, rows.shape[1])
        elif style == "out_of_range":
            if space == JOINT_POSITION:
                rows[r:, j] = (self.hard.q_max if sign > 0 else self.hard.q_min)[j] + sign * rng.uniform(0, 0.5)
            else:
                rows[r, j] += sign * rng.uniform(0.2, 2.0)
        if rng.random() < self.p_nan:
            rows[rng.integers(H), rng.integers(rows.shape[1])] = rng.choice([np.nan, np.inf, -np.inf])
        grip = None
        if self.use_grip:
            if rng.random() < 0.2:
                self.grip = 1.0 - self.grip
            grip = np.clip(self.grip + rng.normal(0, 0.1, H), 0, 1)
        if rng.random() < self.p_bad:
            bad = str(rng.choice(["horizon", "dims", "dt", "stale", "future", "reordered", "duplicate", "gripper"]))
            if bad == "horizon":
                n = int(rng.choice([0, 1, 300] if space != EEF_DELTA or self.kind == "eef" else [0, 1]))
                rows = np.resize(rows, (n, rows.shape[1]))
                grip = None if grip is None or n == 0 else np.resize(grip, n)
            elif bad == "dims":
                rows = rows[:, :-1] if rng.random() < 0.5 else np.hstack([rows, rows[:, :1]])
            elif bad == "dt":
                dt = float(rng.choice(BAD_DT))
            elif bad == "gripper":
                grip = np.full(max(H - 1, 1), rng.choice([0.5, np.nan]))
            else:
                stamp = {"stale": self.now - rng.uniform(1.0, 5.0), "future": self.now + rng.uniform(0.01, 2.0),
                         "reordered": self.last_stamp - rng.uniform(0.0, 0.2), "duplicate": self.last_stamp}[bad]
        self.seq += 1
        names = [] if rng.random() < 0.5 or space == EEF_DELTA else self.names
        return Chunk(float(stamp), dt, space, names, rows, grip, self.seq)

    # ---- one tick and the episode ------------------------------------------------------------------
    def stall(self, m: int) -> None:
        """No tick for m periods (joint core, trajectories with a stop): the controller, the arm and the clock
        go on; the next tick is late by m periods."""
        if self.kind != "joint" or self.core.trajectory_points < 2 or self.last_sent is None:
            return
        path = self.check.stall(m)
        if not path:
            return
        self.t_shift += m * self.dt
        self.r.bump("stalls", f"{'1-9' if m < 10 else '10-79'} periods")
        if self.follow is not None:
            self.follow = path[-1]  # the arm follows the controller (held, lagging or frozen as before)
            self.last_sent = path[-1]

    def step(self) -> None:
        if self.p_stall and self.stall_rng.random() < self.p_stall:
            self.stall(int(self.stall_rng.integers(1, 80)))
        self.now = self.t0 + self.k * self.dt + self.t_shift
        self.r.ctx.update(tick=self.k, t=self.now, state=str(getattr(self.core.state, "value", self.core.state)))
        self.move_arm()
        self.publish()
        self.operate()
        if self.k >= self.next_chunk:
            chunk = self.chunk()
            res = self.call("on_chunk", chunk, self.now)
            if self.r.all is not None:
                self.r.all.append({"tick": self.k, "chunk": f"space {chunk.action_space} shape "
                                   f"{np.shape(chunk.actions)} dt {chunk.dt} age {self.now - chunk.stamp:.3f}",
                                   "result": None if res is None else (res.accepted, res.reason)})
            accepted = res is not None and res.accepted
            self.last_stamp = max(self.last_stamp, chunk.stamp) if accepted else self.last_stamp
            self.r.bump("chunks", "accepted" if accepted else "rejected")
            self.next_chunk = self.k + max(1, int(self.chunk_every * self.rng.uniform(0.7, 1.3)))
        latched_before = self.latched
        cmd = self.call("tick", self.now)
        self.observe()
        self.r.bump("ticks_per_state", self.r.ctx["state"])
        if cmd is None:
            self.check.gap()
            self.gate_rest, self.last_moving = True, False
            return
        if cmd.gripper_event is not None and (latched_before or self.latched):
            self.r.add("gripper_after_estop", 1, None, f"gripper event {cmd.gripper_event} while estop latched")
        if self.kind == "joint":
            p = np.asarray(cmd.positions, dtype=float)
            moving = self.last_sent is not None and p.shape == self.last_sent.shape and \
                float(np.max(np.abs(p - self.last_sent))) > REST_TOL
            # after a resync the operator has said the controller holds the arm's measured position: the next
            # enable starts there (a step from the last command sent if the controller was not in fact restarted)
            self.check.command(cmd, allow_restart=self.dry_run or self.resynced)
            self.last_sent = self.follow = p
        else:
            d = np.asarray(cmd.delta, dtype=float)
            moving = bool(np.any(d != 0.0))
            braking_s = (self.k - self.gate_tick) * self.dt
            if moving and not self.gate_open and (self.gate_rest or braking_s > ESTOP_BRAKE_S):
                self.r.add("enable_gate", 1, None, "nonzero delta without enable since the last disable / estop "
                           f"while disabled ({'after coming to rest' if self.gate_rest else f'{braking_s:.3f} s'})")
            self.gate_rest = self.gate_rest or not moving
            self.check.command(d)
            if self.follow is not None and d.shape == (6,) and np.all(np.isfinite(d)) and not self.dry_run:
                self.follow = (self.follow[0] + d[:3], axis_angle_to_matrix(d[3:]) @ self.follow[1])
        self.moved = self.resynced = False
        self.last_moving = moving
        if self.core.state == ExecutorState.DISABLED:  # that was the last command: the stream ends here
            self.check.gap()
        if self.latched:
            braking_s = (self.k - self.estop_tick) * self.dt
            if moving and (self.estop_rest or braking_s > ESTOP_BRAKE_S):
                self.r.add("estop_motion", braking_s, ESTOP_BRAKE_S if not self.estop_rest else None,
                           f"moving {braking_s:.3f} s after the estop" + (" after coming to rest" * self.estop_rest))
            self.estop_rest = self.estop_rest or not moving

    def run(self, max_ticks: int | None = None) -> int:
        n = self.n_ticks if max_ticks is None else min(self.n_ticks, max_ticks)
        self.r.ctx.update(episode=self.index, family=self.family, robot=self.robot, core=self.kind, rate_hz=self.rate)
        for self.k in range(n):
            self.step()
        return n


def run_fuzz(ticks: int = 1_000_000, seed: int = 0, robots=("fr3", "panda"), cores=("joint", "eef"),
             episode: int | None = None, progress: bool = False) -> dict:
    """Run episodes 0, 1, ... until ``ticks`` ticks (the last one cut short), or only ``episode`` (in
    full). Returns the report dict (see ``format_summary``)."""
    report = Report(seed, keep_all=episode is not None)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=ticks if episode is None else None, unit="tick", smoothing=0.05)
    families, configs, done, episodes = {}, {}, 0, []
    start = time.perf_counter()
    indices = [episode] if episode is not None else itertools.count()
    for index in indices:
        if episode is None and done >= ticks:
            break
        ep = Episode(seed, index, report, tuple(robots), tuple(cores))
        n = ep.run(None if episode is not None else ticks - done)
        done += n
        episodes.append(index)
        families[ep.family] = families.get(ep.family, 0) + n
        key = f"{ep.kind} {ep.robot} {ep.rate}Hz{' dry_run' if ep.dry_run else ''}"
        configs[key] = configs.get(key, 0) + n
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    out = {"seed": seed, "ticks": done, "episodes": len(episodes), "elapsed_s": round(elapsed, 3),
           "ticks_per_s": round(done / max(elapsed, 1e-9), 1), "robots": list(robots), "cores": list(cores),
           "ticks_per_family": dict(sorted(families.items())), "ticks_per_config": dict(sorted(configs.items())),
           "violations": dict(sorted(report.violations.items())),
           "total_violations": sum(v["count"] for v in report.violations.values()), "info": report.info}
    if report.all is not None:
        out["events"] = report.all
    return out


def format_summary(rep: dict) -> str:
    lines = [f"safety-fuzz: seed {rep['seed']}, {rep['ticks']} ticks in {rep['episodes']} episode(s), "
             f"{rep['elapsed_s']:.1f} s ({rep['ticks_per_s']:.0f} ticks/s)", "ticks per scenario family:"]
    lines += [f"  {k:<16}{v:>10}" for k, v in rep["ticks_per_family"].items()]
    lines.append("ticks per core / robot / rate:")
    lines += [f"  {k:<28}{v:>10}" for k, v in rep["ticks_per_config"].items()]
    lines.append(f"violations by kind ({rep['total_violations']} in all):")
    if rep["violations"]:
        lines.append(f"  {'kind':<24}{'count':>8}  {'worst value/limit':>18}  first example (--seed S --episode E)")
    for kind, v in rep["violations"].items():
        f, w = v["first"], v["worst_ratio"]
        worst = "-" if w is None else f"{w:.4g}"
        lines.append(f"  {kind:<24}{v['count']:>8}  {worst:>18}  --seed {f['seed']} --episode {f['episode']} tick "
                     f"{f['tick']} ({f.get('family')}, {f.get('core')} {f.get('robot')} {f.get('rate_hz')} Hz, "
                     f"{f.get('state')}): {f['desc']}")
    fo = rep["info"]["forward_output"]
    lines.append(f"info: forward position output (each command held for dt, sampled at 1 kHz) over the limits on "
                 f"{fo['over']} of {fo['commands']} commands; worst ratios "
                 f"{ {k: round(x, 3) for k, x in fo['worst_ratio'].items()} }")
    rest = {k: v for k, v in rep["info"].items() if k != "forward_output"}
    lines.append(f"info: {rest}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ticks", type=int, default=1_000_000, help="control ticks in all (episodes of 300-3000)")
    parser.add_argument("--seed", type=int, default=0, help="scenario seed (a report names it)")
    parser.add_argument("--episode", type=int, default=None, help="run only this episode (reproduce a report)")
    parser.add_argument("--robots", nargs="+", choices=sorted(HARD), default=["fr3", "panda"],
                        help="robots whose limit files are fuzzed")
    parser.add_argument("--cores", nargs="+", choices=["joint", "eef"], default=["joint", "eef"],
                        help="executor outputs to fuzz: joint positions and/or EEF deltas")
    parser.add_argument("--output", "--json", dest="json", default=None, metavar="OUT",
                        help="write the full report to this JSON file (--json: the old spelling)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    rep = run_fuzz(args.ticks, args.seed, args.robots, args.cores, args.episode, progress=not args.no_progress)
    print(format_summary(rep))
    if args.episode is not None:  # the operator calls and violations of this episode, in order (chunks: --json)
        for ev in [e for e in rep["events"] if "chunk" not in e][:300]:
            print("  ", {k: v for k, v in ev.items() if k not in ("seed", "episode", "family", "robot", "core")})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rep, f, indent=1, default=str)
    return 1 if rep["total_violations"] else 0
