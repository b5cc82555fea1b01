"""`vla-adapter-ros export SRC DST`: a compact deployable copy of a trained checkpoint (LoRA merged,
fp16 weights by default, no optimizer state), e.g. from `OUT/final` or `OUT/checkpoints/step_N`."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC",
                        help="checkpoint directory written by `vla-adapter-ros train` (e.g. OUT/final)")
    parser.add_argument("dst", metavar="OUT", help="new directory for the exported checkpoint (must not exist)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                        help="storage dtype of the weights (default: float16, half the size)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vla_adapter_ros.model.checkpoint import CheckpointError, export_checkpoint

    try:
        out = export_checkpoint(args.src, args.dst, args.dtype)
    except CheckpointError as exc:
        print(f"vla-adapter-ros export: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in Path(out).iterdir() if f.is_file())
    print(f"exported {args.src} -> {out} ({args.dtype}, {size / 1e6:.1f} MB)")
    return 0
