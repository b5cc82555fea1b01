"""``vla-adapter-ros bench``: latency, throughput, start-up time, memory and accuracy of the inference engines.

Modes: ``eager`` = the portable ``InferenceEngine`` (a batch of B = B calls one after the other, as the
policy node would serve B robots today); ``optimized`` = ``FastInferenceEngine`` (static shapes, on-device
preprocessing, CUDA graphs on CUDA; a batch of B = one call).

Inputs: random uint8 camera images (``--image-size``, default 224), the instruction
"put the black bowl on the plate", random proprio. Without ``--checkpoint`` the model has random weights
(official shapes for ``vla-adapter-0.5b``); nothing is downloaded.

Reported per mode and batch size:
  * p50 / p99 / mean / min latency of one call (ms; wall clock, synchronised with the GPU: the call returns
    numpy actions);
  * action throughput = chunk_len * batch / p50 latency (actions/s);
  * time to first chunk (s) = process start -> imports done (Python, torch, transformers, this package)
    and CUDA context created + building this mode's engine (model build, warm-up, graph capture) + its first chunk, i.e.
    what a fresh process serving only this mode would see;
  * peak memory: ``torch.cuda.max_memory_allocated`` for this mode on CUDA; on CPU the process peak RSS
    (a high-water mark over everything run so far, not per mode);
  * max relative error vs the eager fp32 model on fresh random inputs: max |a - a_ref| / max |a_ref| over
    the chunk, worst of ``--check-inputs`` observations.
"""

from __future__ import annotations

import time

_IMPORTED = time.perf_counter()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

INSTRUCTION = "put the black bowl on the plate"
MODES = ("eager", "optimized")


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc); elsewhere, since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in clock ticks
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=None,
                        help="model preset (default: vla-adapter-0.5b on CUDA, tiny on CPU)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: random weights)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--iters", type=int, default=50, help="timed calls per mode and batch size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1], metavar="B")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--image-size", type=int, default=224, help="camera image side in pixels")
    parser.add_argument("--check-inputs", type=int, default=3, help="fresh random inputs for the error check")
    parser.add_argument("--compile", action="store_true", help="optimized mode: also torch.compile the forward")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results here")


def _observations(rng, n: int, num_images: int, size: int, proprio_dim: int) -> list:
    return [
        ([rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(num_images)], INSTRUCTION,
         rng.uniform(-0.5, 0.5, proprio_dim))
        for _ in range(n)
    ]


def _peak_memory_mb(cuda: bool) -> float:
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reference(args, device: str, preset: str, observations) -> np.ndarray:
    """Actions of the eager model in fp32 (weights loaded in fp32 on the CPU, then moved)."""
    import torch

    from vla_adapter_ros.model import VLAAdapterPolicy

    from .engine import InferenceEngine

    base = InferenceEngine.load(checkpoint=args.checkpoint, preset=preset, device="cpu", seed=args.seed)
    p = base.policy
    engine = InferenceEngine(VLAAdapterPolicy(p.model, p.normalizer, p.tokenizer, device, torch.float32), base.model_id)
    out = np.stack([engine.predict(*o) for o in observations])
    del base, p, engine
    return out


