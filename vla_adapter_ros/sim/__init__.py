"""Pure-Python MuJoCo simulation of a Franka arm on a table with cubes (no ROS imports).

Modules: ``scene`` (model building), ``env`` (FrankaSimEnv), ``tasks`` (instructions, placement,
success), ``expert`` (scripted expert), ``oracle`` (the expert as a policy: EEF-delta chunks),
``closed_loop`` (chunks -> the real ExecutorCore -> the simulation, without ROS), ``runner`` (episodes,
``bench``). Needs the ``mujoco``
and ``robosuite`` (model files only; never imported) packages. Names are imported lazily so that
importing this package does not import mujoco.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FrankaSimEnv": "env",
    "EefPose": "env",
    "READY_POSE": "env",
    "TASKS": "tasks",
    "Task": "tasks",
    "get_task": "tasks",
    "ScriptedExpert": "expert",
    "ExpertAction": "expert",
    "HoldPolicy": "expert",
    "ExpertOracle": "oracle",
    "run_chunk_episode": "closed_loop",
    "run_episode": "runner",
    "apply_action": "runner",
    "EpisodeResult": "runner",
    "bench": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
