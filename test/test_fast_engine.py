"""The optimised inference engine on the CPU (fp32): same actions as the plain model, on-device preprocessing
equal to the CPU processor, batching, static-shape behaviour, input errors, the bench command.

The CUDA graph capture itself needs a GPU: see test_fast_engine_gpu.py. Here the static-buffer path runs
with a plain call instead of a graph replay, and the capture-time code path of transformers is emulated."""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vla_adapter_ros.inference.engine import InferenceEngine  # noqa: E402
from vla_adapter_ros.inference.fast_engine import (  # noqa: E402
    FastInferenceEngine,
    SDPABridgeAttentionBlock,
    drop_unused_weights,
)
from vla_adapter_ros.inference.gpu_preprocess import DevicePreprocessor  # noqa: E402
from vla_adapter_ros.model import get_config  # noqa: E402
from vla_adapter_ros.model.policy import BridgeAttentionBlock  # noqa: E402
from vla_adapter_ros.model.processor import preprocess_images  # noqa: E402

SEED = 3
INSTRUCTION = "put the black bowl on the plate"


@pytest.fixture(scope="module")
def eager():
    return InferenceEngine.load(preset="tiny", device="cpu", seed=SEED)


@pytest.fixture(scope="module")
def fast():
    return FastInferenceEngine.load(preset="tiny", device="cpu", seed=SEED, batch_sizes=(1, 2, 4))


def own_policy(engine):
    """A policy with a copy of the engine's model (the fast engine changes its model in place)."""
    p = engine.policy
    return type(p)(copy.deepcopy(p.model), p.normalizer, p.tokenizer)


def observation(rng, size=(224, 224), instruction=INSTRUCTION):
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(2)]
    return images, instruction, rng.uniform(-0.8, 0.8, 8)


# ---- preprocessing --------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(224, 224), (256, 256), (240, 320), (480, 640)])
@pytest.mark.parametrize("crop", [True, False])
def test_device_preprocessing_matches_cpu_processor(size, crop):
    cfg = get_config("tiny").processor
    cfg.center_crop = crop
    rng = np.random.default_rng(hash(size) % 1000)
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(2)]
    ref = np.stack([preprocess_images([im], cfg) for im in images])  # (2, 6, S, S)
    out = DevicePreprocessor(cfg, size)(torch.from_numpy(np.stack(images))).numpy()
    assert out.shape == ref.shape == (2, 6, 224, 224) and out.dtype == np.float32
    std = np.asarray(list(cfg.dino_std) + list(cfg.siglip_std), np.float32)[:, None, None]
    diff01 = np.abs(out - ref) * std  # back to [0, 1] pixel values
    if size == (224, 224):  # no resize: the crop and normalisation are bit-identical
        np.testing.assert_array_equal(out, ref)
    # float32 vs float64 resize: at most a few pixels one uint8 level apart (at rounding ties)
    assert diff01.max() <= 1 / 255 + 1e-6
    assert np.mean(diff01 > 1e-6) < 1e-3
    assert diff01.mean() < 1e-5


def test_device_preprocessing_rejects_wrong_images():
    pre = DevicePreprocessor(get_config("tiny").processor, (224, 224))
    with pytest.raises(ValueError, match="uint8"):
        pre(torch.zeros((1, 224, 224, 3), dtype=torch.float32))
    with pytest.raises(ValueError, match=r"\(B, 224, 224, 3\)"):
        pre(torch.zeros((1, 200, 224, 3), dtype=torch.uint8))


# ---- model equality -------------------------------------------------------------------------------

@pytest.mark.parametrize("pro", [True, False])
def test_sdpa_bridge_block_equals_reference(pro):
    torch.manual_seed(0)
    blk = BridgeAttentionBlock(64, num_heads=8, pro=pro).eval()
    with torch.no_grad():
        blk.gating_factor.fill_(0.7)  # non-zero gate: the raw tokens count
    x, raw, adapter = torch.randn(2, 8, 64), torch.randn(2, 40, 64), torch.randn(2, 9, 64)
    with torch.no_grad():
        ref = blk(x, raw, adapter)
        blk.__class__ = SDPABridgeAttentionBlock
        out = blk(x, raw, adapter)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_optimized_engine_matches_the_plain_model(eager, fast):
    assert fast.random_weights and fast.model_id == eager.model_id
    assert fast.policy.dtype == torch.float32 and fast.captures == 0 and not fast.cuda_graphs
    rng = np.random.default_rng(11)  # fresh inputs, not the warm-up ones
    for instruction in (INSTRUCTION, "open the top drawer and put the bowl inside"):
        obs = observation(rng, instruction=instruction)
        ref = eager.predict(*obs)
        out = fast.predict(*obs)
        assert out.shape == (8, 7) and out.dtype == np.float64
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
        # also equal to VLAAdapterPolicy.predict itself
        np.testing.assert_allclose(out, eager.policy.predict(*obs), rtol=1e-5, atol=1e-5)
    assert fast.slow_calls == 0


