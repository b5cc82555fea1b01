"""``vla-adapter-ros train``: fine-tune VLA-Adapter on a converted dataset.

Recipe (VLA_ADAPTER_SPEC section 4): peft LoRA (rank 64, alpha 2*rank, dropout 0, gaussian init) on every
Linear of the VLM backbone; the ActionQuery embeddings, the proprio projector and the Bridge-Attention
policy are trained fully; L1 loss on BOUNDS_Q99-normalized actions; AdamW (weight decay 0.01).
Deviation (asked for by DESIGN): linear warm-up + cosine decay instead of the official effectively
constant LR (``--schedule constant`` gives the official behaviour). bf16 autocast on CUDA.

Output directory::

    OUT/checkpoints/step_000500/   loadable checkpoint (config.yaml, model.safetensors, lora_adapter/,
                                   dataset_statistics.json) + train_state.pt (optimizer, scheduler, step, RNG)
    OUT/checkpoints/latest         name of the newest complete interval checkpoint
    OUT/final/                     LoRA merged; ``VLAAdapterPolicy.from_checkpoint(OUT/final)``
    OUT/metrics.jsonl              one JSON line per log/validation event
    OUT/train_config.yaml

Resume (``--resume``) restarts from ``checkpoints/latest``: same model, optimizer, scheduler, RNG and data
position, so an interruption loses at most one ``--save-every`` interval. Multi-GPU: launch with
``torchrun`` (WORLD_SIZE > 1 -> torch.distributed + DDP, one data shard per rank).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

STATE_FILE = "train_state.pt"
LATEST = "latest"


CACHE_IMAGES_AUTO_BYTES = 4 * 2**30
IMAGE_AUGMENTATIONS = ("official", "shift", "none")


class TrainError(ValueError):
    pass


@dataclass
class TrainConfig:
    dataset: str = ""
    output_dir: str = ""
    base: str = "vla-adapter-0.5b"  # preset name (random init) or checkpoint directory
    max_steps: int = 10000  # optimizer steps
    batch_size: int = 8  # per device, per micro-step
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.01
    betas: Tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"  # "cosine" (linear warm-up + cosine decay) or "constant" (warm-up then constant)
    warmup_steps: Optional[int] = None  # None = 3% of max_steps
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    grad_clip: float = 0.0  # 0 = none (official)
    use_lora: bool = True
    freeze_embeddings: bool = False  # keep the token embedding table fixed (it is frozen under LoRA anyway)
    lora_rank: int = 64
    lora_alpha: Optional[float] = None  # None = 2 * rank
    lora_dropout: float = 0.0
    val_fraction: float = 0.05  # of episodes (at least one if there are >= 2 episodes and fraction > 0)
    val_every: int = 500
    val_batches: int = 50
    save_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    precision: str = "auto"  # "bf16" (autocast, CUDA), "fp32", "auto" = bf16 on CUDA else fp32
    cameras: Optional[List[str]] = None  # dataset camera names to feed, primary first
    chunk_len: Optional[int] = None  # actions per chunk; None = the base model's (8)
    # decode all images into memory once: None = when they take at most CACHE_IMAGES_AUTO_BYTES
    cache_images: Optional[bool] = None
    # None = the base model's; False = no proprio input (guards against the "copycat" shortcut: with the
    # end-effector pose as input, behaviour cloning learns to continue the motion it sees instead of looking)
    use_proprio: Optional[bool] = None
    # training augmentation of the images: "official" (random crop of area 0.9 + colour jitter, hue included),
    # "shift" (the inference preprocessing, then each image moved by up to `shift_pixels` in x and y with its edge
    # repeated; no colour change, for colour-conditioned tasks) or "none" (exactly the inference preprocessing).
    # True / False are read as "official" / "none" (configs written before the choice existed)
    image_aug: Union[str, bool] = "official"
    shift_pixels: int = 4  # at the model's input resolution; used by image_aug "shift"
    # oversampling of each episode's opening: its first `start_frames` frames appear `start_repeat` times per epoch
    # (default: plain epochs). From a fixed start pose, the opening is where the policy must find the object in
    # the images; later frames can be continued from where the arm already is (train/README.md)
    start_frames: int = 0
    start_repeat: int = 1
    # every frame trained with this instruction instead of its own (None: its own): the language-blind baseline
    # of a recipe (evaluate it with the same text, e.g. demo --instruction); the targeting checks use it too
    instruction: Optional[str] = None
    progress: bool = True
    unnorm_key: str = ""  # statistics key; default dataset name
    # every N optimizer steps (0 = off): how often the first chunk heads for the instructed cube in the built-in
    # simulation, on `targeting_seeds` held-out seeds (1000, 1001, ...) per task (train/targeting.py)
    targeting_every: int = 0
    targeting_seeds: int = 3

    def validate(self) -> "TrainConfig":
        if not self.dataset or not self.output_dir:
            raise TrainError("dataset and output_dir are required")
        for k in ("max_steps", "batch_size", "grad_accum", "val_every", "save_every", "log_every", "lora_rank"):
            if int(getattr(self, k)) <= 0:
                raise TrainError(f"{k} must be positive")
        if int(self.targeting_every) < 0 or int(self.targeting_seeds) < 1:
            raise TrainError("targeting_every must be >= 0 and targeting_seeds >= 1")
        if isinstance(self.image_aug, bool):
            self.image_aug = "official" if self.image_aug else "none"
        if self.image_aug not in IMAGE_AUGMENTATIONS:
            raise TrainError(f"image_aug must be one of {', '.join(IMAGE_AUGMENTATIONS)}, not {self.image_aug!r}")
        for k, low in (("shift_pixels", 0), ("start_frames", 0), ("start_repeat", 1)):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise TrainError(f"{k} must be a whole number >= {low}, not {v!r}")
        if self.instruction is not None and (not isinstance(self.instruction, str) or not self.instruction.strip()):
            raise TrainError(f"instruction must be a non-empty text, not {self.instruction!r}")
        if self.schedule not in ("cosine", "constant"):
            raise TrainError("schedule must be 'cosine' or 'constant'")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TrainError("precision must be auto, bf16 or fp32")
        return self

    @property
    def warmup(self) -> int:
        return int(self.warmup_steps) if self.warmup_steps is not None else int(round(0.03 * self.max_steps))


# ---------------------------------------------------------------------------------------------
# schedule
# ---------------------------------------------------------------------------------------------
def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base LR at optimizer step ``step`` (0-based)."""
    w = cfg.warmup
    if w > 0 and step < w:
        return (step + 1) / w
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.max_steps - w)
    prog = min(1.0, (step - w) / span)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * prog))


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def augment_image(img: np.ndarray, rng: np.random.Generator, crop_scale: float = 0.9, brightness: float = 0.2,
                  contrast: Tuple[float, float] = (0.8, 1.2), saturation: Tuple[float, float] = (0.8, 1.2),
                  hue: float = 0.05) -> np.ndarray:
    """Training augmentation of the official recipe on a uint8 (S, S, 3) image: random square crop of area
    ``crop_scale`` resized back to S (the inference center crop is its centred case), then brightness,
    contrast, saturation and hue jitter. Returns uint8 (S, S, 3)."""
    from PIL import Image as PILImage

    s = img.shape[0]
    side = math.sqrt(crop_scale) * s
    y0, x0 = rng.uniform(0.0, s - side, size=2)
    pil = PILImage.fromarray(img).resize((s, s), PILImage.BILINEAR, box=(x0, y0, x0 + side, y0 + side))
    if hue > 0:
        hsv = np.asarray(pil.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(rng.uniform(-hue, hue) * 255))) % 256
        pil = PILImage.fromarray(hsv, "HSV").convert("RGB")
    x = np.asarray(pil, dtype=np.float32) / 255.0
    x = x + rng.uniform(-brightness, brightness)
    m = x.mean()
    x = (x - m) * rng.uniform(*contrast) + m
    gray = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    x = (x - gray) * rng.uniform(*saturation) + gray
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def shift_image(img: np.ndarray, rng: np.random.Generator, pad: int) -> np.ndarray:
    """Random-shift augmentation (DrQ's pad-and-crop) of a uint8 (S, S, 3) image: the content moves by a whole
    number of pixels in [-pad, pad] along each axis, the edge rows and columns repeated into the uncovered
    border. Colours are left exactly as they are. Returns uint8 (S, S, 3)."""
    if pad <= 0:
        return img
    h, w = img.shape[:2]
    dy, dx = rng.integers(-pad, pad + 1, size=2)
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[rows[:, None], cols[None, :]]


