"""Fused DINOv2 + SigLIP vision backbone and the GELU-MLP projector.

The towers are transformers' own ``Dinov2WithRegistersModel`` and ``SiglipVisionModel``
(no timm). Each tower returns the patch tokens of its second-to-last block, without the
final norm and without prefix (CLS/register) tokens, like timm's
``get_intermediate_layers(n={num_blocks - 2})`` in the official code. Only the blocks that are
needed are run; the last block (and SigLIP's norm/pooling head) are kept so that the parameter
set matches the official model. SigLIP's MLP uses exact GELU (``siglip.hidden_act``), as timm's
``vit_so400m_patch14_siglip_224`` built by the release does (transformers' own SigLIP default is the
tanh approximation: patch features up to ~4e-3 apart at full size).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VLAAdapterConfig


def _build_dino(cfg: VLAAdapterConfig) -> nn.Module:
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    d = cfg.dino
    hf = Dinov2WithRegistersConfig(
        hidden_size=d.hidden_size,
        num_hidden_layers=d.num_layers,
        num_attention_heads=d.num_heads,
        mlp_ratio=d.mlp_ratio,
        image_size=cfg.processor.image_size,
        patch_size=d.patch_size,
        num_channels=3,
        qkv_bias=True,
        layerscale_value=1.0,
        use_swiglu_ffn=False,
        hidden_act="gelu",
        layer_norm_eps=d.layer_norm_eps,
        num_register_tokens=d.num_register_tokens,
        drop_path_rate=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    hf._attn_implementation = "sdpa"
    return Dinov2WithRegistersModel(hf)


def _build_siglip(cfg: VLAAdapterConfig) -> nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    s = cfg.siglip
    hf = SiglipVisionConfig(
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers,
        num_attention_heads=s.num_heads,
        num_channels=3,
        image_size=cfg.processor.image_size,
        patch_size=s.patch_size,
        hidden_act=s.hidden_act,  # "gelu" (exact) like timm's SigLIP in the release
        layer_norm_eps=s.layer_norm_eps,
        attention_dropout=0.0,
        vision_use_head=True,
    )
    hf._attn_implementation = "sdpa"
    return SiglipVisionModel(hf)


class FusedVisionBackbone(nn.Module):
    """DINOv2(reg) ‖ SigLIP patch features, for ``num_images`` images per sample.

    Input ``pixel_values``: (B, 6 * num_images, H, W), per image [DINO-normalised RGB, SigLIP-normalised RGB].
    Output: (B, num_images * patches_per_image, dino_dim + siglip_dim).
    """

    def __init__(self, cfg: VLAAdapterConfig):
        super().__init__()
        self.num_images = cfg.platform.num_images
        self.featurizer = _build_dino(cfg)
        # timm's reg4 DINOv2 adds no position embedding to the CLS token (no_embed_class=True)
        with torch.no_grad():
            self.featurizer.embeddings.position_embeddings[:, :1].zero_()
        self.fused_featurizer = _build_siglip(cfg)
        self.num_prefix = 1 + cfg.dino.num_register_tokens
        self.embed_dim = cfg.vision_dim

    def _dino_features(self, img: torch.Tensor) -> torch.Tensor:
        m = self.featurizer
        x = m.embeddings(img)  # (N, 1 + R + P, D): cls, registers, patches
        for layer in m.encoder.layer[:-1]:
            x = layer(x)
            if isinstance(x, tuple):  # older transformers return tuples
                x = x[0]
        return x[:, self.num_prefix :]

    def _siglip_features(self, img: torch.Tensor) -> torch.Tensor:
        m = self.fused_featurizer
        m = getattr(m, "vision_model", m)
        x = m.embeddings(img)
        for layer in m.encoder.layers[:-1]:
            x = layer(x, None)
            if isinstance(x, tuple):
                x = x[0]
        return x

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        b, c, h, w = pixel_values.shape
        n = self.num_images
        # fold images into the batch: (B*n, 6, H, W), image-major inside each sample
        imgs = pixel_values.reshape(b * n, 6, h, w)
        dino_in, siglip_in = imgs[:, :3], imgs[:, 3:]
        feats = torch.cat([self._dino_features(dino_in), self._siglip_features(siglip_in)], dim=-1)
        p = feats.shape[1]
        return feats.reshape(b, n * p, feats.shape[-1])


class FusedProjector(nn.Module):
    """``no-align+fused-gelu-mlp``: fc1 -> GELU -> fc2 -> GELU -> fc3."""

    def __init__(self, vision_dim: int, llm_dim: int, hidden_mult: int = 4):
        super().__init__()
        inter = hidden_mult * vision_dim
        self.fc1 = nn.Linear(vision_dim, inter, bias=True)
        self.fc2 = nn.Linear(inter, llm_dim, bias=True)
        self.fc3 = nn.Linear(llm_dim, llm_dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.fc1(x))
        x = F.gelu(self.fc2(x))
        return self.fc3(x)
