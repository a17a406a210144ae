"""Deterministic answer text: word tokens drawn from a small vocabulary.

The same messages always give the same words. One streamed chunk is one token is one word;
every word except the first carries a leading space, so ``"".join(tokens)`` is the answer.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

ECHO_MARKER = "[[echo]]"
"""A prompt containing this marker is answered with the last user message's text."""

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."
"""Text of simulated refusals."""

VOCABULARY: tuple[str, ...] = (
    "the", "a", "system", "job", "token", "stream", "worker", "queue", "result", "model",
    "answer", "data", "request", "value", "quickly", "carefully", "simple", "robust", "every",
    "signal", "batch", "vector", "schema", "prompt", "retry", "latency", "window", "limit",
    "is", "was", "will", "can", "should", "may", "and", "or", "but", "with", "from", "into",
    "over", "under", "after", "before", "this", "that", "these", "those", "river", "mountain",
    "garden", "lantern", "harbor", "meadow", "compass", "thunder", "silver", "amber", "quiet",
    "bright", "gentle", "steady", "north", "south",
)  # fmt: skip


def message_text(content: Any) -> str:
    """Return the text of a chat message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return ""


def prompt_seed(messages: Sequence[Any], salt: str = "") -> int:
    """Return a stable 64-bit seed from the messages (and an optional salt)."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str) + salt
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "big")


def is_echo(messages: Sequence[Any]) -> bool:
    """Whether any message contains :data:`ECHO_MARKER`."""
    return any(
        isinstance(m, Mapping) and ECHO_MARKER in message_text(m.get("content")) for m in messages
    )


def last_user_text(messages: Sequence[Any]) -> str:
    """Return the text of the last ``user`` message ('' if none)."""
    for m in reversed(messages):
        if isinstance(m, Mapping) and m.get("role") == "user":
            return message_text(m.get("content"))
    return ""


def split_tokens(text: str) -> list[str]:
    """Split text into word tokens: the first bare, the others with one leading space."""
    words = text.split()
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def generated_tokens(seed: int, count: int) -> list[str]:
    """Return ``count`` word tokens chosen deterministically from :data:`VOCABULARY`."""
    rng = random.Random(seed)
    words = rng.choices(VOCABULARY, k=max(0, count))
    if words:
        words[0] = words[0].capitalize()
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


LINE_BREAKERS: tuple[str, ...] = ("\u2028", "\u2029", "\x85")
"""Characters that ``str.splitlines`` (and other naive splitters) take for line ends, but
that JSON leaves unescaped: LINE SEPARATOR, PARAGRAPH SEPARATOR and NEXT LINE."""

ODD_WORD_GROUPS: tuple[tuple[str, ...], ...] = (
    ("café", "naïve", "Zürich", "façade", "smørrebrød", "Ångström"),
    ("東京", "数据", "処理", "작업"),
    ("🚀", "👩\u200d💻", "🇫🇷", "👍🏽"),
    ("e\u0301te\u0301", "n\u0303o", "Z\u0351\u0336a\u0327"),
    ("очередь", "δεδομένα", "שלום", "مرحبا", "zero\u200bwidth", "bom\ufeffmid", "tab\tin"),
)  # fmt: skip
"""Non-ASCII words by kind: accents; CJK; emoji (astral, with ZWJ, flags, skin tones);
combining marks; other scripts and zero-width characters. (The tab travels escaped; it is
there for clients that split on it.)"""


def odd_tokens(seed: int, count: int) -> list[str]:
    """Like :func:`generated_tokens`, with at least half the words replaced by odd ones.

    The first replacements carry one :data:`LINE_BREAKERS` character each (in a seeded
    order): inside a word (``"odd\u2028word"``), as a whole token (``" \u2029"``) and leading
    a token, right after its space (``" \x85next"``). The next take one word of each of
    :data:`ODD_WORD_GROUPS`, the rest any of them; so with ``count >= 8`` every kind appears.
    Tokens keep the one-leading-space rule.
    """
    tokens = generated_tokens(seed, count)
    rng = random.Random(seed ^ 0x0DD7E47)
    breakers = list(LINE_BREAKERS)
    rng.shuffle(breakers)
    forms = [f"odd{breakers[0]}word", breakers[1], f"{breakers[2]}next"]
    forms += [rng.choice(group) for group in ODD_WORD_GROUPS]
    everything = [word for group in ODD_WORD_GROUPS for word in group]
    positions = rng.sample(range(count), k=max(min(count, len(forms)), count // 2))
    for n, i in enumerate(positions):
        word = forms[n] if n < len(forms) else rng.choice(everything)
        tokens[i] = word if i == 0 else " " + word
    return tokens


def echo_tokens(messages: Sequence[Any]) -> list[str]:
    """Tokens of the last user message with the echo marker removed."""
    return split_tokens(last_user_text(messages).replace(ECHO_MARKER, " "))


def json_pieces(text: str, seed: int) -> list[str]:
    """Split a JSON text into deterministic pieces of 4 to 8 characters (streamed as tokens)."""
    rng = random.Random(seed)
    pieces: list[str] = []
    i = 0
    while i < len(text):
        step = rng.randint(4, 8)
        pieces.append(text[i : i + step])
        i += step
    return pieces


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """Rough prompt token count: ~4 characters per token plus a few per message."""
    total = 3
    for m in messages:
        if isinstance(m, Mapping):
            total += 4 + (len(message_text(m.get("content"))) + 3) // 4
    return total


def count_text_tokens(text: str) -> int:
    """Rough token count of one embeddings input string (at least 1)."""
    return max(1, (len(text) + 3) // 4)
