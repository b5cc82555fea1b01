"""Validation of natural-language instructions before they reach the model."""

from __future__ import annotations

import unicodedata

DEFAULT_MAX_CHARS = 256


class InstructionError(ValueError):
    """An instruction the policy refuses; the message says why."""


def validate_instruction(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Return the instruction with surrounding whitespace stripped and inner runs collapsed.

    Refuses non-strings, empty text, text longer than `max_chars` and text with control or other
    non-printable characters (a newline inside an instruction is almost always a bug upstream).
    """
    if not isinstance(text, str):
        raise InstructionError(f"instruction must be a string, got {type(text).__name__}")
    cleaned = text.strip()
    if not cleaned:
        raise InstructionError("instruction is empty")
    if len(cleaned) > max_chars:
        raise InstructionError(f"instruction is {len(cleaned)} characters long; the limit is {max_chars}")
    for index, char in enumerate(cleaned):
        if not char.isprintable() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise InstructionError(f"instruction has a non-printable character {char!r} at position {index}")
    return " ".join(cleaned.split())
