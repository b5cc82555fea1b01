"""Observation side of the policy: image decoding, input synchronisation, instruction checks.

Pure Python (numpy); the policy node feeds ROS messages' fields into these.
"""

from .images import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    encode_compressed,
    encode_rgb,
)
from .instruction import DEFAULT_MAX_CHARS, InstructionError, validate_instruction
from .sync import InputRejected, Observation, ObservationAssembler, ObservationRefused

__all__ = [
    "SUPPORTED_ENCODINGS",
    "DEFAULT_MAX_CHARS",
    "ImageDecodeError",
    "InputRejected",
    "InstructionError",
    "Observation",
    "ObservationAssembler",
    "ObservationRefused",
    "decode_compressed",
    "decode_image",
    "encode_compressed",
    "encode_rgb",
    "validate_instruction",
]
