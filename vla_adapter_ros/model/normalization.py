"""Action/proprio normalization (BOUNDS_Q99 and BOUNDS) and gripper post-processing.

Statistics file layout (official ``dataset_statistics.json`` / ``norm_stats``)::

    {"<dataset>": {"action":  {"q01": [...], "q99": [...], "min": [...], "max": [...], "mask": [...],
                               "mean": [...], "std": [...]},
                   "proprio": {...same, mask optional...},
                   "num_transitions": int, "num_trajectories": int}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

EPS = 1e-8


@dataclass
class BoundsStats:
    low: np.ndarray  # q01 (bounds_q99) or min (bounds)
    high: np.ndarray  # q99 or max
    mask: np.ndarray  # bool; False = dimension passes through unchanged
    const: Optional[np.ndarray] = None  # bool; min == max in the data (training maps these dims to 0)

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])


def _bounds(entry: Dict[str, Any], kind: str, where: str) -> BoundsStats:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping of statistics, got {type(entry).__name__}")
    lo_key, hi_key = ("q01", "q99") if kind == "bounds_q99" else ("min", "max")
    for k in (lo_key, hi_key):
        if k not in entry:
            raise ValueError(f"{where}: missing {k!r} (needed for {kind} normalization)")
    lo = np.asarray(entry[lo_key], dtype=np.float64).reshape(-1)
    hi = np.asarray(entry[hi_key], dtype=np.float64).reshape(-1)
    if lo.shape != hi.shape:
        raise ValueError(f"{where}: {lo_key} and {hi_key} have different lengths ({lo.size} vs {hi.size})")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"{where}: non-finite {lo_key}/{hi_key} values")
    mask = entry.get("mask")
    mask = np.ones_like(lo, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
    if mask.shape != lo.shape:
        raise ValueError(f"{where}: mask has {mask.size} entries, expected {lo.size}")
    const = None
    if "min" in entry and "max" in entry:
        mn = np.asarray(entry["min"], dtype=np.float64).reshape(-1)
        mx = np.asarray(entry["max"], dtype=np.float64).reshape(-1)
        if mn.shape == lo.shape and mx.shape == lo.shape:
            const = mn == mx
    return BoundsStats(lo, hi, mask, const)


class Normalizer:
    """Maps actions/proprio to [-1, 1] with per-dimension bounds; masked-off dims pass through."""

    def __init__(self, action: BoundsStats, proprio: Optional[BoundsStats], kind: str = "bounds_q99", key: str = ""):
        if kind not in ("bounds_q99", "bounds"):
            raise ValueError(f"unsupported normalization type {kind!r}")
        self.action, self.proprio, self.kind, self.key = action, proprio, kind, key

    @classmethod
    def from_stats(
        cls, stats: Dict[str, Any], kind: str = "bounds_q99", key: Optional[str] = None, where: str = "statistics"
    ) -> "Normalizer":
        if not isinstance(stats, dict) or not stats:
            raise ValueError(f"{where}: expected a non-empty mapping")
        if "action" in stats and isinstance(stats["action"], dict):  # single-dataset layout
            entry, key = stats, key or ""
        else:
            if key is None:
                if len(stats) != 1:
                    raise ValueError(
                        f"{where}: holds statistics for several datasets {sorted(stats)}; choose one (unnorm_key)"
                    )
                key = next(iter(stats))
            if key not in stats:
                raise ValueError(f"{where}: no dataset {key!r}; available: {sorted(stats)}")
            entry = stats[key]
        if not isinstance(entry, dict) or "action" not in entry:
            raise ValueError(f"{where}: dataset {key!r} has no 'action' statistics")
        action = _bounds(entry["action"], kind, f"{where}[{key}].action")
        proprio = _bounds(entry["proprio"], kind, f"{where}[{key}].proprio") if "proprio" in entry else None
        return cls(action, proprio, kind, key)

    @classmethod
    def from_file(cls, path: Union[str, Path], kind: str = "bounds_q99", key: Optional[str] = None) -> "Normalizer":
        path = Path(path)
        try:
            stats = json.loads(path.read_text())
        except Exception as e:
            raise ValueError(f"{path}: cannot read statistics: {e}") from e
        return cls.from_stats(stats, kind, key, where=str(path))

    # ----- maths (float64 numpy, broadcast over leading dims) -----
    @staticmethod
    def _norm(x: np.ndarray, s: BoundsStats) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return 2.0 * (x - s.low) / (s.high - s.low + EPS) - 1.0

    @staticmethod
    def _unnorm(y: np.ndarray, s: BoundsStats) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        x = 0.5 * (y + 1.0) * (s.high - s.low + EPS) + s.low
        return np.where(s.mask, x, y)

    def normalize_action(self, a: np.ndarray) -> np.ndarray:
        """Training-side, like the official RLDS pipeline: masked dims are mapped and clipped to [-1, 1],
        masked-off dims pass through unclipped, dims with min == max become 0."""
        a = np.asarray(a, dtype=np.float64)
        y = np.where(self.action.mask, np.clip(self._norm(a, self.action), -1.0, 1.0), a)
        const = self.action.const if self.action.const is not None else self.action.high == self.action.low
        return np.where(const, 0.0, y)

    def unnormalize_action(self, y: np.ndarray) -> np.ndarray:
        return self._unnorm(y, self.action)

    def normalize_proprio(self, p: np.ndarray) -> np.ndarray:
        """Inference-side, like the official eval: mapped where masked, then everything clipped to [-1, 1]."""
        if self.proprio is None:
            raise ValueError("statistics have no 'proprio' entry")
        p = np.asarray(p, dtype=np.float64)
        return np.clip(np.where(self.proprio.mask, self._norm(p, self.proprio), p), -1.0, 1.0)

    def to_stats(self) -> Dict[str, Any]:
        lo, hi = ("q01", "q99") if self.kind == "bounds_q99" else ("min", "max")
        e: Dict[str, Any] = {
            "action": {lo: self.action.low.tolist(), hi: self.action.high.tolist(), "mask": self.action.mask.tolist()}
        }
        if self.proprio is not None:
            e["proprio"] = {lo: self.proprio.low.tolist(), hi: self.proprio.high.tolist()}
        return {self.key or "dataset": e}


def postprocess_gripper(
    actions: np.ndarray, gripper_index: int = -1, invert: bool = True, binarize: bool = True
) -> np.ndarray:
    """Official LIBERO eval post-processing of the gripper dimension (returns a copy).

    The model predicts g in [0, 1] (1 = open). It is mapped to [-1, 1] (2g - 1), binarised with
    ``np.sign`` (like the reference, exactly g = 0.5 gives 0), and optionally inverted
    (LIBERO: -1 = open, +1 = close).
    """
    out = np.array(actions, dtype=np.float64, copy=True)
    g = 2.0 * out[..., gripper_index] - 1.0
    if binarize:
        g = np.sign(g)
    if invert:
        g = -g
    out[..., gripper_index] = g
    return out
