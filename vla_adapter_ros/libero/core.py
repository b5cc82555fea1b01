"""What the official LIBERO evaluation feeds a VLA-Adapter checkpoint and what it does with the
output, as small pure functions (numpy only; no ROS, no libero import).

Observations: LIBERO renders upside down; the evaluation rotates both camera images by 180 degrees
(the training data went through the same rotation). Proprio is 8 numbers: end-effector position
(3), the end-effector quaternion as axis-angle with robosuite's convention (3), and the two finger
joint positions (2).

Actions: 7 numbers, 6 arm deltas in OSC_POSE controller units ([-1, 1], 1 = 0.05 m or 0.5 rad per
step) and the gripper (-1 open, +1 closed). Our ActionChunk carries SI units and a 0 (open) .. 1
(closed) gripper, so the bridge converts back with `si_to_controller` / `env_action`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vla_adapter_ros.inference.io_spec import LIBERO_ACTION_SCALE, quaternion_to_axis_angle

# suite -> steps per episode after the wait steps (the official evaluation's limits).
SUITES = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}
# The paper's table columns.
PAPER_COLUMNS = {"libero_spatial": "Spatial", "libero_object": "Object", "libero_goal": "Goal", "libero_10": "Long"}
NUM_STEPS_WAIT = 10  # no-op steps at the start of every episode while objects settle
DUMMY_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # no motion, gripper open
CONTROL_HZ = 20.0
CONTROLLER_SCALE = np.asarray(LIBERO_ACTION_SCALE, dtype=np.float64)
CAMERA_KEYS = {"agentview": "agentview_image", "wrist": "robot0_eye_in_hand_image"}


@dataclass(frozen=True)
class TaskSpec:
    suite: str
    index: int

    def __str__(self) -> str:
        return f"{self.suite}/{self.index}"

    @property
    def max_steps(self) -> int:
        return SUITES[self.suite]


def parse_task_spec(text: str, default_suite: str = "libero_spatial") -> TaskSpec:
    """"libero_spatial/3", "libero_spatial:3", or a bare index ("3", in `default_suite`)."""
    text = str(text).strip()
    match = re.fullmatch(r"(?:([a-z0-9_]+)[/:])?(\d+)", text)
    if not match:
        raise ValueError(f"task {text!r}: expected SUITE/INDEX, e.g. libero_spatial/3")
    suite = match.group(1) or default_suite
    if suite not in SUITES:
        raise ValueError(f"task {text!r}: unknown suite {suite!r} (one of {', '.join(SUITES)})")
    return TaskSpec(suite, int(match.group(2)))


def flip_image(image: np.ndarray) -> np.ndarray:
    """Rotate an H x W x C image by 180 degrees (LIBERO renders upside down)."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected an H x W x C image, got shape {image.shape}")
    return np.ascontiguousarray(image[::-1, ::-1])


def libero_proprio(eef_pos, eef_quat_xyzw, gripper_qpos) -> np.ndarray:
    """The 8-d proprio of the official evaluation: eef position, robosuite axis-angle of the eef
    quaternion (no sign canonicalisation), finger joint positions."""
    pos = np.asarray(eef_pos, dtype=np.float64).reshape(3)
    fingers = np.asarray(gripper_qpos, dtype=np.float64).reshape(2)
    return np.concatenate([pos, quaternion_to_axis_angle(eef_quat_xyzw, shortest=False), fingers])


def si_to_controller(delta_si) -> np.ndarray:
    """[dx dy dz (m), drx dry drz (rad)] per step -> OSC_POSE controller units."""
    return np.asarray(delta_si, dtype=np.float64).reshape(6) / CONTROLLER_SCALE


def controller_to_si(delta_controller) -> np.ndarray:
    """OSC_POSE controller units -> [m, m, m, rad, rad, rad] per step (what the policy node does
    with action_scale = LIBERO_ACTION_SCALE)."""
    return np.asarray(delta_controller, dtype=np.float64).reshape(6) * CONTROLLER_SCALE


def env_action(command) -> np.ndarray:
    """An executor command [dx dy dz drx dry drz (SI), closure 0..1] -> LIBERO's 7-d action.

    The gripper is binarised like the official evaluation (closure >= 0.5 -> +1 closed, else -1
    open). Raises ValueError for a wrong size or non-finite values (the caller holds instead).
    """
    command = np.asarray(command, dtype=np.float64).reshape(-1)
    if command.size != 7:
        raise ValueError(f"expected 7 values [dx dy dz drx dry drz gripper], got {command.size}")
    if not np.all(np.isfinite(command)):
        raise ValueError(f"non-finite command {command.tolist()}")
    arm = si_to_controller(command[:6])
    return np.concatenate([arm, [1.0 if command[6] >= 0.5 else -1.0]])


def hold_action(last_gripper: float = -1.0) -> np.ndarray:
    """No motion, keep the gripper (env units)."""
    return np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, float(last_gripper)])


def observation(obs: dict) -> dict:
    """A LIBERO observation dict -> what the bridge publishes: upright images, proprio and state."""
    return {
        "agentview": flip_image(obs[CAMERA_KEYS["agentview"]]),
        "wrist": flip_image(obs[CAMERA_KEYS["wrist"]]),
        "proprio": libero_proprio(obs["robot0_eef_pos"], obs["robot0_eef_quat"], obs["robot0_gripper_qpos"]),
        "eef_pos": np.asarray(obs["robot0_eef_pos"], dtype=np.float64),
        "eef_quat_xyzw": np.asarray(obs["robot0_eef_quat"], dtype=np.float64),
        "joint_pos": np.asarray(obs["robot0_joint_pos"], dtype=np.float64),
        "joint_vel": np.asarray(obs["robot0_joint_vel"], dtype=np.float64),
        "gripper_qpos": np.asarray(obs["robot0_gripper_qpos"], dtype=np.float64),
        "gripper_qvel": np.asarray(obs["robot0_gripper_qvel"], dtype=np.float64),
    }


def success_table(rates: dict[str, float]) -> str:
    """The paper's table row: columns Spatial / Object / Goal / Long / Avg, success in %.

    `rates` maps suite -> success rate 0..1; suites not evaluated show "-", Avg is the mean of
    the evaluated paper suites (other suites, e.g. libero_90, get their own column and count in
    Avg only when no paper suite was evaluated)."""
    columns = list(PAPER_COLUMNS.items()) + [(s, s) for s in rates if s not in PAPER_COLUMNS]
    header = [name for _, name in columns] + ["Avg"]
    cells = [f"{100 * rates[s]:.1f}" if s in rates else "-" for s, _ in columns]
    evaluated = [rates[s] for s in rates if s in PAPER_COLUMNS] or list(rates.values())
    cells.append(f"{100 * sum(evaluated) / len(evaluated):.1f}" if evaluated else "-")
    widths = [max(len(h), len(c)) for h, c in zip(header, cells)]
    line = lambda items: "| " + " | ".join(i.rjust(w) for i, w in zip(items, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", line(cells)])
