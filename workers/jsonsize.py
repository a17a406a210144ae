"""Bounds on JSON values checked without recursion, so no input can exhaust the stack."""

from __future__ import annotations

import json
from typing import Any


def deeper_than(value: Any, limit: int) -> bool:
    """True if ``value`` nests lists and objects more than ``limit`` levels deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in current.values())
        elif isinstance(current, list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in current)
    return False


def json_bytes(value: Any) -> int:
    """The size of ``value`` as compact JSON, in bytes (check the depth first)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
