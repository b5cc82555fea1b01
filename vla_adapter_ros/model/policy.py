"""Bridge-Attention policy (the official ``L1RegressionActionHead``) and the proprio projector.

Module/parameter names follow the official state dict so that released ``action_head--*.pt`` and
``proprio_projector--*.pt`` files load 1:1 (``model.layer_norm1``, ``model.fc1``,
``model.mlp_resnet_blocks.{i}.*``, ``model.layer_norm2``, ``model.fc2``; ``fc1``/``fc2``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VLAAdapterConfig


class ProprioProjector(nn.Module):
    """proprio (B, proprio_dim) -> (B, D): Linear -> GELU -> Linear."""

    def __init__(self, proprio_dim: int, llm_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, llm_dim, bias=True)
        self.fc2 = nn.Linear(llm_dim, llm_dim, bias=True)

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(proprio)))


class PairRotary(nn.Module):
    """The rotary embedding of the official Pro block, reproduced exactly.

    Frequencies are laid out as ``cat(freqs, freqs)`` over the head dimension while the rotation pairs
    neighbouring channels (2k, 2k+1). The two conventions do not match (this is not a norm-preserving
    rotation) but released checkpoints were trained with it. ``inv_freq`` is a non-persistent buffer,
    so after ``.to(bfloat16)`` positions/angles are computed in bf16 as in the reference.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        inv = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def cos_sin(self, n: int, dtype: torch.dtype):
        t = torch.arange(n, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
        ang = torch.outer(t, self.inv_freq)
        ang = torch.cat([ang, ang], dim=-1)
        return ang.cos().to(dtype), ang.sin().to(dtype)

    @staticmethod
    def apply(u: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        even, odd = u[..., 0::2], u[..., 1::2]
        rot = torch.stack((-odd, even), dim=-1).flatten(-2)
        return u * cos + rot * sin


class BridgeAttentionBlock(nn.Module):
    """One policy block, original (``MLPResNetBlock``) or Pro (``MLPResNetBlock_Pro``).

    Queries come from the action latents ``x`` (B, T, D). Keys/values come from three sources that share
    ONE softmax: the latents themselves, the adapter tokens [C^AQ ; proprio] and the raw tokens C^R whose
    logits are scaled by tanh(gating_factor) (zero-initialised). Output: FFN(o_proj(attn) + x), where
    FFN = LayerNorm -> Linear -> ReLU (the result replaces x; no further residual).
    """

    def __init__(self, dim: int, num_heads: int = 8, pro: bool = True, rope_base: float = 10000.0):
        super().__init__()
        self.dim, self.num_heads, self.pro = dim, num_heads, pro
        self.head_dim = dim // num_heads
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())
        self.q_proj = nn.Linear(dim, dim)
        if pro:
            self.k_self = nn.Linear(dim, dim)
            self.v_self = nn.Linear(dim, dim)
            self.k_adapter = nn.Linear(dim, dim)
            self.v_adapter = nn.Linear(dim, dim)
            self.k_task = nn.Linear(dim, dim)
            self.v_task = nn.Linear(dim, dim)
        else:
            self.k_proj = nn.Linear(dim, dim)
            self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, dim)
        self.gating_factor = nn.Parameter(torch.zeros(1))
        if pro:
            self.rope = PairRotary(self.head_dim, rope_base)
            # present in released Pro checkpoints but unused by the reference forward pass
            self.film_gen = nn.Sequential(nn.Linear(dim, 2 * dim))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def project(self, x: torch.Tensor, raw: torch.Tensor, adapter: torch.Tensor):
        """Per-head queries and the keys/values of the three sources (rotary applied in Pro):
        q, (k_self, v_self), (k_adapter, v_adapter), (k_raw, v_raw), each (B, heads, n, head_dim)."""
        t = x.shape[1]
        q = self._heads(self.q_proj(x))
        if self.pro:
            k_s, v_s = self._heads(self.k_self(x)), self._heads(self.v_self(x))
            k_a, v_a = self._heads(self.k_adapter(adapter)), self._heads(self.v_adapter(adapter))
            k_r, v_r = self._heads(self.k_task(raw)), self._heads(self.v_task(raw))
            cos, sin = self.rope.cos_sin(t, x.dtype)
            q, k_s = PairRotary.apply(q, cos, sin), PairRotary.apply(k_s, cos, sin)
            cos, sin = self.rope.cos_sin(adapter.shape[1], x.dtype)
            k_a = PairRotary.apply(k_a, cos, sin)
            cos, sin = self.rope.cos_sin(raw.shape[1], x.dtype)
            k_r = PairRotary.apply(k_r, cos, sin)
        else:
            k_s, v_s = self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
            k_a, v_a = self._heads(self.k_proj(adapter)), self._heads(self.v_proj(adapter))
            k_r, v_r = self._heads(self.k_proj(raw)), self._heads(self.v_proj(raw))
        return q, (k_s, v_s), (k_a, v_a), (k_r, v_r)

    def forward(self, x: torch.Tensor, raw: torch.Tensor, adapter: torch.Tensor) -> torch.Tensor:
        """x (B,T,D); raw = C^R (B,K_r,D); adapter = [C^AQ ; proprio] (B,K_a,D)."""
        b, t, c = x.shape
        q, (k_s, v_s), (k_a, v_a), (k_r, v_r) = self.project(x, raw, adapter)
        gate = torch.tanh(self.gating_factor)
        scores = torch.cat(
            [q @ k_s.transpose(-2, -1), q @ k_a.transpose(-2, -1), (q @ k_r.transpose(-2, -1)) * gate], dim=-1
        ) / math.sqrt(self.head_dim)
        w = torch.softmax(scores, dim=-1)
        out = w @ torch.cat([v_s, v_a, v_r], dim=2)
        out = self.o_proj(out.transpose(1, 2).reshape(b, t, c))
        return self.ffn(out + x)


