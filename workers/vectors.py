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


def as_base64(vector: bytes) -> str:
    """A float32 vector as base64, the way OpenAI's ``encoding_format=base64`` sends it."""
    return base64.b64encode(vector).decode()


def json_vectors(blob: bytes, dimensions: int, *, base64_format: bool) -> str:
    """A batch of float32 vectors as the comma-separated members of a JSON array.

    Floats are written with float32's 8 significant digits ("%.8g"): half the bytes of
    a double's shortest repr, and twice as fast to produce, for the same float32 values.
    """
    if base64_format:
        return ",".join(f'"{as_base64(v)}"' for v in split_vectors(blob, dimensions))
    values = array("f")
    values.frombytes(blob)
    if sys.byteorder != "little":  # pragma: no cover
        values.byteswap()
    text = ["%.8g" % v for v in values]  # noqa: UP031 - the fastest float formatting here
    return ",".join(
        "[" + ",".join(text[i : i + dimensions]) + "]" for i in range(0, len(text), dimensions)
    )
