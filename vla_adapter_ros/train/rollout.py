"""Rollouts: a policy in closed loop in the built-in simulation, without ROS (deterministic, for failure analysis).

Each episode runs :func:`~vla_adapter_ros.sim.closed_loop.run_chunk_episode`: the real
:class:`~vla_adapter_ros.control.ExecutorCore` (configured from the simulation stack's executor parameter
files) drives the simulated arm at its control rate, and every chunk request is answered by the policy
(:class:`PolicySource`) on the cameras rendered at the newest camera frame, with the task's instruction,
``latency_s`` of simulated time later. What the ROS stack adds (middleware, threads, wall-clock pacing) is
left out, so the same weights and seeds always give the same episodes; `vla-adapter-ros demo` measures the
real nodes.

Besides success, each episode reports how far it got in the quantities the task's success test uses
(:meth:`~vla_adapter_ros.sim.tasks.Task.progress`: distance to the reach goal, the push's shift to the left,
the lift's height), the tool's closest approach to the instructed cube and the time of it, the gripper
closures, and whether the executor rejected chunks or clipped targets: where a failed episode went wrong.

    report = rollout_report("run/final", ["reach_red"], range(1000, 1010))
    print(format_rollouts(report))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from .targeting import TargetingError, _one_line, _resolve_tasks, evaluating, observe, prepare_policy, resolve_seeds
from .targeting import sim_env

DEFAULT_LATENCY_S = 0.05  # simulated s from a chunk request to its chunk (the demo's auto pacing: ~0.03-0.06)


class PolicySource:
    """Chunks from a policy (``.predict(images, instruction, proprio)``) for
    :func:`~vla_adapter_ros.sim.closed_loop.run_chunk_episode`: the cameras are rendered at every camera frame,
    and a chunk for frame ``t_obs`` is predicted from that frame's images, as policy_node does."""

    def __init__(self, policy, spec, cameras: Sequence[str], image_size, instruction: Optional[str] = None):
        self.policy, self.spec, self.cameras, self.image_size = policy, spec, list(cameras), tuple(image_size)
        self.instruction_override = instruction
        self.instruction = ""
        self.frame = None  # (t, images, proprio) of the newest camera frame
        self.closures: List[float] = []  # first row's closure of every chunk

    def reset(self, env, task) -> None:
        self.instruction = self.instruction_override or task.instruction
        self.frame, self.closures = None, []

    def observe(self, env, t: float) -> None:
        images, proprio, _, _ = observe(env, self.cameras, self.image_size, self.spec.proprio_layout)
        self.frame = (t, images, proprio)

    def chunk(self, env, t_obs: float, pose_obs: np.ndarray):
        if self.frame is None or abs(self.frame[0] - t_obs) > 1e-9:
            raise RuntimeError(f"no rendered frame for the observation at t={t_obs:.3f} s")
        _, images, proprio = self.frame
        actions = np.asarray(self.policy.predict(images, self.instruction, proprio))
        if not np.all(np.isfinite(actions)):
            raise FloatingPointError(f"the model produced non-finite actions at t={t_obs:.2f} s")
        arm, closure = self.spec.split(actions)
        if closure is not None:
            self.closures.append(float(closure[0]))
        return arm, closure, self.spec.dt


def _episode_row(task, seed: int, ep, env, source: PolicySource, t_limit: float) -> Dict[str, Any]:
    cube0 = env.task_initial_cubes[task.target]  # the episode's reset remembers where the cubes started
    # the tool at every camera frame, and where the episode ended (success can come between two frames)
    times = np.array([t for t, _ in ep.log] + [ep.sim_time_s])
    tool = np.array([p for _, p in ep.log] + [env.eef_pose().position])
    dist = np.linalg.norm(tool - cube0, axis=1)
    closest = int(np.argmin(dist))
    progress = {k: round(v, 4) if isinstance(v, float) else v for k, v in task.progress(env).items()}
    closures = np.asarray(source.closures)
    return {
        "task": task.name, "seed": int(seed), "success": bool(ep.success), "sim_seconds": round(ep.sim_time_s, 2),
        "time_limit_s": t_limit, **progress,
        "closest_to_target_m": round(float(dist[closest]), 4), "closest_at_s": round(float(times[closest]), 2),
        "final_to_target_m": round(float(dist[-1]), 4),
        "path_m": round(float(np.linalg.norm(np.diff(tool, axis=0), axis=1).sum()), 3),
        "chunks": int(ep.chunks_accepted), "chunks_rejected": int(ep.chunks_rejected),
        "reject_reasons": sorted(set(ep.reject_reasons)), "clipped": dict(ep.clip_counts),
        "gripper_closed_chunks": int((closures > 0.5).sum()), "executor_state": ep.state,
    }


