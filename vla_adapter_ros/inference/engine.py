"""The inference engine the policy node calls: load a checkpoint (or a random-weight preset), warm up,
predict one action chunk per observation.

This is the portable path: the model's own forward in eval/inference mode, fp32 on CPU, bf16 on
CUDA. It is the reference the optimised GPU path must match.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return device


def identity_statistics(action_dim: int, proprio_dim: int) -> dict:
    """Statistics that map [-1, 1] onto itself: for random-weight models, which have no dataset."""

    def bounds(n):
        return {"q01": [-1.0] * n, "q99": [1.0] * n, "min": [-1.0] * n, "max": [1.0] * n,
                "mean": [0.0] * n, "std": [1.0] * n, "mask": [True] * n}

    return {"random": {"action": bounds(action_dim), "proprio": bounds(proprio_dim)}}


class InferenceEngine:
    """Predicts un-normalized `chunk_len x action_dim` actions from images, instruction and proprio."""

    def __init__(self, policy, model_id: str, random_weights: bool = False):
        self.policy = policy
        self.model_id = model_id
        self.random_weights = random_weights

    @classmethod
    def load(
        cls,
        checkpoint: str | Path | None = None,
        preset: str = "tiny",
        device: str = "auto",
        seed: int = 0,
        unnorm_key: str | None = None,
    ) -> "InferenceEngine":
        """A checkpoint directory, or (checkpoint None/empty) a random-weight preset for tests/demos."""
        import torch

        from vla_adapter_ros.model import VLAAdapterPolicy, get_config

        device = resolve_device(device)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        if checkpoint:
            path = Path(checkpoint).expanduser()
            policy = VLAAdapterPolicy.from_checkpoint(path, device=device, dtype=dtype, unnorm_key=unnorm_key)
            return cls(policy, model_id=f"{path.name}")
        config = get_config(preset)
        platform = config.platform
        stats = identity_statistics(platform.action_dim, platform.proprio_dim)
        policy = VLAAdapterPolicy.random_init(config, stats, seed=seed, device=device, dtype=dtype)
        return cls(policy, model_id=f"random-weights:{preset}:seed{seed}", random_weights=True)

    @property
    def config(self):
        return self.policy.config

    @property
    def device(self) -> str:
        return str(self.policy.device)

    @property
    def chunk_len(self) -> int:
        return self.config.platform.chunk_len

    @property
    def action_dim(self) -> int:
        return self.config.platform.action_dim

    @property
    def proprio_dim(self) -> int:
        return self.config.platform.proprio_dim

    @property
    def num_images(self) -> int:
        return self.config.platform.num_images

    def predict(self, images: Sequence[np.ndarray], instruction: str, proprio: np.ndarray) -> np.ndarray:
        actions = self.policy.predict(list(images), instruction, np.asarray(proprio, dtype=np.float64))
        if not np.all(np.isfinite(actions)):
            raise FloatingPointError("the model produced non-finite actions")
        return actions

    def warmup_image_sizes(self, image_size: int | None) -> list[tuple[int, int]]:
        """(H, W) per camera of the synthetic warm-up images (default 256 x 256)."""
        side = 256 if image_size is None else int(image_size)
        return [(side, side)] * self.num_images

    def warmup(self, iterations: int = 2, image_size: int | None = None) -> list[float]:
        """Run a few predictions on synthetic inputs; returns their durations in ms."""
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in self.warmup_image_sizes(image_size)]
        proprio = np.zeros(self.proprio_dim)
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            self.predict(images, "warm up the model", proprio)
            times.append((time.perf_counter() - start) * 1e3)
        return times
