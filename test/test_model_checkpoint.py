"""Checkpoints: our format round trip, official layout, LoRA adapter, bad checkpoints."""

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from vla_adapter_ros.model.checkpoint import (  # noqa: E402
    CheckpointError,
    export_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_official_layout,
)
from vla_adapter_ros.model.config import tiny_config  # noqa: E402
from vla_adapter_ros.model.vla import VLAAdapter  # noqa: E402

OFFICIAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "official_vla_adapter_config"

STATS = {
    "libero_test_no_noops": {
        "action": {
            "q01": [-0.9, -0.8, -0.9, -0.1, -0.2, -0.3, 0.0],
            "q99": [0.9, 0.8, 0.9, 0.1, 0.2, 0.3, 1.0],
            "min": [-1.0] * 6 + [0.0],
            "max": [1.0] * 6 + [1.0],
            "mask": [True] * 6 + [False],
        },
        "proprio": {"q01": [-0.5] * 8, "q99": [0.5] * 8, "min": [-1.0] * 8, "max": [1.0] * 8},
        "num_transitions": 100,
        "num_trajectories": 2,
    }
}

# a minimal OpenVLAConfig-like config.json, used when the official file is not available
FALLBACK_HF_CONFIG = {
    "model_type": "openvla",
    "architectures": ["OpenVLAForActionPrediction"],
    "use_fused_vision_backbone": True,
    "timm_model_ids": ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"],
    "image_sizes": [224, 224],
    "text_config": {"model_type": "qwen2"},
}


def _hf_config():
    p = OFFICIAL_DIR / "config.json"
    return json.loads(p.read_text()) if p.exists() else dict(FALLBACK_HF_CONFIG)