def rollout_report(checkpoint_or_policy, tasks: Optional[Iterable[str]] = None, seeds: Optional[Iterable[int]] = None,
                   *, io: Any = None, cameras: Optional[Sequence[str]] = None,
                   image_size: Optional[Sequence[int]] = None, start_jitter: float = 0.0,
                   max_duration_s: Optional[float] = None, latency_s: float = DEFAULT_LATENCY_S,
                   instruction: Optional[str] = None, params: Sequence[str] = (), device: str = "cpu", env=None,
                   progress: bool = True) -> Dict[str, Any]:
    """Closed-loop episodes of a policy per task and seed (see the module docstring).

    checkpoint_or_policy, io, cameras, image_size, start_jitter, device, env: as for
    :func:`~vla_adapter_ros.train.targeting.targeting_report`; seeds: default 1000..1009 (held out);
    max_duration_s: simulated seconds per episode (default: each task's limit); latency_s: simulated time
    from a chunk request to its chunk; instruction: replaces every task's (e.g. to check that the policy
    follows the words); params: executor parameter files read after the simulation stack's (executor.yaml,
    executor_sim.yaml), as `demo --params` passes them to executor_node.

    Returns {"tasks": {name: {"episodes", "successes", "success_rate", "mean_sim_seconds_success",
    "median_closest_to_target_m"}}, "overall": {"episodes", "successes", "success_rate"}, "episodes": [one row
    per (task, seed): success, sim_seconds, the task's progress values, closest_to_target_m / closest_at_s /
    final_to_target_m (tool to the instructed cube's start position), path_m, chunks, chunks_rejected,
    reject_reasons, clipped, gripper_closed_chunks, executor_state], and what ran}.
    """
    from tqdm import tqdm

    from ..sim.closed_loop import executor_parameters, run_chunk_episode

    task_list = _resolve_tasks(tasks)
    seed_list = resolve_seeds(seeds)
    if not (latency_s >= 0.0 and np.isfinite(latency_s)):
        raise TargetingError(f"latency must be >= 0 s, got {latency_s}")
    if max_duration_s is not None and not (max_duration_s > 0 and np.isfinite(max_duration_s)):
        raise TargetingError(f"max duration must be > 0 s, got {max_duration_s}")
    policy, spec, sim_cams, size, source_path = prepare_policy(checkpoint_or_policy, io, cameras, image_size, device)
    if spec.action_space != "eef_delta":
        raise TargetingError(f"rollouts drive the simulation with EEF-delta chunks; this policy outputs "
                             f"{spec.action_space}")
    missing = [str(f) for f in params if not Path(f).is_file()]
    if missing:
        raise TargetingError(f"parameter file not found: {', '.join(missing)}")
    env = env if env is not None else sim_env(size)
    executor = executor_parameters(extra=params)
    if start_jitter:
        executor["require_start_pose"] = False  # as collect: a random start is not the start pose the gate expects
    source = PolicySource(policy, spec, sim_cams, size, instruction)
    rows: List[Dict[str, Any]] = []
    with evaluating(policy), tqdm(total=len(task_list) * len(seed_list), desc="rollouts", unit="ep",
                                  disable=not progress) as bar:
        for task in task_list:
            limit = float(max_duration_s or task.max_duration_s)
            for seed in seed_list:
                try:
                    ep = run_chunk_episode(task.name, seed, source, env=env, params=executor,
                                           start_jitter=start_jitter, max_duration_s=limit, latency_s=latency_s)
                except (RuntimeError, FloatingPointError) as e:
                    raise TargetingError(f"{task.name} seed {seed}: {_one_line(e)}") from e
                rows.append(_episode_row(task, seed, ep, env, source, limit))
                bar.update(1)
                bar.set_postfix_str(f"{sum(r['success'] for r in rows)}/{len(rows)} ok")
    per_task = {}
    for task in task_list:
        mine = [r for r in rows if r["task"] == task.name]
        ok = [r for r in mine if r["success"]]
        per_task[task.name] = {
            "instruction": instruction or task.instruction, "episodes": len(mine), "successes": len(ok),
            "success_rate": len(ok) / len(mine),
            "mean_sim_seconds_success": float(np.mean([r["sim_seconds"] for r in ok])) if ok else None,
            "median_closest_to_target_m": float(np.median([r["closest_to_target_m"] for r in mine])),
        }
    n_ok = sum(r["success"] for r in rows)
    return {"checkpoint": source_path, "model_id": getattr(policy, "model_id", None), "seeds": seed_list,
            "cameras": list(sim_cams), "image_size": list(size), "start_jitter": float(start_jitter),
            "latency_s": float(latency_s), "max_duration_s": max_duration_s, "params": [str(f) for f in params],
            "tasks": per_task,
            "overall": {"episodes": len(rows), "successes": n_ok, "success_rate": n_ok / len(rows)},
            "episodes": rows}


def format_rollouts(r: Dict[str, Any]) -> str:
    """Per-task success and, for each failed episode, where it ended."""
    what = r["checkpoint"] or r["model_id"] or "policy"
    lines = [f"closed loop without ROS: {what}, {len(r['seeds'])} seeds per task from {r['seeds'][0]}, "
             f"latency {r['latency_s']:g} s (simulated)",
             f"{'task':<16}{'success':>10}{'mean s (ok)':>13}{'closest (median)':>18}"]
    for name, s in r["tasks"].items():
        mean = "-" if s["mean_sim_seconds_success"] is None else f"{s['mean_sim_seconds_success']:.1f}"
        lines.append(f"{name:<16}{s['successes']:>5}/{s['episodes']:<4}{mean:>13}"
                     f"{s['median_closest_to_target_m'] * 100:>15.1f} cm")
    o = r["overall"]
    lines.append(f"{'all':<16}{o['successes']:>5}/{o['episodes']:<4} ({o['success_rate']:.0%})")
    failed = [e for e in r["episodes"] if not e["success"]]
    if failed:
        lines.append("failed episodes (tool distances to the instructed cube's start position):")
        skip = {"task", "seed", "success", "time_limit_s", "reject_reasons", "clipped", "executor_state"}
        for e in failed:
            extra = ", ".join(f"{k} {v}" for k, v in e.items() if k not in skip and v not in ({}, [], None))
            notes = (f"; rejected: {', '.join(e['reject_reasons'])}" if e["reject_reasons"] else "") + (
                f"; clipped: {e['clipped']}" if e["clipped"] else "")
            lines.append(f"  {e['task']} seed {e['seed']}: {extra}{notes}")
    return "\n".join(lines)
