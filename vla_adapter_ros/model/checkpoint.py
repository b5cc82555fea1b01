"""Checkpoints: our own directory format and the official released VLA-Adapter layout.

Our format (a directory)::

    model.safetensors          full VLAAdapter state dict (base weights; LoRA not merged)
    config.yaml                VLAAdapterConfig.to_dict()
    dataset_statistics.json    official norm_stats layout
    lora_adapter/              optional: adapter_config.json + adapter_model.safetensors (peft layout)
    vocab.json, merges.txt, ... optional tokenizer files

Official layout (HF ``VLA-Adapter/LIBERO-*`` or a ``finetune.py`` run dir)::

    config.json                OpenVLAConfig (``text_config`` = Qwen2 shapes, timm vision ids)
    model.safetensors          Prismatic VLM (timm-named vision towers, LoRA merged) + action_queries
    action_head--*checkpoint.pt, proprio_projector--*checkpoint.pt   (``module.`` prefix possible)
    dataset_statistics.json    (+ tokenizer files)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from .config import OFFICIAL_NUM_TASK_TOKENS, ConfigError, VLAAdapterConfig, official_config
from .normalization import Normalizer

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
STATS_FILE = "dataset_statistics.json"
LORA_DIR = "lora_adapter"
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
# parameters that exist in our modules but not in official files (never used in the forward pass)
_OPTIONAL_KEYS = ("vision_backbone.featurizer.embeddings.mask_token",)


class CheckpointError(ValueError):
    """A checkpoint directory is missing files or holds unusable content; the message names the file."""


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _base_state_dict(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """State dict without LoRA tensors, with peft's ``base_layer.`` indirection removed."""
    out = {}
    for k, v in model.state_dict().items():
        if ".lora_" in k or "lora_embedding" in k:
            continue
        out[k.replace(".base_layer.", ".")] = v
    return out


def _check_tensors(sd: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], fname: str, optional=()) -> None:
    missing = [k for k in expected if k not in sd and k not in optional]
    unexpected = [k for k in sd if k not in expected]
    if missing:
        raise CheckpointError(f"{fname}: missing {len(missing)} tensors, e.g. {missing[:5]}")
    if unexpected:
        raise CheckpointError(f"{fname}: {len(unexpected)} unexpected tensors, e.g. {unexpected[:5]}")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{fname}: tensor {k!r} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
            )
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{fname}: tensor {k!r} contains NaN or Inf values")


def _load_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read safetensors file: {e}") from e


def _load_stats(path: Path, cfg: VLAAdapterConfig, unnorm_key: Optional[str]) -> Normalizer:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        norm = Normalizer.from_file(path, cfg.platform.normalization, unnorm_key)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    if norm.action.dim != cfg.platform.action_dim:
        raise CheckpointError(
            f"{path}: action statistics have {norm.action.dim} dims, platform.action_dim is {cfg.platform.action_dim}"
        )
    if norm.proprio is None:
        raise CheckpointError(f"{path}: no 'proprio' statistics")
    if norm.proprio.dim != cfg.platform.proprio_dim:
        raise CheckpointError(
            f"{path}: proprio statistics have {norm.proprio.dim} dims, platform.proprio_dim is {cfg.platform.proprio_dim}"
        )
    return norm


def _check_platform(cfg: VLAAdapterConfig, expected: Optional[Dict[str, Any]], fname: str) -> None:
    if not expected:
        return
    for k, v in expected.items():
        if not hasattr(cfg.platform, k):
            raise CheckpointError(f"{fname}: unknown platform constant {k!r}")
        got = getattr(cfg.platform, k)
        if got != v:
            raise CheckpointError(f"{fname}: platform constant {k} is {got!r}, expected {v!r}")


