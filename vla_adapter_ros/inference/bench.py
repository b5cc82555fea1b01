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

Progress goes to stderr, one line per phase (and per call when calls are slow). ``--iters``, ``--warmup`` and
``--check-inputs`` default to 50 / 5 / 3, except for a large model (> 100M parameters, e.g. the 0.5B preset)
on the CPU, where a chunk takes tens of seconds: 3 / 1 / 1 (the choice is printed). The processor's JPEG
round trip (on for the official preset) is part of the timed call; ``--no-jpeg`` leaves it out. A missing or
unusable ``--checkpoint`` is reported in one line (exit status 2).
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
    parser.add_argument("--iters", type=int, default=None,
                        help="timed calls per mode and batch size (default 50; 3 for a large model on the CPU)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed calls before timing (default 5; 1 for a large model on the CPU)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1], metavar="B",
                        help="batch sizes to time (observations per forward pass)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="engines to time: eager (InferenceEngine) and/or optimized (FastInferenceEngine)")
    parser.add_argument("--image-size", type=int, default=224, help="camera image side in pixels")
    parser.add_argument("--check-inputs", type=int, default=None,
                        help="fresh random inputs for the error check (default 3; 1 for a large model on the CPU)")
    parser.add_argument("--compile", action="store_true", help="optimized mode: also torch.compile the forward")
    parser.add_argument("--no-jpeg", action="store_true",
                        help="leave out the processor's JPEG round trip (on for the official preset): "
                             "time the model path alone")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--output", "--json", dest="json", default=None, metavar="OUT",
                        help="write the results to this JSON file (--json: the old spelling)")


DEFAULTS = {"iters": 50, "warmup": 5, "check_inputs": 3}
CPU_TIMED_BUDGET_S = 20.0  # CPU: timed calls per mode and batch size take about this long
CPU_WARMUP_BUDGET_S = 3.0


def progress(message: str) -> None:
    """One progress line on stderr (the results table goes to stdout)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A problem with the user's input (checkpoint, options): reported in one line, exit status 2."""


def choose_counts(args, cuda: bool, chunk_s: float, max_batch: int) -> str:
    """Fill in ``--iters/--warmup/--check-inputs`` left unset; returns what was chosen ("" if nothing to say).

    CUDA: 50 / 5 / 3. CPU: sized from ``chunk_s``, the duration of one fp32 chunk measured on the reference,
    so that the timed calls of a mode and batch size take about 20 s (3..50 calls), the warm-up about 3 s
    (1..5), and a slow model (> 2 s per chunk, e.g. the 0.5B preset) gets one error-check input."""
    unset = [k for k in DEFAULTS if getattr(args, k) is None]
    if cuda or not unset:
        for k in unset:
            setattr(args, k, DEFAULTS[k])
        return ""
    per_call = max(chunk_s * max_batch, 1e-3)
    chosen = {
        "iters": int(min(50, max(3, round(CPU_TIMED_BUDGET_S / per_call)))),
        "warmup": int(min(5, max(1, round(CPU_WARMUP_BUDGET_S / per_call)))),
        "check_inputs": 1 if chunk_s > 2.0 else 3,
    }
    for k in unset:
        setattr(args, k, chosen[k])
    flags = " ".join(f"--{k.replace('_', '-')} {chosen[k]}" for k in unset)
    return f"CPU defaults (one chunk took {chunk_s:.1f} s here): {flags} (pass them to override)"


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


def load_engine(cls, **kwargs):
    """``cls.load(**kwargs)`` with a checkpoint problem turned into a BenchError (one line, exit 2)."""
    from vla_adapter_ros.model.checkpoint import CheckpointError
    from vla_adapter_ros.model.config import ConfigError

    try:
        return cls.load(**kwargs)
    except (CheckpointError, ConfigError, OSError, ImportError) as exc:
        raise BenchError(f"cannot load {kwargs.get('checkpoint') or kwargs.get('preset')!r}: {exc}") from None


def _no_jpeg(engine, args) -> None:
    if args.no_jpeg:
        engine.config.processor.jpeg_quality = None


def _reference_engine(args, preset: str):
    """The eager model in fp32, loaded on the CPU (also validates ``--checkpoint`` before anything is timed)."""
    from .engine import InferenceEngine

    base = load_engine(InferenceEngine, checkpoint=args.checkpoint, preset=preset, device="cpu", seed=args.seed)
    _no_jpeg(base, args)
    return base


