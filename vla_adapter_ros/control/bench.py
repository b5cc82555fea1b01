"""Benchmark of the control cores (not a test): cost per 250 Hz control tick and per chunk.

Run: ``python -m vla_adapter_ros.control.bench [--robot fr3] [--seconds 20]``. Prints p50 / p99 /
max in microseconds for

* ``tick``: ExecutorCore.tick (scheduler sample + safety filter incl. FK workspace check +
  gripper), while chunks arrive every 0.2 s with 50 ms latency (crossfade blending);
* ``filter``: SafetyFilter.step alone; ``sample``: ActionScheduler.sample alone;
* ``on_chunk``: chunk arrival for JOINT_POSITION and EEF_DELTA (IK) chunks of 8 rows.

Target: tick p99 < 200 us.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .chunk import EEF_DELTA, JOINT_POSITION, Chunk
from .executor_core import ExecutorCore
from .limits import load_robot_limits


def _percentiles(samples_ns: list[int]) -> str:
    a = np.asarray(samples_ns, dtype=float) / 1e3
    return f"p50 {np.percentile(a, 50):7.1f} us   p99 {np.percentile(a, 99):7.1f} us   max {a.max():8.1f} us   (n={a.size})"


def run(robot: str = "fr3", seconds: float = 20.0, horizon: int = 8, chunk_dt: float = 0.1,
        blend_mode: str = "crossfade", trajectory_points: int = 2) -> dict[str, list[int]]:
    limits = load_robot_limits(robot)
    core = ExecutorCore(limits, blend_mode=blend_mode, trajectory_points=trajectory_points)
    dt = core.dt
    q = np.array(limits.start_pose)
    now = 0.0
    for k in (2, 1, 0):  # enable needs a short history that shows the arm at rest
        core.on_joint_state(q, now - k * dt)
    ok, msg = core.enable(now)
    assert ok, msg
    rng = np.random.default_rng(0)
    timings: dict[str, list[int]] = {"tick": [], "filter": [], "sample": [], "on_chunk_joint": [], "on_chunk_eef": []}
    next_chunk = 0.0
    seq = 0
    ticks = int(seconds / dt)
    for _ in range(ticks):
        if now >= next_chunk:
            stamp = max(0.0, now - 0.05)
            phase = stamp * 0.5
            rows = limits.start_pose + 0.2 * np.sin(phase + chunk_dt * 0.5 * np.arange(horizon))[:, None] * np.ones(7)
            rows = rows + rng.normal(0, 0.002, rows.shape)
            grip = np.full(horizon, 1.0 if int(stamp) % 4 >= 2 else 0.0)
            t0 = time.perf_counter_ns()
            result = core.on_chunk(Chunk(stamp, chunk_dt, JOINT_POSITION, limits.joint_names, rows, grip, seq), now)
            timings["on_chunk_joint"].append(time.perf_counter_ns() - t0)
            assert result.accepted, result.reason
            seq += 1
            next_chunk += 0.2
        t0 = time.perf_counter_ns()
        cmd = core.tick(now)
        timings["tick"].append(time.perf_counter_ns() - t0)
        q = cmd.positions
        now = round(now + dt, 9)
        core.on_joint_state(q, now)

    # Components alone.
    f = core.filter
    target = f.q + 0.01
    for _ in range(5000):
        f.set_measured(f.q, now)
        t0 = time.perf_counter_ns()
        f.step(target, now)
        timings["filter"].append(time.perf_counter_ns() - t0)
    s = core.scheduler
    s.clear()
    s.reset_ordering()
    rows = np.tile(np.array(limits.start_pose), (horizon, 1))
    s.add_chunk(Chunk(now, 0.1 * 5000 * dt, JOINT_POSITION, limits.joint_names, rows), now)
    for k in range(5000):
        t0 = time.perf_counter_ns()
        s.sample(now + k * dt)
        timings["sample"].append(time.perf_counter_ns() - t0)
    # EEF_DELTA chunk conversion (IK per row).
    for k in range(50):
        s.clear()
        s.reset_ordering()
        eef = np.zeros((horizon, 6))
        eef[:, 0] = 0.002
        eef[:, 5] = 0.005
        t0 = time.perf_counter_ns()
        r = s.add_chunk(Chunk(now + k, chunk_dt, EEF_DELTA, [], eef), now + k, reference_q=np.array(limits.start_pose))
        timings["on_chunk_eef"].append(time.perf_counter_ns() - t0)
        assert r.accepted, r.reason
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="fr3")
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds of 250 Hz ticks")
    parser.add_argument("--blend-mode", default="crossfade")
    parser.add_argument("--trajectory-points", type=int, default=2,
                        help="points per command (2, the node default: next point + stop to rest)")
    args = parser.parse_args(argv)
    timings = run(args.robot, args.seconds, blend_mode=args.blend_mode, trajectory_points=args.trajectory_points)
    print(f"control-core benchmark ({args.robot}, {args.blend_mode}, 250 Hz, chunks of 8 every 0.2 s, "
          f"{args.trajectory_points} trajectory points)")
    for key in ("tick", "filter", "sample", "on_chunk_joint", "on_chunk_eef"):
        print(f"  {key:15s} {_percentiles(timings[key])}")
    p99 = np.percentile(np.asarray(timings["tick"]) / 1e3, 99)
    print(f"  tick p99 {'within' if p99 < 200 else 'ABOVE'} the 200 us target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
