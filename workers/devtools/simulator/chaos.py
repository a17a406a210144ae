"""Random faults: each chat/embeddings request draws its outcome from a seeded RNG.

A request's draw comes from its own ``random.Random``, seeded by a hash of the chaos seed and
the request's number (or, with ``by_key``, of its key and how many requests with that key came
before). So the n-th request's outcome depends on nothing else: not on what earlier requests
drew, and not on Python's per-process hash seed.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from typing import Literal, cast

from aijobs.devtools.simulator.config import CHAOS_FAULT_KINDS, ChaosConfig
from aijobs.devtools.simulator.faults import FaultSpec

ChaosKind = Literal["rate_limit", "server_error", "cut", "trickle", "stall"]

#: Server error statuses and their weights: mostly 500, as seen from real providers.
SERVER_ERROR_STATUSES: tuple[tuple[int, float], ...] = ((500, 0.6), (502, 0.2), (503, 0.2))


@dataclass(frozen=True, slots=True)
class ChaosDraw:
    """One request's draw: the fault kind (if any), odd text, and every parameter.

    Attributes:
        kind: the fault, or ``None`` for a normal answer.
        odd_text: whether generated text should be the odd kind.
        retry_after_s: ``rate_limit``: advertised wait.
        status: ``server_error``: 500, 502 or 503.
        interval_s: ``trickle``: pause between chunks; ``stall``: between keep-alives.
        stall_after: ``stall``: content chunks sent before the stall.
        cut_position: ``cut``: where in the answer the connection drops, as a fraction in
            ``[0, 1)`` of the content chunks (resolved once the answer's length is known).
    """

    kind: ChaosKind | None
    odd_text: bool
    retry_after_s: float
    status: int
    interval_s: float
    stall_after: int
    cut_position: float

    def as_fault(self, content_chunks: int) -> FaultSpec | None:
        """The scripted-fault equivalent of the ``cut``/``trickle``/``stall`` kinds, for an
        answer of ``content_chunks`` chunks (``None`` for the other kinds)."""
        if self.kind == "cut":
            after = min(content_chunks, int(self.cut_position * (content_chunks + 1)))
            return FaultSpec(kind="cut", after_chunks=after)
        if self.kind == "trickle":
            return FaultSpec(kind="trickle", interval_s=self.interval_s)
        if self.kind == "stall":
            return FaultSpec(
                kind="stall", after_chunks=self.stall_after, interval_s=self.interval_s
            )
        return None


def draw(config: ChaosConfig, rng: random.Random) -> ChaosDraw:
    """Map one request's RNG onto an outcome (always consumes the same draws)."""
    roll = rng.random()
    odd = rng.random() < config.odd_text
    retry_after_s = rng.uniform(config.retry_after_min_s, config.retry_after_max_s)
    statuses, weights = zip(*SERVER_ERROR_STATUSES, strict=True)
    status = rng.choices(statuses, weights)[0]
    trickle_s = rng.uniform(config.trickle_min_s, config.trickle_max_s)
    stall_after = rng.randint(0, config.stall_after_max_chunks)
    cut_position = rng.random()
    kind: ChaosKind | None = None
    threshold = 0.0
    for name in CHAOS_FAULT_KINDS:
        threshold += getattr(config, name)
        if roll < threshold:
            kind = cast(ChaosKind, name)
            break
    interval_s = config.stall_keepalive_s if kind == "stall" else trickle_s
    return ChaosDraw(
        kind=kind,
        odd_text=odd,
        retry_after_s=round(retry_after_s, 3),
        status=status,
        interval_s=round(interval_s, 3),
        stall_after=stall_after,
        cut_position=cut_position,
    )


class ChaosDice:
    """Hands out the draws of one chaos config, numbering requests from the last restart."""

    def __init__(self, config: ChaosConfig) -> None:
        """Start a fresh sequence for ``config``."""
        self.config = config
        self._requests = 0
        self._per_key: Counter[str] = Counter()

    def roll(self, key: str | None) -> ChaosDraw | None:
        """The next request's draw (``None`` when chaos is off)."""
        cfg = self.config
        if not cfg.enabled:
            return None
        if cfg.by_key:
            name = key or ""
            self._per_key[name] += 1
            label = f"{cfg.seed}/key/{name}/{self._per_key[name]}"
        else:
            self._requests += 1
            label = f"{cfg.seed}/seq/{self._requests}"
        digest = hashlib.blake2b(label.encode(), digest_size=8).digest()
        return draw(cfg, random.Random(int.from_bytes(digest, "big")))
