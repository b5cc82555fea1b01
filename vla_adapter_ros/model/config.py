"""Configuration of the VLA-Adapter model (dataclasses, presets, validation, (de)serialisation).

Everything that the official code reads from module-level constants or sniffs from ``sys.argv``
(chunk length, action/proprio dimension, number of images, normalization type, policy variant)
lives here as explicit configuration.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

NORMALIZATION_TYPES = ("bounds_q99", "bounds")
POLICY_VARIANTS = ("original", "pro")
# "gelu" = exact (erf) GELU, what timm's SigLIP and the release use; "gelu_pytorch_tanh" = the tanh
# approximation (transformers' SigLIP default; what configs saved before the option existed were run with)
SIGLIP_ACTIVATIONS = ("gelu", "gelu_pytorch_tanh")
LEGACY_SIGLIP_ACT = "gelu_pytorch_tanh"
# the official head splits its features at this many "task" tokens whatever the number of images
# (``L1RegressionActionHead(num_task_tokens=512)``, never passed by the release)
OFFICIAL_NUM_TASK_TOKENS = 512
# ``tf.image.encode_jpeg``'s default quality: the release's evaluation JPEG round trip
OFFICIAL_JPEG_QUALITY = 95


class ConfigError(ValueError):
    """Raised for an invalid model configuration."""


@dataclass
class DinoConfig:
    """DINOv2 ViT with register tokens (timm ``vit_large_patch14_reg4_dinov2``)."""

    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    mlp_ratio: int = 4
    patch_size: int = 14
    num_register_tokens: int = 4
    layer_norm_eps: float = 1e-6


@dataclass
class SiglipConfig:
    """SigLIP ViT (timm ``vit_so400m_patch14_siglip_224``)."""

    hidden_size: int = 1152
    num_layers: int = 27
    num_heads: int = 16
    intermediate_size: int = 4304
    patch_size: int = 14
    layer_norm_eps: float = 1e-6
    # MLP activation; the release builds the tower with timm (``act_layer=None``): exact GELU. A saved config
    # without this key predates the option and ran the tanh approximation (see VLAAdapterConfig.from_dict).
    hidden_act: str = "gelu"


@dataclass
class LLMConfig:
    """Qwen2 decoder (Qwen2.5-0.5B shapes by default)."""

    vocab_size: int = 151936
    hidden_size: int = 896
    num_layers: int = 24
    num_heads: int = 14
    num_kv_heads: int = 2
    intermediate_size: int = 4864
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = True
    # Random init only: std of the token embedding table (None = transformers' 0.02). A model trained from
    # scratch with a frozen table needs unit-scale rows, or the instruction is drowned by the image tokens.
    embedding_init_std: Optional[float] = None


@dataclass
class PolicyConfig:
    """Bridge-Attention policy (the official ``L1RegressionActionHead``)."""

    variant: str = "pro"  # "original" (MLPResNetBlock) or "pro" (MLPResNetBlock_Pro)
    num_heads: int = 8
    rope_base: float = 10000.0
    # number of Bridge-Attention blocks; None = number of LLM layers (block i reads layer i+1)
    num_blocks: Optional[int] = None
    # Where the per-layer features [C^R (num_patches tokens) ; C^AQ (num_action_queries tokens)] are split
    # into the gated "task" tokens and the adapter tokens. None: at num_patches (256 x num_images: raw
    # tokens -> task, ActionQuery tokens -> adapter). An integer N: the official head's fixed split, the
    # first N tokens of the concatenation are task tokens and the rest adapter tokens; official checkpoints
    # were trained and evaluated with N = 512 for any number of images (identical to None for two images).
    num_task_tokens: Optional[int] = None
    # Std of the random perturbation the release adds to the policy's zero initial latent in training (a new
    # draw every forward pass, shared by the batch, never learned). The policy's first LayerNorm scales it to
    # unit size, so training sees a random query every step while inference sees the LayerNorm's bias alone.
    # 0 trains on the inference latent: tiny-112 (from scratch it localised the instructed cube on held-out
    # first frames 0.89 vs 0.54 after 5000 steps, README issue 15). Saved configs without it: the release's.
    train_noise_std: float = 0.02


@dataclass
class PlatformConfig:
    """Robot/dataset constants (``prismatic/vla/constants.py`` in the official code)."""

    chunk_len: int = 8
    action_dim: int = 7
    proprio_dim: int = 8
    num_images: int = 2
    normalization: str = "bounds_q99"
    gripper_index: int = -1  # which action dimension is the gripper (None-like: -1 = last)
    invert_gripper: bool = True  # LIBERO convention: model 1 = open -> env -1 = open
    # False: the model takes no proprioceptive input (no proprio projector, no proprio token in the policy;
    # callers still pass proprio, which is validated and ignored). The official training option ``use_proprio``.
    use_proprio: bool = True


@dataclass
class ProcessorConfig:
    """Image and prompt preprocessing."""

    image_size: int = 224
    center_crop: bool = True
    crop_scale: float = 0.9
    # the normalisation constants exactly as stored in the official preprocessor_config.json
    # (``tvf_normalize_params``: ImageNet stats rounded to bf16-representable values)
    dino_mean: Tuple[float, float, float] = (0.484375, 0.455078125, 0.40625)
    dino_std: Tuple[float, float, float] = (0.228515625, 0.2236328125, 0.224609375)
    siglip_mean: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    siglip_std: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    # fixed prompt length (right-padded) for static shapes; None = exact length
    max_prompt_tokens: Optional[int] = None
    # JPEG encode + decode every camera frame (at this quality, 4:2:0) before resizing, as the release's
    # evaluation does (it mimics the JPEG-stored training data); None = off. On in official_config().
    jpeg_quality: Optional[int] = None


@dataclass
class VLAAdapterConfig:
    name: str = "vla-adapter-0.5b"
    dino: DinoConfig = field(default_factory=DinoConfig)
    siglip: SiglipConfig = field(default_factory=SiglipConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    processor: ProcessorConfig = field(default_factory=ProcessorConfig)
    num_action_queries: int = 64
    projector_hidden_mult: int = 4  # fused GELU MLP: vision_dim -> mult*vision_dim -> D -> D
    pad_token_id: int = 151643  # <|endoftext|>

    # ----- derived quantities -----
    @property
    def vision_dim(self) -> int:
        return self.dino.hidden_size + self.siglip.hidden_size

    @property
    def patches_per_image(self) -> int:
        return (self.processor.image_size // self.dino.patch_size) ** 2

    @property
    def num_patches(self) -> int:
        """Visual tokens in the LLM sequence (= number of raw-feature tokens C^R)."""
        return self.patches_per_image * self.platform.num_images

    @property
    def num_policy_blocks(self) -> int:
        return self.policy.num_blocks if self.policy.num_blocks is not None else self.llm.num_layers

    @property
    def task_split(self) -> int:
        """Index at which the policy features [C^R ; C^AQ] are split into task and adapter tokens."""
        n = self.policy.num_task_tokens
        return self.num_patches if n is None else n

    # ----- validation -----
    def validate(self) -> "VLAAdapterConfig":
        errs: List[str] = []

        def pos(path: str, v: Any) -> None:
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                errs.append(f"{path} must be a positive integer, got {v!r}")

        for sect in ("dino", "siglip", "llm"):
            obj = getattr(self, sect)
            for f in dataclasses.fields(obj):
                v = getattr(obj, f.name)
                if f.type in ("int",) or isinstance(v, int) and not isinstance(v, bool):
                    if f.name.endswith("eps") or f.name == "rope_theta":
                        continue
                    pos(f"{sect}.{f.name}", v)
        for name in ("chunk_len", "action_dim", "proprio_dim", "num_images"):
            pos(f"platform.{name}", getattr(self.platform, name))
        pos("num_action_queries", self.num_action_queries)
        pos("policy.num_heads", self.policy.num_heads)
        pos("processor.image_size", self.processor.image_size)
        if errs:
            raise ConfigError("invalid VLA-Adapter config: " + "; ".join(errs))

        if not isinstance(self.platform.use_proprio, bool):
            errs.append(f"platform.use_proprio must be true or false, got {self.platform.use_proprio!r}")
        if self.platform.normalization not in NORMALIZATION_TYPES:
            errs.append(
                f"platform.normalization must be one of {NORMALIZATION_TYPES}, got {self.platform.normalization!r}"
            )
        if self.policy.variant not in POLICY_VARIANTS:
            errs.append(f"policy.variant must be one of {POLICY_VARIANTS}, got {self.policy.variant!r}")
        if self.siglip.hidden_act not in SIGLIP_ACTIVATIONS:
            errs.append(f"siglip.hidden_act must be one of {SIGLIP_ACTIVATIONS}, got {self.siglip.hidden_act!r}")
        tns = self.policy.train_noise_std
        if isinstance(tns, bool) or not isinstance(tns, (int, float)) or not math.isfinite(tns) or tns < 0:
            errs.append(f"policy.train_noise_std must be a finite number >= 0, got {tns!r}")
        ntt = self.policy.num_task_tokens
        if ntt is not None:
            if not isinstance(ntt, int) or isinstance(ntt, bool) or ntt <= 0:
                errs.append(f"policy.num_task_tokens must be None or a positive integer, got {ntt!r}")
            elif not self.platform.use_proprio and ntt >= self.num_patches + self.num_action_queries:
                errs.append(
                    f"policy.num_task_tokens ({ntt}) >= num_patches + num_action_queries "
                    f"({self.num_patches} + {self.num_action_queries}) leaves the policy no adapter tokens, and "
                    "the model has no proprio token either (platform.use_proprio false)")
        jq = self.processor.jpeg_quality
        if jq is not None and (not isinstance(jq, int) or isinstance(jq, bool) or not 1 <= jq <= 100):
            errs.append(f"processor.jpeg_quality must be None or an integer in 1..100, got {jq!r}")
        if self.dino.hidden_size % self.dino.num_heads:
            errs.append("dino.hidden_size must be divisible by dino.num_heads")
        if self.siglip.hidden_size % self.siglip.num_heads:
            errs.append("siglip.hidden_size must be divisible by siglip.num_heads")
        if self.llm.hidden_size % self.llm.num_heads:
            errs.append("llm.hidden_size must be divisible by llm.num_heads")
        if self.llm.num_heads % self.llm.num_kv_heads:
            errs.append("llm.num_heads must be divisible by llm.num_kv_heads")
        if self.llm.hidden_size % self.policy.num_heads:
            errs.append(
                f"llm.hidden_size ({self.llm.hidden_size}) must be divisible by policy.num_heads ({self.policy.num_heads})"
            )
        elif (self.llm.hidden_size // self.policy.num_heads) % 2 and self.policy.variant == "pro":
            errs.append("the Pro policy needs an even head dimension for its rotary embedding")
        if self.dino.patch_size != self.siglip.patch_size:
            errs.append("dino.patch_size and siglip.patch_size must match (same patch grid)")
        if self.processor.image_size % self.dino.patch_size:
            errs.append("processor.image_size must be a multiple of the patch size")
        if self.dino.num_layers < 2 or self.siglip.num_layers < 2:
            errs.append("vision towers need at least 2 layers (features come from the second-to-last block)")
        if self.num_policy_blocks > self.llm.num_layers or self.num_policy_blocks <= 0:
            errs.append(
                f"policy.num_blocks ({self.num_policy_blocks}) must be in 1..llm.num_layers ({self.llm.num_layers})"
            )
        if not (0.0 < self.processor.crop_scale <= 1.0):
            errs.append(f"processor.crop_scale must be in (0, 1], got {self.processor.crop_scale}")
        for nm in ("dino_mean", "dino_std", "siglip_mean", "siglip_std"):
            v = getattr(self.processor, nm)
            if len(v) != 3:
                errs.append(f"processor.{nm} must have 3 values")
            elif nm.endswith("std") and any(float(s) <= 0 for s in v):
                errs.append(f"processor.{nm} must be positive")
        mpt = self.processor.max_prompt_tokens
        if mpt is not None and (not isinstance(mpt, int) or mpt < 2):
            errs.append(f"processor.max_prompt_tokens must be None or an integer >= 2, got {mpt!r}")
        if not (-self.platform.action_dim <= self.platform.gripper_index < self.platform.action_dim):
            errs.append("platform.gripper_index out of range for action_dim")
        if not (0 <= self.pad_token_id < self.llm.vocab_size):
            errs.append(f"pad_token_id {self.pad_token_id} outside the vocabulary ({self.llm.vocab_size})")
        if errs:
            raise ConfigError("invalid VLA-Adapter config: " + "; ".join(errs))
        return self

    # ----- (de)serialisation -----
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("dino_mean", "dino_std", "siglip_mean", "siglip_std"):
            d["processor"][k] = list(d["processor"][k])
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "VLAAdapterConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a mapping, got {type(d).__name__}")
        d = copy.deepcopy(d)
        sections = {
            "dino": DinoConfig,
            "siglip": SiglipConfig,
            "llm": LLMConfig,
            "policy": PolicyConfig,
            "platform": PlatformConfig,
            "processor": ProcessorConfig,
        }
        kwargs: Dict[str, Any] = {}
        top_fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - top_fields
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        for k, v in d.items():
            if k in sections:
                if not isinstance(v, dict):
                    raise ConfigError(f"config section {k!r} must be a mapping, got {type(v).__name__}")
                sub = sections[k]
                names = {f.name for f in dataclasses.fields(sub)}
                bad = set(v) - names
                if bad:
                    raise ConfigError(f"unknown keys in config section {k!r}: {sorted(bad)}")
                if k == "siglip" and "hidden_act" not in v:
                    # saved before the option existed: those models ran (and were trained with) tanh GELU
                    v["hidden_act"] = LEGACY_SIGLIP_ACT
                if k == "processor":
                    for t in ("dino_mean", "dino_std", "siglip_mean", "siglip_std"):
                        if t in v:
                            v[t] = tuple(float(x) for x in v[t])
                kwargs[k] = sub(**v)
            else:
                kwargs[k] = v
        try:
            cfg = cls(**kwargs)
        except TypeError as e:  # pragma: no cover - guarded above
            raise ConfigError(str(e)) from e
        return cfg.validate()

    def save(self, path: Union[str, Path]) -> None:
        path = Path(path)
        d = self.to_dict()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(d, sort_keys=False))
        else:
            path.write_text(json.dumps(d, indent=2))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "VLAAdapterConfig":
        path = Path(path)
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                d = yaml.safe_load(text)
            else:
                d = json.loads(text)
        except Exception as e:
            raise ConfigError(f"{path}: cannot parse config: {e}") from e
        try:
            return cls.from_dict(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e

    def replace_platform(self, **kw: Any) -> "VLAAdapterConfig":
        new = copy.deepcopy(self)
        for k, v in kw.items():
            if not hasattr(new.platform, k):
                raise ConfigError(f"unknown platform constant {k!r}")
            setattr(new.platform, k, v)
        return new.validate()


def official_config(variant: str = "pro") -> VLAAdapterConfig:
    """Official VLA-Adapter shapes (prism-qwen25-extra-dinosiglip-224px-0_5b), LIBERO constants and the
    release's LIBERO evaluation preprocessing (JPEG round trip at quality 95, then resize and 0.9 crop)."""
    cfg = VLAAdapterConfig(name="vla-adapter-0.5b")
    cfg.policy.variant = variant
    cfg.processor.jpeg_quality = OFFICIAL_JPEG_QUALITY
    return cfg.validate()