class BatchBuilder:
    """Turns dataset items into model tensors (picklable for DataLoader workers). ``augment``: "official",
    "shift" (with ``shift_pixels``) or "none"; it applies when a random generator is given. Items whose
    ``images_prepared_for`` is this model's processor config hold images that already went through
    :func:`~vla_adapter_ros.model.processor.prepare_image` (a dataset cache); the others are prepared here."""

    def __init__(self, model_cfg, normalizer, tokenizer, augment: str = "official", shift_pixels: int = 4,
                 instruction: Optional[str] = None):
        self.augment, self.shift_pixels = augment, shift_pixels
        self.instruction = instruction  # replaces every item's (the language-blind baseline); None: the item's
        self.proc = model_cfg.processor
        self.max_tokens = model_cfg.processor.max_prompt_tokens
        self.pad_id = model_cfg.pad_token_id
        self.normalizer = normalizer
        self.tokenizer = tokenizer
        self._tok_cache: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}

    def pixels(self, images: Sequence[np.ndarray], rng: Optional[np.random.Generator],
               prepared: bool = False) -> np.ndarray:
        """Model input (6 * n, S, S) of uint8 images; ``prepared``: they already went through ``prepare_image``
        with this model's processor config (only "shift" and "none" start from there)."""
        from ..model.processor import check_image, normalize_image, prepare_image

        augment = "none" if rng is None else self.augment  # no generator: exactly the inference preprocessing
        if prepared and augment == "official":
            raise ValueError("the official augmentation crops the raw image: it cannot start from prepared images")
        for i, im in enumerate(images):
            check_image(im, i)
        if augment == "official":
            import copy

            proc = copy.copy(self.proc)
            proc.center_crop = False
            return np.concatenate([normalize_image(augment_image(prepare_image(im, proc), rng, self.proc.crop_scale),
                                                   proc) for im in images], axis=0)
        s = self.proc.image_size
        if prepared and any(im.shape[:2] != (s, s) for im in images):
            raise ValueError(f"prepared images must be {s}x{s}, got {[im.shape[:2] for im in images]}")
        base = images if prepared else [prepare_image(im, self.proc) for im in images]
        if augment == "shift":
            base = [shift_image(im, rng, self.shift_pixels) for im in base]
        return np.concatenate([normalize_image(im, self.proc) for im in base], axis=0)

    def _prepared(self, item: Dict[str, Any]) -> bool:
        prepared_for = item.get("images_prepared_for")
        if prepared_for is not None and prepared_for != self.proc:
            raise ValueError("the item's images were prepared for another model's image processing")
        return prepared_for is not None

    def sample(self, item: Dict[str, Any], rng: Optional[np.random.Generator] = None) -> Dict[str, np.ndarray]:
        from ..model.processor import tokenize_prompt

        ins = self.instruction or item["instruction"]
        if ins not in self._tok_cache:
            self._tok_cache[ins] = tokenize_prompt(self.tokenizer, ins, self.max_tokens, self.pad_id)
        ids, mask = self._tok_cache[ins]
        return {
            "pixel_values": self.pixels(item["images"], rng, self._prepared(item)),
            "input_ids": ids,
            "attention_mask": mask,
            "proprio": self.normalizer.normalize_proprio(item["proprio"]).astype(np.float32),
            "actions": self.normalizer.normalize_action(item["actions"]).astype(np.float32),
            "action_mask": np.asarray(item["action_mask"], dtype=bool),
        }

    def batch(self, items: Sequence[Dict[str, Any]],
              rng: Optional[np.random.Generator] = None) -> Dict[str, torch.Tensor]:
        from ..model.processor import collate

        b = collate([self.sample(it, rng) for it in items], self.pad_id)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()}


