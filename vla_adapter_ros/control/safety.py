"""Safety filter: turns raw joint targets into a smooth, limited joint reference, tick by tick.

The filter owns the commanded reference state ``(q, v, a)`` (rad, rad/s, rad/s^2) and advances
it once per control period ``dt`` (s). Each tick it receives a raw target (rad, one per joint)
or ``None`` and produces the next reference::

    a_k+1 = chosen acceleration       |a_k+1| <= A,   |a_k+1 - a_k| <= J * dt
    v_k+1 = v_k + (a_k + a_k+1) * dt / 2                  |v_k+1| <= V(q)  (see below)
    q_k+1 = q_k + v_k * dt + (2 a_k + a_k+1) * dt^2 / 6   soft_q_min <= q_k+1 <= soft_q_max

i.e. the reference is a C2 piecewise-cubic curve with constant jerk (a_k+1 - a_k)/dt on each
period, and ``(q, v, a)`` at every control instant are its exact values. Consequences:
* a JointTrajectoryController that interpolates the points it receives with quintic splines
  (positions, velocities and accelerations given) reproduces this curve exactly at any rate,
  e.g. 1 kHz: |jerk| <= J, |acceleration| <= A everywhere, not only at the control instants;
* finite differences of the positions at the control period are weighted averages of the
  curve's velocity, acceleration and jerk, hence within the same bounds (up to float rounding).
The velocity ceiling accounts for the discrete ramp-down of the acceleration, so the curve's
velocity stays within V between control instants too.

:class:`CartesianFilter` (output ``eef_delta``) runs the same limited step in the classic
discrete form (``v_k+1 = v_k + a_k+1 dt``, ``q_k+1 = q_k + v_k+1 dt``) because what it emits is
one delta per tick: the deltas' first, second and third differences are then exactly bounded.

Order of checks on a target (any failure => *hold* for this tick):
  1. measured joint state missing, invalid or older than ``joint_state_timeout``;
  2. wrong length, NaN or inf;
  3. |target - measured| > ``max_jump_rad`` on any joint;
  4. tool point of the (limit-clamped) target outside the workspace box (forward kinematics).
Targets beyond the soft position limits are clamped (counted as ``position_limit``).

*Hold* is a smooth stop: the desired velocity becomes zero and the reference decelerates within
the acceleration and jerk bounds, then stays where it stopped. It is never a position step.

Position-dependent velocity bound: moving toward a soft limit at distance d the speed is capped
by the largest v whose jerk-limited braking distance (braking deceleration ``braking_fraction *
A``) fits in d, so each joint can always stop before its limit. Acceleration and jerk bounds are
never violated; if a velocity ceiling cannot be met within them (which the conservative braking
model is designed to prevent) the filter brakes as hard as they allow and counts
``ceiling_conflict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .kinematics import FrankaKinematics, ToolOffset
from .limits import RobotLimits

# Every intervention kind the filter counts (keys of SafetyFilter.clip_counts).
INTERVENTIONS = (
    "invalid_command",
    "invalid_joint_state",
    "joint_state_timeout",
    "jump_from_measured",
    "workspace",
    "position_limit",
    "velocity_limit",
    "acceleration_limit",
    "jerk_limit",
    "ceiling_conflict",
    "position_net",
    "late_tick",
)
HOLD_REASONS = ("invalid_command", "joint_state_timeout", "jump_from_measured", "workspace")


@dataclass(frozen=True)
class FilterOutput:
    """Filtered reference for the next control instant (now + dt).

    position (rad), velocity (rad/s), acceleration (rad/s^2): arrays (n_joints,).
    holding: True when this tick was a hold (no target, or the target was rejected).
    hold_reason: the rejection kind (one of HOLD_REASONS) or None.
    """

    position: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    holding: bool
    hold_reason: Optional[str] = None


class SafetyFilter:
    """Jerk-, acceleration-, velocity- and position-limited tracking filter with hold on doubt.

    limits: the robot's RobotLimits (effective limits are its v_max, a_max, j_max, soft_q_*).
    dt: control period (s); defaults to ``limits.control_dt``.
    kinematics: FK used for the workspace check; built from the limits' tool offset if None.
    braking_fraction: share of a_max assumed for braking when computing the position-dependent
        velocity bound and the approach speed to a target (0 < f <= 1; smaller = more margin).
    velocity_time_constant, position_time_constant: tracking gains (s) in the linear region
        (defaults 3*dt and 18*dt: critically damped and overshoot-free at the bounds used).

    Call :meth:`reset` with the measured position before the first :meth:`step`.
    """

    def __init__(
        self,
        limits: RobotLimits,
        dt: Optional[float] = None,
        kinematics: Optional[FrankaKinematics] = None,
        braking_fraction: float = 0.5,
        velocity_time_constant: Optional[float] = None,
        position_time_constant: Optional[float] = None,
        check_workspace: bool = True,
    ):
        self.limits = limits
        self.dt = float(dt if dt is not None else limits.control_dt)
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"dt: must be > 0, got {dt}")
        if not 0 < braking_fraction <= 1:
            raise ValueError(f"braking_fraction: must lie in (0, 1], got {braking_fraction}")
        self.n = limits.n_joints
        self.kinematics = kinematics or FrankaKinematics(
            ToolOffset(limits.flange_length_m, limits.tcp_offset_m, limits.tool_yaw_rad)
        )
        self.check_workspace = check_workspace
        self.lo = np.array(limits.soft_q_min)
        self.hi = np.array(limits.soft_q_max)
        self.hard_lo = np.array(limits.q_min)
        self.hard_hi = np.array(limits.q_max)
        self.v_max = np.minimum(limits.dq_max * limits.velocity_scale, limits.max_step_rad / self.dt)
        self.a_max = np.array(limits.a_max)
        self.j_max = np.array(limits.j_max)
        self.a_brake = braking_fraction * self.a_max
        self.tv = float(velocity_time_constant or 3.0 * self.dt)
        self.tp = float(position_time_constant or 18.0 * self.dt)
        # Braking-distance model constant: D(v) = v^2/(2 Ab) + v * c, c = Ab/J + dt.
        self._c = self.a_brake / self.j_max + self.dt
        self._jdt = self.j_max * self.dt
        self._ws_min = np.array(limits.workspace_min)
        self._ws_max = np.array(limits.workspace_max)

        self.q: Optional[np.ndarray] = None
        self.v = np.zeros(self.n)
        self.a = np.zeros(self.n)
        self._prev_target: Optional[np.ndarray] = None
        self.measured_q: Optional[np.ndarray] = None
        self.measured_stamp: Optional[float] = None
        self.clip_counts = {k: 0 for k in INTERVENTIONS}
        self._last_event: Optional[tuple[float, str, str]] = None
        self._stop_cache: Optional[tuple[tuple[bytes, bytes], float]] = None

    # ---- state -----------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return self.q is not None

    def reset(self, q: np.ndarray) -> None:
        """Start the reference at position ``q`` (rad) at rest. Raises ValueError if invalid."""
        q = np.array(q, dtype=float)
        if q.shape != (self.n,) or not np.all(np.isfinite(q)):
            raise ValueError(f"reset: need {self.n} finite joint positions, got {q!r}")
        self.q = q
        self.v = np.zeros(self.n)
        self.a = np.zeros(self.n)
        self._prev_target = None

    def set_measured(self, q: np.ndarray, stamp: float) -> bool:
        """Record the measured joint positions (rad) taken at ``stamp`` (s). Invalid => ignored."""
        try:
            arr = np.array(q, dtype=float)
            stamp = float(stamp)
        except (TypeError, ValueError):
            arr, stamp = None, float("nan")
        if arr is None or arr.shape != (self.n,) or not np.all(np.isfinite(arr)) or not math.isfinite(stamp):
            self._record(stamp, "invalid_joint_state", "joint state ignored (wrong length, non-finite or bad stamp)")
            return False
        self.measured_q = arr
        self.measured_stamp = float(stamp)
        return True

    @property
    def is_stopped(self) -> bool:
        """True when the reference is at rest (|v| and |a| ~ 0)."""
        return bool(np.all(self.v == 0.0) and np.all(self.a == 0.0))

    @property
    def last_event(self) -> Optional[str]:
        """Human-readable description of the latest intervention, or None."""
        if self._last_event is None:
            return None
        stamp, kind, detail = self._last_event
        return f"[{stamp:.3f}] {kind}: {detail}"

    def _record(self, now: float, kind: str, detail: str) -> None:
        self.clip_counts[kind] += 1
        self._last_event = (now, kind, detail)

    def position_velocity_bounds(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Velocity bounds (rad/s) at position q: (lower <= 0, upper >= 0).

        Toward a soft limit at distance d >= 0 the speed is at most the v solving
        v^2/(2 Ab) + v (Ab/J + dt) = d, i.e. the jerk-limited braking distance fits in d.
        """
        return braking_velocity_bounds(q, self.lo, self.hi, self.a_brake, self._c, self.v_max)

    # ---- target checks ---------------------------------------------------------------------
    def check_target(self, target, now: float) -> tuple[Optional[np.ndarray], Optional[str]]:
        """Validate a raw target. Returns (clamped target, None) or (None, hold reason)."""
        if self.measured_stamp is None:
            self._record(now, "joint_state_timeout", "no joint state received yet")
            return None, "joint_state_timeout"
        age = now - self.measured_stamp
        if not age <= self.limits.joint_state_timeout:
            self._record(now, "joint_state_timeout",
                         f"joint state age {age:.3f} s > {self.limits.joint_state_timeout:.3f} s")
            return None, "joint_state_timeout"
        if target is None:
            return None, None
        try:
            t = np.array(target, dtype=float)
        except (TypeError, ValueError):
            self._record(now, "invalid_command", "target is not numeric")
            return None, "invalid_command"
        if t.shape != (self.n,):
            self._record(now, "invalid_command", f"target shape {t.shape}, expected ({self.n},)")
            return None, "invalid_command"
        if not np.all(np.isfinite(t)):
            self._record(now, "invalid_command", "target contains NaN or inf")
            return None, "invalid_command"
        clamped = np.minimum(np.maximum(t, self.lo), self.hi)
        if np.any(clamped != t):
            worst = int(np.argmax(np.abs(clamped - t)))
            self._record(now, "position_limit",
                         f"{self.limits.joint_names[worst]} target {t[worst]:.4f} clamped to {clamped[worst]:.4f}")
        jump = np.abs(clamped - self.measured_q)
        if np.any(jump > self.limits.max_jump_rad):
            worst = int(np.argmax(jump))
            self._record(now, "jump_from_measured",
                         f"{self.limits.joint_names[worst]} target is {jump[worst]:.3f} rad from measured "
                         f"(> {self.limits.max_jump_rad:.3f})")
            return None, "jump_from_measured"
        if self.check_workspace:
            p = self.kinematics.fk_position(clamped)
            if np.any(p < self._ws_min) or np.any(p > self._ws_max):
                self._record(now, "workspace",
                             f"tool point {np.round(p, 3).tolist()} outside box "
                             f"{self._ws_min.tolist()}..{self._ws_max.tolist()}")
                return None, "workspace"
        return clamped, None

    # ---- one control tick ------------------------------------------------------------------
    def step(self, target, now: float) -> FilterOutput:
        """Advance the reference by one period toward ``target`` (rad) or hold (``None``).

        now: current time (s), used for the joint-state timeout and event stamps only.
        """
        if self.q is None:
            raise RuntimeError("SafetyFilter.step before reset(q)")
        t, reason = self.check_target(target, now)
        return self._advance(t, now, reason)

    def hold(self, now: float) -> FilterOutput:
        """One tick of smooth stopping (equivalent to step(None, now), without state checks)."""
        if self.q is None:
            raise RuntimeError("SafetyFilter.hold before reset(q)")
        return self._advance(None, now, None)

    def stop_points(self, count: int) -> list[tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
        """A smooth stop from the current reference, for the end of a trajectory message.

        Returns ``count`` points ``(t, q, v, a)`` (t: s after the current instant), the last at
        rest. Each joint follows the quartic from its current ``(q, v, a)`` to rest that a
        quintic-spline controller reproduces exactly; the common duration T is the shortest (on a
        geometric ladder) for which every joint's acceleration and jerk stay within the bounds.
        If the controller stops receiving messages, the last trajectory it got ends at rest.
        State untouched.
        """
        if self.q is None:
            raise RuntimeError("SafetyFilter.stop_points before reset(q)")
        duration = self._stop_duration(self.v, self.a)
        points = []
        for k in range(1, int(count) + 1):
            t = duration * k / int(count)
            q, v, a = quartic_stop(self.q, self.v, self.a, duration, t)
            points.append((t, q, v, a))
        return points

    def follow_stop(self, elapsed: float, stop_path: bool, now: float) -> None:
        """Move the reference to where the controller is ``elapsed`` s after it reached the
        current reference with nothing new received: on the :meth:`stop_points` path
        (``stop_path``: the last message carried it) or held there at rest (a single-point
        trajectory or a forward position command)."""
        if self.q is None or not elapsed > 0.0:
            return
        if stop_path:
            duration = self._stop_duration(self.v, self.a)
            self.q, self.v, self.a = quartic_stop(self.q, self.v, self.a, duration, elapsed)
        else:
            self.v, self.a = np.zeros(self.n), np.zeros(self.n)
        self._record(now, "late_tick", f"tick {elapsed * 1e3:.1f} ms late: continuing from where the controller "
                     "is on the last trajectory sent")

    def _stop_duration(self, v, a) -> float:
        """stop_duration for (v, a), remembered for the last state (the workspace check and the
        trajectory message of one tick ask for the same one)."""
        key = (v.tobytes(), a.tobytes())
        if self._stop_cache is None or self._stop_cache[0] != key:
            self._stop_cache = (key, stop_duration(v, a, self.a_max, self.j_max, self.dt))
        return self._stop_cache[1]

    def _stop_inside_box(self, q, v, a) -> bool:
        """Whether the tool point where a stop from (q, v, a) ends (see stop_points) is in the box."""
        if not (np.any(v != 0.0) or np.any(a != 0.0)):
            q_end = q
        else:
            q_end = quartic_stop_end(q, v, a, self._stop_duration(v, a))
        p = self.kinematics.fk_position(np.clip(q_end, self.hard_lo, self.hard_hi))
        return bool(np.all(p >= self._ws_min) and np.all(p <= self._ws_max))

    def _advance(self, t: Optional[np.ndarray], now: float, reason: Optional[str]) -> FilterOutput:
        q = self.q
        v_lo, v_hi = self.position_velocity_bounds(q)
        if t is None:
            v_des = np.zeros(self.n)
            self._prev_target = None
        else:
            # Feed-forward velocity of a smooth target stream, then position feedback that can
            # always brake to the target (sqrt profile) and is linear near it.
            if self._prev_target is not None:
                step = t - self._prev_target
                v_ff = step / self.dt if np.all(np.abs(step) <= self.limits.max_step_rad) else np.zeros(self.n)
            else:
                v_ff = np.zeros(self.n)
            self._prev_target = t
            e = t - q
            ae = np.abs(e)
            v_fb = np.sign(e) * np.minimum(np.sqrt(2.0 * self.a_brake * ae), ae / self.tp)
            v_des = v_ff + v_fb
            clipped = np.minimum(np.maximum(v_des, v_lo), v_hi)
            if np.any(clipped != v_des):
                self._record(now, "velocity_limit", "desired velocity clipped to the (position-dependent) bound")
            v_des = clipped
        q_new, v_new, a_new, events = limited_step(
            q, self.v, self.a, v_des, v_lo, v_hi, self.a_max, self.j_max, self.dt, self.tv, exact=True)
        if t is not None and self.check_workspace and not self._stop_inside_box(q_new, v_new, a_new):
            # The target's tool point is inside the box, but the joint-space path toward it is not
            # a straight tool path: if braking from the next reference would end outside the box,
            # brake now instead.
            self._record(now, "workspace", "a stop from the next reference would end outside the box: holding")
            return self._advance(None, now, "workspace")
        if t is not None:
            for kind in ("acceleration_limit", "jerk_limit"):
                if kind in events:
                    self._record(now, kind, events[kind])
        if "ceiling_conflict" in events:
            self._record(now, "ceiling_conflict", events["ceiling_conflict"])
        # Rest snap: when holding and the residual motion is negligible, stop exactly (the
        # velocity and acceleration steps this makes are < 1e-7 rad/s and < 1e-5 rad/s^2).
        if t is None and np.all(np.abs(v_new) < 1e-7) and np.all(np.abs(a_new) < 1e-5):
            v_new = np.zeros(self.n)
            a_new = np.zeros(self.n)
        # Last-resort net at the hard limits (never expected to act: the reference starts inside
        # the soft limits and the velocity bound brakes before them). Counted; the executor
        # latches an estop when it acts.
        if np.any(q_new < self.hard_lo) or np.any(q_new > self.hard_hi):
            self._record(now, "position_net", "reference clamped at the hardware limits")
            q_new = np.clip(q_new, self.hard_lo, self.hard_hi)
            v_new = np.zeros(self.n)
            a_new = np.zeros(self.n)
        self.q, self.v, self.a = q_new, v_new, a_new
        return FilterOutput(q_new.copy(), v_new.copy(), a_new.copy(), t is None, reason)


def braking_velocity_bounds(q, lo, hi, a_brake, c, v_max):
    """Velocity bounds (lower <= 0, upper >= 0) at q between position bounds lo and hi (may be
    +-inf): toward a bound at distance d the speed is at most the v solving
    v^2/(2 a_brake) + v c = d, capped at v_max."""
    d_up = np.maximum(hi - q, 0.0)
    d_dn = np.maximum(q - lo, 0.0)
    with np.errstate(invalid="ignore"):
        v_up = np.where(np.isinf(d_up), np.inf, a_brake * (np.sqrt(c * c + 2.0 * d_up / a_brake) - c))
        v_dn = np.where(np.isinf(d_dn), np.inf, a_brake * (np.sqrt(c * c + 2.0 * d_dn / a_brake) - c))
    return -np.minimum(v_dn, v_max), np.minimum(v_up, v_max)


def limited_step(q, v, a, v_des, v_lo, v_hi, a_max, j_max, dt, tv, exact):
    """One period of the jerk-limited velocity loop shared by the joint and Cartesian filters.

    q, v, a: current position, velocity, acceleration (arrays); v_des: desired velocity;
    v_lo <= 0 <= v_hi: velocity ceilings; a_max, j_max: bounds; tv: velocity time constant (s).
    exact: True = constant jerk over the period (C2 cubic, see the module docstring), False =
    the discrete form v' = v + a' dt, q' = q + v' dt. Returns (q', v', a', events) with events
    a dict kind -> detail of the bounds that shaped the step.
    """
    events = {}
    jdt = j_max * dt
    # Velocity loop: an acceleration that can be ramped back to zero (jerk J) as dv reaches 0.
    dv = v_des - v
    adv = np.abs(dv)
    if exact:
        a_des = np.sign(dv) * np.minimum(np.sqrt(2.0 * j_max * adv), adv / tv)
    else:
        # Discrete ramp-down in whole periods (as for the ceilings below), so the velocity never
        # overshoots v_des (a hold never reverses); a step that can reach v_des now and return to
        # zero acceleration on the next tick (|a| <= J dt) is taken at once (deadbeat).
        ramp = np.sqrt(jdt * jdt + 2.0 * j_max * adv) - jdt
        a_des = np.sign(dv) * np.minimum(np.where(adv / dt <= jdt, adv / dt, ramp), adv / tv)
    if np.any(np.abs(a_des) > a_max):
        events["acceleration_limit"] = "desired acceleration clipped"
        a_des = np.clip(a_des, -a_max, a_max)
    # Velocity ceilings as acceleration bounds: after this period the acceleration must still
    # ramp down to zero (in whole periods at jerk J) without the velocity passing the ceiling.
    # h = velocity headroom left after the current acceleration's share of this period.
    h_up = v_hi - v - (0.5 * a * dt if exact else 0.0)
    h_dn = v - v_lo + (0.5 * a * dt if exact else 0.0)
    root_up = np.sqrt(jdt * jdt + 2.0 * j_max * np.maximum(h_up, 0.0)) - jdt
    root_dn = np.sqrt(jdt * jdt + 2.0 * j_max * np.maximum(h_dn, 0.0)) - jdt
    share = 2.0 / dt if exact else 1.0 / dt  # acceleration that changes the velocity by h
    a_ceil_hi = np.where(h_up >= 0.0, root_up, h_up * share)
    a_ceil_lo = np.where(h_dn >= 0.0, -root_dn, -h_dn * share)
    a_new = np.minimum(np.maximum(a_des, a_ceil_lo), a_ceil_hi)
    # Physical bounds (never violated): jerk and acceleration.
    a_lim = np.minimum(np.maximum(a_new, np.maximum(a - jdt, -a_max)), np.minimum(a + jdt, a_max))
    if np.any(a_lim != a_new):
        if np.any((a_lim < a_ceil_lo - 1e-12) | (a_lim > a_ceil_hi + 1e-12)):
            events["ceiling_conflict"] = "velocity/position ceiling not reachable within jerk bound"
        else:
            events["jerk_limit"] = "acceleration change limited by the jerk bound"
    if exact:
        v_new = v + 0.5 * (a + a_lim) * dt
        q_new = q + v * dt + (2.0 * a + a_lim) * (dt * dt / 6.0)
    else:
        v_new = v + a_lim * dt
        q_new = q + v_new * dt
    return q_new, v_new, a_lim, events


def quartic_stop(q, v, a, duration, t):
    """Position, velocity, acceleration at time t of the quartic that starts at (q, v, a) and is
    at rest (v = a = 0) at ``duration``: q(t) = q + v t + a t^2/2 + c3 t^3 + c4 t^4 with
    c4 = (v + a T/2) / (2 T^3), c3 = -(2a/3 + v/T) / T. It travels v T/2 + a T^2/12."""
    T = float(duration)
    t = min(max(float(t), 0.0), T)
    c4 = (v + 0.5 * a * T) / (2.0 * T ** 3)
    c3 = -(2.0 * a / 3.0 + v / T) / T
    pos = q + v * t + 0.5 * a * t * t + c3 * t ** 3 + c4 * t ** 4
    vel = v + a * t + 3.0 * c3 * t * t + 4.0 * c4 * t ** 3
    acc = a + 6.0 * c3 * t + 12.0 * c4 * t * t
    if t >= T:  # exactly at rest (no rounding residue)
        vel, acc = np.zeros_like(vel), np.zeros_like(acc)
    return pos, vel, acc


def quartic_stop_end(q, v, a, duration):
    """Where :func:`quartic_stop` from (q, v, a) comes to rest after ``duration``: q + v T/2 + a T^2/12."""
    T = float(duration)
    return q + v * (T / 2.0) + a * (T * T / 12.0)


_LADDER = 1.03 ** np.arange(48)  # one block of candidate stop durations, 3 % apart


def stop_duration(v, a, a_max, j_max, dt):
    """Shortest T (to within 3 %, at least dt) for which :func:`quartic_stop` keeps every joint's
    acceleration within a_max and jerk within j_max.

    The shortest stop is also the one that reverses least: a joint braking with acceleration
    alpha against its velocity v turns back before rest exactly when T > 3|v|/alpha (the quartic's
    velocity is (1 - tau)^2 (v (1 + 2 tau) + a T tau)), so a stop that can avoid reversing does.
    """
    v, a = np.asarray(v, float), np.asarray(a, float)
    if np.all(v == 0.0) and np.all(a == 0.0):
        return float(dt)
    # (a state already beyond a_max, never produced by the filter, is allowed its own |a|)
    a_max = np.maximum(np.broadcast_to(a_max, v.shape), np.abs(a))
    j_max = np.broadcast_to(j_max, v.shape)
    along = a * np.where(v != 0.0, np.sign(v), 1.0)  # acceleration along the motion
    speed = np.abs(v)
    # Necessary: the mean deceleration is |v|/T, and the acceleration changes by |a| at jerk <= J.
    T0 = max(float(dt), float(np.max(speed / a_max)), float(np.max(np.abs(a) / j_max)))
    T = T0 * _LADDER
    for _ in range(8):
        Tc = T[:, None]
        w = speed / Tc
        # Acceleration over tau in [0, 1]: along - b tau + c tau^2 (exact extremum below); jerk is
        # linear in tau: -b/T at the start, (2 along + 6 w)/T at the end.
        b = 4.0 * along + 6.0 * w
        c = 3.0 * along + 6.0 * w
        with np.errstate(divide="ignore", invalid="ignore"):
            tau = np.clip(np.where(c != 0.0, b / (2.0 * c), 0.0), 0.0, 1.0)
        extremum = along - b * tau + c * tau * tau
        ok = (np.all(np.abs(extremum) <= a_max * (1 + 1e-9), axis=1)
              & np.all(np.abs(b) <= j_max * Tc * (1 + 1e-9), axis=1)
              & np.all(np.abs(2.0 * along + 6.0 * w) <= j_max * Tc * (1 + 1e-9), axis=1))
        if np.any(ok):
            return float(T[int(np.argmax(ok))])
        T = T[-1] * 1.03 * _LADDER
    return float(T[-1])


class CartesianFilter:
    """Limits for a stream of tool deltas (``output: eef_delta``), one delta per tick.

    Axes: [x y z] (m) and [rx ry rz] (rad, rotation vector). The filter integrates the deltas it
    emits (``s``, from 0 at :meth:`reset`) and the accepted target rows (``target``); each tick it
    emits ``s_k+1 - s_k`` with, per axis, |velocity| <= v, |acceleration| <= a, |jerk| <= j in the
    discrete form (first, second and third differences of delta/dt). Per-axis bounds are the
    robot file's Cartesian norm limits divided by sqrt(3), so the vector norms stay within them.
    A row inside the bounds passes unchanged (deadbeat velocity loop); motion that a bound delayed
    is caught up later, so no commanded motion is lost; a hold drops what is owed and brakes.

    Workspace: both the measured tool point (FK of the measured joints) and the commanded path
    (the emitted deltas integrated from the tool point at :meth:`reset`) stay inside the box:
    toward a wall at distance d the translation speed is capped so that braking fits in d (as for
    the joints), d being the smaller of the two distances.
    """

    def __init__(self, limits: RobotLimits, dt: float, braking_fraction: float = 0.5):
        self.dt = float(dt)
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"dt: must be > 0, got {dt}")
        root3 = math.sqrt(3.0)
        self.v_max = np.repeat(np.asarray(limits.cartesian_v_max) / root3, 3)
        self.a_max = np.repeat(np.asarray(limits.cartesian_a_max) / root3, 3)
        self.j_max = np.repeat(np.asarray(limits.cartesian_j_max) / root3, 3)
        self.a_brake = braking_fraction * self.a_max
        self._c = self.a_brake / self.j_max + self.dt
        self.tp = 4.0 * self.dt  # catch-up of delayed motion (position time constant)
        self._ws_min = np.array(limits.workspace_min)
        self._ws_max = np.array(limits.workspace_max)
        self.reset()

    def reset(self, tool_position: Optional[np.ndarray] = None) -> None:
        """At rest, nothing owed; ``tool_position``: the tool point (m) the commanded path starts at
        (None: only the measured tool point is kept inside the box)."""
        self.anchor = None if tool_position is None else np.array(tool_position, dtype=float)
        self.s = np.zeros(6)
        self.v = np.zeros(6)
        self.a = np.zeros(6)
        self.target: Optional[np.ndarray] = None
        self.limited = {"velocity": 0, "acceleration": 0, "jerk": 0, "workspace": 0}

    @property
    def is_stopped(self) -> bool:
        return bool(np.all(self.v == 0.0) and np.all(self.a == 0.0))

    @property
    def owed(self) -> np.ndarray:
        """Target motion not yet emitted (zeros while holding)."""
        return np.zeros(6) if self.target is None else self.target - self.s

    def hold(self) -> None:
        """Drop what is owed; the next steps brake to rest."""
        self.target = None

    def step(self, row: Optional[np.ndarray], tool_position: Optional[np.ndarray]) -> np.ndarray:
        """Advance one tick. row: the next target delta (6,) or None (no new row: finish what is
        owed, or brake when holding). tool_position: measured tool point (m) for the workspace
        bounds (None: translation is not allowed to grow in any direction).
        Returns the delta (6,) to emit."""
        dt = self.dt
        if tool_position is None:
            lo = hi = self.s[:3]
        else:
            lo = self.s[:3] - (np.asarray(tool_position) - self._ws_min)
            hi = self.s[:3] + (self._ws_max - np.asarray(tool_position))
        if self.anchor is not None:  # the commanded path, integrated from the anchor
            lo = np.maximum(lo, self._ws_min - self.anchor)
            hi = np.minimum(hi, self._ws_max - self.anchor)
        lo = np.concatenate([lo, np.full(3, -np.inf)])
        hi = np.concatenate([hi, np.full(3, np.inf)])
        v_lo, v_hi = braking_velocity_bounds(self.s, lo, hi, self.a_brake, self._c, self.v_max)
        if row is not None:
            if self.target is None:
                self.target = self.s.copy()
            self.target = self.target + row
            v_ff = np.asarray(row, float) / dt
        else:
            v_ff = np.zeros(6)
        if self.target is None:
            v_des = np.zeros(6)
        else:
            e = self.target - self.s - v_ff * dt  # owed beyond this tick's row
            ae = np.abs(e)
            v_des = v_ff + np.sign(e) * np.minimum(np.sqrt(2.0 * self.a_brake * ae), ae / self.tp)
        clipped = np.minimum(np.maximum(v_des, v_lo), v_hi)
        if np.any(clipped != v_des):
            wall = np.any((clipped[:3] != v_des[:3]) & ((v_hi[:3] < self.v_max[:3]) | (v_lo[:3] > -self.v_max[:3])))
            self.limited["workspace" if wall else "velocity"] += 1
        s_new, v_new, a_new, events = limited_step(
            self.s, self.v, self.a, clipped, v_lo, v_hi, self.a_max, self.j_max, dt, dt, exact=False)
        if "acceleration_limit" in events:
            self.limited["acceleration"] += 1
        if "jerk_limit" in events or "ceiling_conflict" in events:
            self.limited["jerk"] += 1
        delta = v_new * dt  # == s_new - s, without the rounding of the running sum
        if self.target is None and np.all(np.abs(v_new) < 1e-9) and np.all(np.abs(a_new) < 1e-7):
            v_new, a_new = np.zeros(6), np.zeros(6)  # rest snap (steps below 1e-9 m/s)
        self.s, self.v, self.a = self.s + delta, v_new, a_new
        if self.target is not None and np.all(np.abs(self.target - self.s) < 1e-12) and self.is_stopped:
            self.target = self.s.copy()
        return delta
