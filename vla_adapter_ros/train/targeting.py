"""Targeting: does a policy's first chunk head for the cube the instruction names? (seconds, not closed-loop hours)

For each task and held-out seed the built-in MuJoCo scene is reset (three cubes, red / green / blue; the
instruction names one), the cameras the checkpoint was trained on are rendered at its image size, and the
model runs once on that first observation with the task's instruction. The scripted expert's first chunk
(:class:`~vla_adapter_ros.sim.oracle.ExpertOracle`, planned within the ``fr3_sim`` limits as in sim_node's
oracle mode, with the model's horizon and row period) is scored the same way.

Definition. With p the tool (TCP) position at the observation and c_k the centre of cube k:

* the chunk's net tool translation d is, for EEF-delta chunks, the sum of the rows' translations; for
  joint-position chunks FK(last row) - FK(q); for joint-delta chunks FK(q + sum of rows) - FK(q) (q: the
  measured joints; FK is the project's kinematics, whose TCP is the simulator's);
* the chunk *heads for* the cube with the largest cos(d, c_k - p); a chunk with |d| < 1 mm heads for none.

Per task: ``rate`` (share of seeds whose chunk heads for the instructed cube), ``mean_cos`` (mean cosine
between d and the direction to the instructed cube; a "none" chunk counts 0), ``none`` (chunks under 1 mm),
for the model and for the expert, next to the chance level 1/3 and the *blind* rate: that of a policy that
reads the instruction but not the images, one fixed translation per task (the mean unit direction from the
tool to the instructed cube over seeds 0..99, collect's first episodes). Blind can be well above 1/3 because
the instructed cube is placed in a range of its own (push_blue_left's blue cube lies right of the centre:
"move right" heads for it on about two seeds in three). A policy that has learned to look at the images
and read the instruction is above blind long before it can finish a task in closed loop; one at blind has
learned the instruction's average direction only.

The model runs in eval mode (no sampling noise) inside a forked torch RNG, so a report is a deterministic
function of the weights, the tasks and the seeds, and calling it (e.g. during training) does not change the
caller's random streams.

    report = targeting_report("run/final", ["reach_red"], range(1000, 1010))
    print(format_targeting(report))
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

CHANCE = 1.0 / 3.0
MIN_MOVE_M = 1e-3  # a chunk whose net tool translation is shorter heads for no cube
DEFAULT_FIRST_SEED = 1000  # held out: collect's episodes use seeds from 0
DEFAULT_NUM_SEEDS = 10
DEFAULT_IMAGE_SIZE = (224, 224)  # (H, W): what `collect` and `convert` write unless told otherwise
BLIND_SEEDS = range(100)  # the placements a blind policy is fitted to: collect's first 100 episodes
ORACLE_ROBOT = "fr3_sim"  # the executor limits sim_node's oracle (and so `collect`) plans within
# dataset camera name -> simulation camera (`convert` names the cameras primary, wrist, cam2, ...)
SIM_CAMERAS = {"primary": "agentview", "agentview": "agentview", "wrist": "wrist"}
DEFINITION = ("the chunk heads for the cube with the largest cosine between its net tool translation d "
              "(EEF deltas: sum of the rows' translations; joint chunks: FK of the last target minus FK of "
              "the measured joints) and the direction from the tool to the cube's centre; |d| < 1 mm: none")


class TargetingError(ValueError):
    """A missing or unusable checkpoint, an unknown task or camera, or inconsistent inputs."""


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
def net_translation(action_space: str, arm: np.ndarray, q: Optional[np.ndarray] = None,
                    kinematics=None) -> np.ndarray:
    """Net tool translation (3,) in m, base frame, of a chunk's arm rows (horizon, arm_dim) in SI units.

    eef_delta: sum of the rows' [dx dy dz]; joint_position: FK(last row) - FK(q); joint_delta:
    FK(q + sum of rows) - FK(q). ``q`` (7,) are the measured joints (joint chunks only)."""
    arm = np.asarray(arm, dtype=np.float64)
    if arm.ndim != 2 or arm.shape[0] == 0:
        raise TargetingError(f"expected a (horizon, arm_dim) chunk, got shape {arm.shape}")
    if action_space == "eef_delta":
        return arm[:, :3].sum(axis=0)
    if action_space not in ("joint_position", "joint_delta"):
        raise TargetingError(f"unknown action space {action_space!r}")
    if q is None:
        raise TargetingError(f"{action_space} chunks need the measured joint positions")
    if kinematics is None:
        from ..control.kinematics import FrankaKinematics

        kinematics = FrankaKinematics()
    q = np.asarray(q, dtype=np.float64).reshape(7)
    last = arm[-1] if action_space == "joint_position" else q + arm.sum(axis=0)
    return kinematics.fk_position(last) - kinematics.fk_position(q)


def heads_for(d: np.ndarray, p: np.ndarray, cubes: Dict[str, np.ndarray],
              min_move: float = MIN_MOVE_M) -> Tuple[Optional[str], Dict[str, float]]:
    """(name of the cube the translation ``d`` from tool position ``p`` heads for, or None when
    |d| < ``min_move``; cosine between d and (c_k - p) for every cube, 0 for a chunk that heads for none)."""
    d = np.asarray(d, dtype=np.float64).reshape(3)
    p = np.asarray(p, dtype=np.float64).reshape(3)
    n = float(np.linalg.norm(d))
    if not n >= min_move:  # also catches NaN
        return None, dict.fromkeys(cubes, 0.0)
    cos = {}
    for k, c in cubes.items():
        v = np.asarray(c, dtype=np.float64).reshape(3) - p
        cos[k] = float(d @ v / (n * max(float(np.linalg.norm(v)), 1e-12)))
    return max(cos, key=cos.get), cos


# ---------------------------------------------------------------------------------------------
# policy and its I/O
# ---------------------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _dataset_image_size(dataset: Optional[str], camera: str) -> Optional[Tuple[int, int]]:
    """(H, W) a dataset written by `convert` stores ``camera`` at, if that dataset is readable here."""
    if not dataset:
        return None
    try:
        info = json.loads((Path(dataset) / "meta" / "info.json").read_text())
        h, w = info["features"][f"observation.images.{camera}"]["shape"][:2]
        return int(h), int(w)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_policy(checkpoint: Union[str, Path], device: str = "cpu"):
    """(InferenceEngine, IOSpec keyword arguments, dataset camera names or None, image (H, W) or None) of
    a checkpoint directory, as policy_node loads it (the I/O from the trainer's training.json; without one,
    policy_node's defaults). Raises TargetingError with a one-line message."""
    from ..inference.engine import InferenceEngine
    from ..inference.io_spec import IOSpecError, io_from_checkpoint
    from ..model.checkpoint import CheckpointError
    from ..model.config import ConfigError

    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        raise TargetingError(f"{path}: checkpoint directory not found")
    try:
        io = io_from_checkpoint(path) or {}
        engine = InferenceEngine.load(checkpoint=path, device=device)
    except (CheckpointError, IOSpecError, ConfigError, OSError, RuntimeError) as e:  # RuntimeError: no CUDA
        raise TargetingError(_one_line(e)) from e
    meta_file = path / "training.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    cams = meta.get("cameras")
    size = _dataset_image_size(meta.get("dataset"), cams[0]) if cams else None
    return engine, io, cams, size


def policy_from_model(model, normalizer, tokenizer=None):
    """A ``VLAAdapterPolicy`` (the inference preprocessing) over a live model, e.g. the trainer's, leaving
    its device, dtype and train/eval mode as they were (the report switches to eval mode while it runs)."""
    from ..model.api import VLAAdapterPolicy

    param = next(model.parameters())
    was_training = model.training
    policy = VLAAdapterPolicy(model, normalizer, tokenizer, device=param.device, dtype=param.dtype)
    model.train(was_training)
    return policy


def _sim_cameras(cameras: Optional[Sequence[str]], num_images: int) -> List[str]:
    if cameras is None:
        cameras = ["agentview", "wrist"][:num_images]
    unknown = [c for c in cameras if c not in SIM_CAMERAS]
    if unknown:
        raise TargetingError(f"cameras {unknown} have no simulation camera; known: {sorted(SIM_CAMERAS)}")
    if len(cameras) != num_images:
        raise TargetingError(f"{len(cameras)} cameras {list(cameras)}, the model expects {num_images} images")
    return [SIM_CAMERAS[c] for c in cameras]


def _torch_module(policy):
    """The nn.Module behind an InferenceEngine / VLAAdapterPolicy (None if there is none to switch)."""
    inner = getattr(policy, "policy", policy)
    return getattr(inner, "model", None)


@contextmanager
def evaluating(policy):
    """The policy's module in eval mode inside a forked torch RNG seeded 0 (a report is a deterministic function
    of the weights and does not change the caller's random streams); its train/eval mode restored after."""
    import torch

    module = _torch_module(policy)
    was_training = bool(module.training) if module is not None else False
    dev = next(module.parameters()).device if module is not None else torch.device("cpu")
    try:
        if module is not None:
            module.eval()
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(0)  # eval mode draws no noise; fixed anyway should a model sample
            yield
    finally:
        if module is not None:
            module.train(was_training)


def resolve_seeds(seeds: Optional[Iterable[int]]) -> List[int]:
    """Episode seeds as ints (default DEFAULT_NUM_SEEDS held-out seeds from DEFAULT_FIRST_SEED); TargetingError
    if there are none."""
    seed_list = [int(s) for s in (range(DEFAULT_FIRST_SEED, DEFAULT_FIRST_SEED + DEFAULT_NUM_SEEDS)
                                  if seeds is None else seeds)]
    if not seed_list:
        raise TargetingError("no seeds")
    return seed_list


def sim_env(image_size: Sequence[int]):
    """A FrankaSimEnv whose offscreen buffer fits cameras rendered at ``image_size`` (H, W)."""
    from ..sim.env import FrankaSimEnv

    return FrankaSimEnv(offscreen_max=(max(640, image_size[1]), max(480, image_size[0])))


def prepare_policy(checkpoint_or_policy, io: Any = None, cameras: Optional[Sequence[str]] = None,
                   image_size: Optional[Sequence[int]] = None, device: str = "cpu"):
    """(policy, IOSpec, simulation camera names in model order, render size (H, W), checkpoint path or None)
    of a checkpoint directory or a loaded policy, with the defaults :func:`targeting_report` documents for
    ``io``, ``cameras`` and ``image_size``. Raises TargetingError with a one-line message."""
    from ..inference.io_spec import IOSpec, IOSpecError

    source, size = None, None
    if isinstance(checkpoint_or_policy, (str, Path)):
        source = str(checkpoint_or_policy)
        policy, ckpt_io, ckpt_cams, size = load_policy(checkpoint_or_policy, device)
        io = ckpt_io if io is None else io
        cameras = ckpt_cams if cameras is None else cameras
    else:
        policy = checkpoint_or_policy
        if not (hasattr(policy, "predict") and hasattr(policy, "config")):
            raise TargetingError(f"expected a checkpoint directory or a policy, got {type(policy).__name__}")
    platform = policy.config.platform
    try:
        spec = io if isinstance(io, IOSpec) else IOSpec(action_dim=platform.action_dim, **(io or {}))
    except (IOSpecError, TypeError) as e:
        raise TargetingError(f"action/proprio spec: {_one_line(e)}") from e
    if spec.action_dim != platform.action_dim or spec.proprio_dim != platform.proprio_dim:
        raise TargetingError(f"the spec gives {spec.action_dim} actions and {spec.proprio_dim} proprio values "
                             f"({spec.proprio_layout}), the model has {platform.action_dim} and "
                             f"{platform.proprio_dim}")
    sim_cams = _sim_cameras(cameras, platform.num_images)
    size = tuple(int(x) for x in (image_size or size or DEFAULT_IMAGE_SIZE))
    if len(size) != 2 or min(size) <= 0:
        raise TargetingError(f"image size must be (H, W) > 0, got {size}")
    return policy, spec, sim_cams, size, source


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def _resolve_tasks(tasks: Optional[Iterable[str]]):
    from ..sim.tasks import TASKS

    names = list(TASKS) if tasks is None else [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise TargetingError(f"unknown task{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(TASKS)}")
    if not names:
        raise TargetingError("no tasks")
    return [TASKS[t] for t in names]


def observe(env, cameras: Sequence[str], image_size: Tuple[int, int], proprio_layout: str):
    """(images, proprio, q, tool position) of the env's current state, as the sim stack feeds policy_node
    (cameras rendered at ``image_size`` (H, W); the TCP pose as axis-angle, shortest convention)."""
    from ..inference.io_spec import build_proprio, quaternion_to_axis_angle

    h, w = image_size
    images = [env.render(c, int(w), int(h)) for c in cameras]
    pose = env.eef_pose()
    q = env.joint_positions()
    proprio = build_proprio(proprio_layout, q, env.finger_positions(), pose.position,
                            quaternion_to_axis_angle(pose.quat_xyzw))
    return images, proprio, q, pose.position.copy()


def blind_direction(env, task, start_jitter: float = 0.0, seeds: Sequence[int] = BLIND_SEEDS) -> np.ndarray:
    """The translation of a policy that reads the instruction but not the images: the mean unit direction
    from the tool to the instructed cube over ``seeds`` (default collect's first 100 episodes), one per task.
    Resets ``env``."""
    dirs = []
    for seed in seeds:
        task.reset(env, seed, start_jitter)
        dirs.append(_unit(env.cube_pose(task.target)[0] - env.eef_pose().position))
    return np.mean(dirs, axis=0)


def expert_first_chunk(env, task, horizon: int, dt: float, limits=None) -> np.ndarray:
    """Arm rows (horizon, 6) of the scripted expert's first EEF-delta chunk for the env's current state:
    planned from now, for an observation now (as sim_node's oracle answers the episode's first request)."""
    from ..sim.oracle import ExpertOracle

    oracle = ExpertOracle(task, int(horizon), float(dt), limits=limits)
    oracle.reset(env)
    return oracle.chunk(env.sim_time, env.eef_pose().matrix()).arm


def _summary(rows: List[Dict[str, Any]], who: str) -> Dict[str, Any]:
    n = len(rows)
    hits = sum(r[who]["heads_for"] == r["target"] for r in rows)
    counts: Dict[str, int] = {}
    for r in rows:
        k = r[who]["heads_for"] or "none"
        counts[k] = counts.get(k, 0) + 1
    return {"rate": hits / n if n else float("nan"),
            "mean_cos": float(np.mean([r[who]["cos_target"] for r in rows])) if n else float("nan"),
            "none": counts.get("none", 0), "heads_for": counts,
            "mean_move_mm": float(np.mean([r[who]["move_mm"] for r in rows])) if n else float("nan")}


def targeting_report(checkpoint_or_policy, tasks: Optional[Iterable[str]] = None,
                     seeds: Optional[Iterable[int]] = None, *, io: Any = None,
                     cameras: Optional[Sequence[str]] = None, image_size: Optional[Sequence[int]] = None,
                     start_jitter: float = 0.0, expert: bool = True, device: str = "cpu", env=None,
                     instruction: Optional[str] = None, progress: bool = True) -> Dict[str, Any]:
    """How often the first chunk heads for the instructed cube, per task (see the module docstring).

    checkpoint_or_policy: a checkpoint directory, or a loaded policy (an ``InferenceEngine`` or
        ``VLAAdapterPolicy``: ``.config`` and ``.predict(images, instruction, proprio)``);
    tasks: simulation task names (default all); seeds: episode seeds (default 1000..1009, held out from
        `collect`'s, which start at 0);
    io: IOSpec or its keyword arguments (default: the checkpoint's training.json, else policy_node's defaults;
        required in effect for a loaded policy trained on other than those defaults);
    cameras: dataset camera names in model order (default: the checkpoint's, else agentview + wrist);
        image_size: (H, W) to render at (default: the training dataset's when it is readable, else 224 x 224);
    start_jitter: arm start-pose jitter of the reset (as `collect --start-jitter`);
    expert: also score the scripted expert's first chunk; device: for a checkpoint directory;
    env: a FrankaSimEnv to reuse (default: a new one); instruction: replaces every task's (a language-blind
    baseline is scored with the text it was trained on); progress: tqdm bar.

    Returns {"tasks": {name: {"instruction", "target", "seeds", "model", "expert", "blind"}}, "overall":
    {"model", "expert", "blind"} (over all tasks' seeds), "chance", "samples": [per (task, seed): tool and cube
    positions, and per policy "heads_for", "cos_target", "cos", "move_mm", "d"], "definition", and what ran
    (checkpoint, model_id, action_space, dt, chunk_len, cameras, image_size, start_jitter, seeds)}; each
    summary is {"rate", "mean_cos", "none", "heads_for": {cube or "none": count}, "mean_move_mm"} ("expert"
    only with ``expert``). Raises TargetingError with a one-line message for unusable inputs.
    """
    task_list = _resolve_tasks(tasks)
    seed_list = resolve_seeds(seeds)
    policy, spec, sim_cams, size, source = prepare_policy(checkpoint_or_policy, io, cameras, image_size, device)
    platform = policy.config.platform

    from tqdm import tqdm

    from ..control.kinematics import FrankaKinematics
    from ..control.limits import load_robot_limits

    env = env if env is not None else sim_env(size)
    kin = FrankaKinematics()
    limits = load_robot_limits(ORACLE_ROBOT) if expert else None
    samples: List[Dict[str, Any]] = []
    with evaluating(policy), tqdm(total=len(task_list) * len(seed_list), desc="targeting", unit="obs",
                                  disable=not progress) as bar:
        for task in task_list:
            for seed in seed_list:
                task.reset(env, seed, start_jitter)
                cubes = {c: env.cube_pose(c)[0] for c in env.cubes}
                images, proprio, q, p = observe(env, sim_cams, size, spec.proprio_layout)
                try:
                    actions = np.asarray(policy.predict(images, instruction or task.instruction, proprio))
                except FloatingPointError as e:  # InferenceEngine's check
                    raise TargetingError(f"{task.name} seed {seed}: {_one_line(e)}") from e
                if not np.all(np.isfinite(actions)):
                    raise TargetingError(f"{task.name} seed {seed}: the model produced non-finite actions")
                arm, _ = spec.split(actions)
                row = {"task": task.name, "seed": seed, "target": task.target, "tool": p.tolist(),
                       "cubes": {k: v.tolist() for k, v in cubes.items()},
                       "model": _score(net_translation(spec.action_space, arm, q, kin), p, cubes, task.target)}
                if expert:
                    e_arm = expert_first_chunk(env, task, platform.chunk_len, spec.dt, limits)
                    row["expert"] = _score(net_translation("eef_delta", e_arm), p, cubes, task.target)
                samples.append(row)
                bar.update(1)
    who = ("model", "expert", "blind") if expert else ("model", "blind")
    per_task = {}
    for task in task_list:
        rows = [r for r in samples if r["task"] == task.name]
        blind = blind_direction(env, task, start_jitter)
        for r in rows:
            r["blind"] = _score(blind, np.asarray(r["tool"]), r["cubes"], r["target"])
        per_task[task.name] = {"instruction": instruction or task.instruction, "target": task.target,
                               "seeds": len(rows), **{w: _summary(rows, w) for w in who}}
    return {
        "checkpoint": source, "model_id": getattr(policy, "model_id", None),
        "action_space": spec.action_space, "dt": spec.dt, "chunk_len": int(platform.chunk_len),
        "cameras": list(sim_cams), "image_size": list(size), "start_jitter": float(start_jitter),
        "seeds": seed_list, "chance": CHANCE, "min_move_m": MIN_MOVE_M, "definition": DEFINITION,
        "tasks": per_task, "overall": {w: _summary(samples, w) for w in who}, "samples": samples,
    }


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _score(d: np.ndarray, p: np.ndarray, cubes: Dict[str, np.ndarray], target: str) -> Dict[str, Any]:
    k, cos = heads_for(d, p, cubes)
    return {"heads_for": k, "cos_target": cos[target], "cos": cos, "move_mm": float(np.linalg.norm(d)) * 1e3,
            "d": [float(x) for x in d]}


def format_targeting(r: Dict[str, Any]) -> str:
    """A small table of a :func:`targeting_report`."""
    seeds = r["seeds"]
    span = f"seeds {seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else f"seeds {seeds}"
    expert = "expert" in r["overall"]
    what = r["checkpoint"] or r["model_id"] or "policy"
    cols = [("model", "rate", "model", "{:.2f}"), ("expert", "rate", "expert", "{:.2f}"),
            ("blind", "rate", "blind", "{:.2f}"), ("chance", None, None, "{:.2f}"),
            ("cos model", "mean_cos", "model", "{:.2f}"), ("cos expert", "mean_cos", "expert", "{:.2f}"),
            ("none model", "none", "model", "{:d}"), ("none expert", "none", "expert", "{:d}")]
    cols = [c for c in cols if expert or c[2] != "expert"]
    lines = [f"first chunk heads for the instructed cube: {what}, {len(seeds)} {span} per task, "
             f"{r['action_space']} x {r['chunk_len']}, cameras {'+'.join(r['cameras'])} at "
             f"{r['image_size'][0]}x{r['image_size'][1]}",
             f"{'task':<16}" + "".join(f"{c[0]:>{len(c[0]) + 2}}" for c in cols)]
    rows = list(r["tasks"].items()) + ([("all", r["overall"])] if len(r["tasks"]) > 1 else [])
    for name, s in rows:
        cells = [c[3].format(r["chance"] if c[1] is None else s[c[2]][c[1]]) for c in cols]
        lines.append(f"{name:<16}" + "".join(f"{v:>{len(c[0]) + 2}}" for v, c in zip(cells, cols)))
    lines.append("heads for: the cube with the largest cos(d, cube - tool), d the chunk's net tool translation; "
                 f"|d| < {r['min_move_m'] * 1e3:g} mm: none")
    lines.append("blind: one direction per task for every seed (reads the instruction, not the images); "
                 "cos: mean cos(d, instructed cube - tool), none counting 0")
    return "\n".join(lines)
