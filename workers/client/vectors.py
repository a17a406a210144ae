"""An embedding job's vectors, held as the float32 bytes they travel as."""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aijobs.client.errors import NoResult


@dataclass(frozen=True, slots=True)
class Embeddings:
    """``count`` vectors of ``dimensions`` float32 values, in input order.

    ``float32le`` is every vector's little-endian float32 bytes, one after another: what
    ``numpy.frombuffer(e.float32le, "<f4").reshape(e.count, e.dimensions)`` takes. Index
    or iterate for lists of floats.
    """

    count: int
    dimensions: int
    float32le: bytes

    @classmethod
    def from_base64(cls, vectors: list[str], dimensions: int) -> Embeddings:
        """From the API's ``?format=base64`` list (one base64 string per vector)."""
        blob = b"".join(base64.b64decode(v) for v in vectors)
        if len(blob) != len(vectors) * dimensions * 4:
            raise ValueError(f"vectors are not {len(vectors)} x {dimensions} float32 values")
        return cls(len(vectors), dimensions, blob)

    @classmethod
    def from_result(cls, job_id: str, status: str, result: Mapping[str, Any] | None) -> Embeddings:
        """From a finished embedding job's ``result`` (fetched with ``format=base64``)."""
        if status != "succeeded" or not result or "embeddings" not in result:
            raise NoResult(job_id, status)
        return cls.from_base64(list(result["embeddings"]), int(result["dimensions"]))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> list[float]:
        if not -self.count <= index < self.count:
            raise IndexError(index)
        width = self.dimensions * 4
        start = (index % self.count) * width
        return _floats(self.float32le[start : start + width])

    def __iter__(self) -> Iterator[list[float]]:
        for index in range(self.count):
            yield self[index]

    def tolist(self) -> list[list[float]]:
        """Every vector as a list of floats."""
        values = _floats(self.float32le)
        d = self.dimensions
        return [values[i : i + d] for i in range(0, len(values), d)]


def _floats(blob: bytes) -> list[float]:
    values = array("f")
    values.frombytes(blob)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        values.byteswap()
    return values.tolist()
