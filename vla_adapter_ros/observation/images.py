"""Decode `sensor_msgs/Image` payloads to RGB arrays without cv_bridge.

Works on the message's fields, not the message, so it needs no ROS import and is easy to test.
Every malformed input raises `ImageDecodeError` with a message that says what is wrong.
"""

from __future__ import annotations

import numpy as np

# encoding -> (channels, how to get RGB from the decoded HxWxC uint8 array)
_ENCODINGS = {
    "rgb8": (3, lambda a: a),
    "bgr8": (3, lambda a: a[..., ::-1]),
    "rgba8": (4, lambda a: a[..., :3]),
    "bgra8": (4, lambda a: a[..., 2::-1]),
    "mono8": (1, lambda a: np.repeat(a, 3, axis=2)),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into an RGB frame."""


def decode_image(encoding: str, height: int, width: int, step: int, data) -> np.ndarray:
    """Return the image as a C-contiguous (height, width, 3) uint8 RGB array (a copy).

    `data` is the message's byte buffer (bytes, bytearray, array.array or memoryview); `step` is
    the row length in bytes, which may include padding.
    """
    if encoding not in _ENCODINGS:
        raise ImageDecodeError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    channels, to_rgb = _ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    if step < width * channels:
        raise ImageDecodeError(f"row step {step} B is shorter than width*channels = {width * channels} B")
    buffer = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if buffer.size != step * height:
        raise ImageDecodeError(
            f"{encoding} {width}x{height} with step {step} needs {step * height} bytes, got {buffer.size}"
        )
    rows = buffer.reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    return np.ascontiguousarray(to_rgb(pixels))


def encode_rgb(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[int, int, int, bytes]:
    """The inverse of `decode_image` for tests and simulators: (height, width, step, data)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[..., ::-1]
    elif encoding in ("rgba8", "bgra8"):
        color = rgb if encoding == "rgba8" else rgb[..., ::-1]
        alpha = np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)
        pixels = np.concatenate([color, alpha], axis=2)
    elif encoding == "mono8":
        pixels = rgb.mean(axis=2, keepdims=True).round().astype(np.uint8)
    else:
        raise ValueError(f"unsupported encoding {encoding!r}")
    pixels = np.ascontiguousarray(pixels)
    height, width, channels = pixels.shape
    return height, width, width * channels, pixels.tobytes()