class _PolicyTrunk(nn.Module):
    """Holds the parameters under the official ``model.`` prefix."""

    def __init__(self, cfg: VLAAdapterConfig):
        super().__init__()
        d = cfg.llm.hidden_size
        a = cfg.platform.action_dim
        self.layer_norm1 = nn.LayerNorm(a * d)
        self.fc1 = nn.Linear(a * d, d)
        self.mlp_resnet_blocks = nn.ModuleList(
            [
                BridgeAttentionBlock(d, cfg.policy.num_heads, cfg.policy.variant == "pro", cfg.policy.rope_base)
                for _ in range(cfg.num_policy_blocks)
            ]
        )
        self.layer_norm2 = nn.LayerNorm(d)
        self.fc2 = nn.Linear(d, a)


class BridgeAttentionPolicy(nn.Module):
    """Regresses a whole normalized action chunk (B, chunk_len, action_dim) from the VLM features."""

    def __init__(self, cfg: VLAAdapterConfig):
        super().__init__()
        self.chunk_len = cfg.platform.chunk_len
        self.action_dim = cfg.platform.action_dim
        self.hidden = cfg.llm.hidden_size
        self.model = _PolicyTrunk(cfg)
        # std of the (non-learned) perturbation added to the zero latent in training (the release: 0.02)
        self.train_noise_std = float(cfg.policy.train_noise_std)

    def initial_latent(self, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        z = torch.zeros(batch, self.chunk_len, self.action_dim * self.hidden, dtype=dtype, device=device)
        if self.training and self.train_noise_std > 0:
            # one noise sample shared by the batch, regenerated every call, never learned
            z = z + torch.randn(self.chunk_len, self.action_dim * self.hidden, dtype=dtype, device=device) * (
                self.train_noise_std
            )
        return z

    def forward(self, raw_feats: torch.Tensor, aq_feats: torch.Tensor,
                proprio_token: Optional[torch.Tensor]) -> torch.Tensor:
        """raw_feats (B, n_blocks, K_r, D): C^R per block; aq_feats (B, n_blocks, n_q, D): C^AQ per block;
        proprio_token (B, 1, D) or None (model without proprio input: the adapter tokens are C^AQ alone).
        Block i reads index i (the caller already selected LLM layer i+1)."""
        b = raw_feats.shape[0]
        m = self.model
        x = m.layer_norm1(self.initial_latent(b, raw_feats.dtype, raw_feats.device))
        x = F.relu(m.fc1(x))
        for i, blk in enumerate(m.mlp_resnet_blocks):
            adapter = aq_feats[:, i] if proprio_token is None else torch.cat([aq_feats[:, i], proprio_token], dim=1)
            x = blk(x, raw_feats[:, i], adapter)
        return m.fc2(m.layer_norm2(x))
