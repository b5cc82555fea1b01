"""Image preprocessing in torch on the engine's device, matching ``model/processor.py``.

For one fixed input size (H, W) everything is precomputed once:
  1. Lanczos-3 antialiased resize to S x S (only if (H, W) != (S, S)) as two matrix products,
     ``Wy (S, H) @ img @ Wx (W, S)``, with the processor's own resampling weights; rounded and clipped
     like the uint8 result of the CPU path;
  2. the 0.9-area centre crop resized back to S x S: bilinear, done with the same gathers and the same
     float32 arithmetic as the CPU path (so it is bit-identical there), then the TF uint8 conversion;
  3. /255 and the two per-tower normalisations -> 6 channels [DINOv2 RGB, SigLIP RGB].

The processor's optional JPEG round trip (``jpeg_quality``) is not done here: it has no device version,
``FastInferenceEngine`` applies it on the CPU before the upload. The crop side is the processor's
float32 ``sqrt(crop_scale)`` (``center_crop_coords``).

The only difference from the CPU processor is the resize matmul in float32 (the CPU path uses float64):
a pixel whose resized value lies within ~1e-5 of a rounding tie may end up 1/255 apart. Do not enable
TF32 matmuls (``torch.backends.cuda.matmul.allow_tf32``) if you need this to hold on the GPU.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from vla_adapter_ros.model.config import ProcessorConfig
from vla_adapter_ros.model.processor import _resample_weights, center_crop_coords


class DevicePreprocessor:
    """uint8 (B, H, W, 3) images of one fixed size -> float32 (B, 6, S, S) model input, on ``device``."""

    def __init__(self, cfg: ProcessorConfig, input_hw: Tuple[int, int], device="cpu"):
        self.cfg = cfg
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.device = torch.device(device)
        s = cfg.image_size
        h, w = self.input_hw

        def t(a, dtype=torch.float32):
            return torch.tensor(np.array(a)).to(self.device, dtype)

        self.resize = (h, w) != (s, s)
        if self.resize:
            self.wy = t(_resample_weights(h, s))  # (S, H)
            self.wx = t(_resample_weights(w, s).T)  # (W, S)
        if cfg.center_crop:
            y0, y1, fy = center_crop_coords(s, s, cfg.crop_scale)
            x0, x1, fx = center_crop_coords(s, s, cfg.crop_scale)
            self.y0, self.y1, self.x0, self.x1 = (t(a, torch.long) for a in (y0, y1, x0, x1))
            self.fy, self.fx = t(fy)[:, None], t(fx)
        self.mean = t(list(cfg.dino_mean) + list(cfg.siglip_mean))[:, None, None]
        self.std = t(list(cfg.dino_std) + list(cfg.siglip_std))[:, None, None]

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, S, S) float32 in [0, 255] (integer valued) -> same, cropped and resampled to uint8 levels."""
        x = x * np.float32(1.0 / 255.0)
        top, bot = x.index_select(2, self.y0), x.index_select(2, self.y1)

        def blend_cols(rows):
            left, right = rows.index_select(3, self.x0), rows.index_select(3, self.x1)
            return left + (right - left) * self.fx

        top, bot = blend_cols(top), blend_cols(bot)
        out = (top + (bot - top) * self.fy).clamp(0.0, 1.0)
        return torch.floor(out * np.float32(255.5))  # TF float -> uint8 conversion (truncation)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != (*self.input_hw, 3):
            raise ValueError(
                f"expected uint8 images of shape (B, {self.input_hw[0]}, {self.input_hw[1]}, 3), "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        x = images.permute(0, 3, 1, 2).to(torch.float32)  # (B, 3, H, W)
        if self.resize:
            x = (self.wy @ x @ self.wx).round().clamp(0.0, 255.0)
        if self.cfg.center_crop:
            x = self._crop(x)
        x = x / np.float32(255.0)
        return (torch.cat([x, x], dim=1) - self.mean) / self.std
