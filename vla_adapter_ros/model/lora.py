"""peft LoRA on the VLM backbone, as in the official fine-tuning recipe.

Official recipe: rank 64, alpha 2*rank = 128, dropout 0, gaussian init, ``target_modules="all-linear"``
(every nn.Linear of the VLA except the LM head: vision towers, projector and all Qwen2 projections).
The ActionQuery embeddings, the proprio projector and the whole policy are trained fully.

Deviation: SigLIP's attention-pool head is an ``nn.MultiheadAttention`` in transformers (fused
in-projection parameter, not Linear layers), so its attention gets no LoRA; the head (like timm's
``attn_pool``) is never used in the forward pass, so this changes nothing numerically.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

import torch
import torch.nn as nn

BACKBONE_PREFIXES = ("vision_backbone.", "projector.", "language_model.")
FULLY_TRAINED_PREFIXES = ("action_queries.", "proprio_projector.", "action_head.")
ADAPTER_NAME = "default"


def lora_target_modules(model: nn.Module) -> List[str]:
    """Full names of every nn.Linear in the vision towers, projector and LLM (no LM head exists)."""
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) or not name.startswith(BACKBONE_PREFIXES):
            continue
        if ".head.attention." in name:  # nn.MultiheadAttention internals (see module docstring)
            continue
        names.append(name)
    return names


def _lora_config(targets: List[str], rank: int, alpha: Optional[float], dropout: float):
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        lora_dropout=dropout,
        target_modules=targets,
        init_lora_weights="gaussian",
        bias="none",
    )


def set_trainable(model: nn.Module) -> nn.Module:
    """Freeze the base VLM; train LoRA weights, ActionQuery, proprio projector and policy."""
    for name, p in model.named_parameters():
        p.requires_grad = (".lora_" in name) or name.startswith(FULLY_TRAINED_PREFIXES)
    return model


def apply_lora(
    model: nn.Module, rank: int = 64, alpha: Optional[float] = None, dropout: float = 0.0
) -> nn.Module:
    """Inject LoRA adapters into ``model`` (a VLAAdapter) in place and set trainable flags; returns it."""
    from peft import inject_adapter_in_model

    cfg = _lora_config(lora_target_modules(model), rank, alpha, dropout)
    model = inject_adapter_in_model(cfg, model, adapter_name=ADAPTER_NAME)
    model._vla_lora_config = cfg
    return set_trainable(model)


def has_lora(model: nn.Module) -> bool:
    return any(".lora_" in n for n, _ in model.named_parameters())


def lora_state_dict(model: nn.Module) -> dict:
    """LoRA tensors with peft's on-disk key names (``base_model.model.<module>.lora_A.weight``)."""
    out = {}
    for k, v in model.state_dict().items():
        if ".lora_" not in k:
            continue
        out["base_model.model." + k.replace(f".{ADAPTER_NAME}.", ".")] = v.detach().cpu().contiguous()
    return out


def save_lora_adapter(model: nn.Module, path: Union[str, Path]) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = getattr(model, "_vla_lora_config", None)
    if cfg is None:
        raise ValueError("model has LoRA weights but no recorded LoraConfig (use apply_lora)")
    cfg.save_pretrained(str(path))
    save_file(lora_state_dict(model), str(path / "adapter_model.safetensors"))


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold LoRA deltas into the base weights and remove the adapter layers (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, mod in list(model.named_modules()):
        if isinstance(mod, LoraLayer):
            mod.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, mod.get_base_layer())
    if hasattr(model, "_vla_lora_config"):
        del model._vla_lora_config
    return model


def load_lora_adapter(model: nn.Module, path: Union[str, Path], merge: bool = True) -> nn.Module:
    from peft import LoraConfig, inject_adapter_in_model
    from safetensors.torch import load_file

    from .checkpoint import CheckpointError

    path = Path(path)
    cfg_file, w_file = path / "adapter_config.json", path / "adapter_model.safetensors"
    for f in (cfg_file, w_file):
        if not f.is_file():
            raise CheckpointError(f"{f}: file not found")
    try:
        cfg = LoraConfig.from_pretrained(str(path))
    except Exception as e:
        raise CheckpointError(f"{cfg_file}: cannot read LoRA config: {e}") from e
    model = inject_adapter_in_model(cfg, model, adapter_name=ADAPTER_NAME)
    model._vla_lora_config = cfg
    sd = load_file(str(w_file))
    expected = {k: v for k, v in model.state_dict().items() if ".lora_" in k}
    mapped = {}
    for k, v in sd.items():
        k2 = k[len("base_model.model.") :] if k.startswith("base_model.model.") else k
        k2 = k2.replace(".lora_A.", f".lora_A.{ADAPTER_NAME}.").replace(".lora_B.", f".lora_B.{ADAPTER_NAME}.")
        if k2 not in expected:
            raise CheckpointError(f"{w_file}: unexpected tensor {k!r}")
        if tuple(v.shape) != tuple(expected[k2].shape):
            raise CheckpointError(f"{w_file}: tensor {k!r} has shape {tuple(v.shape)}, expected {tuple(expected[k2].shape)}")
        if not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{w_file}: tensor {k!r} contains NaN or Inf values")
        mapped[k2] = v
    missing = set(expected) - set(mapped)
    if missing:
        raise CheckpointError(f"{w_file}: missing {len(missing)} LoRA tensors, e.g. {sorted(missing)[:3]}")
    model.load_state_dict(mapped, strict=False)
    return merge_lora(model) if merge else set_trainable(model)