# ----------------------------------------------------------------------------------------------
# our format
# ----------------------------------------------------------------------------------------------
def save_checkpoint(
    model: torch.nn.Module,
    path: Union[str, Path],
    stats: Union[Dict[str, Any], Normalizer, str, Path, None] = None,
    tokenizer_dir: Union[str, Path, None] = None,
) -> Path:
    """Write ``model`` (a VLAAdapter, possibly with injected LoRA) to ``path`` in our format."""
    from safetensors.torch import save_file

    from .lora import has_lora

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg: VLAAdapterConfig = model.config
    sd = {k: v.detach().contiguous().cpu() for k, v in _base_state_dict(model).items()}
    save_file(sd, str(path / MODEL_FILE), metadata={"format": "vla_adapter_ros", "config_name": cfg.name})
    cfg.save(path / CONFIG_FILE)
    if stats is not None:
        if isinstance(stats, Normalizer):
            stats = stats.to_stats()
        if isinstance(stats, (str, Path)):
            shutil.copyfile(stats, path / STATS_FILE)
        else:
            (path / STATS_FILE).write_text(json.dumps(stats, indent=2))
    if has_lora(model):
        from .lora import save_lora_adapter

        save_lora_adapter(model, path / LORA_DIR)
    if tokenizer_dir is not None:
        for f in TOKENIZER_FILES:
            if (Path(tokenizer_dir) / f).exists():
                shutil.copyfile(Path(tokenizer_dir) / f, path / f)
    return path


