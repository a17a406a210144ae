"""Deterministic unit-norm embedding vectors (no numpy) and their JSON encoding.

A vector is the int8 bytes of ``shake_256(input)`` scaled to unit length. JSON floats are
written with 8 significant digits (float32 precision, like the real API) from a per-vector
table of at most 256 formatted values, which keeps a 2048 x 256 float answer cheap.
"""

from __future__ import annotations

import array
import base64
import hashlib
import json
import math
import sys
from collections.abc import Sequence

DEFAULT_DIMENSIONS = 1536
MODEL_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
MAX_INPUTS = 2048
_FMT = "{:.8g}".format


def model_dimensions(model: str) -> int:
    """Native vector size of ``model`` (1536 unless it is ``text-embedding-3-large``)."""
    return MODEL_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)


def input_key(item: str | list[int]) -> bytes:
    """Bytes hashed for one input (a string, or a list of token ids)."""
    if isinstance(item, str):
        return b"s" + item.encode()
    return b"t" + ",".join(map(str, item)).encode()


def _components(key: bytes, dimensions: int) -> tuple[array.array[int], float]:
    raw = array.array("b", hashlib.shake_256(key).digest(dimensions))
    return raw, 1.0 / (math.hypot(*raw) or 1.0)


def vector(key: bytes, dimensions: int) -> list[float]:
    """Unit-norm vector of ``dimensions`` floats derived from a hash of ``key``."""
    raw, inv = _components(key, dimensions)
    return [x * inv for x in raw]


def vector_json(key: bytes, dimensions: int) -> str:
    """:func:`vector` as a JSON array with 8 significant digits per value."""
    raw, inv = _components(key, dimensions)
    table = {b: _FMT(b * inv) for b in set(raw)}
    return "[" + ",".join([table[b] for b in raw]) + "]"


def vector_base64(key: bytes, dimensions: int) -> str:
    """:func:`vector` as little-endian float32 bytes, base64-encoded (what the SDK decodes)."""
    raw, inv = _components(key, dimensions)
    packed = array.array("f", [x * inv for x in raw])
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def response_json(
    inputs: Sequence[str | list[int]],
    model: str,
    dimensions: int,
    encoding_format: str,
    prompt_tokens: int,
) -> bytes:
    """The whole ``/v1/embeddings`` response body, serialised."""
    parts: list[str] = []
    for index, item in enumerate(inputs):
        key = input_key(item)
        if encoding_format == "base64":
            embedding = '"' + vector_base64(key, dimensions) + '"'
        else:
            embedding = vector_json(key, dimensions)
        parts.append(f'{{"object":"embedding","index":{index},"embedding":{embedding}}}')
    usage = json.dumps({"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens})
    return (
        '{"object":"list","data":[' + ",".join(parts) + '],"model":'
        + json.dumps(model, ensure_ascii=False) + ',"usage":' + usage + "}"
    ).encode()  # fmt: skip
