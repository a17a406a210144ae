"""Vectors stored compactly: little-endian float32 bytes, decoded only when served."""

from __future__ import annotations

import base64
import sys
from array import array


def to_float32_bytes(values: list[float]) -> bytes:
    """One vector as little-endian float32 bytes."""
    packed = array("f", values)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        packed.byteswap()
    return packed.tobytes()


def split_vectors(blob: bytes, dimensions: int) -> list[bytes]:
    """Cut concatenated float32 vectors into one bytes object per vector."""
    width = dimensions * 4
    return [blob[i : i + width] for i in range(0, len(blob), width)]


def as_floats(vector: bytes) -> list[float]:
    """A float32 vector as a list of floats (each the exact value of its float32)."""
    values = array("f")
    values.frombytes(vector)
    if sys.byteorder != "little":  # pragma: no cover
        values.byteswap()
    return values.tolist()


def as_base64(vector: bytes) -> str:
    """A float32 vector as base64, the way OpenAI's ``encoding_format=base64`` sends it."""
    return base64.b64encode(vector).decode()
