"""Parity with the official release on the points an independent comparison found (issue 18): SigLIP's
exact GELU, the float32 crop side, the JPEG round trip of the evaluation, the fixed 512-token feature split
of the official head. Small shapes; nothing downloaded."""

import copy
import functools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from vla_adapter_ros.model.config import (  # noqa: E402
    ConfigError,
    VLAAdapterConfig,
    official_config,
    tiny_config,
)
from vla_adapter_ros.model.processor import (  # noqa: E402
    center_crop_resize,
    crop_side,
    jpeg_roundtrip,
    prepare_image,
)
from vla_adapter_ros.model.vla import VLAAdapter  # noqa: E402


# ------------------------------------------------------------------ 1. SigLIP activation
def _timm_style_features(tower, img, act):
    """An independent forward of timm's pre-norm ViT (the release's SigLIP, no class token) up to the
    second-to-last block (``get_intermediate_layers(n={L-2})``, no final norm), on the tower's weights."""
    m = getattr(tower, "vision_model", tower)
    emb = m.embeddings
    x = F.conv2d(img, emb.patch_embedding.weight, emb.patch_embedding.bias, stride=emb.patch_embedding.stride)
    x = x.flatten(2).transpose(1, 2) + emb.position_embedding.weight[None]
    for layer in m.encoder.layers[:-1]:
        at = layer.self_attn
        n, p, d = x.shape
        hd = d // at.num_heads
        h = F.layer_norm(x, (d,), layer.layer_norm1.weight, layer.layer_norm1.bias, layer.layer_norm1.eps)
        q, k, v = (lin(h).reshape(n, p, at.num_heads, hd).transpose(1, 2) for lin in (at.q_proj, at.k_proj, at.v_proj))
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        x = x + at.out_proj((w @ v).transpose(1, 2).reshape(n, p, d))
        h = F.layer_norm(x, (d,), layer.layer_norm2.weight, layer.layer_norm2.bias, layer.layer_norm2.eps)
        x = x + layer.mlp.fc2(act(layer.mlp.fc1(h)))
    return x


def test_siglip_uses_exact_gelu_like_the_release():
    from vla_adapter_ros.model.vision import FusedVisionBackbone

    cfg = tiny_config()
    assert cfg.siglip.hidden_act == "gelu" and official_config().siglip.hidden_act == "gelu"
    torch.manual_seed(0)
    backbone = FusedVisionBackbone(cfg).eval()
    siglip = backbone.fused_featurizer
    assert siglip.config.hidden_act == "gelu"
    x = torch.linspace(-4, 4, 101)
    act = getattr(siglip, "vision_model", siglip).encoder.layers[0].mlp.activation_fn
    assert torch.equal(act(x), F.gelu(x))
    assert not torch.equal(act(x), F.gelu(x, approximate="tanh"))
    img = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = backbone._siglip_features(img)
        exact = _timm_style_features(siglip, img, F.gelu)
        tanh = _timm_style_features(siglip, img, lambda t: F.gelu(t, approximate="tanh"))
    torch.testing.assert_close(ours, exact, rtol=1e-5, atol=1e-5)
    assert (ours - tanh).abs().max() > 1e-5  # the test tells the two activations apart


def test_siglip_activation_of_saved_configs():
    d = tiny_config().to_dict()
    assert d["siglip"]["hidden_act"] == "gelu"
    assert VLAAdapterConfig.from_dict(d).siglip.hidden_act == "gelu"
    del d["siglip"]["hidden_act"]  # a config saved before the option: those models ran tanh GELU
    legacy = VLAAdapterConfig.from_dict(d)
    assert legacy.siglip.hidden_act == "gelu_pytorch_tanh"
    from vla_adapter_ros.model.vision import FusedVisionBackbone

    assert FusedVisionBackbone(legacy).fused_featurizer.config.hidden_act == "gelu_pytorch_tanh"
    d["siglip"]["hidden_act"] = "relu"
    with pytest.raises(ConfigError, match="siglip.hidden_act"):
        VLAAdapterConfig.from_dict(d)


# ------------------------------------------------------------------ 2. centre-crop side
def test_crop_side_is_tf_float32_sqrt():
    side = crop_side(0.9)
    assert side.dtype == np.float32
    assert side.tobytes() == np.float32(0.94868326).tobytes() == bytes.fromhex("e8dc723f")
    assert side != np.float32(math.sqrt(0.9))  # float64 sqrt rounded to float32: one ulp larger
    assert crop_side(1.0) == np.float32(1.0)


