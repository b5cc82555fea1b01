"""`vla-adapter-ros diagnose CHECKPOINT DATASET`: does a trained policy use its inputs?

Offline, on frames of a converted dataset (use one the checkpoint was not trained on to see generalisation):

* L1 of the predicted chunks (normalized action space, as in training), overall and per action dimension;
* for each input (camera images, proprio, instruction): the chunks predicted when that one input is taken
  from another frame of the batch, everything else unchanged. Reported as how much the output moves
  (mean |a_swapped - a|) and the L1 to the *own* targets afterwards.

A policy whose output does not move when the images are swapped has not learned to look; one that follows
the proprio of the donor frame learned the "copycat" shortcut of behaviour cloning (continue the motion the
arm is in). Both make closed-loop success impossible while the validation L1 still looks reasonable.

`vla-adapter-ros diagnose CHECKPOINT --targeting` (implied when no DATASET is given): in the built-in
simulation, how often the first chunk on held-out seeds heads for the cube the instruction names, next to the
scripted expert's first chunk and chance (:mod:`vla_adapter_ros.train.targeting`).

`vla-adapter-ros diagnose CHECKPOINT --rollout`: whole episodes in closed loop on the same seeds, through the
real executor core but without ROS (deterministic), with where each failed episode ended
(:mod:`vla_adapter_ros.train.rollout`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

INPUTS = ("images", "proprio", "instruction")


class DiagnoseError(ValueError):
    pass


def _masked_l1(a, b, mask) -> np.ndarray:
    """Per-dimension mean |a - b| over unmasked (sample, step) rows; a, b (B, T, A), mask (B, T)."""
    m = mask[..., None].astype(np.float64)
    return (np.abs(a - b) * m).sum(axis=(0, 1)) / max(m.sum(), 1.0)


def diagnose(checkpoint: Union[str, Path], dataset: Union[str, Path], num_frames: int = 256, batch_size: int = 32,
             seed: int = 0, cameras: Optional[Sequence[str]] = None, progress: bool = False) -> Dict[str, Any]:
    """Returns {"frames", "l1", "l1_per_dim", "action_names", "swap": {input: {"moved", "l1", "changed"}}}."""
    import torch

    from ..data.convert import load_dataset
    from ..model.checkpoint import load_checkpoint
    from ..model.processor import QwenTokenizer
    from .finetune import BatchBuilder

    if batch_size < 2:
        raise DiagnoseError("batch_size must be at least 2 (inputs are swapped between frames of a batch)")
    checkpoint = Path(checkpoint)
    model, norm = load_checkpoint(checkpoint)
    cfg = model.config
    meta_file = checkpoint / "training.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    cams = list(cameras) if cameras else meta.get("cameras")
    ds = load_dataset(dataset, chunk_len=cfg.platform.chunk_len, cameras=cams)
    feats = ds.info.get("features", {})
    a_dim = int(feats.get("action", {}).get("shape", [cfg.platform.action_dim])[0])
    p_dim = int(feats.get("observation.state", {}).get("shape", [cfg.platform.proprio_dim])[0])
    if (a_dim, p_dim, len(ds.cameras)) != (cfg.platform.action_dim, cfg.platform.proprio_dim, cfg.platform.num_images):
        raise DiagnoseError(f"{dataset}: action/proprio/camera counts ({a_dim}, {p_dim}, {len(ds.cameras)}) "
                            f"do not match the checkpoint ({cfg.platform.action_dim}, {cfg.platform.proprio_dim}, "
                            f"{cfg.platform.num_images})")
    builder = BatchBuilder(cfg, norm, QwenTokenizer.load(checkpoint))
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(ds), size=min(int(num_frames), len(ds)), replace=False))
    if len(rows) < 2:
        raise DiagnoseError(f"{dataset}: need at least 2 frames")
    sums = {"own": [], **{k: [] for k in INPUTS}}
    moved = {k: [] for k in INPUTS}
    changed = dict.fromkeys(INPUTS, 0)
    weights = []
    from tqdm import tqdm

    batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    for chunk in tqdm(batches, desc="diagnose", unit="batch", disable=not progress):
        items = [ds[int(i)] for i in chunk]
        b = builder.batch(items)
        n = len(items)
        donor = (np.arange(n) + n // 2) % n  # another frame of the batch (rows are spread over the dataset)
        d = torch.from_numpy(donor)
        target = b["actions"].numpy()
        mask = b["action_mask"].numpy()
        with torch.no_grad():
            own = model(b["pixel_values"], b["input_ids"], b["attention_mask"], b["proprio"]).float().numpy()
            alt = {
                "images": model(b["pixel_values"][d], b["input_ids"], b["attention_mask"], b["proprio"]),
                "proprio": model(b["pixel_values"], b["input_ids"], b["attention_mask"], b["proprio"][d]),
                "instruction": model(b["pixel_values"], b["input_ids"][d], b["attention_mask"][d], b["proprio"]),
            }
        sums["own"].append(_masked_l1(own, target, mask))
        for k, v in alt.items():
            v = v.float().numpy()
            sums[k].append(_masked_l1(v, target, mask))
            moved[k].append(float(np.abs(v - own).mean()))
        changed["instruction"] += sum(items[i]["instruction"] != items[j]["instruction"] for i, j in enumerate(donor))
        changed["images"] += n
        changed["proprio"] += n
        weights.append(n)
    w = np.asarray(weights, dtype=np.float64) / sum(weights)
    avg = {k: np.average(np.stack(v), axis=0, weights=w) for k, v in sums.items()}
    names = feats.get("action", {}).get("names") or [f"a{i}" for i in range(a_dim)]
    return {
        "checkpoint": str(checkpoint),
        "dataset": str(dataset),
        "frames": int(len(rows)),
        "uses_proprio": bool(cfg.platform.use_proprio),
        "action_names": list(names),
        "l1": float(avg["own"].mean()),
        "l1_per_dim": [float(x) for x in avg["own"]],
        "swap": {k: {"moved": float(np.average(moved[k], weights=w)), "l1": float(avg[k].mean()),
                     "changed": int(changed[k])} for k in INPUTS},
    }


def format_report(r: Dict[str, Any]) -> str:
    lines = [f"{r['frames']} frames of {r['dataset']} (normalized actions, L1 as in training)",
             f"L1 {r['l1']:.4f}   per dimension: " + "  ".join(f"{n} {v:.3f}" for n, v in zip(r["action_names"],
                                                                                         r["l1_per_dim"])),
             "input taken from another frame   output moves   L1 to own targets"]
    for k, s in r["swap"].items():
        if k == "proprio" and not r["uses_proprio"]:
            lines.append(f"  {k:<12}                      (model has no proprio input)")
        elif s["changed"] == 0:
            lines.append(f"  {k:<12}                      (all frames share one {k}: not measurable)")
        else:
            lines.append(f"  {k:<12} {s['moved']:>22.4f} {s['l1']:>18.4f}")
    img, pro = r["swap"]["images"], r["swap"]["proprio"]
    if img["moved"] < 0.25 * max(r["l1"], 1e-9):
        lines.append("warning: the output hardly depends on the images: the policy has not learned to look")
    if r["uses_proprio"] and pro["moved"] > 2.0 * img["moved"]:
        lines.append("warning: the output follows the proprio far more than the images (behaviour-cloning 'copycat' "
                     "shortcut): consider training with --no-proprio")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .targeting import DEFAULT_FIRST_SEED, DEFAULT_NUM_SEEDS

    parser.add_argument("checkpoint", help="checkpoint directory (train output, export, or official layout)")
    parser.add_argument("dataset", nargs="?", default=None,
                        help="dataset written by `vla-adapter-ros convert` (ideally not trained on); "
                        "without one, only --targeting runs")
    parser.add_argument("--frames", type=int, default=256, help="frames sampled from the dataset (default 256)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default 32)")
    parser.add_argument("--seed", type=int, default=0, help="frame sampling seed (default 0)")
    parser.add_argument("--cameras", nargs="+", default=None,
                        help="dataset camera names (default: as trained); --targeting maps primary -> agentview")
    parser.add_argument("--output", "--json", dest="json_out", metavar="OUT",
                        help="also write the numbers to this JSON file (with a dataset and --targeting: the offline "
                             "report with a 'targeting' entry; --json: the old spelling)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    t = parser.add_argument_group("targeting (simulation, no dataset needed)")
    t.add_argument("--targeting", action="store_true",
                   help="does the first chunk head for the instructed cube? (implied without DATASET)")
    t.add_argument("--seeds", type=int, nargs=2, default=(DEFAULT_FIRST_SEED, DEFAULT_NUM_SEEDS),
                   metavar=("FIRST", "COUNT"),
                   help=f"episode seeds FIRST .. FIRST+COUNT-1 per task (default {DEFAULT_FIRST_SEED} "
                   f"{DEFAULT_NUM_SEEDS}; collect's start at 0)")
    t.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                   help="simulation tasks (default: all, reach_red push_blue_left lift_green)")
    t.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="render size (default: the training dataset's if readable, else 224 224)")
    t.add_argument("--start-jitter", type=float, default=0.0, help="arm start-pose jitter, as collect's (default 0)")
    t.add_argument("--rollout", action="store_true",
                   help="run whole episodes in closed loop (the executor core and the simulation, no ROS) and say "
                   "where each failed one ended")
    t.add_argument("--max-duration", type=float, default=None,
                   help="--rollout: simulated seconds per episode (default: each task's limit)")
    t.add_argument("--latency", type=float, default=None,
                   help="--rollout: simulated seconds from a chunk request to its chunk (default 0.05)")
    t.add_argument("--instruction", default=None,
                   help="use this instruction for every task (--targeting, --rollout): a language-blind baseline's "
                   "training text, or another task's to see whether the policy follows the words")
    t.add_argument("--params", action="append", default=[], metavar="YAML",
                   help="--rollout: executor parameter file after the simulation's (repeatable), as demo --params")
    t.add_argument("--device", default="auto",
                   help="model device for --targeting: auto | cpu | cuda (default auto; bf16 on CUDA, fp32 on CPU)")


def run(args: argparse.Namespace) -> int:
    from ..data.convert import ConvertError
    from ..model.checkpoint import CheckpointError
    from .rollout import DEFAULT_LATENCY_S, format_rollouts, rollout_report
    from .targeting import TargetingError, format_targeting, targeting_report

    targeting = args.targeting or (args.dataset is None and not args.rollout)
    try:
        if args.seeds[1] < 1:
            raise DiagnoseError("--seeds: COUNT must be at least 1")
        r: Dict[str, Any] = {}

        def add(key: str, report: Dict[str, Any], text: str) -> None:
            """Print a report; with an earlier one, nest it under ``key``."""
            nonlocal r
            if r:
                print()
                r[key] = report
            else:
                r = report
            print(text)

        if args.dataset is not None:
            r = diagnose(args.checkpoint, args.dataset, args.frames, args.batch_size, args.seed, args.cameras,
                         progress=args.progress)
            print(format_report(r))
        if targeting:
            first, count = args.seeds
            t = targeting_report(args.checkpoint, args.tasks, range(first, first + count), cameras=args.cameras,
                                 image_size=args.image_size, start_jitter=args.start_jitter, device=args.device,
                                 instruction=args.instruction, progress=args.progress)
            add("targeting", t, format_targeting(t))
        if args.rollout:
            first, count = args.seeds
            latency = DEFAULT_LATENCY_S if args.latency is None else args.latency
            o = rollout_report(args.checkpoint, args.tasks, range(first, first + count), cameras=args.cameras,
                               image_size=args.image_size, start_jitter=args.start_jitter,
                               max_duration_s=args.max_duration, latency_s=latency, instruction=args.instruction,
                               params=args.params, device=args.device, progress=args.progress)
            add("rollout", o, format_rollouts(o))
    except (DiagnoseError, TargetingError, CheckpointError, ConvertError, FileNotFoundError) as e:
        print(f"vla-adapter-ros diagnose: {e}", file=sys.stderr)
        return 2
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(r, indent=2))
    return 0
