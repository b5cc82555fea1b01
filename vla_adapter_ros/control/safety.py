"""Safety filter: turns raw joint targets into a smooth, limited joint reference, tick by tick.

The filter owns the commanded reference state ``(q, v, a)`` (rad, rad/s, rad/s^2) and advances
it once per control period ``dt`` (s). Each tick it receives a raw target (rad, one per joint)
or ``None`` and produces the next reference::

    a_k+1 = chosen acceleration       |a_k+1| <= A,   |a_k+1 - a_k| <= J * dt
    v_k+1 = v_k + a_k+1 * dt          |v_k+1| <= V(q)  (position-dependent, see below)
    q_k+1 = q_k + v_k+1 * dt          soft_q_min <= q_k+1 <= soft_q_max

so finite differences of the output stream reproduce exactly the bounded velocity,
acceleration and jerk (up to float rounding).

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
        ab, c = self.a_brake, self._c
        d_up = np.maximum(self.hi - q, 0.0)
        d_dn = np.maximum(q - self.lo, 0.0)
        v_up = ab * (np.sqrt(c * c + 2.0 * d_up / ab) - c)
        v_dn = ab * (np.sqrt(c * c + 2.0 * d_dn / ab) - c)
        return -np.minimum(v_dn, self.v_max), np.minimum(v_up, self.v_max)

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

    def preview_hold(self, steps: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(position, velocity, acceleration) of the next ``steps`` hold ticks, state untouched.

        Used to append braking points to a short trajectory so that a controller that stops
        receiving commands ends at rest instead of at a moving point.
        """
        if self.q is None:
            raise RuntimeError("SafetyFilter.preview_hold before reset(q)")
        saved = (self.q, self.v, self.a, self._prev_target, dict(self.clip_counts), self._last_event)
        out = []
        try:
            for _ in range(int(steps)):
                o = self._advance(None, 0.0, None)
                out.append((o.position, o.velocity, o.acceleration))
        finally:
            self.q, self.v, self.a, self._prev_target, self.clip_counts, self._last_event = saved
        return out

    def _advance(self, t: Optional[np.ndarray], now: float, reason: Optional[str]) -> FilterOutput:
        q, v, a, dt = self.q, self.v, self.a, self.dt
        v_lo, v_hi = self.position_velocity_bounds(q)
        if t is None:
            v_des = np.zeros(self.n)
            self._prev_target = None
        else:
            # Feed-forward velocity of a smooth target stream, then position feedback that can
            # always brake to the target (sqrt profile) and is linear near it.
            if self._prev_target is not None:
                step = t - self._prev_target
                v_ff = step / dt if np.all(np.abs(step) <= self.limits.max_step_rad) else np.zeros(self.n)
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
        # Velocity loop: acceleration that can be ramped back to zero (jerk J) as dv reaches 0.
        dv = v_des - v
        adv = np.abs(dv)
        a_des = np.sign(dv) * np.minimum(np.sqrt(2.0 * self.j_max * adv), adv / self.tv)
        if np.any(np.abs(a_des) > self.a_max):
            if t is not None:
                self._record(now, "acceleration_limit", "desired acceleration clipped")
            a_des = np.clip(a_des, -self.a_max, self.a_max)
        # Jerk-aware velocity ceilings as acceleration bounds.
        head_up = v_hi - v
        head_dn = v - v_lo
        jdt = self._jdt
        root_up = np.sqrt(jdt * jdt + 2.0 * self.j_max * np.maximum(head_up, 0.0)) - jdt
        root_dn = np.sqrt(jdt * jdt + 2.0 * self.j_max * np.maximum(head_dn, 0.0)) - jdt
        a_ceil_hi = np.where(head_up >= 0.0, root_up, head_up / dt)
        a_ceil_lo = np.where(head_dn >= 0.0, -root_dn, -head_dn / dt)
        a_new = np.minimum(np.maximum(a_des, a_ceil_lo), a_ceil_hi)
        # Physical bounds (never violated): jerk and acceleration.
        j_lo = np.maximum(a - jdt, -self.a_max)
        j_hi = np.minimum(a + jdt, self.a_max)
        a_lim = np.minimum(np.maximum(a_new, j_lo), j_hi)
        if np.any(a_lim != a_new):
            if np.any((a_lim < a_ceil_lo - 1e-12) | (a_lim > a_ceil_hi + 1e-12)):
                self._record(now, "ceiling_conflict", "velocity/position ceiling not reachable within jerk bound")
            elif t is not None:
                self._record(now, "jerk_limit", "acceleration change limited by the jerk bound")
        v_new = v + a_lim * dt
        q_new = q + v_new * dt
        # Rest snap: when holding and the residual motion is tiny (< 1e-7 rad/s), stop exactly
        # now, with the acceleration that really produces it, if that respects the jerk bound
        # (the next tick then brings the acceleration to zero within the jerk bound too).
        if t is None and np.all(np.abs(v_new) < 1e-7) and np.all(np.abs(a_lim) < 1e-5):
            a_snap = -v / dt
            if np.all(np.abs(a_snap - a) <= jdt) and np.all(np.abs(a_snap) <= np.minimum(jdt, self.a_max)):
                v_new = np.zeros(self.n)
                a_lim = a_snap
                q_new = q.copy()
        # Last-resort net at the hard limits (never expected to act; counted if it does).
        if np.any(q_new < self.hard_lo) or np.any(q_new > self.hard_hi):
            self._record(now, "position_net", "reference clamped at the hardware limits")
            q_new = np.clip(q_new, self.hard_lo, self.hard_hi)
            v_new = (q_new - q) / dt
            a_lim = (v_new - v) / dt
        self.q, self.v, self.a = q_new, v_new, a_lim
        return FilterOutput(q_new.copy(), v_new.copy(), a_lim.copy(), t is None, reason)