class MicroBatches(torch.utils.data.Dataset):
    """Item m = micro-batch m of a deterministic infinite stream: epoch e visits ``indices`` in the order
    of ``default_rng(seed + e).permutation``; the stream is split across ``world`` ranks. Stateless, so a
    resumed run continues with exactly the batches the interrupted one would have seen."""

    def __init__(self, dataset, indices: Sequence[int], batch_size: int, builder: BatchBuilder, seed: int,
                 rank: int = 0, world: int = 1, shuffle: bool = True, augment: bool = False):
        self.augment = augment
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)
        self.bs, self.builder, self.seed = batch_size, builder, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        if len(self.indices) == 0:
            raise TrainError("empty training split")
        self._perm_cache: Dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            if len(self._perm_cache) > 4:
                self._perm_cache.clear()
            self._perm_cache[epoch] = (np.random.default_rng(self.seed + epoch).permutation(self.indices)
                                       if self.shuffle else self.indices)
        return self._perm_cache[epoch]

    def indices_of(self, m: int) -> List[int]:
        g = (m * self.world + self.rank) * self.bs  # position in the global stream
        n = len(self.indices)
        out = []
        for p in range(g, g + self.bs):
            out.append(int(self._perm(p // n)[p % n]))
        return out

    def __len__(self) -> int:  # effectively infinite; DataLoader uses an explicit sampler
        return 2**62

    def __getitem__(self, m: int) -> Dict[str, torch.Tensor]:
        # augmentation randomness is a function of (seed, micro-batch, rank): identical after a resume
        rng = np.random.default_rng([self.seed, int(m), self.rank]) if self.augment else None
        return self.builder.batch([self.dataset[i] for i in self.indices_of(int(m))], rng)


def oversample_start(indices: np.ndarray, frame_index: np.ndarray, frames: int, repeat: int) -> np.ndarray:
    """``indices`` (rows of one split) with the rows whose ``frame_index`` is below ``frames`` (each episode's
    opening) appearing ``repeat`` times in all; unchanged when ``frames`` is 0 or ``repeat`` is 1."""
    indices = np.asarray(indices, dtype=np.int64)
    if frames <= 0 or repeat <= 1:
        return indices
    opening = indices[np.asarray(frame_index)[indices] < frames]
    return np.concatenate([indices] + [opening] * (repeat - 1))


def split_episodes(episode_index: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row indices of the train and validation splits (whole episodes)."""
    eps = np.unique(episode_index)
    n_val = int(round(val_fraction * len(eps)))
    if val_fraction > 0 and len(eps) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, len(eps) - 1)
    val_eps = set(np.random.default_rng(seed).permutation(eps)[:n_val].tolist()) if n_val > 0 else set()
    is_val = np.isin(episode_index, list(val_eps))
    return np.nonzero(~is_val)[0], np.nonzero(is_val)[0]


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def _platform_from_dataset(info: Dict[str, Any], n_cams: int) -> Dict[str, Any]:
    feats = info["features"]
    ours = info.get("vla_adapter_ros", {})
    gi = ours.get("gripper_index")
    return {
        "action_dim": int(feats["action"]["shape"][0]),
        "proprio_dim": int(feats["observation.state"]["shape"][0]),
        "num_images": int(n_cams),
        "gripper_index": -1 if gi is None else int(gi),
    }


def build_training_model(cfg: TrainConfig, platform: Dict[str, Any], log=print):
    """Base model (preset or checkpoint) adapted to the dataset's action/proprio widths, with LoRA."""
    from ..model.checkpoint import load_checkpoint
    from ..model.config import get_config
    from ..model.lora import apply_lora
    from ..model.vla import VLAAdapter

    base = Path(cfg.base)
    if base.is_dir():
        src_model, _ = load_checkpoint(base)  # merges any LoRA adapter
        mcfg = src_model.config.replace_platform(**platform)
        model = VLAAdapter(mcfg)
        own = model.state_dict()
        src = src_model.state_dict()
        ok = {k: v for k, v in src.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        fresh = sorted(k for k in own if k not in ok)
        model.load_state_dict(ok, strict=False)
        if fresh:
            log(f"[train] {len(fresh)} tensors re-initialised for the new platform (e.g. {fresh[:3]})")
        del src_model
    else:
        mcfg = get_config(cfg.base).replace_platform(**platform)
        torch.manual_seed(cfg.seed)
        model = VLAAdapter(mcfg)
    if cfg.use_lora:
        model = apply_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout)
    else:
        for p in model.parameters():
            p.requires_grad = True
    if cfg.freeze_embeddings:
        # 151936 x hidden rows of which a prompt uses a few dozen: a dense gradient + AdamW update of the
        # whole table dominates a small model's step (~90 % of it for the tiny preset on CPU)
        model.language_model.model.embed_tokens.weight.requires_grad_(False)
    return model


def trainable_parameters(model: torch.nn.Module) -> List[Tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean absolute error over the valid (non-padded) chunk steps."""
    err = (pred.float() - target.float()).abs()
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype).unsqueeze(-1).expand_as(err)
    return (err * m).sum() / m.sum().clamp_min(1.0)


# ---------------------------------------------------------------------------------------------
# trainer
# ---------------------------------------------------------------------------------------------
def _rng_state() -> Dict[str, Any]:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _set_rng_state(s: Dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


class Trainer:
    def __init__(self, cfg: TrainConfig, log=None):
        from ..data.convert import load_dataset
        from ..model.normalization import Normalizer
        from ..model.processor import QwenTokenizer

        self.cfg = cfg.validate()
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.is_main = self.rank == 0
        self.log = log or (lambda s: print(s, flush=True) if self.is_main else None)
        if cfg.device == "auto":
            dev = f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"
        else:
            dev = cfg.device
        self.device = torch.device(dev)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.out = Path(cfg.output_dir)

        # ----- data -----
        probe = load_dataset(cfg.dataset, chunk_len=1, cameras=cfg.cameras)
        info = probe.info
        cams = probe.cameras
        platform = _platform_from_dataset(info, len(cams))
        if cfg.chunk_len is not None:
            platform["chunk_len"] = int(cfg.chunk_len)
        if cfg.use_proprio is not None:
            platform["use_proprio"] = bool(cfg.use_proprio)
        self.model = build_training_model(cfg, platform, self.log)
        self.model_cfg = self.model.config
        self.dataset = load_dataset(cfg.dataset, chunk_len=self.model_cfg.platform.chunk_len, cameras=cams)
        need = self.dataset.frames.decoded_image_bytes(cams)
        if cfg.cache_images or (cfg.cache_images is None and need <= CACHE_IMAGES_AUTO_BYTES):
            self.log(f"[train] decoding {need / 2**20:.0f} MiB of images into memory once"
                     f"{' (--no-cache-images reads them per sample)' if cfg.cache_images is None else ''}")
            # shift and none start from the inference crop/resize of each image: done once here, not per sample
            prepare_for = None if cfg.image_aug == "official" else self.model_cfg.processor
            self.dataset.frames.cache_images(cams, progress=cfg.progress and self.is_main, prepare_for=prepare_for)
        stats_all = self.dataset.norm_stats
        if not stats_all:
            raise TrainError(f"{cfg.dataset}: no meta/dataset_statistics.json")
        key = cfg.unnorm_key or next(iter(stats_all))
        self.stats = {key: stats_all[key]}
        self.normalizer = Normalizer.from_stats(self.stats, self.model_cfg.platform.normalization, key)
        self.tokenizer = QwenTokenizer.load(cfg.base if Path(cfg.base).is_dir() else None)
        self.builder = BatchBuilder(self.model_cfg, self.normalizer, self.tokenizer, cfg.image_aug, cfg.shift_pixels,
                                    cfg.instruction)
        if cfg.instruction is not None:
            self.log(f"[train] every frame with the instruction {cfg.instruction!r} (language-blind baseline)")
        tr, va = split_episodes(self.dataset.frames.episode_index, cfg.val_fraction, cfg.seed)
        if cfg.start_frames > 0 and cfg.start_repeat > 1:
            n = len(tr)
            tr = oversample_start(tr, self.dataset.frames.frame_index, cfg.start_frames, cfg.start_repeat)
            self.log(f"[train] the first {cfg.start_frames} frames of every episode {cfg.start_repeat}x per epoch: "
                     f"{n} -> {len(tr)} training samples per epoch")
        self.train_idx, self.val_idx = tr, va
        self.train_batches = MicroBatches(self.dataset, tr, cfg.batch_size, self.builder, cfg.seed, self.rank,
                                          self.world, augment=cfg.image_aug != "none")
        self.val_batches = (MicroBatches(self.dataset, va, cfg.batch_size, self.builder, cfg.seed, shuffle=False)
                            if len(va) else None)

        # ----- optimisation -----
        self.model.to(self.device)
        self.params = trainable_parameters(self.model)
        self.optimizer = torch.optim.AdamW([p for _, p in self.params], lr=cfg.lr, betas=tuple(cfg.betas),
                                           eps=1e-8, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg))
        self.step = 0
        self.ddp_model = self.model
        if self.world > 1:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        n_train = sum(p.numel() for _, p in self.params)
        n_all = sum(p.numel() for p in self.model.parameters())
        self.log(f"[train] {len(tr)} train / {len(va)} val frames, {n_train:,} of {n_all:,} parameters trained, "
                 f"device {self.device}{' bf16 autocast' if self.bf16 else ''}, world {self.world}")

    # ----- one micro-batch -----
    def _forward_loss(self, model, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        b = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            pred = model(b["pixel_values"], b["input_ids"], b["attention_mask"], b["proprio"])
        return l1_loss(pred, b["actions"], b["action_mask"])

    def _loader(self, ds, start: int, stop: int):
        sampler = range(start, stop)
        nw = self.cfg.num_workers
        # own generator: creating a DataLoader iterator must not consume the global torch RNG (the policy
        # draws its training noise from it; resume restores it and must see the same stream)
        gen = torch.Generator().manual_seed(self.cfg.seed + start)
        return torch.utils.data.DataLoader(ds, batch_size=None, sampler=sampler, num_workers=nw, generator=gen,
                                           persistent_workers=False, prefetch_factor=2 if nw > 0 else None)

    @torch.no_grad()
    def validate(self) -> Optional[float]:
        if self.val_batches is None:
            return None
        self.model.eval()
        n_val = math.ceil(len(self.val_idx) / self.cfg.batch_size)
        n = min(n_val, self.cfg.val_batches)
        tot, cnt = 0.0, 0
        for m in range(n):
            if m == n_val - 1:  # last (possibly partial) batch: don't wrap around into a second pass
                rows = [int(i) for i in self.val_idx[m * self.cfg.batch_size:]]
                batch = self.builder.batch([self.dataset[i] for i in rows])
            else:
                batch = self.val_batches[m]
            loss = self._forward_loss(self.model, batch)
            k = batch["actions"].shape[0]
            tot += float(loss) * k
            cnt += k
        self.model.train()
        return tot / max(cnt, 1)

    def targeting(self) -> Optional[Dict[str, Any]]:
        """Targeting rate of the current model in simulation (train/targeting.py; model only, no expert) on
        ``cfg.targeting_seeds`` held-out seeds per task: {"rate", "tasks": {task: rate}, "blind": the rate of a
        policy blind to the images}, or None (and a log line) when this dataset's cameras or action space have
        no simulation counterpart."""
        from ..inference.io_spec import IO_KEYS
        from .targeting import DEFAULT_FIRST_SEED, TargetingError, policy_from_model, targeting_report

        info = self.dataset.info.get("vla_adapter_ros", {})
        cams = self.dataset.cameras
        shape = self.dataset.info.get("features", {}).get(f"observation.images.{cams[0]}", {}).get("shape")
        try:
            if getattr(self, "_targeting_env", None) is None:
                from ..sim.env import FrankaSimEnv

                self._targeting_env = FrankaSimEnv()
            r = targeting_report(policy_from_model(self.model, self.normalizer, self.tokenizer), None,
                                 range(DEFAULT_FIRST_SEED, DEFAULT_FIRST_SEED + self.cfg.targeting_seeds),
                                 io={k: info[k] for k in IO_KEYS if k in info}, cameras=cams,
                                 image_size=shape[:2] if shape else None, expert=False, env=self._targeting_env,
                                 instruction=self.cfg.instruction, progress=False)
        except TargetingError as e:
            self.log(f"[train] targeting check skipped: {e}")
            return None
        return {"rate": r["overall"]["model"]["rate"],
                "tasks": {k: v["model"]["rate"] for k, v in r["tasks"].items()}, "blind": r["overall"]["blind"]["rate"]}

    def train_step(self, batches: Sequence[Dict[str, torch.Tensor]]) -> float:
        """One optimizer step over ``grad_accum`` micro-batches; returns the mean micro-batch loss."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for i, batch in enumerate(batches):
            sync = i == len(batches) - 1
            ctx = self.ddp_model.no_sync() if (self.world > 1 and not sync) else _null()
            with ctx:
                loss = self._forward_loss(self.ddp_model, batch)
                (loss / len(batches)).backward()
            losses.append(float(loss.detach()))
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.params], self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return float(np.mean(losses))

    # ----- checkpoints -----
    def save(self, final: bool = False) -> Optional[Path]:
        from ..model.checkpoint import save_checkpoint

        if not self.is_main:
            return None
        tok_dir = self.cfg.base if Path(self.cfg.base).is_dir() else None
        if final:
            import copy

            from ..model.lora import has_lora, merge_lora

            dst = self.out / "final"
            tmp = self.out / ".final.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            m = copy.deepcopy(self.model).cpu()
            if has_lora(m):
                m = merge_lora(m)
            save_checkpoint(m, tmp, self.stats, tokenizer_dir=tok_dir)
            self._write_train_meta(tmp)
            shutil.rmtree(dst, ignore_errors=True)
            tmp.rename(dst)
            return dst
        ck = self.out / "checkpoints"
        name = f"step_{self.step:06d}"
        tmp = ck / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(self.model, tmp, self.stats, tokenizer_dir=tok_dir)
        self._write_train_meta(tmp)
        torch.save({
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "train_config": asdict(self.cfg),
        }, tmp / STATE_FILE)
        dst = ck / name
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
        (ck / (LATEST + ".tmp")).write_text(name)
        os.replace(ck / (LATEST + ".tmp"), ck / LATEST)
        old = sorted(p for p in ck.glob("step_*") if p.is_dir())
        for p in old[: max(0, len(old) - self.cfg.keep_checkpoints)]:
            shutil.rmtree(p, ignore_errors=True)
        return dst

    def _write_train_meta(self, d: Path) -> None:
        info = self.dataset.info.get("vla_adapter_ros", {})
        (d / "training.json").write_text(json.dumps({
            "step": self.step, "dataset": str(self.cfg.dataset), "base": self.cfg.base,
            "action_space": info.get("action_space"), "proprio_layout": info.get("proprio_layout"),
            "dt": info.get("dt"), "gripper_index": info.get("gripper_index"),
            "gripper_open_value": info.get("gripper_open_value"),
            "gripper_closed_value": info.get("gripper_closed_value"),
            "cameras": self.dataset.cameras, "lora_rank": self.cfg.lora_rank if self.cfg.use_lora else None,
            "instruction": self.cfg.instruction,
        }, indent=2))

    def resume(self, path: Optional[Union[str, Path]] = None) -> bool:
        """Load model/optimizer/scheduler/RNG state from ``path`` or ``checkpoints/latest``; False if none."""
        from safetensors.torch import load_file

        from ..model.checkpoint import LORA_DIR, MODEL_FILE

        if path is None:
            latest = self.out / "checkpoints" / LATEST
            if not latest.is_file():
                return False
            path = self.out / "checkpoints" / latest.read_text().strip()
        path = Path(path)
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        base_sd = load_file(str(path / MODEL_FILE))
        own = self.model.state_dict()
        mapped = {}
        for k in own:
            plain = k.replace(".base_layer.", ".")
            if ".lora_" in k:
                continue
            if plain in base_sd:
                mapped[k] = base_sd[plain]
        lora_file = path / LORA_DIR / "adapter_model.safetensors"
        if lora_file.is_file():
            for k, v in load_file(str(lora_file)).items():
                k2 = k[len("base_model.model."):] if k.startswith("base_model.model.") else k
                k2 = k2.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
                mapped[k2] = v
        missing = [k for k in own if k not in mapped]
        if missing:
            raise TrainError(f"{path}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        self.model.load_state_dict(mapped, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        _set_rng_state(state["rng"])
        self.log(f"[train] resumed from {path} at step {self.step}")
        return True

    def _metric(self, **kw) -> None:
        if not self.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "time": time.time(), **kw}) + "\n")

    # ----- main loop -----
    def fit(self, max_steps: Optional[int] = None) -> Dict[str, Any]:
        """Train until ``max_steps`` (default cfg.max_steps) optimizer steps; returns a summary."""
        cfg = self.cfg
        stop = int(max_steps if max_steps is not None else cfg.max_steps)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            import yaml

            (self.out / "train_config.yaml").write_text(yaml.safe_dump(_plain(asdict(cfg)), sort_keys=False))
        acc = cfg.grad_accum
        loader = self._loader(self.train_batches, self.step * acc, stop * acc)
        it = iter(loader)
        bar = None
        if cfg.progress and self.is_main:
            from tqdm import tqdm

            bar = tqdm(total=stop, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        history: List[float] = []
        last_val = None
        last_targeting = None
        t0 = time.time()
        while self.step < stop:
            batches = [next(it) for _ in range(acc)]
            loss = self.train_step(batches)
            history.append(loss)
            lr = self.scheduler.get_last_lr()[0]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if self.step % cfg.log_every == 0 or self.step == stop:
                self._metric(train_l1=float(np.mean(history[-cfg.log_every:])), lr=lr)
                if bar is None and self.is_main:  # no progress bar (logs, CI): one line per interval
                    done = len(history)
                    eta = (time.time() - t0) / done * (stop - self.step)
                    self.log(f"[train] step {self.step}/{stop} loss {np.mean(history[-cfg.log_every:]):.4f} "
                             f"lr {lr:.2e} eta {eta / 60:.1f} min" + (f" val {last_val:.4f}" if last_val else ""))
            if self.step % cfg.val_every == 0 or self.step == stop:
                if self.is_main:
                    last_val = self.validate()
                    if last_val is not None:
                        self._metric(val_l1=last_val)
                        if bar is not None:
                            bar.set_postfix(loss=f"{loss:.4f}", val=f"{last_val:.4f}", lr=f"{lr:.2e}")
            if cfg.targeting_every and self.is_main and (self.step % cfg.targeting_every == 0 or self.step == stop):
                last_targeting = self.targeting()
                if last_targeting is not None:
                    self._metric(targeting=last_targeting["rate"], targeting_tasks=last_targeting["tasks"],
                                 targeting_blind=last_targeting["blind"])
                    self.log(f"[train] step {self.step} targeting {last_targeting['rate']:.2f} ("
                             + ", ".join(f"{k} {v:.2f}" for k, v in last_targeting["tasks"].items())
                             + f"; blind {last_targeting['blind']:.2f}, chance 0.33)")
            if self.step % cfg.save_every == 0 and self.step < stop:
                self.save()
                self._barrier()
        if bar is not None:
            bar.close()
        final = self.save(final=True) if self.step >= cfg.max_steps else self.save()
        self._barrier()
        return {"steps": self.step, "losses": history, "val_l1": last_val, "seconds": time.time() - t0,
                "checkpoint": str(final) if final else None, "targeting": last_targeting}

    def _barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    d = TrainConfig()
    parser.add_argument("dataset", metavar="DATASET", help="dataset directory written by `vla-adapter-ros convert`")
    parser.add_argument("output_dir", metavar="OUT",
                        help="run directory (the result: checkpoints/, final/, metrics.jsonl)")
    parser.add_argument("--base", default=d.base,
                        help="base checkpoint directory, or a preset name for random init: tiny, tiny-112 (CPU-sized, "
                             "as in the README's examples) or vla-adapter-0.5b (default: vla-adapter-0.5b, the full "
                             "0.5B model: needs a GPU-sized machine)")
    parser.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps to train")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="samples per device per micro-step")
    parser.add_argument("--grad-accum", type=int, default=d.grad_accum,
                        help="micro-steps per optimizer step (effective batch = batch size x this)")
    parser.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    parser.add_argument("--schedule", choices=["cosine", "constant"], default=d.schedule,
                        help="learning-rate schedule after the linear warm-up")
    parser.add_argument("--warmup-steps", type=int, default=None, help="warm-up steps (default: 3%% of max steps)")
    parser.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio,
                        help="cosine floor as a fraction of --lr")
    parser.add_argument("--grad-clip", type=float, default=d.grad_clip,
                        help="clip the gradient norm to this (0: no clipping, as the official recipe)")
    parser.add_argument("--no-lora", dest="use_lora", action="store_false",
                        help="full fine-tuning (default: LoRA on the backbone + the full policy)")
    parser.add_argument("--freeze-embeddings", action="store_true",
                        help="keep the token embedding table fixed (much faster full fine-tuning of small models)")
    parser.add_argument("--lora-rank", type=int, default=d.lora_rank, help="LoRA rank")
    parser.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: 2 * rank)")
    parser.add_argument("--lora-dropout", type=float, default=d.lora_dropout, help="LoRA dropout")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction,
                        help="fraction of episodes held out for validation (at least one when there are two or more)")
    parser.add_argument("--val-every", type=int, default=d.val_every, help="validate every N optimizer steps")
    parser.add_argument("--val-batches", type=int, default=d.val_batches, help="batches per validation")
    parser.add_argument("--save-every", type=int, default=d.save_every,
                        help="write a checkpoint to OUT/checkpoints/ every N optimizer steps")
    parser.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints,
                        help="how many of the newest step checkpoints to keep")
    parser.add_argument("--log-every", type=int, default=d.log_every, help="log the loss every N optimizer steps")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (initialisation, split, sampling)")
    parser.add_argument("--num-workers", type=int, default=d.num_workers, help="data loader worker processes")
    parser.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default=d.precision,
                        help="auto: bf16 autocast on CUDA, else fp32")
    parser.add_argument("--cameras", nargs="+", default=None,
                        help="dataset camera names, primary first (default: the dataset's)")
    parser.add_argument("--chunk-len", type=int, default=None, help="actions per chunk (default: the base model's)")
    parser.add_argument("--no-proprio", dest="use_proprio", action="store_false", default=None,
                        help="train a model without proprioceptive input (default: as the base model)")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--cache-images", dest="cache_images", action="store_true", default=None,
                       help="decode all images into memory once (default: when they fit in "
                       f"{CACHE_IMAGES_AUTO_BYTES // 2**30} GiB)")
    cache.add_argument("--no-cache-images", dest="cache_images", action="store_false",
                       help="read and decode images per sample")
    aug = parser.add_mutually_exclusive_group()
    aug.add_argument("--image-aug", choices=IMAGE_AUGMENTATIONS, default=d.image_aug,
                     help="image augmentation: official = random crop + colour jitter (hue included; default), "
                     "shift = random shifts of up to --shift-pixels, colours untouched (colour-conditioned tasks), "
                     "none = the inference preprocessing")
    aug.add_argument("--no-image-aug", dest="image_aug", action="store_const", const="none",
                     help="same as --image-aug none")
    parser.add_argument("--shift-pixels", type=int, default=d.shift_pixels,
                        help=f"largest shift of --image-aug shift, model-input pixels (default {d.shift_pixels})")
    parser.add_argument("--start-frames", type=int, default=d.start_frames,
                        help="oversample each episode's first N frames (with --start-repeat; default 0 = off)")
    parser.add_argument("--start-repeat", type=int, default=d.start_repeat,
                        help="how often those frames appear per epoch (default 1)")
    parser.add_argument("--instruction", default=None, metavar="TEXT",
                        help="train every frame with this instruction instead of its own: the language-blind "
                        "baseline of a recipe (evaluate it with the same text: demo/diagnose --instruction)")
    parser.add_argument("--targeting-every", type=int, default=d.targeting_every,
                        help="every N steps, log how often the first chunk heads for the instructed cube in the "
                        f"simulation (vla-adapter-ros diagnose --targeting; default {d.targeting_every} = off)")
    parser.add_argument("--targeting-seeds", type=int, default=d.targeting_seeds,
                        help=f"held-out seeds per task for --targeting-every (default {d.targeting_seeds})")
    parser.add_argument("--resume", nargs="?", const="latest", default=None,
                        help="resume from OUT/checkpoints/latest (or the given checkpoint directory)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    keys = set(TrainConfig.__dataclass_fields__)
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in keys}).validate()


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        trainer = Trainer(cfg)
        if args.resume:
            found = trainer.resume(None if args.resume == "latest" else args.resume)
            if not found:
                trainer.log("[train] nothing to resume from; starting at step 0")
        summary = trainer.fit()
    except (TrainError, FileNotFoundError, ValueError) as e:
        print(f"train: {e}", file=sys.stderr)
        return 1
    trainer.log(f"[train] done: {summary['steps']} steps in {summary['seconds']:.1f} s, "
                f"last train L1 {summary['losses'][-1] if summary['losses'] else float('nan'):.4f}, "
                f"val L1 {summary['val_l1']}, checkpoint {summary['checkpoint']}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vla-adapter-ros train", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
