"""Decode `sensor_msgs/Image` and `sensor_msgs/CompressedImage` payloads to RGB arrays without cv_bridge.

Works on the message's fields, not the message, so it needs no ROS import and is easy to test.
Every malformed input raises `ImageDecodeError` with a message that says what is wrong.
Compressed images (JPEG / PNG, as image_transport's `compressed` plugin and the camera drivers
publish them) are decoded with Pillow (OpenCV is not needed).
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


# formats of sensor_msgs/CompressedImage.format that are not colour images we can use
_UNSUPPORTED_COMPRESSED = ("compresseddepth", "16uc1", "32fc1", "16sc1", "mono16", "rgb16", "bgr16")
COMPRESSED_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}


def decode_compressed(fmt: str, data, max_side: int = 4096) -> np.ndarray:
    """A `sensor_msgs/CompressedImage` (JPEG or PNG) as a C-contiguous (height, width, 3) uint8 RGB array.

    `fmt` is the message's format field ("jpeg", "png", or image_transport's "bgr8; jpeg compressed
    bgr8"); the codec is taken from the data itself. A JPEG/PNG file stores its colours in a defined
    order, so a "bgr8" in the format needs no channel swap. Depth images (compressedDepth, 16-bit) are
    refused, and so are images larger than `max_side` pixels per side (checked before decoding)."""
    from PIL import Image as PILImage

    lowered = (fmt or "").lower()
    if any(word in lowered for word in _UNSUPPORTED_COMPRESSED):
        raise ImageDecodeError(f"unsupported compressed image format {fmt!r}: need 8-bit colour or mono "
                               "JPEG / PNG (a depth stream?)")
    buffer = memoryview(data).cast("B").tobytes() if not isinstance(data, bytes) else data
    if not buffer:
        raise ImageDecodeError(f"compressed image ({fmt!r}) has no data")
    codec = next((name for magic, name in COMPRESSED_MAGIC.items() if buffer.startswith(magic)), None)
    if codec is None:
        raise ImageDecodeError(f"compressed image ({fmt!r}, {len(buffer)} B) is neither JPEG nor PNG "
                               f"(starts with {buffer[:8].hex()})")
    import io

    try:
        with PILImage.open(io.BytesIO(buffer), formats=[codec.upper()]) as image:
            width, height = image.size  # read from the header, before any pixel is decoded
            if width > max_side or height > max_side:
                raise ImageDecodeError(f"compressed {codec} image is {width}x{height}, more than {max_side} px "
                                       "per side")
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise ImageDecodeError(f"compressed {codec} image has {image.mode} pixels (16-bit or float); "
                                       "need 8-bit colour or mono")
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except Exception as exc:  # truncated / corrupt data: PIL raises OSError, SyntaxError, ValueError, ...
        raise ImageDecodeError(f"cannot decode compressed {codec} image ({len(buffer)} B): "
                               f"{type(exc).__name__}: {exc}") from None
    return np.ascontiguousarray(rgb)


def encode_compressed(rgb: np.ndarray, codec: str = "jpeg", quality: int = 90) -> bytes:
    """JPEG or PNG bytes of an HxWx3 RGB array (tests and simulators: the inverse of `decode_compressed`)."""
    import io

    from PIL import Image as PILImage

    out = io.BytesIO()
    options = {"quality": quality} if codec == "jpeg" else {}
    PILImage.fromarray(np.asarray(rgb, dtype=np.uint8), "RGB").save(out, format=codec.upper(), **options)
    return out.getvalue()


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
