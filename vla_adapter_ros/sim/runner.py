"""Headless episode runner and a small benchmark (``python -m vla_adapter_ros.sim.runner``)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

from vla_adapter_ros.sim.env import GRIPPER_MAX_WIDTH_M, FrankaSimEnv
from vla_adapter_ros.sim.expert import ScriptedExpert
from vla_adapter_ros.sim.tasks import get_task


@dataclass
class EpisodeResult:
    task: str
    seed: int
    success: bool
    steps: int  # control steps
    sim_time_s: float
    wall_time_s: float
    frames: list = field(default_factory=list)  # [{camera: image}] per control step if rendered
    actions: list = field(default_factory=list)  # ExpertAction per control step if recorded


def apply_action(env: FrankaSimEnv, q_prev: np.ndarray, action, control_dt: float,
                 chunk_substeps: int = 5) -> np.ndarray:
    """Execute one control period: the joint reference ramps linearly from ``q_prev`` to
    ``action.q_target`` (velocity feed-forward = slope), updated every ``chunk_substeps`` physics
    steps; gripper command 0..1 -> width 0.08..0 m. Returns the new reference."""
    env.set_gripper(GRIPPER_MAX_WIDTH_M * (1.0 - float(action.gripper)))
    q_new = np.asarray(action.q_target, dtype=float)
    n = max(1, int(round(control_dt / env.timestep)))
    qd = (q_new - q_prev) / control_dt
    done = 0
    while done < n:
        k = min(chunk_substeps, n - done)
        alpha = (done + k) / n
        env.set_joint_targets(q_prev + alpha * (q_new - q_prev), qd)
        env.step(k)
        done += k
    env.set_joint_targets(q_new)
    return q_new


def run_episode(task_name: str, seed: int, env: FrankaSimEnv | None = None, policy=None,
                control_hz: float = 20.0, max_duration_s: float | None = None,
                stop_on_success: bool = True, cameras=(), image_size=(224, 224),
                record_actions: bool = False, start_jitter: float = 0.0) -> EpisodeResult:
    """Run one episode headless. ``policy`` needs ``reset(env)`` and ``act(env)`` returning an
    object with ``q_target`` and ``gripper`` (default: the scripted expert). ``cameras``: names
    to render at every control step (frames returned)."""
    task = get_task(task_name)
    env = env or FrankaSimEnv()
    task.reset(env, seed, start_jitter)
    policy = policy if policy is not None else ScriptedExpert(task, control_hz=control_hz)
    policy.reset(env)
    dt = 1.0 / control_hz
    limit = task.max_duration_s if max_duration_s is None else max_duration_s
    t_wall = time.perf_counter()
    t0 = env.sim_time
    q_ref = env.joint_positions()
    result = EpisodeResult(task_name, seed, False, 0, 0.0, 0.0)
    while env.sim_time - t0 < limit - 1e-9:
        if cameras:
            result.frames.append({c: env.render(c, image_size[0], image_size[1]) for c in cameras})
        action = policy.act(env)
        if record_actions:
            result.actions.append(action)
        q_ref = apply_action(env, q_ref, action, dt)
        result.steps += 1
        if task.success(env):
            result.success = True
            if stop_on_success:
                break
        elif not stop_on_success:
            result.success = False
    result.sim_time_s = env.sim_time - t0
    result.wall_time_s = time.perf_counter() - t_wall
    return result


def bench(seconds: float = 2.0, renders: int = 20, size: int = 224) -> dict:
    """Real-time factor of physics alone (expert episode motion, contacts included) and ms per
    control step to render agentview + wrist at size x size (fast mode)."""
    env = FrankaSimEnv()
    task = get_task("lift_green")
    task.reset(env, 0)
    expert = ScriptedExpert(task)
    expert.reset(env)
    q_ref = env.joint_positions()
    t = time.perf_counter()
    t0 = env.sim_time
    while env.sim_time - t0 < seconds:
        q_ref = apply_action(env, q_ref, expert.act(env), 0.05)
    wall = time.perf_counter() - t
    rtf_controlled = (env.sim_time - t0) / wall
    t = time.perf_counter()
    env.step(int(seconds / env.timestep))
    rtf_raw = seconds / (time.perf_counter() - t)
    env.render("agentview", size, size)
    env.render("wrist", size, size)
    t = time.perf_counter()
    for _ in range(renders):
        env.render("agentview", size, size)
        env.render("wrist", size, size)
    render_ms = (time.perf_counter() - t) / renders * 1000.0
    t = time.perf_counter()
    for _ in range(max(2, renders // 5)):
        env.render("agentview", size, size, fast=False)
        env.render("wrist", size, size, fast=False)
    render_slow_ms = (time.perf_counter() - t) / max(2, renders // 5) * 1000.0
    out = {
        "physics_rtf_raw": rtf_raw,
        "physics_rtf_with_expert_ik": rtf_controlled,
        "render_ms_2cams_fast": render_ms,
        "render_ms_2cams_shadows_msaa": render_slow_ms,
        "timestep_s": env.timestep,
    }
    env.close()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=0, help="expert episodes per task to run")
    ap.add_argument("--tasks", nargs="*", default=["reach_red", "push_blue_left", "lift_green"])
    args = ap.parse_args(argv)
    for k, v in bench().items():
        print(f"{k}: {v:.4g}")
    if args.episodes:
        env = FrankaSimEnv()
        for name in args.tasks:
            res = [run_episode(name, s, env=env) for s in range(args.episodes)]
            ok = sum(r.success for r in res)
            steps = np.mean([r.steps for r in res])
            sim_t = np.mean([r.sim_time_s for r in res])
            wall_t = np.mean([r.wall_time_s for r in res])
            print(f"{name}: {ok}/{len(res)} success, mean steps {steps:.1f}, sim {sim_t:.2f} s, "
                  f"wall {wall_t:.2f} s")
            for r in res:
                if not r.success:
                    print("  failed seed", r.seed)


if __name__ == "__main__":
    main()