def _tf_crop_and_resize(img, side):
    """TF ``convert_image_dtype`` -> ``crop_and_resize`` (bilinear, box [(1-s)/2, (1-s)/2, (1+s)/2, ...]) ->
    clip -> ``convert_image_dtype(uint8, saturate=True)``, written out per pixel in float32."""
    f32 = np.float32
    h, w, c = img.shape
    x = img.astype(f32) * f32(1.0 / 255.0)
    lo = (f32(1.0) - side) / f32(2.0)
    hi = lo + side
    out = np.zeros((h, w, c), dtype=np.uint8)
    for i in range(h):
        in_y = lo * f32(h - 1) + f32(i) * ((hi - lo) * f32(h - 1) / f32(h - 1))
        ty, by = int(np.floor(in_y)), int(np.ceil(in_y))
        fy = f32(in_y - f32(ty))
        for j in range(w):
            in_x = lo * f32(w - 1) + f32(j) * ((hi - lo) * f32(w - 1) / f32(w - 1))
            lx, rx = int(np.floor(in_x)), int(np.ceil(in_x))
            fx = f32(in_x - f32(lx))
            top = x[ty, lx] + (x[ty, rx] - x[ty, lx]) * fx
            bot = x[by, lx] + (x[by, rx] - x[by, lx]) * fx
            v = np.clip(top + (bot - top) * fy, f32(0.0), f32(1.0))
            out[i, j] = (v * f32(255.5)).astype(np.uint8)
    return out


def test_center_crop_uint8_result_on_a_small_image():
    img = np.random.default_rng(81).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    out = center_crop_resize(img, 0.9)
    assert np.array_equal(out, _tf_crop_and_resize(img, np.sqrt(np.float32(0.9))))
    # the pixel where the one-ulp larger float64 side gives another value
    assert out[2, 3, 1] == 195
    assert _tf_crop_and_resize(img, np.float32(math.sqrt(0.9)))[2, 3, 1] == 196


