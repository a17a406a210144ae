"""Request keys: which job a provider call belongs to, without knowing job ids.

A key is a short hash of the text that stays the same across every call of one job: the first
``user`` message of a chat request (a repair round of an extraction repeats it, with the
assistant's answer and the correction after it) and the first input of an embeddings request.
Tests compute the key of their own prompts with the same functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from aijobs.devtools.simulator.text import message_text

KEY_HEX_DIGITS = 12
"""Length of a key: 48 bits of BLAKE2b, plenty to tell a test run's prompts apart."""


def request_key_for_text(text: str) -> str:
    """Key of one text (what both functions below hash)."""
    data = text.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=KEY_HEX_DIGITS // 2).hexdigest()


def request_key_for_messages(messages: Any) -> str:
    """Key of a chat request: its first ``user`` message's text ('' when there is none).

    ``messages`` is what the request sends (a list of ``{"role", "content"}`` objects; text
    content parts are joined with spaces, as the simulator reads them).
    """
    if isinstance(messages, Sequence) and not isinstance(messages, str):
        for message in messages:
            if isinstance(message, Mapping) and message.get("role") == "user":
                return request_key_for_text(message_text(message.get("content")))
    return request_key_for_text("")


def request_key_for_inputs(inputs: Any) -> str:
    """Key of an embeddings request: its first input (a string, or a token array).

    ``inputs`` is the request's ``input``: a string, a list of strings, a token array or a
    list of token arrays. A string input has the same key as a chat prompt of that text.
    """
    first: Any = inputs
    is_list = isinstance(inputs, Sequence) and not isinstance(inputs, str)
    if is_list and inputs and not _is_token_array(inputs):
        first = inputs[0]
    if isinstance(first, str):
        return request_key_for_text(first)
    if isinstance(first, Sequence) and _is_token_array(first):
        # NUL cannot start a prompt sent as JSON text by accident, so arrays never clash.
        return request_key_for_text("\0tokens:" + ",".join(str(t) for t in first))
    return request_key_for_text("")


def _is_token_array(value: Sequence[Any]) -> bool:
    return bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
