"""VLA-Adapter network: parameter counts, gate, shapes, determinism, feature windows, LoRA gradients."""

import copy
import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from vla_adapter_ros.model.config import ConfigError, VLAAdapterConfig, get_config, official_config, tiny_config  # noqa: E402
from vla_adapter_ros.model.policy import BridgeAttentionBlock  # noqa: E402
from vla_adapter_ros.model.vla import VLAAdapter, build_model, count_parameters  # noqa: E402


# ------------------------------------------------------------------ parameter counts (meta device)
@pytest.mark.parametrize(
    "variant,head_params,block_params",
    [("original", 102_129_695, 4_020_353), ("pro", 217_864_223, 8_842_625)],
)
def test_official_parameter_counts(variant, head_params, block_params):
    m = build_model(official_config(variant), device="meta")
    assert next(m.parameters()).device.type == "meta"
    assert count_parameters(m.action_head) == head_params
    assert count_parameters(m.action_head.model.mlp_resnet_blocks[0]) == block_params
    assert len(m.action_head.model.mlp_resnet_blocks) == 24
    # stem + output head of the policy
    stem = head_params - 24 * block_params
    assert stem == 5_641_223
    assert count_parameters(m.proprio_projector) == 811_776
    assert m.action_queries.weight.numel() == 64 * 896 == 57_344
    assert count_parameters(m.projector) == 27_552_000
    # Qwen2.5-0.5B without the (tied) LM head
    assert count_parameters(m.language_model) == 494_032_768
    # DINOv2-L/14 (+4 registers) and SigLIP so400m: ~304M and ~428M
    assert 300e6 < count_parameters(m.vision_backbone.featurizer) < 306e6
    assert 425e6 < count_parameters(m.vision_backbone.fused_featurizer) < 431e6
    total = count_parameters(m)
    assert 1.3e9 < total < 1.5e9


def test_pro_without_film_gen_count():
    m = build_model(official_config("pro"), device="meta")
    film = sum(count_parameters(b.film_gen) for b in m.action_head.model.mlp_resnet_blocks)
    assert film == 24 * 1_607_424
    assert abs((count_parameters(m.action_head) - film) / 1e6 - 179.3) < 0.1


def test_official_feature_geometry():
    cfg = official_config()
    assert cfg.num_patches == 512 and cfg.patches_per_image == 256
    assert cfg.vision_dim == 2176
    m = build_model(cfg, device="meta")
    assert m.projector.fc1.weight.shape == (8704, 2176)
    assert m.projector.fc2.weight.shape == (896, 8704)
    assert m.action_head.model.layer_norm1.weight.shape == (7 * 896,)
    assert m.action_head.model.fc2.weight.shape == (7, 896)


# ------------------------------------------------------------------ config
def test_config_roundtrip_and_validation(tmp_path):
    cfg = tiny_config("original")
    d = cfg.to_dict()
    assert VLAAdapterConfig.from_dict(d) == cfg
    cfg.save(tmp_path / "c.yaml")
    assert VLAAdapterConfig.load(tmp_path / "c.yaml") == cfg
    assert get_config(tmp_path / "c.yaml") == cfg
    assert get_config("tiny").policy.variant == "pro"
    bad = copy.deepcopy(d)
    bad["platform"]["normalization"] = "zscore"
    with pytest.raises(ConfigError, match="platform.normalization"):
        VLAAdapterConfig.from_dict(bad)
    bad = copy.deepcopy(d)
    bad["platform"]["chunk_len"] = 0
    with pytest.raises(ConfigError, match="chunk_len"):
        VLAAdapterConfig.from_dict(bad)
    bad = copy.deepcopy(d)
    bad["policy"]["num_heads"] = 7
    with pytest.raises(ConfigError, match="divisible by policy.num_heads"):
        VLAAdapterConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="unknown config keys"):
        VLAAdapterConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ConfigError, match="unknown preset"):
        get_config("no-such-preset")


# ------------------------------------------------------------------ tiny model fixtures
@pytest.fixture(scope="module")
def tiny_models():
    out = {}
    for v in ("pro", "original"):
        torch.manual_seed(0)
        out[v] = VLAAdapter(tiny_config(v)).eval()
    return out