# ------------------------------------------------------------------ 3. JPEG round trip
def _frame(size=256, seed=0):
    """A smooth synthetic scene with edges (JPEG-like content, not noise)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([200 * xx + 30, 120 + 80 * np.sin(6 * yy), 90 + 100 * xx * yy], axis=-1)
    img[size // 3 : size // 2, size // 4 : size // 2] = (220, 40, 40)
    img += np.random.default_rng(seed).normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_jpeg_roundtrip_is_a_processor_option():
    assert official_config().processor.jpeg_quality == 95  # the LIBERO / release configuration
    assert tiny_config().processor.jpeg_quality is None
    frame = _frame()
    rt = jpeg_roundtrip(frame, 95)
    assert rt.shape == frame.shape and rt.dtype == np.uint8
    diff = np.abs(rt.astype(int) - frame)
    assert 0 < diff.mean() < 3  # lossy but close at quality 95
    assert not np.array_equal(jpeg_roundtrip(frame, 50), rt)
    on, off = tiny_config().processor, tiny_config().processor
    on.jpeg_quality = 95
    # applied to the camera frame, before the resize and the crop
    assert np.array_equal(prepare_image(frame, on), prepare_image(rt, off))
    assert not np.array_equal(prepare_image(frame, on), prepare_image(frame, off))
    bad = tiny_config()
    bad.processor.jpeg_quality = 101
    with pytest.raises(ConfigError, match="jpeg_quality"):
        bad.validate()


def test_fast_engine_applies_the_jpeg_roundtrip_on_cpu():
    from vla_adapter_ros.inference.engine import InferenceEngine
    from vla_adapter_ros.inference.fast_engine import FastInferenceEngine

    eager = InferenceEngine.load(preset="tiny", device="cpu", seed=3)
    eager.config.processor.jpeg_quality = 95
    for blk in eager.policy.model.action_head.model.mlp_resnet_blocks:
        blk.gating_factor.data.fill_(0.5)  # let the raw tokens (the images) reach the actions
    fast = FastInferenceEngine(copy.deepcopy(eager.policy), "tiny", image_sizes=[(256, 256)] * 2)
    obs = ([_frame(seed=1), _frame(seed=2)], "put the bowl on the plate", np.zeros(8))
    a = eager.predict(*obs)
    np.testing.assert_allclose(fast.predict(*obs), a, rtol=1e-4, atol=1e-5)
    # tensors go through the same CPU round trip
    np.testing.assert_allclose(fast.predict([torch.from_numpy(im) for im in obs[0]], *obs[1:]), a, rtol=1e-4, atol=1e-5)
    eager.config.processor.jpeg_quality = None
    assert not np.allclose(eager.predict(*obs), a, rtol=0, atol=1e-7)


# ------------------------------------------------------------------ 4. task-token split
@functools.lru_cache(maxsize=None)
def _model(num_images, num_task_tokens, seed=1):
    """A tiny model (cached: the tests only read it)."""
    cfg = tiny_config("pro").replace_platform(num_images=num_images)
    cfg.policy.num_task_tokens = num_task_tokens
    torch.manual_seed(seed)
    m = VLAAdapter(cfg.validate()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.action_queries.weight.copy_(torch.randn(m.action_queries.weight.shape, generator=g))
        for blk in m.action_head.model.mlp_resnet_blocks:
            blk.gating_factor.fill_(0.4)
    return m


def _batch(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    pv = torch.randn(1, 6 * cfg.platform.num_images, 224, 224, generator=g)
    ids = torch.randint(0, 150000, (1, 12), generator=g)
    ids[0, 0] = 151644
    return pv, ids, torch.ones_like(ids), torch.rand(1, cfg.platform.proprio_dim, generator=g)


def _release_head_inputs(m, batch):
    """What the release hands its head: per layer [item[:, :NUM_PATCHES] ; the 64 ActionQuery states],
    split by ``L1RegressionActionHead`` at its default num_task_tokens=512."""
    pv, ids, mask, pr = batch
    raw, aq = m.backbone_features(pv, ids, mask)
    multi_layer = torch.cat([raw, aq], dim=2)
    task, adapter = multi_layer[:, :, :512], multi_layer[:, :, 512:]
    ptok = m.proprio_projector(pr).unsqueeze(1)
    return task, adapter, ptok


def test_official_split_is_ours_for_two_images():
    ours, official = _model(2, None), _model(2, 512)
    b = _batch(ours.config)
    with torch.no_grad():
        assert torch.equal(ours(*b), official(*b))


@pytest.mark.parametrize("num_images,task_len,adapter_len", [(1, 320, 0), (3, 512, 320)])
def test_official_split_followed_exactly_for_other_image_counts(num_images, task_len, adapter_len):
    m = _model(num_images, 512)
    b = _batch(m.config, seed=num_images)
    with torch.no_grad():
        task, adapter, ptok = _release_head_inputs(m, b)
        assert task.shape[2] == task_len and adapter.shape[2] == adapter_len
        ref = m.action_head(task, adapter, ptok)
        out = m(*b)
        assert torch.equal(out, ref)
        per_image = _model(num_images, None)
        assert not torch.allclose(per_image(*b), out)  # the split matters for these weights


def test_official_checkpoint_with_one_image_follow_or_refuse(tmp_path):
    from vla_adapter_ros.model.checkpoint import CheckpointError, load_checkpoint, save_official_layout

    from vla_adapter_ros.inference.engine import identity_statistics

    stats = identity_statistics(7, 8)
    hf = {"use_fused_vision_backbone": True, "image_sizes": [224, 224], "text_config": {"model_type": "qwen2"}}
    # a model run the release's way with one image saves and loads back with the release's split
    m = _model(1, 512)
    d = save_official_layout(m, tmp_path / "off", stats, hf)
    base = tiny_config("pro").replace_platform(num_images=1)
    assert base.policy.num_task_tokens is None
    loaded, _ = load_checkpoint(d, base_config=base)
    assert loaded.config.policy.num_task_tokens == 512
    b = _batch(m.config, seed=5)
    with torch.no_grad():
        assert torch.equal(loaded(*b), m(*b))
    # ... or is refused with a clear error
    with pytest.raises(CheckpointError, match=r"1 image\(s\).*256 raw tokens.*after 512 tokens"):
        load_checkpoint(d, base_config=base, official_task_split=False)
    # two images: the release's split is the per-image one, nothing to refuse
    two = _model(2, None)
    d2 = save_official_layout(two, tmp_path / "off2", stats, hf)
    assert load_checkpoint(d2, base_config=tiny_config("pro"), official_task_split=False)[0].config.task_split == 512
    # a model trained with the per-image split and one image cannot be written in the official layout
    with pytest.raises(CheckpointError, match="splits after 256"):
        save_official_layout(_model(1, None), tmp_path / "off3", stats, hf)


def test_split_without_any_adapter_token_is_refused():
    cfg = tiny_config("pro").replace_platform(num_images=1, use_proprio=False)
    cfg.policy.num_task_tokens = 512
    with pytest.raises(ConfigError, match="no adapter tokens"):
        cfg.validate()
    cfg.policy.num_task_tokens = 0
    with pytest.raises(ConfigError, match="num_task_tokens"):
        cfg.validate()
