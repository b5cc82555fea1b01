"""``vla-adapter-ros gpu-check`` on a machine without a GPU (what can be checked here), and ``bench``'s
CPU defaults and one-line errors. Tiny shapes; nothing downloaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from vla_adapter_ros.inference import gpu_check  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_without_cuda_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    from vla_adapter_ros.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "report"
    assert main(["gpu-check", str(out)]) == 3
    captured = capsys.readouterr()
    lines = [ln for ln in (captured.out + captured.err).splitlines() if ln.strip()]
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--cpu-smoke" in lines[0]
    assert not out.exists()


def test_cpu_smoke_run_writes_the_report_without_ros(tmp_path):
    """The orchestrator end to end, its step in a fresh process: env imports every module the GPU steps use
    and checks that no ROS module came with them (the other steps are run in-process below)."""
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "vla_adapter_ros.cli", "gpu-check", str(out), "--cpu-smoke",
                           "--steps", "env"], cwd=str(REPO), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["kind"] == "cpu-smoke" and doc["passed"]
    env = doc["steps"]["env"]
    assert env["status"] == "ok" and env["ros_modules_imported"] == [] and env["tokenizer"] == "ok"
    assert env["cuda_available"] is False and env["jpeg_roundtrip_ms_per_256px_frame"] > 0
    md = (out / "gpu_check.md").read_text()
    assert "CPU smoke run" in md and "| env | ok |" in md
    assert "gpu-check: env" in proc.stdout and "all steps passed" in proc.stdout


def test_train_step_in_process(tmp_path):
    r = gpu_check.step_train(tmp_path, smoke=True)
    assert r["status"] == "ok", r
    assert r["preset"] == "tiny" and r["lora_rank"] == 64 and r["lora_params"] > 0
    assert 0 < r["trainable_params"] < r["total_params"]
    assert r["step_s"] > 0 and r["samples_per_s"] == pytest.approx(r["batch_size"] / r["step_s"])
    assert len(r["losses"]) == 2


def test_towers_match_timm_in_process(tmp_path):
    pytest.importorskip("timm")
    r = gpu_check.step_towers(tmp_path, smoke=True)
    assert r["status"] == "ok", r
    c = r["comparisons"]
    assert c["siglip_fp32"]["max_rel"] < 1e-5 and c["dino_fp32"]["max_rel"] < 1e-5
    assert c["siglip_fp32_with_tanh_gelu"]["max_rel"] > 1e-5  # the activation choice is visible


def _row(mode, b, p50, err=1e-3, peak=2500.0):
    return {"mode": mode, "batch_size": b, "p50_ms": p50, "p99_ms": p50 * 1.2, "mean_ms": p50, "min_ms": p50,
            "actions_per_s": 8 * b / (p50 / 1e3), "time_to_first_chunk_s": 20.0, "peak_memory_mb": peak,
            "max_rel_err_vs_fp32": err}


def test_bench_verdict_and_markdown():
    rows = [_row("eager", 1, 80.0), _row("optimized", 1, 5.0)]
    v = gpu_check.bench_verdict(rows)
    assert v["within_tolerance"] and v["optimized_default_recommended"] and v["speedup_p50"] == pytest.approx(16)
    assert v["targets"]["p50_ms"]["met"] and v["targets"]["actions_per_s"]["met"]
    slow = gpu_check.bench_verdict([_row("eager", 1, 80.0), _row("optimized", 1, 9.0, err=0.05, peak=4000.0)])
    assert not slow["within_tolerance"] and not slow["optimized_default_recommended"]
    assert not slow["targets"]["p99_ms"]["met"] and not slow["targets"]["peak_memory_mb"]["met"]
    doc = {"kind": "gpu", "generated": "now", "elapsed_s": 1.0, "passed": True, "steps": {
        "bench": {"status": "ok", "duration_s": 1.0, "command": "vla-adapter-ros bench ...", "results": rows,
                  "verdict": v, "info": {"preset": "vla-adapter-0.5b", "device_name": "H200", "num_images": 2,
                                         "image_size": 224, "iters": 100, "jpeg_quality": None}}}}
    md = gpu_check.markdown(doc)
    assert "| optimized | 1 | 5.00 |" in md and "default on CUDA: **yes**" in md and "JPEG round trip off" in md


def test_junit_summary(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text('<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
                   '<testcase name="a" time="1.5"><properties><property name="peak_gpu_memory_mb" value="2900"/>'
                   '</properties></testcase><testcase name="b" time="0.1"><failure message="boom"/></testcase>'
                   '<testcase name="c" time="0"><skipped message="needs a CUDA device"/></testcase>'
                   '</testsuite></testsuites>')
    s = gpu_check.junit_summary(xml)
    assert (s["tests"], s["failures"], s["skipped"]) == (3, 1, 1)
    assert [c["outcome"] for c in s["cases"]] == ["passed", "failure", "skipped"]
    assert s["cases"][0]["properties"] == {"peak_gpu_memory_mb": "2900"}


# ------------------------------------------------------------------ bench
@pytest.mark.parametrize("kind", ["missing", "not-a-checkpoint", "corrupt-weights", "corrupt-official"])
def test_bench_bad_checkpoint_is_one_line(tmp_path, capsys, kind):
    from vla_adapter_ros.cli import main
    from vla_adapter_ros.model.config import tiny_config

    ck = tmp_path / "ck"
    if kind != "missing":
        ck.mkdir()
    if kind == "corrupt-weights":
        tiny_config().save(ck / "config.yaml")
        (ck / "model.safetensors").write_bytes(b"not a safetensors file")
        (ck / "dataset_statistics.json").write_text("{}")
    elif kind == "corrupt-official":
        (ck / "config.json").write_text("{not json")
        (ck / "model.safetensors").write_bytes(b"x")
        (ck / "action_head--checkpoint.pt").write_bytes(b"x")
    assert main(["bench", "--checkpoint", str(ck), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    lines = [ln for ln in (captured.out + captured.err).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("vla-adapter-ros bench: cannot load") and str(ck) in lines[0]
    assert "Traceback" not in captured.err


def test_bench_cpu_defaults():
    import argparse

    from vla_adapter_ros.inference.bench import choose_counts

    def ns(**kw):
        return argparse.Namespace(**{"iters": None, "warmup": None, "check_inputs": None, **kw})

    a = ns()
    note = choose_counts(a, cuda=False, chunk_s=30.0, max_batch=1)  # the 0.5B preset on a CPU
    assert (a.iters, a.warmup, a.check_inputs) == (3, 1, 1)
    assert "--iters 3 --warmup 1 --check-inputs 1" in note and "30.0 s" in note
    a = ns()
    choose_counts(a, cuda=False, chunk_s=0.05, max_batch=1)  # a small model: the usual counts
    assert (a.iters, a.warmup, a.check_inputs) == (50, 5, 3)
    a = ns()
    assert choose_counts(a, cuda=False, chunk_s=1.0, max_batch=4) and (a.iters, a.warmup) == (5, 1)
    a = ns(iters=7)
    note = choose_counts(a, cuda=False, chunk_s=30.0, max_batch=1)
    assert a.iters == 7 and "--iters" not in note and "--warmup 1" in note  # what the user set is kept
    a = ns()
    assert choose_counts(a, cuda=True, chunk_s=0.08, max_batch=1) == ""
    assert (a.iters, a.warmup, a.check_inputs) == (50, 5, 3)