def _bench_mode(mode: str, args, device: str, preset: str, startup_s: float, bench_obs, check_obs, ref) -> list:
    import torch

    from .engine import InferenceEngine
    from .fast_engine import FastInferenceEngine

    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    load = dict(checkpoint=args.checkpoint, preset=preset, device=device, seed=args.seed)
    if mode == "eager":
        engine = InferenceEngine.load(**load)
        call = lambda obs: np.stack([engine.predict(*o) for o in obs])  # noqa: E731
    else:
        size = (args.image_size, args.image_size)
        engine = FastInferenceEngine.load(**load, batch_sizes=args.batch_sizes, compile=args.compile,
                                          image_sizes=[size] * len(bench_obs[0][0]))
        call = engine.predict_batch
    call(bench_obs[:1])
    sync()
    ttfc = startup_s + time.perf_counter() - start
    err = max(float(np.abs(call([o])[0] - r).max() / max(np.abs(r).max(), 1e-12)) for o, r in zip(check_obs, ref))
    rows = []
    for b in args.batch_sizes:
        obs = bench_obs[:b]
        for _ in range(args.warmup):
            call(obs)
        times = []
        for _ in range(args.iters):
            sync()
            t = time.perf_counter()
            call(obs)
            sync()
            times.append((time.perf_counter() - t) * 1e3)
        p50, p99 = (float(x) for x in np.percentile(times, [50, 99]))
        rows.append({
            "mode": mode, "batch_size": b, "p50_ms": p50, "p99_ms": p99, "mean_ms": float(np.mean(times)),
            "min_ms": float(np.min(times)),
            "actions_per_s": engine.chunk_len * b / (p50 / 1e3), "time_to_first_chunk_s": ttfc,
            "peak_memory_mb": None, "max_rel_err_vs_fp32": err, "dtype": str(engine.policy.dtype),
            "captures": getattr(engine, "captures", None), "slow_calls": getattr(engine, "slow_calls", None),
        })
    peak = _peak_memory_mb(cuda)
    for r in rows:
        r["peak_memory_mb"] = peak
    return rows


def _table(rows: list) -> str:
    head = f"{'mode':<10} {'batch':>5} {'p50 ms':>9} {'p99 ms':>9} {'min ms':>9} {'actions/s':>10} " \
           f"{'TTFC s':>7} {'peak MB':>8} {'rel err':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['mode']:<10} {r['batch_size']:>5} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['min_ms']:>9.2f} "
            f"{r['actions_per_s']:>10.0f} {r['time_to_first_chunk_s']:>7.2f} {r['peak_memory_mb']:>8.0f} "
            f"{r['max_rel_err_vs_fp32']:>9.2e}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import importlib

    import torch

    from .engine import resolve_device

    # everything any mode imports, so that each mode's time to first chunk counts the same imports
    for module in ("vla_adapter_ros.inference.fast_engine", "transformers.models.qwen2.modeling_qwen2",
                   "transformers.models.dinov2_with_registers.modeling_dinov2_with_registers",
                   "transformers.models.siglip.modeling_siglip"):
        importlib.import_module(module)

    device = resolve_device(args.device)
    cuda = device.startswith("cuda")
    preset = args.preset or ("vla-adapter-0.5b" if cuda else "tiny")
    if min(args.batch_sizes) < 1 or args.iters < 1 or args.warmup < 0 or args.check_inputs < 1:
        print("vla-adapter-ros bench: batch sizes and --iters must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    args.batch_sizes = sorted(set(args.batch_sizes))
    if cuda:
        torch.zeros(1, device=device)
        torch.cuda.synchronize()
    startup_s = process_age_s()  # interpreter + imports (+ CUDA context): paid once by any process

    from vla_adapter_ros.model import get_config

    cfg = get_config(args.checkpoint or preset)
    rng = np.random.default_rng(args.seed + 1)
    p = cfg.platform
    bench_obs = _observations(rng, max(args.batch_sizes), p.num_images, args.image_size, p.proprio_dim)
    check_obs = _observations(rng, args.check_inputs, p.num_images, args.image_size, p.proprio_dim)
    ref = _reference(args, device, preset, check_obs)
    rows = []
    for mode in args.modes:
        rows += _bench_mode(mode, args, device, preset, startup_s, bench_obs, check_obs, ref)
    info = {
        "preset": preset, "checkpoint": args.checkpoint, "device": device,
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "iters": args.iters,
        "warmup": args.warmup, "batch_sizes": args.batch_sizes, "image_size": args.image_size,
        "num_images": p.num_images, "chunk_len": p.chunk_len, "action_dim": p.action_dim,
        "instruction": INSTRUCTION, "compile": args.compile, "startup_s": startup_s,
        "peak_memory_kind": "torch.cuda.max_memory_allocated per mode" if cuda
        else "process peak RSS (high-water mark so far)",
    }
    print(f"vla-adapter-ros bench: {preset} on {info['device_name']} ({args.iters} iters, "
          f"{p.chunk_len}-action chunks, {p.num_images} x {args.image_size} px images)")
    print(_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": rows}, f, indent=2)
        print(f"wrote {args.json}")
    return 0