def _perturb(model, seed=0):
    """Random weights everywhere that matters (zero-initialised parts too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.action_queries.weight.copy_(torch.randn(model.action_queries.weight.shape, generator=g))
        for blk in model.action_head.model.mlp_resnet_blocks:
            blk.gating_factor.fill_(0.4)
    return model


@pytest.fixture(scope="module")
def models():
    out = {}
    for v in ("pro", "original"):
        torch.manual_seed(1)
        out[v] = _perturb(VLAAdapter(tiny_config(v)).eval())
    return out


def _batch(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    pv = torch.randn(1, 6 * cfg.platform.num_images, 224, 224, generator=g)
    ids = torch.randint(0, 150000, (1, 12), generator=g)
    ids[0, 0] = 151644
    return pv, ids, torch.ones_like(ids), torch.rand(1, cfg.platform.proprio_dim, generator=g)


def _out(m, b):
    with torch.no_grad():
        return m(*b)


@pytest.mark.parametrize("variant", ["pro", "original"])
def test_own_format_roundtrip_bit_identical(models, tmp_path, variant):
    m = models[variant]
    save_checkpoint(m, tmp_path / "ck", STATS)
    assert {p.name for p in (tmp_path / "ck").iterdir()} >= {"model.safetensors", "config.yaml", "dataset_statistics.json"}
    m2, norm = load_checkpoint(tmp_path / "ck")
    assert m2.config == m.config and norm.key == "libero_test_no_noops"
    b = _batch(m.config)
    assert torch.equal(_out(m, b), _out(m2, b))


@pytest.mark.parametrize("variant", ["pro", "original"])
def test_official_layout_loads_bit_identical(models, tmp_path, variant):
    m = models[variant]
    d = save_official_layout(m, tmp_path / "off", STATS, _hf_config())
    names = {p.name for p in d.iterdir()}
    assert {"config.json", "model.safetensors", "action_head--checkpoint.pt", "proprio_projector--checkpoint.pt"} <= names
    # the files really use the official key names
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "vision_backbone.featurizer.blocks.0.attn.qkv.weight" in keys
    assert "vision_backbone.featurizer.blocks.0.ls1.scale_factor" in keys
    assert "vision_backbone.featurizer.reg_token" in keys
    assert "vision_backbone.fused_featurizer.blocks.0.attn.qkv.weight" in keys
    assert "vision_backbone.fused_featurizer.attn_pool.kv.weight" in keys
    assert "projector.fc3.weight" in keys and "action_queries.weight" in keys
    assert "language_model.model.layers.0.self_attn.q_proj.weight" in keys
    head = torch.load(d / "action_head--checkpoint.pt", weights_only=True)
    assert all(k.startswith("module.model.") for k in head)
    assert ("module.model.mlp_resnet_blocks.0.k_self.weight" in head) == (variant == "pro")
    assert ("module.model.mlp_resnet_blocks.0.k_proj.weight" in head) == (variant == "original")

    m2, norm = load_checkpoint(d, base_config=tiny_config(variant))
    assert m2.config.policy.variant == variant
    assert m2.config.platform.action_dim == 7 and m2.config.platform.proprio_dim == 8
    b = _batch(m.config, seed=2)
    ref = _out(m, b)
    assert torch.equal(_out(m2, b), ref)
    # and equal to our own format
    save_checkpoint(m2, tmp_path / "ours", STATS)
    m3, _ = load_checkpoint(tmp_path / "ours")
    assert torch.equal(_out(m3, b), ref)


def test_lora_adapter_roundtrip(tmp_path):
    from vla_adapter_ros.model.lora import apply_lora

    torch.manual_seed(3)
    m = apply_lora(_perturb(VLAAdapter(tiny_config("pro"))), rank=4)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    m.eval()
    b = _batch(m.config, seed=4)
    ref = _out(m, b)
    save_checkpoint(m, tmp_path / "ck", STATS)
    assert (tmp_path / "ck" / "lora_adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "ck" / "lora_adapter" / "adapter_config.json").exists()
    unmerged, _ = load_checkpoint(tmp_path / "ck", merge_lora=False)
    assert torch.equal(_out(unmerged, b), ref)
    merged, _ = load_checkpoint(tmp_path / "ck")
    assert not any(".lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(_out(merged, b), ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ bad checkpoints
@pytest.fixture(scope="module")
def good_dir(models, tmp_path_factory):
    return save_checkpoint(models["pro"], tmp_path_factory.mktemp("good") / "ck", STATS)


@pytest.fixture
def bad_dir(good_dir, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(good_dir, d)
    return d


def _tensors(d):
    from safetensors.torch import load_file

    return load_file(str(d / "model.safetensors"))


def _write(d, sd):
    from safetensors.torch import save_file

    save_file(sd, str(d / "model.safetensors"))


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        load_checkpoint(tmp_path / "nope")


@pytest.mark.parametrize("fname", ["model.safetensors", "config.yaml", "dataset_statistics.json"])
def test_missing_file(bad_dir, fname):
    (bad_dir / fname).unlink()
    with pytest.raises(CheckpointError, match=rf"{fname}.*file not found"):
        load_checkpoint(bad_dir)


def test_wrong_shape(bad_dir):
    sd = _tensors(bad_dir)
    sd["action_head.model.fc2.weight"] = torch.zeros(5, 64)
    _write(bad_dir, sd)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*action_head\.model\.fc2\.weight.*shape \(5, 64\)"):
        load_checkpoint(bad_dir)


def test_nan_weights(bad_dir):
    sd = _tensors(bad_dir)
    sd["projector.fc1.weight"][0, 0] = float("nan")
    _write(bad_dir, sd)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*projector\.fc1\.weight.*NaN"):
        load_checkpoint(bad_dir)


def test_missing_and_unexpected_tensors(bad_dir):
    sd = _tensors(bad_dir)
    del sd["action_queries.weight"]
    _write(bad_dir, sd)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*missing.*action_queries"):
        load_checkpoint(bad_dir)
    sd["action_queries.weight"] = torch.zeros(64, 64)
    sd["extra.weight"] = torch.zeros(1)
    _write(bad_dir, sd)
    with pytest.raises(CheckpointError, match=r"unexpected.*extra\.weight"):
        load_checkpoint(bad_dir)


def test_corrupt_weights_file(bad_dir):
    (bad_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*cannot read"):
        load_checkpoint(bad_dir)


def test_malformed_config(bad_dir):
    (bad_dir / "config.yaml").write_text("llm: [unclosed\n")
    with pytest.raises(CheckpointError, match=r"config\.yaml.*cannot parse"):
        load_checkpoint(bad_dir)


def test_invalid_config_values(bad_dir, good_dir):
    import yaml

    cfg = yaml.safe_load((good_dir / "config.yaml").read_text())
    cfg["platform"]["normalization"] = "mystery"
    (bad_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match=r"config\.yaml.*platform\.normalization"):
        load_checkpoint(bad_dir)
    cfg = yaml.safe_load((good_dir / "config.yaml").read_text())
    cfg["policy"]["surprise"] = 1
    (bad_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointError, match=r"config\.yaml.*surprise"):
        load_checkpoint(bad_dir)


def test_wrong_platform_constants(bad_dir, good_dir):
    with pytest.raises(CheckpointError, match=r"config\.yaml.*action_dim is 7, expected 14"):
        load_checkpoint(good_dir, expected_platform={"action_dim": 14})
    with pytest.raises(CheckpointError, match=r"chunk_len is 8, expected 25"):
        load_checkpoint(good_dir, expected_platform={"chunk_len": 25})
    # statistics that do not fit the platform
    stats = json.loads((good_dir / "dataset_statistics.json").read_text())
    k = next(iter(stats))
    stats[k]["proprio"] = {"q01": [0.0] * 7, "q99": [1.0] * 7}
    (bad_dir / "dataset_statistics.json").write_text(json.dumps(stats))
    with pytest.raises(CheckpointError, match=r"dataset_statistics\.json.*proprio statistics have 7 dims"):
        load_checkpoint(bad_dir)
    (bad_dir / "dataset_statistics.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"dataset_statistics\.json"):
        load_checkpoint(bad_dir)


def test_bad_official_checkpoints(models, tmp_path):
    d = save_official_layout(models["original"], tmp_path / "off", STATS, _hf_config())
    base = tiny_config("original")
    (d / "proprio_projector--checkpoint.pt").rename(d / "unrelated.bin")
    with pytest.raises(CheckpointError, match=r"proprio_projector--\*checkpoint\.pt: file not found"):
        load_checkpoint(d, base_config=base)
    (d / "unrelated.bin").rename(d / "proprio_projector--checkpoint.pt")
    head = torch.load(d / "action_head--checkpoint.pt", weights_only=True)
    head["module.model.fc1.bias"] = torch.full_like(head["module.model.fc1.bias"], float("inf"))
    torch.save(head, d / "action_head--checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"action_head--checkpoint\.pt.*model\.fc1\.bias.*NaN or Inf"):
        load_checkpoint(d, base_config=base)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json.*cannot parse"):
        load_checkpoint(d, base_config=base)
    (d / "config.json").write_text(json.dumps({"model_type": "openvla"}))
    with pytest.raises(CheckpointError, match=r"config\.json.*text_config"):
        load_checkpoint(d, base_config=base)


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.skipif(not (OFFICIAL_DIR / "config.json").exists(), reason="official config dir not available")
@pytest.mark.parametrize("variant", ["pro", "original"])
def test_official_config_json_gives_official_shapes(variant):
    from vla_adapter_ros.model.checkpoint import config_from_official
    from vla_adapter_ros.model.config import official_config
    from vla_adapter_ros.model.vla import build_model

    ref = official_config(variant)
    meta = build_model(ref, device="meta")
    head = meta.action_head.state_dict()
    cfg = config_from_official(
        json.loads((OFFICIAL_DIR / "config.json").read_text()), head, meta.proprio_projector.state_dict()
    )
    assert cfg.llm == ref.llm and cfg.dino == ref.dino and cfg.siglip == ref.siglip
    assert cfg.policy.variant == variant and cfg.num_policy_blocks == 24
    assert (cfg.platform.action_dim, cfg.platform.proprio_dim, cfg.platform.chunk_len, cfg.platform.num_images) == (7, 8, 8, 2)


def test_official_layout_gamma_names_and_no_module_prefix(models, tmp_path):
    """timm LayerScale saved as `gamma` (not renamed) and component files without the DDP prefix."""
    from safetensors.torch import load_file, save_file

    m = models["pro"]
    d = save_official_layout(m, tmp_path / "off", STATS, _hf_config(), step="5000")
    sd = load_file(str(d / "model.safetensors"))
    sd = {k.replace("ls1.scale_factor", "ls1.gamma"): v for k, v in sd.items()}
    save_file(sd, str(d / "model.safetensors"))
    for f in d.glob("*--5000_checkpoint.pt"):
        t = torch.load(f, weights_only=True)
        torch.save({k[len("module.") :]: v for k, v in t.items()}, f)
    m2, _ = load_checkpoint(d, base_config=tiny_config("pro"))
    b = _batch(m.config, seed=7)
    assert torch.equal(_out(m2, b), _out(m, b))


def test_export_half_precision_copy(good_dir, tmp_path, models):
    src = tmp_path / "src"
    shutil.copytree(good_dir, src)
    (src / "training.json").write_text('{"action_space": "eef_delta"}')
    (src / "train_state.pt").write_bytes(b"optimizer state")  # not part of an export
    out = export_checkpoint(src, tmp_path / "exp", "float16")
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.yaml", "dataset_statistics.json",
                                                "training.json"}
    assert (out / "model.safetensors").stat().st_size < 0.55 * (src / "model.safetensors").stat().st_size
    assert all(t.dtype == torch.float16 for t in _tensors(out).values() if t.is_floating_point())
    loaded, norm = load_checkpoint(out)
    assert next(loaded.parameters()).dtype == torch.float32 and norm.key == "libero_test_no_noops"
    b = _batch(loaded.config)
    ref = _out(models["pro"], b)
    torch.testing.assert_close(_out(loaded, b), ref, rtol=2e-2, atol=2e-2)  # fp16 weights, fp32 compute
    assert not torch.equal(_out(loaded, b), ref)
    with pytest.raises(CheckpointError, match="already exists"):
        export_checkpoint(src, out)
    with pytest.raises(CheckpointError, match="dtype must be one of"):
        export_checkpoint(src, tmp_path / "exp2", "int8")


def test_model_without_proprio_input(tmp_path):
    """platform.use_proprio false: no projector, no proprio token, proprio ignored; own format round trip;
    the official layout (which always has a projector file) refuses it with a clear error."""
    cfg = tiny_config("pro").replace_platform(use_proprio=False)
    torch.manual_seed(3)
    m = _perturb(VLAAdapter(cfg).eval())
    assert m.proprio_projector is None and not any(k.startswith("proprio_projector.") for k in m.state_dict())
    pv, ids, mask, pr = _batch(cfg)
    a = _out(m, (pv, ids, mask, pr))
    assert torch.equal(a, _out(m, (pv, ids, mask, pr * 10 - 3)))  # proprio has no effect
    assert not torch.equal(a, _out(m, (pv.flip(-1), ids, mask, pr)))  # images still do
    # the same weights with a proprio token give a different chunk: the token really is absent
    with_p = _perturb(VLAAdapter(tiny_config("pro")).eval())
    with_p.load_state_dict(m.state_dict(), strict=False)
    assert not torch.allclose(_out(with_p, (pv, ids, mask, pr)), a)
    save_checkpoint(m, tmp_path / "ck", STATS)
    m2, _ = load_checkpoint(tmp_path / "ck")
    assert m2.config.platform.use_proprio is False and m2.proprio_projector is None
    assert torch.equal(_out(m2, (pv, ids, mask, pr)), a)
    with pytest.raises(CheckpointError, match="proprio projector"):
        save_official_layout(m, tmp_path / "official", STATS, {})
    bad = tiny_config("pro")
    bad.platform.use_proprio = "no"
    with pytest.raises(ValueError, match="use_proprio"):
        bad.validate()