def _inputs(cfg, batch=1, prompt_len=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    pv = torch.randn(batch, 6 * cfg.platform.num_images, 224, 224, generator=g)
    ids = torch.randint(0, 150000, (batch, prompt_len), generator=g)
    ids[:, 0] = 151644
    mask = torch.ones_like(ids)
    pr = torch.rand(batch, cfg.platform.proprio_dim, generator=g) * 2 - 1
    return pv, ids, mask, pr


def test_gate_zero_init(tiny_models):
    for m in tiny_models.values():
        for blk in m.action_head.model.mlp_resnet_blocks:
            assert blk.gating_factor.item() == 0.0
        assert torch.count_nonzero(m.action_queries.weight) == 0


def test_gate_zero_makes_raw_logits_vanish():
    """tanh(0) = 0 scales the raw-token logits to exactly 0: the raw keys carry no information, so the
    output is bit-identical whatever the raw key projection is; with an open gate it is not."""
    torch.manual_seed(0)
    blk = BridgeAttentionBlock(64, 8, pro=True).eval()
    x, raw, ad = torch.randn(2, 8, 64), torch.randn(2, 30, 64), torch.randn(2, 65, 64)
    with torch.no_grad():
        y0 = blk(x, raw, ad)
        blk.k_task.weight.normal_()
        blk.k_task.bias.normal_()
        assert torch.equal(blk(x, raw, ad), y0)
        blk.gating_factor.fill_(0.7)
        assert not torch.allclose(blk(x, raw, ad), y0)
    # the same for the original block: its k_proj is shared, so check via attention weights instead
    torch.manual_seed(0)
    ob = BridgeAttentionBlock(64, 8, pro=False).eval()
    with torch.no_grad():
        q = ob._heads(ob.q_proj(x))
        kr = ob._heads(ob.k_proj(raw))
        logits = (q @ kr.transpose(-2, -1)) * torch.tanh(ob.gating_factor)
        assert torch.count_nonzero(logits) == 0


def test_gated_block_matches_hand_computation():
    """One original block against an explicit formula (joint softmax, gate on raw logits, FFN)."""
    torch.manual_seed(1)
    blk = BridgeAttentionBlock(16, 2, pro=False).eval()
    with torch.no_grad():
        blk.gating_factor.fill_(0.3)
        x, raw, ad = torch.randn(1, 3, 16), torch.randn(1, 5, 16), torch.randn(1, 4, 16)
        y = blk(x, raw, ad)
        q, k, v = blk.q_proj, blk.k_proj, blk.v_proj
        hd = 8
        outs = []
        for h in range(2):
            sl = slice(h * hd, (h + 1) * hd)
            qh = q(x)[0, :, sl]
            ks = [k(t)[0, :, sl] for t in (x, ad, raw)]
            vs = torch.cat([v(t)[0, :, sl] for t in (x, ad, raw)])
            s = torch.cat([qh @ ks[0].T, qh @ ks[1].T, torch.tanh(torch.tensor(0.3)) * (qh @ ks[2].T)], 1) / hd**0.5
            outs.append(torch.softmax(s, -1) @ vs)
        o = blk.o_proj(torch.cat(outs, -1))
        ref = torch.relu(blk.ffn[1](blk.ffn[0](o + x[0])))
    torch.testing.assert_close(y[0], ref, rtol=1e-5, atol=1e-6)


def test_pro_rotary_matches_reference_layout():
    from vla_adapter_ros.model.policy import PairRotary

    r = PairRotary(4, base=100.0)
    cos, sin = r.cos_sin(3, torch.float32)
    inv = torch.tensor([1.0, 0.1])
    ang = torch.arange(3.0)[:, None] * torch.cat([inv, inv])[None]
    torch.testing.assert_close(cos, ang.cos())
    u = torch.tensor([[1.0, 2.0, 3.0, 4.0]]).expand(3, 4)
    rot = torch.tensor([[-2.0, 1.0, -4.0, 3.0]])
    torch.testing.assert_close(PairRotary.apply(u, cos, sin), u * ang.cos() + rot * ang.sin())


def test_forward_shapes_and_determinism(tiny_models):
    for v, m in tiny_models.items():
        cfg = m.config
        pv, ids, mask, pr = _inputs(cfg, batch=2)
        with torch.no_grad():
            a = m(pv, ids, mask, pr)
            b = m(pv, ids, mask, pr)
        assert a.shape == (2, cfg.platform.chunk_len, cfg.platform.action_dim)
        assert torch.equal(a, b)
        assert torch.isfinite(a).all()
        raw, aq = m.backbone_features(pv, ids, mask)
        assert raw.shape == (2, cfg.num_policy_blocks, cfg.num_patches, cfg.llm.hidden_size)
        assert aq.shape == (2, cfg.num_policy_blocks, cfg.num_action_queries, cfg.llm.hidden_size)


def test_original_variant_gives_constant_chunk(tiny_models):
    m = tiny_models["original"]
    pv, ids, mask, pr = _inputs(m.config)
    with torch.no_grad():
        a = m(pv, ids, mask, pr)[0]
    assert torch.equal(a, a[:1].expand_as(a))  # no positional signal in the original head
    m = tiny_models["pro"]
    with torch.no_grad():
        a = m(pv, ids, mask, pr)[0]
    assert not torch.equal(a, a[:1].expand_as(a))


def test_feature_windows_match_reference_indexing(tiny_models):
    """C^R = hidden[l][:, :P], C^AQ = hidden[l][:, P+T_p-1 : P+T_p-1+64] of the reference sequence
    [ids[0], V, ids[1:], AQ x64, stop]; block i reads layer i+1."""
    m = tiny_models["pro"]
    cfg = m.config
    with torch.no_grad():
        m.action_queries.weight.normal_()
    try:
        pv, ids, mask, pr = _inputs(cfg, prompt_len=17, seed=3)
        with torch.no_grad():
            raw, aq = m.backbone_features(pv, ids, mask)
            emb = m.language_model.model.embed_tokens
            vis = m.projector(m.vision_backbone(pv))
            stop = emb(torch.tensor([[2]]))
            seq = torch.cat([emb(ids[:, :1]), vis, emb(ids[:, 1:]), m.action_queries.weight[None], stop], 1)
            hs = m.language_model.model(inputs_embeds=seq, output_hidden_states=True).hidden_states
            p, t = cfg.num_patches, ids.shape[1]
            for i in range(cfg.num_policy_blocks):
                torch.testing.assert_close(raw[:, i], hs[i + 1][:, :p], rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(aq[:, i], hs[i + 1][:, p + t - 1 : p + t - 1 + 64], rtol=1e-5, atol=1e-5)
    finally:
        with torch.no_grad():
            m.action_queries.weight.zero_()


def test_padded_prompt_equals_unpadded(tiny_models):
    """Right-padding the prompt to a fixed length (static shapes) leaves the actions unchanged, also in a
    batch mixing two prompt lengths."""
    m = tiny_models["pro"]
    cfg = m.config
    with torch.no_grad():
        for blk in m.action_head.model.mlp_resnet_blocks:
            blk.gating_factor.fill_(0.5)
        m.action_queries.weight.normal_()
    try:
        pv, ids, mask, pr = _inputs(cfg, batch=2, prompt_len=15, seed=5)
        with torch.no_grad():
            ref0 = m(pv[:1], ids[:1, :11], None, pr[:1])
            ref1 = m(pv[1:], ids[1:], None, pr[1:])
            pad = torch.full((2, 24), cfg.pad_token_id)
            pad[0, :11], pad[1, :15] = ids[0, :11], ids[1]
            pmask = (torch.arange(24)[None] < torch.tensor([[11], [15]])).long()
            out = m(pv, pad, pmask, pr)
        torch.testing.assert_close(out[0:1], ref0, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out[1:2], ref1, rtol=1e-4, atol=1e-5)
    finally:
        with torch.no_grad():
            for blk in m.action_head.model.mlp_resnet_blocks:
                blk.gating_factor.zero_()
            m.action_queries.weight.zero_()


def test_lora_gradients():
    from vla_adapter_ros.model.lora import apply_lora, lora_target_modules

    torch.manual_seed(0)
    m = VLAAdapter(tiny_config("pro"))
    targets = lora_target_modules(m)
    assert any(t.startswith("vision_backbone.featurizer.") for t in targets)
    assert any(t.startswith("vision_backbone.fused_featurizer.") for t in targets)
    assert any(t.startswith("projector.") for t in targets)
    assert any(t.endswith("mlp.down_proj") for t in targets)
    assert not any(t.startswith(("action_head", "proprio_projector")) for t in targets)
    m = apply_lora(m, rank=4)
    cfg = m._vla_lora_config
    assert cfg.r == 4 and cfg.lora_alpha == 8 and cfg.lora_dropout == 0.0
    m.train()
    # LoRA B starts at zero: give it values so that gradients reach lora_A as well
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.01)
    pv, ids, mask, pr = _inputs(m.config)
    loss = m(pv, ids, mask, pr).abs().mean()
    loss.backward()
    named = dict(m.named_parameters())
    for n, p in named.items():
        if ".lora_" in n or n.startswith(("action_queries", "proprio_projector", "action_head")):
            assert p.requires_grad, n
        else:
            assert not p.requires_grad and p.grad is None, n
    # gradients reach LoRA weights in every part of the backbone that is used, and the policy
    def has_grad(prefix):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in named.items() if n.startswith(prefix) and ".lora_" in n)

    assert has_grad("language_model.")
    assert has_grad("projector.")
    assert has_grad("vision_backbone.featurizer.")
    assert has_grad("vision_backbone.fused_featurizer.")
    assert named["action_head.model.fc2.weight"].grad.abs().sum() > 0
    assert named["proprio_projector.fc1.weight"].grad.abs().sum() > 0
    assert named["action_queries.weight"].grad.abs().sum() > 0
    assert named["action_head.model.mlp_resnet_blocks.0.gating_factor"].grad is not None


