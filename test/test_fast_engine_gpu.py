"""The optimised engine's CUDA graph path (needs a CUDA device; skipped without one).

bf16 CUDA graph replay vs the eager fp32 model on fresh random inputs, no capture after construction,
the static buffers really being read by the replays, peak GPU memory (reported, not asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

INSTRUCTION = "put the black bowl on the plate"


def observations(rng, n, size=224, instruction=INSTRUCTION):
    return [([rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2)], instruction,
             rng.uniform(-0.8, 0.8, 8)) for _ in range(n)]


def rel_err(out, ref):
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def check_against_fp32(preset, batch_sizes, record_property):
    from vla_adapter_ros.inference.engine import InferenceEngine
    from vla_adapter_ros.inference.fast_engine import FastInferenceEngine

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fast = FastInferenceEngine.load(preset=preset, device="cuda", seed=1, batch_sizes=batch_sizes)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20
    assert fast.cuda_graphs and fast.policy.dtype == torch.bfloat16
    assert fast.captures == len(batch_sizes)  # one graph per batch size, all at construction
    rng = np.random.default_rng(123)  # fresh inputs, not the capture/warm-up ones
    obs = observations(rng, max(2, *batch_sizes))
    outs = [fast.predict(*o) for o in obs]
    batch = fast.predict_batch(obs[: max(batch_sizes)])
    peak_mb = max(peak_mb, torch.cuda.max_memory_allocated() / 2**20)
    record_property("peak_gpu_memory_mb", peak_mb)
    print(f"{preset}: peak GPU memory {peak_mb:.0f} MiB")
    assert fast.captures == len(batch_sizes) and fast.slow_calls == 0

    ref_engine = InferenceEngine.load(preset=preset, device="cpu", seed=1)  # eager fp32
    refs = [ref_engine.predict(*o) for o in obs]
    errs = [rel_err(o, r) for o, r in zip(outs, refs)] + [rel_err(b, r) for b, r in zip(batch, refs)]
    record_property("max_rel_err_vs_fp32", max(errs))
    print(f"{preset}: max relative error vs eager fp32 {max(errs):.2e}")
    assert max(errs) < 1e-2
    # each replay read its own inputs (stale buffers would repeat the previous answer)
    assert not np.array_equal(outs[0], outs[1])
    return fast


def test_graph_matches_eager_fp32_tiny(record_property):
    fast = check_against_fp32("tiny", (1, 2, 4), record_property)
    # shape changes after warm-up: the slow path, never a new capture
    rng = np.random.default_rng(5)
    fast.predict(*observations(rng, 1, size=256)[0])
    fast.predict_batch(observations(rng, 5))
    fast.predict_batch(observations(rng, 3))  # padded into the batch-4 graph
    assert fast.captures == 3 and fast.slow_calls == 2


def test_graph_equals_the_same_engine_without_graph():
    from vla_adapter_ros.inference.fast_engine import FastInferenceEngine

    graphed = FastInferenceEngine.load(preset="tiny", device="cuda", seed=2)
    plain = FastInferenceEngine.load(preset="tiny", device="cuda", seed=2, cuda_graphs=False)
    assert graphed.captures == 1 and plain.captures == 0
    for o in observations(np.random.default_rng(9), 3):
        np.testing.assert_allclose(graphed.predict(*o), plain.predict(*o), rtol=2e-2, atol=2e-2)  # bf16 ulps


@pytest.mark.slow
def test_graph_matches_eager_fp32_official_shapes(record_property):
    """vla-adapter-0.5b with random weights (official shapes), batch 1."""
    check_against_fp32("vla-adapter-0.5b", (1,), record_property)


def test_bench_command_on_cuda(tmp_path):
    from vla_adapter_ros.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", "--preset", "tiny", "--device", "cuda", "--iters", "3", "--warmup", "1",
                 "--check-inputs", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    opt = [r for r in rows if r["mode"] == "optimized"][0]
    assert opt["captures"] == 1 and opt["slow_calls"] == 0 and opt["peak_memory_mb"] > 0
    assert opt["max_rel_err_vs_fp32"] < 1e-2 and opt["dtype"] == "torch.bfloat16"


def test_graph_with_the_official_split_one_image_and_jpeg():
    """A model run the release's way with one camera (policy features cut at 512 tokens: the ActionQuery
    features join the task tokens) and the JPEG round trip (CPU, also for CUDA tensors) under the graph."""
    import copy

    from vla_adapter_ros.inference.engine import InferenceEngine, identity_statistics
    from vla_adapter_ros.inference.fast_engine import FastInferenceEngine
    from vla_adapter_ros.model import VLAAdapterPolicy
    from vla_adapter_ros.model.config import tiny_config

    cfg = tiny_config().replace_platform(num_images=1)
    cfg.policy.num_task_tokens = 512
    cfg.processor.jpeg_quality = 95
    ref = VLAAdapterPolicy.random_init(cfg, identity_statistics(7, 8), seed=4)  # fp32 on the CPU
    with torch.no_grad():
        for blk in ref.model.action_head.model.mlp_resnet_blocks:
            blk.gating_factor.fill_(0.5)  # the task tokens (raw + ActionQuery here) reach the actions
    gpu = VLAAdapterPolicy(copy.deepcopy(ref.model), ref.normalizer, ref.tokenizer, device="cuda",
                           dtype=torch.bfloat16)
    fast = FastInferenceEngine(gpu, "tiny-one-camera", image_sizes=[(256, 256)])
    eager = InferenceEngine(ref, "tiny-one-camera")
    rng = np.random.default_rng(11)
    for _ in range(2):
        obs = ([rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)], INSTRUCTION, rng.uniform(-0.8, 0.8, 8))
        a = eager.predict(*obs)
        assert rel_err(fast.predict(*obs), a) < 1e-2
        on_device = [torch.from_numpy(obs[0][0]).cuda()]
        assert rel_err(fast.predict(on_device, *obs[1:]), a) < 1e-2
    assert fast.captures == 1 and fast.slow_calls == 0