def test_unused_modules_are_dropped(eager, fast):
    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(fast.policy.model) < count(eager.policy.model)
    assert drop_unused_weights(fast.policy.model) == 0  # idempotent


def test_torch_tensor_images_give_the_same_actions(fast):
    rng = np.random.default_rng(5)
    images, instruction, proprio = observation(rng)
    ref = fast.predict(images, instruction, proprio)
    out = fast.predict([torch.from_numpy(im) for im in images], instruction, proprio)
    np.testing.assert_array_equal(out, ref)


# ---- batches --------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [2, 3])
def test_batch_equals_single_calls(fast, batch):
    rng = np.random.default_rng(20 + batch)
    obs = [observation(rng, instruction=f"pick up object number {i}") for i in range(batch)]
    out = fast.predict_batch(obs)  # 3 runs in the batch-4 buffers, padded
    assert out.shape == (batch, 8, 7)
    singles = np.stack([fast.predict(*o) for o in obs])
    np.testing.assert_allclose(out, singles, rtol=1e-5, atol=1e-5)
    assert fast.slow_calls == 0


# ---- static shapes --------------------------------------------------------------------------------

def test_shape_mismatch_takes_the_slow_path_and_warns_once(eager, caplog):
    engine = FastInferenceEngine(own_policy(eager), "m", batch_sizes=(1,))
    rng = np.random.default_rng(7)
    long_instruction = " ".join(["then move the red block to the left"] * 6)
    cases = [observation(rng, size=(256, 256)), observation(rng, size=(240, 320)),
             observation(rng, instruction=long_instruction)]
    with caplog.at_level(logging.WARNING, logger="vla_adapter_ros.inference.fast_engine"):
        for obs in cases:
            np.testing.assert_allclose(engine.predict(*obs), eager.predict(*obs), rtol=1e-3, atol=1e-3)
        batch = engine.predict_batch(cases[:2])  # batch of 2 > built 1, and other image sizes
    np.testing.assert_allclose(batch[1], engine.predict(*cases[1]), rtol=1e-5, atol=1e-5)
    warnings = [r for r in caplog.records if "slow path" in r.getMessage()]
    assert len(warnings) == 1 and "image 0" in warnings[0].getMessage()
    assert engine.slow_calls == 5 and engine.captures == 0


def test_shape_mismatch_can_raise(eager):
    engine = FastInferenceEngine(own_policy(eager), "m", batch_sizes=(1, 2),
        on_shape_mismatch="raise")
    rng = np.random.default_rng(8)
    engine.predict(*observation(rng))  # fits
    with pytest.raises(ValueError, match="static shapes: image 0 is \\(256, 256\\)"):
        engine.predict(*observation(rng, size=(256, 256)))
    with pytest.raises(ValueError, match="batch of 3 > largest built batch size 2"):
        engine.predict_batch([observation(rng) for _ in range(3)])
    with pytest.raises(ValueError, match="instruction too long"):
        engine.predict(*observation(rng, instruction="go " * 80))
    assert engine.slow_calls == 0


def test_custom_static_shapes(eager):
    engine = FastInferenceEngine(own_policy(eager), "m",
        image_sizes=[(480, 640), (128, 128)], max_prompt_tokens=48, on_shape_mismatch="raise")
    assert engine.prompt_tokens == 48 and engine._static[1].ids.shape == (1, 48)
    rng = np.random.default_rng(9)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)]
    out = engine.predict(images, INSTRUCTION, np.zeros(8))
    np.testing.assert_allclose(out, eager.predict(images, INSTRUCTION, np.zeros(8)), rtol=1e-3, atol=1e-3)
    assert len(engine.warmup(iterations=1)) == 1 and engine.slow_calls == 0


# ---- input errors ---------------------------------------------------------------------------------

