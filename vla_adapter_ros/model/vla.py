"""The VLA-Adapter network: vision towers -> projector -> Qwen2 with ActionQuery tokens -> policy.

Sequence layout (per sample, prompt of T_p tokens, P = 256 * num_images visual tokens):

    [ prompt[0] (<|im_start|>) | P visual tokens | prompt[1:T_p] | 64 ActionQuery embeddings | pad... ]

The Qwen2 decoder is causal, so anything after the ActionQuery tokens (the reference's stop token, or
our right padding when prompts are padded to a fixed length) never influences the used features.
Features for policy block i come from LLM hidden state i+1 (h^(0) = embeddings is never used; the
last hidden state is after the final RMSNorm):

    C^R  = h[:, 0:P]                     (the <|im_start|> token + the first P-1 visual tokens)
    C^AQ = h[:, s : s+64], s = P + T_p - 1 (last prompt token + the first 63 ActionQuery slots)

Both reproduce the official index arithmetic (including its one-position shift).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

from .config import VLAAdapterConfig
from .policy import BridgeAttentionPolicy, ProprioProjector
from .vision import FusedProjector, FusedVisionBackbone


def _build_qwen2(cfg: VLAAdapterConfig) -> nn.Module:
    from transformers import Qwen2Config, Qwen2Model

    c = cfg.llm
    hf = Qwen2Config(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads,
        num_key_value_heads=c.num_kv_heads,
        hidden_act="silu",
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta,
        tie_word_embeddings=c.tie_word_embeddings,
        use_sliding_window=False,
        attention_dropout=0.0,
        use_cache=False,
    )
    hf._attn_implementation = "sdpa"
    return Qwen2Model(hf)


class LanguageModel(nn.Module):
    """Holds the Qwen2 decoder under ``language_model.model.*`` (official key names). The LM head is not
    built: its logits are never used (and it is tied to the embeddings in Qwen2.5-0.5B)."""

    def __init__(self, cfg: VLAAdapterConfig):
        super().__init__()
        self.model = _build_qwen2(cfg)
        if cfg.llm.embedding_init_std is not None:
            with torch.no_grad():
                self.model.embed_tokens.weight.normal_(0.0, float(cfg.llm.embedding_init_std))


class VLAAdapter(nn.Module):
    """Tensor-level model. ``forward`` maps preprocessed tensors to normalized action chunks."""

    def __init__(self, cfg: VLAAdapterConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.vision_backbone = FusedVisionBackbone(cfg)
        self.projector = FusedProjector(cfg.vision_dim, cfg.llm.hidden_size, cfg.projector_hidden_mult)
        self.language_model = LanguageModel(cfg)
        self.action_queries = nn.Embedding(cfg.num_action_queries, cfg.llm.hidden_size)
        with torch.no_grad():
            self.action_queries.weight.zero_()
        self.proprio_projector = (ProprioProjector(cfg.platform.proprio_dim, cfg.llm.hidden_size)
                                  if cfg.platform.use_proprio else None)
        self.action_head = BridgeAttentionPolicy(cfg)

    # ------------------------------------------------------------------
    def embed_sequence(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Build the LLM input embeddings; returns (embeds (B, L, D), aq_start (B,) long).

        ``input_ids`` (B, T) is the prompt, right-padded; ``attention_mask`` marks real prompt tokens (None =
        all real). L = 1 + P + (T - 1) + n_q. Uses no data-dependent Python control flow.
        """
        cfg = self.config
        b, t = input_ids.shape
        n_q = cfg.num_action_queries
        p = cfg.num_patches
        embed = self.language_model.model.embed_tokens
        if attention_mask is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=input_ids.device)
        else:
            lengths = attention_mask.to(torch.long).sum(dim=1)
        vis = self.projector(self.vision_backbone(pixel_values))  # (B, P, D)
        tok = embed(input_ids)  # (B, T, D)
        dtype = tok.dtype
        vis = vis.to(dtype)
        # text area after the visual tokens: prompt[1:], then the ActionQuery slots, then padding
        pad_ids = torch.full((b, n_q), cfg.pad_token_id, dtype=input_ids.dtype, device=input_ids.device)
        text = torch.cat([tok[:, 1:], embed(pad_ids)], dim=1)  # (B, T-1+n_q, D)
        j = torch.arange(t - 1 + n_q, device=input_ids.device).unsqueeze(0)  # (1, T-1+n_q)
        first_q = (lengths - 1).unsqueeze(1)  # first ActionQuery slot in the text area
        q_idx = (j - first_q).clamp(0, n_q - 1)  # (B, T-1+n_q)
        is_q = (j >= first_q) & (j < first_q + n_q)
        aq = self.action_queries.weight.to(dtype)[q_idx]  # (B, T-1+n_q, D)
        is_pad = j >= first_q + n_q
        text = torch.where(is_q.unsqueeze(-1), aq, text)
        # positions between the prompt and the queries cannot exist; positions after get the pad embedding
        pad_vec = embed.weight[cfg.pad_token_id].to(dtype)
        text = torch.where(is_pad.unsqueeze(-1), pad_vec.expand_as(text), text)
        seq = torch.cat([tok[:, :1], vis, text], dim=1)
        aq_start = p + lengths - 1
        return seq, aq_start

    def backbone_features(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run vision + LLM; returns C^R (B, n_blocks, P, D) and C^AQ (B, n_blocks, n_q, D)."""
        cfg = self.config
        seq, aq_start = self.embed_sequence(pixel_values, input_ids, attention_mask)
        out = self.language_model.model(inputs_embeds=seq, output_hidden_states=True, use_cache=False)
        hs = out.hidden_states  # num_layers + 1 tensors, last one after the final norm
        nb = cfg.num_policy_blocks
        layers = torch.stack(hs[1 : nb + 1], dim=1)  # (B, nb, L, D)
        p, n_q = cfg.num_patches, cfg.num_action_queries
        raw = layers[:, :, :p]
        idx = aq_start.unsqueeze(1) + torch.arange(n_q, device=seq.device).unsqueeze(0)  # (B, n_q)
        idx = idx[:, None, :, None].expand(-1, nb, -1, layers.shape[-1])
        aq = torch.gather(layers, 2, idx)
        return raw, aq

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        proprio: torch.Tensor,
    ) -> torch.Tensor:
        """pixel_values (B, 6*num_images, H, W), input_ids/attention_mask (B, T) right-padded prompt,
        proprio (B, proprio_dim) normalized (ignored without a proprio projector) -> normalized actions
        (B, chunk_len, action_dim)."""
        raw, aq = self.policy_features(*self.backbone_features(pixel_values, input_ids, attention_mask))
        hdtype = self.action_head.model.fc1.weight.dtype
        ptok = None
        if self.proprio_projector is not None:
            pdtype = self.proprio_projector.fc1.weight.dtype
            ptok = self.proprio_projector(proprio.reshape(proprio.shape[0], -1).to(pdtype)).unsqueeze(1).to(hdtype)
        return self.action_head(raw.to(hdtype), aq.to(hdtype), ptok)

    def policy_features(self, raw: torch.Tensor, aq: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The policy's task and adapter tokens from C^R and C^AQ (B, n_blocks, *, D).

        With ``policy.num_task_tokens`` None they are C^R and C^AQ. With an integer N they follow the
        official head: the concatenation [C^R ; C^AQ] is cut after N tokens (task = the first N, adapter =
        the rest, possibly empty). For two images and N = 512 both are the same split."""
        n = self.config.policy.num_task_tokens
        if n is None or n == raw.shape[2]:
            return raw, aq
        feats = torch.cat([raw, aq], dim=2)
        return feats[:, :, :n], feats[:, :, n:]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_model(cfg: VLAAdapterConfig, device: Optional[torch.device] = None) -> VLAAdapter:
    """Random-initialised model (use ``torch.device('meta')`` for shape-only instantiation)."""
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            return VLAAdapter(cfg)
    m = VLAAdapter(cfg)
    if device is not None:
        m = m.to(device)
    return m
