"""Probes of two executor behaviours the closed-loop checks of the simulation depend on (README
"Closed-loop check"), so that those tests assert success once the executor has them and mark the known
failure (xfail) until then.

* ``anchors_delta_chunks``: EEF-delta rows are integrated from the joint state at the chunk's stamp, every
  row counted (the rows already in the past too), and row i's integrated target is for the end of its period,
  stamp + (i + 1) dt (a row is the motion "next state minus state", as `convert` labels it); rather than the
  rows still due integrated from the reference at the chunk's arrival, which counts the motion between the
  observation and the arrival twice, with row i's target at stamp + i dt, a period early (both drift ahead).
* ``resync_forgets_gripper``: ``~/resync`` (after a simulation reset, which opens the gripper) makes the
  next gripper value an event, instead of comparing it with the state the binariser remembers from the
  previous episode (a closed gripper would then never be closed again).
"""

from __future__ import annotations

import numpy as np


def anchors_delta_chunks() -> bool:
    from vla_adapter_ros.control import Chunk, ExecutorCore, FrankaKinematics, load_robot_limits
    from vla_adapter_ros.control.chunk import EEF_DELTA

    limits = load_robot_limits("fr3_sim")
    core = ExecutorCore(limits, require_start_pose=False, trajectory_points=2)
    q0 = np.array(limits.start_pose)
    for k in range(10):  # at rest, t = 0 .. 0.09 s
        core.on_joint_state(q0, 0.01 * k)
    ok, message = core.enable(0.09)
    assert ok, message
    rows = np.tile([0.01, 0.0, 0.0, 0.0, 0.0, 0.0], (4, 1))  # +1 cm in x per row, rows 0.05 s apart
    result = core.on_chunk(Chunk(0.0, 0.05, EEF_DELTA, [], rows), 0.09)  # arrives 0.09 s after the observation
    assert result.accepted, result
    kin = FrankaKinematics()
    first_time = float(core.scheduler.times[0])  # the first target still due
    first_dx = kin.fk_position(core.scheduler.targets[0])[0] - kin.fk_position(q0)[0]
    # the arm was at rest: at time k * 0.05 after the stamp it must be asked to be k cm further
    return bool(abs(first_time - 0.10) < 1e-9 and abs(first_dx - 0.02) < 2e-3)


def resync_forgets_gripper() -> bool:
    from vla_adapter_ros.control import ExecutorCore, load_robot_limits

    core = ExecutorCore(load_robot_limits("fr3_sim"))
    core.gripper.update(1.0)  # believed closed
    ok, message = core.resync()
    assert ok, message
    return core.gripper.state is None