def test_bad_inputs_are_clear_errors(fast):
    rng = np.random.default_rng(10)
    images, instruction, proprio = observation(rng)
    bad = [
        ((images, instruction, np.full(8, np.nan)), "NaN"),
        ((images, instruction, np.zeros(7)), r"shape \(8,\)"),
        ((images, instruction, np.array(["a"] * 8)), "numeric"),
        (([im.astype(np.float32) for im in images], instruction, proprio), "dtype uint8"),
        (([im[..., 0] for im in images], instruction, proprio), r"shape \(H, W, 3\)"),
        (([np.zeros((224, 224, 4), np.uint8)] * 2, instruction, proprio), r"shape \(H, W, 3\)"),
        ((images[:1], instruction, proprio), "2 images"),
        ((images, "  ", proprio), "non-empty"),
        (([im.tolist() for im in images], instruction, proprio), "numpy array or torch tensor"),
    ]
    for obs, match in bad:
        with pytest.raises(ValueError, match=match):
            fast.predict(*obs)
    with pytest.raises(ValueError, match="at least one"):
        fast.predict_batch([])
    with pytest.raises(ValueError, match="observation 1"):
        fast.predict_batch([(images, instruction, proprio), (images, instruction, np.full(8, np.inf))])


def test_bad_options_are_clear_errors(eager):
    p = own_policy(eager)
    for kwargs, match in [
        (dict(on_shape_mismatch="ignore"), "on_shape_mismatch"),
        (dict(cuda_graphs=True), "CUDA"),
        (dict(batch_sizes=(0, 1)), "batch_sizes"),
        (dict(image_sizes=[(224, 224)]), "image_sizes"),
    ]:
        with pytest.raises(ValueError, match=match):
            FastInferenceEngine(p, "m", **kwargs)


# ---- readiness for CUDA graph capture -------------------------------------------------------------

def test_forward_is_capturable(fast, monkeypatch):
    """What can be checked without a GPU: under stream capture transformers takes another branch when it
    builds the causal mask (``is_tracing`` is true): same actions. And the whole forward traces into one
    graph with no break (no data-dependent Python control flow, no ``.item()`` host syncs)."""
    import transformers.masking_utils as masking_utils

    st = fast._static[1]
    rng = np.random.default_rng(12)
    with torch.inference_mode():
        for buf in st.images:
            buf.copy_(torch.from_numpy(rng.integers(0, 256, tuple(buf.shape), dtype=np.uint8)))
        args = (st.images, st.ids, st.mask, st.proprio)
        ref = fast._forward_eager(*args)
        monkeypatch.setattr(masking_utils, "is_tracing", lambda *a, **k: True)
        torch.testing.assert_close(fast._forward_eager(*args), ref, rtol=1e-5, atol=1e-6)
        monkeypatch.undo()
        explained = torch._dynamo.explain(fast._forward_eager)(*args)
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    torch._dynamo.reset()


# ---- bench ----------------------------------------------------------------------------------------

def test_bench_command_on_tiny(tmp_path, capsys):
    from vla_adapter_ros.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", "--preset", "tiny", "--device", "cpu", "--iters", "2", "--warmup", "0",
               "--batch-sizes", "1", "2", "--check-inputs", "1", "--json", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "optimized" in printed and "p50 ms" in printed
    # progress on stderr, a line per phase
    for phase in ("bench: tiny loaded", "bench: reference", "bench: eager: building the engine",
                  "bench: optimized: batch 2: 0 warm-up + 2 timed calls"):
        assert phase in captured.err, (phase, captured.err)
    data = json.loads(out.read_text())
    assert data["info"]["preset"] == "tiny" and data["info"]["device"] == "cpu"
    assert data["info"]["instruction"] == INSTRUCTION and data["info"]["image_size"] == 224
    rows = data["results"]
    assert [(r["mode"], r["batch_size"]) for r in rows] == [("eager", 1), ("eager", 2), ("optimized", 1),
                                                            ("optimized", 2)]
    for r in rows:
        for key in ("p50_ms", "p99_ms", "mean_ms", "min_ms", "actions_per_s", "time_to_first_chunk_s", "peak_memory_mb",
                    "max_rel_err_vs_fp32"):
            assert isinstance(r[key], float) and r[key] >= 0, key
        assert r["p99_ms"] >= r["p50_ms"] >= r["min_ms"] > 0
        assert r["actions_per_s"] == pytest.approx(8 * r["batch_size"] / (r["p50_ms"] / 1e3))
    opt = [r for r in rows if r["mode"] == "optimized"]
    assert all(r["max_rel_err_vs_fp32"] < 1e-4 and r["slow_calls"] == 0 and r["captures"] == 0 for r in opt)
