"""Timestamp-indexed queue of joint targets built from action chunks.

Time: float seconds of ROS time (see chunk.py). The scheduler never reads a clock: every call
takes ``now``.

* A chunk is stamped ``t_obs``, the time of the observation it was computed from, with row period ``dt``.
* Absolute rows (JOINT_POSITION): row i is the target for ``t_obs + i * dt``.
* Delta rows (JOINT_DELTA, EEF_DELTA): row i is the motion over ``[t_obs + i dt, t_obs + (i + 1) dt]``
  ("state at the next frame minus state now", as the training labels are made). *All* rows are
  integrated cumulatively (EEF deltas through the IK) from ``reference_q``, the joint state at
  ``t_obs`` (the executor passes the measured state interpolated at the stamp, in dry run its
  simulated reference there): the target after row i is for ``t_obs + (i + 1) dt``. So the motion
  between the observation and the chunk's arrival is not counted twice, and no target is a period early.
* Latency compensation: then, on arrival, targets whose time is in the past (``< now``) are dropped;
  ``AddResult.first_index`` is the index of the first row whose target was kept.
* Overlap with the queued tail (times >= the first kept row) is blended:
  - ``replace``: the new rows win;
  - ``crossfade``: the j-th overlapping new row (j = 0, 1, ...) gets weight
    ``w_j = (j + 1) / (k + 1)`` for j < k (``crossfade_steps`` = k), 1 afterwards, and the old
    plan (linearly interpolated at the new row's time) ``1 - w_j``;
  - ``ensemble``: temporal ensembling as in ACT: the n-th prediction for a time (n = 0 oldest)
    has weight ``exp(-ensemble_decay * n)``; the queue keeps each entry's weighted mean and
    weight sum so the result equals the weighted average of all predictions.
  Queued entries after the last new row are discarded: the newest chunk defines the plan's end.
* ``sample(now)`` interpolates linearly between rows; after the last row the last target is
  held for one ``dt``, then the queue is empty and ``sample`` returns None (= hold).
* Chunks with a stamp not newer than the last accepted one (out of order), older than
  ``chunk_max_age`` (stale), too far in the future, malformed, entirely in the past, or that
  would grow the queue beyond ``MAX_QUEUE_ROWS`` are rejected with a reason.
* ``add_chunk`` = ``prepare_chunk`` (validation and conversion, which may run the IK: no queue
  state is touched, so a caller may run it outside its lock) + ``commit`` (the merge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .chunk import ACTION_SPACE_NAMES, JOINT_POSITION, Chunk, actions_to_joint_targets, validate_chunk
from .kinematics import FrankaKinematics

BLEND_MODES = ("replace", "crossfade", "ensemble")
MAX_QUEUE_ROWS = 1024
_TIME_EPS = 1e-9  # s; a row exactly at `now` (up to rounding) counts as not in the past


@dataclass(frozen=True)
class AddResult:
    """Outcome of :meth:`ActionScheduler.add_chunk`.

    accepted: whether the chunk entered the queue; reason: why not ("" if accepted).
    latency: now - stamp at arrival (s). first_index: index of the first row whose target was
    kept (the targets before were in the past). kept: number of rows queued.
    """

    accepted: bool
    reason: str
    latency: float
    first_index: int = 0
    kept: int = 0
    sequence: int = 0


@dataclass(frozen=True)
class PreparedChunk:
    """A validated chunk converted to absolute joint targets, not yet merged (see add_chunk)."""

    stamp: float
    latency: float
    sequence: int
    dt: float
    first: int  # first row whose target was kept (earlier targets were in the past at preparation)
    times: np.ndarray  # times of the kept targets (delta rows: the end of each row's period)
    targets: np.ndarray
    gripper: np.ndarray


@dataclass(frozen=True)
class Sample:
    """Target at one instant: joint positions (rad) and gripper command (0..1) or None."""

    positions: np.ndarray
    gripper: Optional[float]


class ActionScheduler:
    """Queue of absolute joint targets in time, fed by chunks, sampled at control rate.

    joint_names: controller joint order. blend_mode: one of BLEND_MODES.
    crossfade_steps: k for ``crossfade``. ensemble_decay: m for ``ensemble`` (1/prediction).
    refill_threshold_s: ``needs_chunk`` is True when less than this much time is queued (s);
        set it to at least the expected inference latency plus one chunk period.
    chunk_max_age: max (now - stamp) accepted (s). max_future_s: max (stamp - now) accepted (s).
    kinematics, q_min, q_max: for EEF_DELTA chunks (IK, clamped to [q_min, q_max] rad).
    """

    def __init__(
        self,
        joint_names: Sequence[str],
        blend_mode: str = "crossfade",
        crossfade_steps: int = 4,
        ensemble_decay: float = 0.01,
        refill_threshold_s: float = 0.3,
        chunk_max_age: float = 1.0,
        max_future_s: float = 0.5,
        kinematics: Optional[FrankaKinematics] = None,
        q_min: Optional[np.ndarray] = None,
        q_max: Optional[np.ndarray] = None,
        eef_workspace: Optional[tuple[np.ndarray, np.ndarray]] = None,
    ):
        if blend_mode not in BLEND_MODES:
            raise ValueError(f"blend_mode: must be one of {BLEND_MODES}, got {blend_mode!r}")
        if int(crossfade_steps) < 0:
            raise ValueError(f"crossfade_steps: must be >= 0, got {crossfade_steps}")
        if not (math.isfinite(ensemble_decay) and ensemble_decay >= 0):
            raise ValueError(f"ensemble_decay: must be >= 0, got {ensemble_decay}")
        for key, value in (("refill_threshold_s", refill_threshold_s), ("chunk_max_age", chunk_max_age),
                           ("max_future_s", max_future_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key}: must be a finite number >= 0, got {value}")
        self.joint_names = list(joint_names)
        self.n = len(self.joint_names)
        self.blend_mode = blend_mode
        self.crossfade_steps = int(crossfade_steps)
        self.ensemble_decay = float(ensemble_decay)
        self.refill_threshold_s = float(refill_threshold_s)
        self.chunk_max_age = float(chunk_max_age)
        self.max_future_s = float(max_future_s)
        # (lo, hi) tool box that EEF-delta rows stop at (chunk.actions_to_joint_targets); None: rows as given
        self.eef_workspace = eef_workspace
        self.kinematics = kinematics or FrankaKinematics()
        self.q_min = None if q_min is None else np.asarray(q_min, dtype=float)
        self.q_max = None if q_max is None else np.asarray(q_max, dtype=float)
        self.last_accepted_stamp: Optional[float] = None
        self.last_result: Optional[AddResult] = None
        self.rejected_count = 0
        self.clear()

    # ---- queue state -------------------------------------------------------------------------
    def clear(self) -> None:
        """Drop every queued target (the next sample is None). Keeps the out-of-order memory."""
        self._times = np.empty(0)
        self._targets = np.empty((0, self.n))
        self._gripper = np.empty(0)  # NaN = no gripper command
        self._weight = np.empty(0)  # ensemble: sum of weights of the predictions merged
        self._count = np.empty(0)  # ensemble: number of predictions merged
        self._end_hold = 0.0

    def reset_ordering(self) -> None:
        """Forget the last accepted stamp (e.g. after a policy restart)."""
        self.last_accepted_stamp = None

    @property
    def empty(self) -> bool:
        return self._times.size == 0

    @property
    def times(self) -> np.ndarray:
        """Times (s) of the queued rows (read-only copy)."""
        return self._times.copy()

    @property
    def targets(self) -> np.ndarray:
        """Queued absolute joint targets (rows, n) in rad (copy)."""
        return self._targets.copy()

    def depth(self, now: float) -> int:
        """Number of queued rows at or after ``now``."""
        return int(np.count_nonzero(self._times >= now - _TIME_EPS))

    def remaining_time(self, now: float) -> float:
        """Seconds of plan left after ``now`` (0 if empty or exhausted)."""
        if self.empty:
            return 0.0
        return max(0.0, float(self._times[-1]) - now)

    def needs_chunk(self, now: float) -> bool:
        """True when the queued plan ends within ``refill_threshold_s`` of ``now``."""
        return self.remaining_time(now) < self.refill_threshold_s

    # ---- sampling ----------------------------------------------------------------------------
    def sample(self, now: float) -> Optional[Sample]:
        """Target at ``now``: linear interpolation between rows; None when the queue is empty.

        Rows older than the interval containing ``now`` are pruned.
        """
        times = self._times
        if times.size == 0:
            return None
        if now > times[-1] + self._end_hold + _TIME_EPS:
            self.clear()
            return None
        if now <= times[0]:
            return Sample(self._targets[0].copy(), self._grip(0))
        k = int(np.searchsorted(times, now, side="right")) - 1
        if k > 0:  # prune rows before the current interval
            self._drop_before(k)
            k = 0
        if k + 1 >= self._times.size:
            return Sample(self._targets[k].copy(), self._grip(k))
        t0, t1 = self._times[k], self._times[k + 1]
        w = (now - t0) / (t1 - t0) if t1 > t0 else 1.0
        pos = self._targets[k] + w * (self._targets[k + 1] - self._targets[k])
        return Sample(pos, self._grip(k))

    def _grip(self, k: int) -> Optional[float]:
        g = self._gripper[k]
        return None if math.isnan(g) else float(g)

    def _drop_before(self, k: int) -> None:
        self._times = self._times[k:]
        self._targets = self._targets[k:]
        self._gripper = self._gripper[k:]
        self._weight = self._weight[k:]
        self._count = self._count[k:]

    def _interp_old(self, t_query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Old plan at query times: (defined mask, targets, gripper, weight, count)."""
        times = self._times
        if times.size == 0:
            m = t_query.size
            return np.zeros(m, bool), np.zeros((m, self.n)), np.full(m, np.nan), np.zeros(m), np.zeros(m)
        defined = (t_query >= times[0] - _TIME_EPS) & (t_query <= times[-1] + _TIME_EPS)
        idx = np.clip(np.searchsorted(times, t_query, side="right") - 1, 0, times.size - 1)
        nxt = np.minimum(idx + 1, times.size - 1)
        span = times[nxt] - times[idx]
        w = np.where(span > 0, (t_query - times[idx]) / np.where(span > 0, span, 1.0), 0.0)
        w = np.clip(w, 0.0, 1.0)
        tg = self._targets[idx] + w[:, None] * (self._targets[nxt] - self._targets[idx])
        gr = self._gripper[idx] + w * (self._gripper[nxt] - self._gripper[idx])
        gr = np.where(np.isnan(gr), self._gripper[idx], gr)
        wt = self._weight[idx] + w * (self._weight[nxt] - self._weight[idx])
        ct = self._count[idx] + w * (self._count[nxt] - self._count[idx])
        return defined, tg, gr, wt, ct

    # ---- chunk arrival -----------------------------------------------------------------------
    def _reject(self, reason: str, latency: float, sequence: int) -> AddResult:
        self.rejected_count += 1
        self.last_result = AddResult(False, reason, latency, sequence=sequence)
        return self.last_result

    def add_chunk(self, chunk: Chunk, now: float, reference_q: Optional[np.ndarray] = None) -> AddResult:
        """Validate, latency-compensate, convert and blend one chunk into the queue.

        now: arrival time (s). reference_q: joint positions (rad) at the chunk's stamp, which
        JOINT_DELTA / EEF_DELTA rows are integrated from (required for those spaces).
        """
        prepared = self.prepare_chunk(chunk, now, reference_q)
        if isinstance(prepared, AddResult):
            return prepared
        return self.commit(prepared, now)

    def prepare_chunk(self, chunk: Chunk, now: float, reference_q: Optional[np.ndarray] = None,
                      reference_problem: Optional[str] = None):
        """Validation and conversion only: a PreparedChunk, or the rejecting AddResult. Reads the
        ordering memory but changes nothing except the rejection counters.

        reference_q: joint positions (rad) at the chunk's stamp, the start of the integration of
        delta rows (see the module docstring). reference_problem: why the caller has none (the
        rejection reason of a delta chunk when reference_q is None).
        """
        sequence = int(getattr(chunk, "sequence", 0) or 0)
        try:
            stamp = float(chunk.stamp)
        except (TypeError, ValueError):
            return self._reject("stamp is not a number", float("nan"), sequence)
        latency = now - stamp
        actions, gripper, why = validate_chunk(chunk, self.joint_names)
        if actions is None:
            return self._reject(f"invalid chunk: {why}", latency, sequence)
        if self.last_accepted_stamp is not None and stamp <= self.last_accepted_stamp:
            return self._reject(
                f"out of order: stamp {stamp:.6f} not newer than last accepted {self.last_accepted_stamp:.6f}",
                latency, sequence)
        if latency > self.chunk_max_age:
            return self._reject(f"stale: age {latency:.3f} s > {self.chunk_max_age:.3f} s", latency, sequence)
        if -latency > self.max_future_s:
            return self._reject(f"stamp {-latency:.3f} s in the future", latency, sequence)
        dt = float(chunk.dt)
        horizon = actions.shape[0]
        delta = chunk.action_space != JOINT_POSITION
        # absolute row i is for t_obs + i dt; the target after delta row i for t_obs + (i + 1) dt
        row_times = stamp + dt * (np.arange(horizon) + (1.0 if delta else 0.0))
        first = int(np.count_nonzero(row_times < now - _TIME_EPS))
        if first >= horizon:
            return self._reject(f"all {horizon} actions are in the past (latency {latency:.3f} s)", latency, sequence)
        if delta:
            name = ACTION_SPACE_NAMES[chunk.action_space]
            if reference_q is None:
                return self._reject(reference_problem or f"{name} needs reference_q (the joint state at the stamp)",
                                    latency, sequence)
            reference = np.asarray(reference_q, dtype=float)
            if reference.shape != (self.n,) or not np.all(np.isfinite(reference)):
                return self._reject(f"{name} needs reference_q of {self.n} finite joint positions", latency, sequence)
            # every row counts (the ones already in the past too): integrate all, then drop the past targets
            targets, why = actions_to_joint_targets(chunk.action_space, actions, reference,
                                                    self.kinematics, self.q_min, self.q_max, self.eef_workspace)
            if targets is None:
                return self._reject(f"conversion failed: {why}", latency, sequence)
            targets = targets[first:]
        else:
            targets = np.array(actions[first:], dtype=float)
        new_grip = gripper[first:] if gripper is not None else np.full(horizon - first, np.nan)
        return PreparedChunk(stamp, latency, sequence, dt, first, row_times[first:], targets, new_grip)

    def commit(self, prepared: PreparedChunk, now: float) -> AddResult:
        """Merge a prepared chunk at ``now`` (rows that fell into the past meanwhile are dropped)."""
        if self.last_accepted_stamp is not None and prepared.stamp <= self.last_accepted_stamp:
            return self._reject(f"out of order: stamp {prepared.stamp:.6f} not newer than last accepted "
                                f"{self.last_accepted_stamp:.6f}", prepared.latency, prepared.sequence)
        late = int(np.count_nonzero(prepared.times < now - _TIME_EPS))
        if late >= prepared.times.size:
            return self._reject(f"all actions are in the past (latency {now - prepared.stamp:.3f} s)",
                                prepared.latency, prepared.sequence)
        times, targets, grip = prepared.times[late:], prepared.targets[late:], prepared.gripper[late:]
        kept_old = int(np.count_nonzero(self._times < times[0] - _TIME_EPS))
        if kept_old + times.size > MAX_QUEUE_ROWS:
            return self._reject(f"queue full: {kept_old} queued + {times.size} new rows > {MAX_QUEUE_ROWS}",
                                prepared.latency, prepared.sequence)
        self._merge(times, targets, grip)
        self._end_hold = prepared.dt
        self.last_accepted_stamp = prepared.stamp
        self.last_result = AddResult(True, "", prepared.latency, prepared.first + late, int(times.size),
                                     prepared.sequence)
        return self.last_result

    def _merge(self, new_times: np.ndarray, new_targets: np.ndarray, new_grip: np.ndarray) -> None:
        m = new_times.size
        defined, old_t, old_g, old_w, old_c = self._interp_old(new_times)
        weight = np.ones(m)
        count = np.ones(m)
        blended = new_targets.copy()
        grip = new_grip.copy()
        if self.blend_mode == "crossfade" and np.any(defined):
            j = np.arange(m)
            w_new = np.where(j < self.crossfade_steps, (j + 1.0) / (self.crossfade_steps + 1.0), 1.0)
            w_new = np.where(defined, w_new, 1.0)
            blended = (1.0 - w_new)[:, None] * old_t + w_new[:, None] * new_targets
            blended = np.where(defined[:, None], blended, new_targets)
            grip = self._blend_grip(old_g, new_grip, w_new, defined)
        elif self.blend_mode == "ensemble" and np.any(defined):
            w_pred = np.exp(-self.ensemble_decay * old_c)  # weight of this (the n-th) prediction
            total = old_w + w_pred
            w_new = np.where(defined, w_pred / np.where(total > 0, total, 1.0), 1.0)
            blended = (1.0 - w_new)[:, None] * old_t + w_new[:, None] * new_targets
            blended = np.where(defined[:, None], blended, new_targets)
            grip = self._blend_grip(old_g, new_grip, w_new, defined)
            weight = np.where(defined, total, 1.0)
            count = np.where(defined, old_c + 1.0, 1.0)
        keep = self._times < new_times[0] - _TIME_EPS
        self._times = np.concatenate([self._times[keep], new_times])
        self._targets = np.concatenate([self._targets[keep], blended])
        self._gripper = np.concatenate([self._gripper[keep], grip])
        self._weight = np.concatenate([self._weight[keep], weight])
        self._count = np.concatenate([self._count[keep], count])

    @staticmethod
    def _blend_grip(old_g: np.ndarray, new_g: np.ndarray, w_new: np.ndarray, defined: np.ndarray) -> np.ndarray:
        both = defined & ~np.isnan(old_g) & ~np.isnan(new_g)
        mixed = (1.0 - w_new) * np.nan_to_num(old_g) + w_new * np.nan_to_num(new_g)
        return np.where(both, mixed, np.where(np.isnan(new_g) & defined, old_g, new_g))
