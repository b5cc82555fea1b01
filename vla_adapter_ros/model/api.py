"""``VLAAdapterPolicy``: numpy in, un-normalized action chunk out.

Layers (each usable on its own by the inference engine):
  * :meth:`VLAAdapterPolicy.preprocess` -> tensors (pixel_values, input_ids, attention_mask, proprio)
  * :meth:`VLAAdapterPolicy.forward`    -> normalized actions (tensor-only, no data-dependent Python control flow)
  * :meth:`VLAAdapterPolicy.postprocess` -> un-normalized numpy actions
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch

from .config import VLAAdapterConfig, get_config
from .normalization import Normalizer
from .processor import QwenTokenizer, check_image, preprocess_images, tokenize_prompt
from .vla import VLAAdapter


def check_instruction_and_proprio(instruction, proprio, proprio_dim: int) -> np.ndarray:
    """A non-empty instruction and a finite numeric proprio vector of ``proprio_dim`` values (returned as
    float64); raises ValueError saying what is wrong."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("instruction must be a non-empty string")
    pr = np.asarray(proprio)
    if pr.dtype.kind not in "fiu":
        raise ValueError(f"proprio must be numeric, got dtype {pr.dtype}")
    if pr.shape != (proprio_dim,):
        raise ValueError(f"proprio must have shape ({proprio_dim},), got {pr.shape}")
    if not np.all(np.isfinite(pr)):
        raise ValueError("proprio contains NaN or Inf")
    return pr.astype(np.float64)


class VLAAdapterPolicy:
    def __init__(
        self,
        model: VLAAdapter,
        normalizer: Normalizer,
        tokenizer: Optional[QwenTokenizer] = None,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.config: VLAAdapterConfig = model.config
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.normalizer = normalizer
        self.tokenizer = tokenizer if tokenizer is not None else QwenTokenizer.load(None)
        p = self.config.platform
        if normalizer.action.dim != p.action_dim:
            raise ValueError(f"normalizer has {normalizer.action.dim} action dims, config says {p.action_dim}")
        if normalizer.proprio is None or normalizer.proprio.dim != p.proprio_dim:
            raise ValueError(f"normalizer proprio statistics do not have {p.proprio_dim} dims")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_checkpoint(
        cls,
        path: Union[str, Path],
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        unnorm_key: Optional[str] = None,
        expected_platform: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> "VLAAdapterPolicy":
        from .checkpoint import load_checkpoint

        model, norm = load_checkpoint(path, unnorm_key=unnorm_key, expected_platform=expected_platform, **kwargs)
        return cls(model, norm, QwenTokenizer.load(path), device, dtype)

    @classmethod
    def random_init(
        cls,
        config: Union[str, VLAAdapterConfig],
        stats: Union[Dict[str, Any], Normalizer],
        seed: int = 0,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        tokenizer: Optional[QwenTokenizer] = None,
    ) -> "VLAAdapterPolicy":
        cfg = get_config(config) if not isinstance(config, VLAAdapterConfig) else config
        torch.manual_seed(seed)
        model = VLAAdapter(cfg)
        norm = stats if isinstance(stats, Normalizer) else Normalizer.from_stats(stats, cfg.platform.normalization)
        return cls(model, norm, tokenizer, device, dtype)

    # ------------------------------------------------------------------ validation
    def validate_inputs(self, images: Sequence[np.ndarray], instruction: str, proprio: np.ndarray) -> None:
        p = self.config.platform
        if not isinstance(images, (list, tuple)):
            raise ValueError(f"images must be a list of HxWx3 uint8 arrays, got {type(images).__name__}")
        if len(images) != p.num_images:
            raise ValueError(f"expected {p.num_images} images (primary first, then wrist), got {len(images)}")
        for i, im in enumerate(images):
            check_image(im, i)
        check_instruction_and_proprio(instruction, proprio, p.proprio_dim)

    # ------------------------------------------------------------------ stages
    def preprocess(
        self, images: Sequence[np.ndarray], instruction: str, proprio: np.ndarray
    ) -> Dict[str, torch.Tensor]:
        """Validated numpy inputs -> batch-of-one tensors on the policy device."""
        self.validate_inputs(images, instruction, proprio)
        pix = preprocess_images(images, self.config.processor)
        ids, mask = tokenize_prompt(
            self.tokenizer, instruction, self.config.processor.max_prompt_tokens, self.config.pad_token_id
        )
        if int(ids.max()) >= self.config.llm.vocab_size:
            raise ValueError("prompt token id outside the model vocabulary")
        prop = self.normalizer.normalize_proprio(np.asarray(proprio, dtype=np.float64))
        d = self.device
        return {
            "pixel_values": torch.from_numpy(pix).unsqueeze(0).to(d, self.dtype),
            "input_ids": torch.from_numpy(ids).unsqueeze(0).to(d),
            "attention_mask": torch.from_numpy(mask).unsqueeze(0).to(d),
            "proprio": torch.from_numpy(prop.astype(np.float32)).unsqueeze(0).to(d, self.dtype),
        }

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        proprio: torch.Tensor,
    ) -> torch.Tensor:
        """Normalized actions (B, chunk_len, action_dim)."""
        return self.model(pixel_values, input_ids, attention_mask, proprio)

    __call__ = forward

    def postprocess(self, normalized: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
        if isinstance(normalized, torch.Tensor):
            normalized = normalized.detach().float().cpu().numpy()
        return self.normalizer.unnormalize_action(normalized)

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray], instruction: str, proprio: np.ndarray) -> np.ndarray:
        """(chunk_len, action_dim) float64 un-normalized actions (gripper left raw; see postprocess_gripper)."""
        batch = self.preprocess(images, instruction, proprio)
        out = self.forward(**batch)
        return self.postprocess(out[0])
