"""Writing an embedding job's vectors to a file: ``.npy`` or base64 JSON.

The .npy format (version 1.0) is written by hand, so numpy is not needed to make one:
a magic string, a header dict padded to a multiple of 64 bytes, then the data. The data
is the float32 little-endian bytes exactly as the API sent them.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

from aijobs.client import Embeddings

NPY_MAGIC = b"\x93NUMPY\x01\x00"


def npy_header(count: int, dimensions: int) -> bytes:
    """The .npy 1.0 header of a ``count`` x ``dimensions`` little-endian float32 array."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({count}, {dimensions}), }}"
    # Magic (8) + length (2) + header + newline: padded with spaces to 64 bytes.
    padding = -(len(NPY_MAGIC) + 2 + len(header) + 1) % 64
    text = (header + " " * padding + "\n").encode("latin1")
    return NPY_MAGIC + struct.pack("<H", len(text)) + text


def write_vectors(path: Path, embeddings: Embeddings, *, model: str) -> str:
    """Write the vectors to ``path``; the format written (``npy`` or ``json``)."""
    if path.suffix.lower() == ".npy":
        with path.open("wb") as f:
            f.write(npy_header(embeddings.count, embeddings.dimensions))
            f.write(embeddings.float32le)
        return "npy"
    width = embeddings.dimensions * 4
    blob = embeddings.float32le
    document = {
        "model": model,
        "count": embeddings.count,
        "dimensions": embeddings.dimensions,
        "encoding": "base64 float32 little-endian, one string per vector",
        "embeddings": [
            base64.b64encode(blob[i : i + width]).decode() for i in range(0, len(blob), width)
        ],
    }
    path.write_text(json.dumps(document) + "\n")
    return "json"