def test_official_lora_count_estimate():
    """The spec estimates ~94M LoRA parameters at rank 64 for the official (timm) model. transformers'
    towers split the fused timm qkv Linear into q/k/v (3 adapters instead of 1: +7.1M) and SigLIP's unused
    attention-pool attention gets none (-0.5M); correcting for both gives the spec's number."""
    from vla_adapter_ros.model.lora import lora_target_modules

    m = build_model(official_config("pro"), device="meta")
    mods = dict(m.named_modules())
    n = sum(64 * (mods[t].in_features + mods[t].out_features) for t in lora_target_modules(m))
    split_extra = 24 * 64 * (3 * 2048 - (1024 + 3072)) + 27 * 64 * (3 * 2304 - (1152 + 3456))
    pool = 64 * ((1152 + 1152) + (1152 + 2304) + (1152 + 1152))
    timm_equiv = n - split_extra + pool
    assert abs(timm_equiv / 1e6 - 94) < 1.0, timm_equiv


def test_backbone_hyperparameters_reach_transformers(tiny_models):
    m = tiny_models["pro"]
    lm = m.language_model.model
    head_dim = 64 // 4
    expected = 1.0 / (1e6 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    torch.testing.assert_close(lm.rotary_emb.inv_freq.float(), expected)  # rope_theta 1e6
    assert lm.config.num_key_value_heads == 2 and lm.config.rms_norm_eps == 1e-6
    assert m.vision_backbone.featurizer.config.num_register_tokens == 4
    assert m.vision_backbone.fused_featurizer.config.hidden_act == "gelu"  # exact, like timm's (the release's)
    # timm reg4 DINOv2 puts no position embedding on CLS
    assert torch.count_nonzero(m.vision_backbone.featurizer.embeddings.position_embeddings[:, 0]) == 0


def test_training_noise_only_in_train_mode():
    from vla_adapter_ros.model.policy import BridgeAttentionPolicy

    head = BridgeAttentionPolicy(tiny_config("pro"))
    head.eval()
    z = head.initial_latent(2, torch.float32, torch.device("cpu"))
    assert z.shape == (2, 8, 7 * 64) and torch.count_nonzero(z) == 0
    head.train()
    torch.manual_seed(0)
    z = head.initial_latent(2, torch.float32, torch.device("cpu"))
    assert torch.equal(z[0], z[1])  # one noise sample shared by the batch
    assert 0.015 < z.std().item() < 0.025


def test_train_noise_std_is_configurable():
    """The release's perturbation (std 0.02) becomes a unit-scale random query behind the policy's first LayerNorm,
    which inference never sees (there: the LayerNorm's bias); train_noise_std 0 trains on the inference latent."""
    from vla_adapter_ros.model.policy import BridgeAttentionPolicy

    cfg = tiny_config("pro")
    torch.manual_seed(0)
    head = BridgeAttentionPolicy(cfg).train()
    assert head.train_noise_std == 0.02 == official_config().policy.train_noise_std
    ln = head.model.layer_norm1
    with torch.no_grad():
        assert 0.9 < ln(head.initial_latent(1, torch.float32, torch.device("cpu"))).std().item() < 1.1
        head.eval()
        assert torch.equal(ln(head.initial_latent(1, torch.float32, torch.device("cpu")))[0, 0], ln.bias)
    raw, aq = torch.randn(2, 2, 16, 64), torch.randn(2, 2, 4, 64)
    quiet = BridgeAttentionPolicy(dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, train_noise_std=0.0)))
    with torch.no_grad():
        assert torch.equal(quiet.train()(raw, aq, None), quiet.eval()(raw, aq, None))
        assert not torch.allclose(head.train()(raw, aq, None), head.eval()(raw, aq, None), atol=1e-3)
    d = get_config("tiny-112").to_dict()
    assert d["policy"]["train_noise_std"] == 0.0 and VLAAdapterConfig.from_dict(d).policy.train_noise_std == 0.0
    del d["policy"]["train_noise_std"]  # saved before the option: trained with the release's perturbation
    assert VLAAdapterConfig.from_dict(d).policy.train_noise_std == 0.02
    for bad in (-0.1, float("nan"), float("inf"), "0.02", True, None):
        d["policy"]["train_noise_std"] = bad
        with pytest.raises(ConfigError, match="train_noise_std"):
            VLAAdapterConfig.from_dict(d)