def tiny_config(variant: str = "pro") -> VLAAdapterConfig:
    """A tiny model for CPU tests: real Qwen2.5 vocabulary (so the real tokenizer works) with
    hidden 64, 2 LLM layers, 2-3 layer vision towers of width 32/48 at 224 px (256 patches/image)."""
    cfg = VLAAdapterConfig(
        name="tiny",
        dino=DinoConfig(hidden_size=32, num_layers=2, num_heads=2, mlp_ratio=2, num_register_tokens=4),
        siglip=SiglipConfig(hidden_size=48, num_layers=3, num_heads=2, intermediate_size=64),
        llm=LLMConfig(
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=128,
            max_position_embeddings=4096,
        ),
        policy=PolicyConfig(variant=variant, num_heads=8),
        num_action_queries=64,
        projector_hidden_mult=1,
    )
    return cfg.validate()


def tiny_112_config() -> VLAAdapterConfig:
    """The tiny model at 112 px (64 patches per image) with unit-scale token embeddings and no training
    perturbation of the policy latent: the recipe that trains from scratch on a CPU."""
    cfg = tiny_config("pro")
    cfg = replace(cfg, name="tiny-112", processor=replace(cfg.processor, image_size=112),
                  llm=replace(cfg.llm, embedding_init_std=1.0), policy=replace(cfg.policy, train_noise_std=0.0))
    return cfg.validate()


PRESETS = {
    "vla-adapter-0.5b": lambda: official_config("pro"),
    "vla-adapter-0.5b-pro": lambda: official_config("pro"),
    "vla-adapter-0.5b-original": lambda: official_config("original"),
    "tiny": lambda: tiny_config("pro"),
    "tiny-pro": lambda: tiny_config("pro"),
    "tiny-original": lambda: tiny_config("original"),
    "tiny-112": tiny_112_config,
}


def get_config(name_or_path: Union[str, Path]) -> VLAAdapterConfig:
    """A preset by name, or a config file (yaml/json), or a checkpoint dir holding ``config.yaml``/``config.json``."""
    s = str(name_or_path)
    if s in PRESETS:
        return PRESETS[s]()
    p = Path(s)
    if p.is_dir():
        for cand in ("config.yaml", "config.yml", "vla_adapter_config.json"):
            if (p / cand).exists():
                return VLAAdapterConfig.load(p / cand)
        raise ConfigError(f"{p}: no config.yaml in directory")
    if p.is_file():
        return VLAAdapterConfig.load(p)
    raise ConfigError(f"unknown preset or missing config file {s!r}; presets: {sorted(PRESETS)}")