def _reference(base, device: str, observations, args, cuda: bool) -> tuple:
    """Actions of the eager fp32 model (``base``, on the CPU) on ``device`` for the error-check inputs, and the
    note of :func:`choose_counts` (sized from the first of these chunks)."""
    import torch

    from vla_adapter_ros.model import VLAAdapterPolicy

    from .engine import InferenceEngine

    p = base.policy
    engine = InferenceEngine(VLAAdapterPolicy(p.model, p.normalizer, p.tokenizer, device, torch.float32), base.model_id)
    out, note = [], ""
    i = 0
    while i < (args.check_inputs or len(observations)):
        t = time.perf_counter()
        out.append(engine.predict(*observations[i]))
        dt = time.perf_counter() - t
        if i == 0:
            note = choose_counts(args, cuda, dt, max(args.batch_sizes))
            if note:
                progress(note)
        i += 1
        progress(f"reference (eager fp32 on {device}): check input {i}/{args.check_inputs} in {dt:.1f} s")
    del p, engine
    return np.stack(out), note


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
    progress(f"{mode}: building the engine")
    load = dict(checkpoint=args.checkpoint, preset=preset, device=device, seed=args.seed)
    if mode == "eager":
        engine = load_engine(InferenceEngine, **load)
        call = lambda obs: np.stack([engine.predict(*o) for o in obs])  # noqa: E731
    else:
        size = (args.image_size, args.image_size)
        engine = load_engine(FastInferenceEngine, **load, batch_sizes=args.batch_sizes, compile=args.compile,
                             image_sizes=[size] * len(bench_obs[0][0]))
        call = engine.predict_batch
    _no_jpeg(engine, args)
    call(bench_obs[:1])
    sync()
    ttfc = startup_s + time.perf_counter() - start
    first_s = time.perf_counter() - start
    progress(f"{mode}: engine built and first chunk in {first_s:.1f} s; error check on {len(check_obs)} input(s)")
    err = max(float(np.abs(call([o])[0] - r).max() / max(np.abs(r).max(), 1e-12)) for o, r in zip(check_obs, ref))
    rows = []
    for b in args.batch_sizes:
        obs = bench_obs[:b]
        progress(f"{mode}: batch {b}: {args.warmup} warm-up + {args.iters} timed calls")
        slow = False
        for i in range(args.warmup):
            t = time.perf_counter()
            call(obs)
            slow = time.perf_counter() - t > 2.0
            if slow:
                progress(f"{mode}: batch {b}: warm-up {i + 1}/{args.warmup}: {time.perf_counter() - t:.1f} s")
        times = []
        for i in range(args.iters):
            sync()
            t = time.perf_counter()
            call(obs)
            sync()
            times.append((time.perf_counter() - t) * 1e3)
            if slow or times[-1] > 2000.0:
                slow = True
                progress(f"{mode}: batch {b}: call {i + 1}/{args.iters}: {times[-1] / 1e3:.1f} s")
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
    try:
        return _run(args)
    except BenchError as exc:
        print(f"vla-adapter-ros bench: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import importlib

    import torch

    from .engine import resolve_device

    # everything any mode imports, so that each mode's time to first chunk counts the same imports
    for module in ("vla_adapter_ros.inference.fast_engine", "transformers.models.qwen2.modeling_qwen2",
                   "transformers.models.dinov2_with_registers.modeling_dinov2_with_registers",
                   "transformers.models.siglip.modeling_siglip"):
        importlib.import_module(module)

    try:
        device = resolve_device(args.device)
    except RuntimeError as exc:
        raise BenchError(str(exc)) from None
    cuda = device.startswith("cuda")
    preset = args.preset or ("vla-adapter-0.5b" if cuda else "tiny")
    if min(args.batch_sizes) < 1 or any(getattr(args, k) is not None and getattr(args, k) < (0 if k == "warmup" else 1)
                                        for k in DEFAULTS):
        raise BenchError("batch sizes, --iters and --check-inputs must be >= 1, --warmup >= 0")
    args.batch_sizes = sorted(set(args.batch_sizes))
    if cuda:
        torch.zeros(1, device=device)
        torch.cuda.synchronize()
    startup_s = process_age_s()  # interpreter + imports (+ CUDA context): paid once by any process

    name = args.checkpoint or preset
    t = time.perf_counter()
    if not args.checkpoint:  # (a checkpoint error must stay the only line printed)
        progress(f"building {name} with random weights (fp32 on the CPU: the reference)")
    base = _reference_engine(args, preset)
    progress(f"{name} loaded (fp32 on the CPU: the reference) in {time.perf_counter() - t:.1f} s")
    cfg = base.config
    rng = np.random.default_rng(args.seed + 1)
    p = cfg.platform
    bench_obs = _observations(rng, max(args.batch_sizes), p.num_images, args.image_size, p.proprio_dim)
    check_obs = _observations(rng, args.check_inputs or DEFAULTS["check_inputs"], p.num_images, args.image_size,
                              p.proprio_dim)
    ref, note = _reference(base, device, check_obs, args, cuda)
    check_obs = check_obs[: args.check_inputs]
    del base
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
        "check_inputs": args.check_inputs, "counts_note": note,
        "jpeg_quality": None if args.no_jpeg else cfg.processor.jpeg_quality,
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