def test_bfloat16_forward_runs(tiny_models):
    m = copy.deepcopy(tiny_models["pro"]).to(torch.bfloat16)
    assert m.action_head.model.mlp_resnet_blocks[0].rope.inv_freq.dtype == torch.bfloat16  # as the reference
    pv, ids, mask, pr = _inputs(m.config)
    with torch.no_grad():
        y = m(pv.bfloat16(), ids, mask, pr.bfloat16())
        ref = tiny_models["pro"](pv, ids, mask, pr)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()
    assert (y.float() - ref).abs().max() < 0.1


def test_embedding_init_std_for_models_trained_from_scratch(tmp_path):
    import dataclasses

    import torch

    torch.manual_seed(0)
    default = VLAAdapter(tiny_config()).language_model.model.embed_tokens.weight
    assert float(default.std()) == pytest.approx(0.02, rel=0.05)  # transformers' initializer_range
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, embedding_init_std=1.0))
    scaled = VLAAdapter(cfg).language_model.model.embed_tokens.weight
    assert float(scaled.std()) == pytest.approx(1.0, rel=0.05)
    cfg.save(tmp_path / "c.yaml")
    assert VLAAdapterConfig.load(tmp_path / "c.yaml").llm.embedding_init_std == 1.0
    assert tiny_config().llm.embedding_init_std is None  # presets and released checkpoints: unchanged


def test_tiny_112_preset():
    cfg = get_config("tiny-112")
    assert cfg.name == "tiny-112" and cfg.processor.image_size == 112 and cfg.patches_per_image == 64
    assert cfg.llm.embedding_init_std == 1.0 and cfg.policy.train_noise_std == 0.0
    tiny = tiny_config()
    assert (cfg.llm.hidden_size, cfg.dino, cfg.siglip) == (tiny.llm.hidden_size, tiny.dino, tiny.siglip)
    assert cfg.policy == dataclasses.replace(tiny.policy, train_noise_std=0.0)