EXPORT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_checkpoint(src: Union[str, Path], dst: Union[str, Path], dtype: str = "float16") -> Path:
    """A deployable copy of checkpoint ``src`` (ours): LoRA merged, weights stored as ``dtype``, no
    optimizer state. Loading casts back to the engine's dtype (fp32 on CPU, bf16 on CUDA)."""
    from safetensors.torch import save_file

    if dtype not in EXPORT_DTYPES:
        raise CheckpointError(f"dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise CheckpointError(f"{dst}: already exists")
    model, _ = load_checkpoint(src)  # validates everything and merges a LoRA adapter
    sd = {k: (v.to(EXPORT_DTYPES[dtype]) if v.is_floating_point() else v).detach().contiguous().cpu()
          for k, v in _base_state_dict(model).items()}
    dst.mkdir(parents=True)
    save_file(sd, str(dst / MODEL_FILE), metadata={"format": "vla_adapter_ros", "config_name": model.config.name,
                                                   "exported_dtype": dtype})
    model.config.save(dst / CONFIG_FILE)
    for name in (STATS_FILE, "training.json", *TOKENIZER_FILES):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
    return dst


def load_config_file(path: Path) -> VLAAdapterConfig:
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return VLAAdapterConfig.load(path)
    except ConfigError as e:
        msg = str(e)
        raise CheckpointError(msg if str(path) in msg else f"{path}: {msg}") from e


def is_official_checkpoint(path: Union[str, Path]) -> bool:
    p = Path(path)
    return any(p.glob("action_head--*.pt")) or (
        (p / "config.json").is_file() and not (p / CONFIG_FILE).is_file() and (p / MODEL_FILE).is_file()
    )


def load_checkpoint(
    path: Union[str, Path],
    unnorm_key: Optional[str] = None,
    expected_platform: Optional[Dict[str, Any]] = None,
    merge_lora: bool = True,
    dtype: torch.dtype = torch.float32,
    **official_kwargs: Any,
):
    """Load either layout; returns ``(model (eval mode), normalizer)``.

    ``expected_platform`` (e.g. ``{"action_dim": 7, "chunk_len": 8}``) is checked against the checkpoint;
    a mismatch raises CheckpointError. Extra keyword arguments go to :func:`load_official_checkpoint`.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    if is_official_checkpoint(path):
        return load_official_checkpoint(
            path, unnorm_key=unnorm_key, expected_platform=expected_platform, dtype=dtype, **official_kwargs
        )
    from .vla import VLAAdapter

    cfg = load_config_file(path / CONFIG_FILE)
    _check_platform(cfg, expected_platform, str(path / CONFIG_FILE))
    norm = _load_stats(path / STATS_FILE, cfg, unnorm_key)
    sd = _load_safetensors(path / MODEL_FILE)
    model = VLAAdapter(cfg)
    _check_tensors(sd, model.state_dict(), str(path / MODEL_FILE), optional=_OPTIONAL_KEYS)
    model.load_state_dict(sd, strict=False)
    if (path / LORA_DIR).is_dir():
        from .lora import load_lora_adapter

        model = load_lora_adapter(model, path / LORA_DIR, merge=merge_lora)
    model = model.to(dtype).eval()
    return model, norm


# ----------------------------------------------------------------------------------------------
# official layout: key conversion timm <-> transformers
# ----------------------------------------------------------------------------------------------
def _split_qkv(t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = t.shape[0] // 3
    return t[:n], t[n : 2 * n], t[2 * n :]


def timm_dino_to_hf(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """timm ``vit_*_reg4_dinov2`` (no_embed_class) -> transformers Dinov2WithRegistersModel keys."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        k = k.replace(".gamma", ".scale_factor")
        if k == "cls_token":
            out["embeddings.cls_token"] = v
        elif k == "reg_token":
            out["embeddings.register_tokens"] = v
        elif k == "pos_embed":  # timm: patches only; HF: [cls, patches] -> zero position term for cls
            out["embeddings.position_embeddings"] = torch.cat([torch.zeros_like(v[:, :1]), v], dim=1)
        elif k.startswith("patch_embed.proj."):
            out["embeddings.patch_embeddings.projection." + k.split(".")[-1]] = v
        elif k.startswith("norm."):
            out["layernorm." + k.split(".")[-1]] = v
        elif k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            pre = f"encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                q, kk, vv = _split_qkv(v)
                s = rest.split(".")[-1]
                out[pre + "attention.q_proj." + s] = q
                out[pre + "attention.k_proj." + s] = kk
                out[pre + "attention.v_proj." + s] = vv
            elif rest.startswith("attn.proj."):
                out[pre + "attention.o_proj." + rest.split(".")[-1]] = v
            elif rest == "ls1.scale_factor":
                out[pre + "layer_scale1.lambda1"] = v
            elif rest == "ls2.scale_factor":
                out[pre + "layer_scale2.lambda1"] = v
            else:  # norm1, norm2, mlp.fc1, mlp.fc2
                out[pre + rest] = v
        else:
            out["__unknown__." + k] = v
    return out


def hf_dino_to_timm(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[str, Dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k == "embeddings.cls_token":
            out["cls_token"] = v
        elif k == "embeddings.register_tokens":
            out["reg_token"] = v
        elif k == "embeddings.position_embeddings":
            if bool(v[:, :1].abs().max() > 0):
                raise ValueError("DINOv2 CLS position embedding is non-zero: not representable in timm layout")
            out["pos_embed"] = v[:, 1:]
        elif k == "embeddings.mask_token":
            continue
        elif k.startswith("embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + k.split(".")[-1]] = v
        elif k.startswith("layernorm."):
            out["norm." + k.split(".")[-1]] = v
        elif k.startswith("encoder.layer."):
            _, _, i, rest = k.split(".", 3)
            pre = f"blocks.{i}."
            m = re.match(r"attention\.([qkv])_proj\.(weight|bias)", rest)
            if m:
                qkv.setdefault(pre + "attn.qkv." + m.group(2), {})[m.group(1)] = v
            elif rest.startswith("attention.o_proj."):
                out[pre + "attn.proj." + rest.split(".")[-1]] = v
            elif rest == "layer_scale1.lambda1":
                out[pre + "ls1.scale_factor"] = v
            elif rest == "layer_scale2.lambda1":
                out[pre + "ls2.scale_factor"] = v
            else:
                out[pre + rest] = v
    for k, d in qkv.items():
        out[k] = torch.cat([d["q"], d["k"], d["v"]], dim=0)
    return out


def timm_siglip_to_hf(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """timm ``vit_so400m_patch14_siglip_224`` -> transformers SiglipVisionModel keys."""
    out: Dict[str, torch.Tensor] = {}
    pool_in: Dict[str, Dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k == "pos_embed":
            out["embeddings.position_embedding.weight"] = v.reshape(v.shape[-2], v.shape[-1])
        elif k.startswith("patch_embed.proj."):
            out["embeddings.patch_embedding." + k.split(".")[-1]] = v
        elif k.startswith("norm."):
            out["post_layernorm." + k.split(".")[-1]] = v
        elif k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            pre = f"encoder.layers.{i}."
            s = rest.split(".")[-1]
            if rest.startswith("attn.qkv."):
                q, kk, vv = _split_qkv(v)
                out[pre + "self_attn.q_proj." + s] = q
                out[pre + "self_attn.k_proj." + s] = kk
                out[pre + "self_attn.v_proj." + s] = vv
            elif rest.startswith("attn.proj."):
                out[pre + "self_attn.out_proj." + s] = v
            elif rest.startswith("norm1."):
                out[pre + "layer_norm1." + s] = v
            elif rest.startswith("norm2."):
                out[pre + "layer_norm2." + s] = v
            else:  # mlp.fc1 / mlp.fc2
                out[pre + rest] = v
        elif k == "attn_pool.latent":
            out["head.probe"] = v
        elif k.startswith("attn_pool.q.") or k.startswith("attn_pool.kv."):
            part, s = k.split(".")[1], k.split(".")[-1]
            pool_in.setdefault(s, {})[part] = v
        elif k.startswith("attn_pool.proj."):
            out["head.attention.out_proj." + k.split(".")[-1]] = v
        elif k.startswith("attn_pool.norm."):
            out["head.layernorm." + k.split(".")[-1]] = v
        elif k.startswith("attn_pool.mlp."):
            out["head.mlp." + k.split(".", 2)[2]] = v
        else:
            out["__unknown__." + k] = v
    for s, d in pool_in.items():
        if "q" in d and "kv" in d:
            out[f"head.attention.in_proj_{s}"] = torch.cat([d["q"], d["kv"]], dim=0)
    return out


def hf_siglip_to_timm(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[str, Dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k == "embeddings.position_embedding.weight":
            out["pos_embed"] = v.unsqueeze(0)
        elif k.startswith("embeddings.patch_embedding."):
            out["patch_embed.proj." + k.split(".")[-1]] = v
        elif k.startswith("post_layernorm."):
            out["norm." + k.split(".")[-1]] = v
        elif k.startswith("encoder.layers."):
            _, _, i, rest = k.split(".", 3)
            pre = f"blocks.{i}."
            s = rest.split(".")[-1]
            m = re.match(r"self_attn\.([qkv])_proj\.", rest)
            if m:
                qkv.setdefault(pre + "attn.qkv." + s, {})[m.group(1)] = v
            elif rest.startswith("self_attn.out_proj."):
                out[pre + "attn.proj." + s] = v
            elif rest.startswith("layer_norm1."):
                out[pre + "norm1." + s] = v
            elif rest.startswith("layer_norm2."):
                out[pre + "norm2." + s] = v
            else:
                out[pre + rest] = v
        elif k == "head.probe":
            out["attn_pool.latent"] = v
        elif k.startswith("head.attention.in_proj_"):
            s = k.rsplit("_", 1)[-1]
            n = v.shape[0] // 3
            out["attn_pool.q." + s] = v[:n]
            out["attn_pool.kv." + s] = v[n:]
        elif k.startswith("head.attention.out_proj."):
            out["attn_pool.proj." + k.split(".")[-1]] = v
        elif k.startswith("head.layernorm."):
            out["attn_pool.norm." + k.split(".")[-1]] = v
        elif k.startswith("head.mlp."):
            out["attn_pool.mlp." + k.split(".", 2)[2]] = v
    for k, d in qkv.items():
        out[k] = torch.cat([d["q"], d["k"], d["v"]], dim=0)
    return out


def _sub(sd: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}


def official_vlm_to_ours(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official ``model.safetensors`` keys -> our VLAAdapter keys (vision towers, projector, LLM, queries)."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in timm_dino_to_hf(_sub(sd, "vision_backbone.featurizer.")).items():
        out["vision_backbone.featurizer." + k] = v
    for k, v in timm_siglip_to_hf(_sub(sd, "vision_backbone.fused_featurizer.")).items():
        out["vision_backbone.fused_featurizer." + k] = v
    for k, v in sd.items():
        if k.startswith("vision_backbone."):
            continue
        if k in ("language_model.lm_head.weight",):
            continue  # tied to the embeddings, logits unused
        out[k] = v
    return out


def ours_to_official_vlm(model_sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`official_vlm_to_ours` (used for tests and export)."""
    out: Dict[str, torch.Tensor] = {}
    for k, v in hf_dino_to_timm(_sub(model_sd, "vision_backbone.featurizer.")).items():
        out["vision_backbone.featurizer." + k] = v
    for k, v in hf_siglip_to_timm(_sub(model_sd, "vision_backbone.fused_featurizer.")).items():
        out["vision_backbone.fused_featurizer." + k] = v
    for k, v in model_sd.items():
        if k.startswith(("vision_backbone.", "action_head.", "proprio_projector.")):
            continue
        out[k] = v
    if "language_model.model.embed_tokens.weight" in out:
        out["language_model.lm_head.weight"] = out["language_model.model.embed_tokens.weight"].clone()
    return out


def _find_component(path: Path, name: str) -> Path:
    matches = sorted(p for p in path.iterdir() if name in p.name and "checkpoint" in p.name and p.suffix == ".pt")
    if not matches:
        raise CheckpointError(f"{path}/{name}--*checkpoint.pt: file not found")
    if len(matches) > 1:
        raise CheckpointError(f"{path}: several {name} files: {[m.name for m in matches]}")
    return matches[0]


def _load_pt(path: Path) -> Dict[str, torch.Tensor]:
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read torch file: {e}") from e
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}


def config_from_official(
    hf_config: Dict[str, Any],
    head_sd: Dict[str, torch.Tensor],
    proprio_sd: Dict[str, torch.Tensor],
    base_config: Optional[VLAAdapterConfig] = None,
    fname: str = "config.json",
) -> VLAAdapterConfig:
    """Derive our config from an official ``config.json`` and the policy state dicts.

    Vision tower shapes come from ``base_config`` (default: official DINOv2-L/SigLIP-so400m shapes; the
    official config only names timm ids). LLM shapes come from ``text_config``. Policy variant, action_dim,
    proprio_dim and block count come from the policy weights. chunk_len / num_images / normalization are not
    stored in official checkpoints: they come from ``base_config.platform`` (default LIBERO: 8 / 2 / q99), and
    so do the processor settings (default: the release's LIBERO evaluation, JPEG round trip included).
    ``policy.num_task_tokens`` is always the release's 512: its head splits the features there whatever the
    number of images (training and evaluation alike), so that is what the weights expect.
    """
    import copy

    if not isinstance(hf_config, dict):
        raise CheckpointError(f"{fname}: expected a JSON object")
    cfg = copy.deepcopy(base_config) if base_config is not None else official_config()
    if base_config is None:
        ids = hf_config.get("timm_model_ids")
        known = ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
        if ids is not None and list(ids) != known:
            raise CheckpointError(f"{fname}: unsupported vision backbones {ids}; pass base_config with their shapes")
    if hf_config.get("use_fused_vision_backbone") is False:
        raise CheckpointError(f"{fname}: only the fused DINOv2+SigLIP backbone is supported")
    tc = hf_config.get("text_config")
    if not isinstance(tc, dict):
        raise CheckpointError(f"{fname}: missing 'text_config'")
    try:
        cfg.llm.vocab_size = int(tc["vocab_size"])
        cfg.llm.hidden_size = int(tc["hidden_size"])
        cfg.llm.num_layers = int(tc["num_hidden_layers"])
        cfg.llm.num_heads = int(tc["num_attention_heads"])
        cfg.llm.num_kv_heads = int(tc.get("num_key_value_heads", tc["num_attention_heads"]))
        cfg.llm.intermediate_size = int(tc["intermediate_size"])
        cfg.llm.rms_norm_eps = float(tc.get("rms_norm_eps", 1e-6))
        cfg.llm.rope_theta = float(tc.get("rope_theta", 1e6))
        cfg.llm.max_position_embeddings = int(tc.get("max_position_embeddings", 32768))
        cfg.llm.tie_word_embeddings = bool(tc.get("tie_word_embeddings", True))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{fname}: bad text_config: {e!r}") from e
    if "image_sizes" in hf_config and hf_config["image_sizes"]:
        cfg.processor.image_size = int(hf_config["image_sizes"][0])
    # policy
    cfg.policy.variant = "pro" if any(".k_self." in k for k in head_sd) else "original"
    if "model.fc2.weight" not in head_sd:
        raise CheckpointError("action_head checkpoint: missing 'model.fc2.weight'")
    cfg.platform.action_dim = int(head_sd["model.fc2.weight"].shape[0])
    blocks = {int(m.group(1)) for k in head_sd for m in [re.match(r"model\.mlp_resnet_blocks\.(\d+)\.", k)] if m}
    cfg.policy.num_blocks = (max(blocks) + 1) if blocks else 0
    if "fc1.weight" not in proprio_sd:
        raise CheckpointError("proprio_projector checkpoint: missing 'fc1.weight'")
    cfg.platform.proprio_dim = int(proprio_sd["fc1.weight"].shape[1])
    cfg.policy.num_task_tokens = OFFICIAL_NUM_TASK_TOKENS
    cfg.name = "official"
    try:
        return cfg.validate()
    except ConfigError as e:
        raise CheckpointError(f"{fname}: {e}") from e


def load_official_checkpoint(
    path: Union[str, Path],
    unnorm_key: Optional[str] = None,
    base_config: Optional[VLAAdapterConfig] = None,
    expected_platform: Optional[Dict[str, Any]] = None,
    dtype: torch.dtype = torch.float32,
    official_task_split: bool = True,
):
    """Load a released/finetune.py checkpoint directory; returns ``(model, normalizer)``.

    The release's head splits the policy features after 512 tokens whatever the number of images; with
    two images that is exactly C^R | C^AQ. With another number of images (``base_config.platform.num_images``)
    ``official_task_split`` True follows the release exactly (``policy.num_task_tokens`` = 512: for one image
    the ActionQuery features join the gated task tokens and the adapter holds the proprio token alone; for
    three, the last 256 raw tokens join the adapter tokens); False refuses such a checkpoint (CheckpointError).
    """
    from .vla import VLAAdapter

    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: file not found")
    try:
        hf_config = json.loads(cfg_path.read_text())
    except Exception as e:
        raise CheckpointError(f"{cfg_path}: cannot parse JSON: {e}") from e
    head_path = _find_component(path, "action_head")
    prop_path = _find_component(path, "proprio_projector")
    head_sd, prop_sd = _load_pt(head_path), _load_pt(prop_path)
    cfg = config_from_official(hf_config, head_sd, prop_sd, base_config, str(cfg_path))
    _check_platform(cfg, expected_platform, str(path))
    if not official_task_split and cfg.num_patches != OFFICIAL_NUM_TASK_TOKENS:
        raise CheckpointError(
            f"{path}: with {cfg.platform.num_images} image(s) the model has {cfg.num_patches} raw tokens, but the "
            f"official head splits its features after {OFFICIAL_NUM_TASK_TOKENS} tokens whatever the number of "
            "images (this checkpoint was trained that way); refusing (official_task_split=False). Load it with "
            "official_task_split=True to follow the release's split exactly")
    if not (path / STATS_FILE).is_file() and isinstance(hf_config.get("norm_stats"), dict):
        # like the official loader: fall back to the norm_stats blob in config.json
        try:
            norm = Normalizer.from_stats(hf_config["norm_stats"], cfg.platform.normalization, unnorm_key, str(cfg_path))
        except ValueError as e:
            raise CheckpointError(f"{cfg_path}: norm_stats: {e}") from e
        if norm.action.dim != cfg.platform.action_dim or norm.proprio is None or norm.proprio.dim != cfg.platform.proprio_dim:
            raise CheckpointError(f"{cfg_path}: norm_stats[{norm.key}] do not match action_dim/proprio_dim")
    else:
        norm = _load_stats(path / STATS_FILE, cfg, unnorm_key)

    model = VLAAdapter(cfg)
    expected = model.state_dict()
    vlm_sd = official_vlm_to_ours(_load_safetensors(path / MODEL_FILE))
    unknown = [k for k in vlm_sd if "__unknown__" in k]
    if unknown:
        raise CheckpointError(f"{path / MODEL_FILE}: unrecognised tensors, e.g. {unknown[:5]}")
    _check_tensors(
        vlm_sd,
        {k: v for k, v in expected.items() if not k.startswith(("action_head.", "proprio_projector."))},
        str(path / MODEL_FILE),
        optional=_OPTIONAL_KEYS,
    )
    _check_tensors(
        head_sd, {k[len("action_head.") :]: v for k, v in expected.items() if k.startswith("action_head.")}, str(head_path)
    )
    _check_tensors(
        prop_sd,
        {k[len("proprio_projector.") :]: v for k, v in expected.items() if k.startswith("proprio_projector.")},
        str(prop_path),
    )
    full = dict(vlm_sd)
    full.update({"action_head." + k: v for k, v in head_sd.items()})
    full.update({"proprio_projector." + k: v for k, v in prop_sd.items()})
    model.load_state_dict(full, strict=False)
    if (path / LORA_DIR).is_dir() and not (path / MODEL_FILE).is_file():  # pragma: no cover
        raise CheckpointError(f"{path}: LoRA-only official checkpoints need the base VLM weights")
    return model.to(dtype).eval(), norm


def save_official_layout(
    model: torch.nn.Module, path: Union[str, Path], stats: Dict[str, Any], hf_config: Dict[str, Any], step: str = ""
) -> Path:
    """Write ``model`` in the official released layout (for tests and export). ``hf_config`` is the
    OpenVLAConfig dict; its ``text_config`` is overwritten with the model's LLM shapes."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg: VLAAdapterConfig = model.config
    if not cfg.platform.use_proprio:
        raise CheckpointError("the official layout needs a proprio projector; this model has no proprio input "
                              "(platform.use_proprio false): save it in the native layout")
    if cfg.task_split != OFFICIAL_NUM_TASK_TOKENS:
        raise CheckpointError(
            f"the official layout implies the release's feature split after {OFFICIAL_NUM_TASK_TOKENS} tokens; this "
            f"model splits after {cfg.task_split} ({cfg.platform.num_images} image(s), policy.num_task_tokens "
            f"{cfg.policy.num_task_tokens}): the official code would run it differently. Save it in the native "
            "layout (or train it with policy.num_task_tokens: 512)")
    sd = {k: v.detach().cpu().contiguous() for k, v in _base_state_dict(model).items()}
    vlm = {k: v.clone() for k, v in ours_to_official_vlm(sd).items()}
    save_file(vlm, str(path / MODEL_FILE))
    head = {"module." + k[len("action_head.") :]: v for k, v in sd.items() if k.startswith("action_head.")}
    prop = {"module." + k[len("proprio_projector.") :]: v for k, v in sd.items() if k.startswith("proprio_projector.")}
    tag = f"{step}_checkpoint" if step else "checkpoint"
    torch.save(head, path / f"action_head--{tag}.pt")
    torch.save(prop, path / f"proprio_projector--{tag}.pt")
    hc = dict(hf_config)
    tc = dict(hc.get("text_config", {}))
    tc.update(
        vocab_size=cfg.llm.vocab_size,
        hidden_size=cfg.llm.hidden_size,
        num_hidden_layers=cfg.llm.num_layers,
        num_attention_heads=cfg.llm.num_heads,
        num_key_value_heads=cfg.llm.num_kv_heads,
        intermediate_size=cfg.llm.intermediate_size,
        rms_norm_eps=cfg.llm.rms_norm_eps,
        rope_theta=cfg.llm.rope_theta,
        max_position_embeddings=cfg.llm.max_position_embeddings,
        tie_word_embeddings=cfg.llm.tie_word_embeddings,
        model_type="qwen2",
    )
    hc["text_config"] = tc
    (path / "config.json").write_text(json.dumps(hc, indent=2))
    (path / STATS_FILE).write_text(json.dumps(stats, indent=2))
    return path
