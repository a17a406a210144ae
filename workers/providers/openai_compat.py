"""Any OpenAI-compatible endpoint, through the official ``openai`` SDK.

The SDK builds and authenticates requests and raises its typed errors; our
policy does the retrying (``max_retries=0``). For streams we read the raw bytes
(``with_streaming_response``), cut them into SSE lines at CR/LF only (``aijobs.sse``:
a model's U+2028 is text, not a line end) and ``json.loads`` them: building a typed
``ChatCompletionChunk`` per token costs ~9x the CPU of the whole wire path.

Every call can be cut by the attempt's watchdog (``CallGuard``): a provider that keeps
the connection alive without finishing ends with ``timeout``, not never.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import openai

from aijobs.errors import ErrorCode
from aijobs.providers.base import (
    CallGuard,
    ChatOutcome,
    ChatRequest,
    EmbeddingBatch,
    ProviderError,
)
from aijobs.providers.errors import TransportError, classify
from aijobs.sse import iter_lines
from aijobs.vectors import to_float32_bytes

_DATA = b"data:"


class OpenAIProvider:
    """Chat completions (streamed) against one OpenAI-compatible base URL."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout_s: float,
        connect_timeout_s: float = 10.0,
        name: str = "openai",
        max_connections: int = 1000,
        continuous_usage: bool = False,
    ) -> None:
        self.name = name
        #: vLLM's ``continuous_usage_stats``: usage in every chunk (see Settings).
        self.stream_options: dict[str, bool] = {"include_usage": True}
        if continuous_usage:
            self.stream_options["continuous_usage_stats"] = True
        timeout = openai.Timeout(timeout_s, connect=connect_timeout_s)
        self.client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultHttpxClient(limits=_limits(max_connections), timeout=timeout),
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def stream_chat(
        self,
        request: ChatRequest,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
        guard: CallGuard | None = None,
    ) -> ChatOutcome:
        """Stream a chat completion; see ``Provider.stream_chat``."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": self.stream_options,
            **request.options(),
            **(request.extra_body or {}),
        }
        outcome = ChatOutcome()
        try:
            create = self.client.chat.completions.with_streaming_response.create
            # The whole body goes as ``extra_body``, which the SDK sends as it is. Its
            # named arguments it first walks against their TypedDicts (``maybe_transform``):
            # that changes nothing in a body of plain JSON values like ours, and costs
            # ~300 µs for two messages and ~2.4 ms for twenty, on every call. The SDK
            # still builds, authenticates and sends the request, and raises its errors.
            with (
                create(model=request.model, messages=(), stream=True, extra_body=body) as response,
                _guarded(guard, response.close),
            ):
                lines = iter_lines(response.iter_bytes())
                done = _read_stream(lines, outcome, on_text, should_stop)
        except ProviderError as exc:
            exc.usage = outcome.usage  # what the stream said it cost before it failed
            raise
        except Exception as exc:
            failure = _failure(exc, guard)
            failure.usage = outcome.usage
            raise failure from exc
        if not done and not outcome.stopped:
            failure = ProviderError(
                "stream_interrupted",
                "the provider's stream ended before it was complete",
                retryable=True,
            )
            failure.usage = outcome.usage
            raise failure
        return outcome

    def embed(
        self,
        model: str,
        inputs: list[str],
        dimensions: int | None,
        guard: CallGuard | None = None,
    ) -> EmbeddingBatch:
        """Embed ``inputs`` in one request; see ``Provider.embed``.

        Asks for base64 and keeps the float32 bytes as they come: no float is parsed.
        """
        sent: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "base64"}
        if dimensions is not None:
            sent["dimensions"] = dimensions
        try:
            create = self.client.embeddings.with_streaming_response.create
            # As in ``stream_chat``: the SDK's walk of 2,048 inputs costs ~15 ms a request.
            with (
                create(
                    model=model, input=(), encoding_format="base64", extra_body=sent
                ) as response,
                _guarded(guard, response.close),
            ):
                content = response.read()
            body = json.loads(content)
        except ValueError as exc:
            raise ProviderError(
                ErrorCode.PROVIDER_ERROR, "the provider's answer is not JSON", retryable=True
            ) from exc
        except ProviderError:
            raise
        except Exception as exc:
            raise _failure(exc, guard) from exc
        return decode_embeddings(body, expected=len(inputs))


def decode_embeddings(body: dict[str, Any], *, expected: int) -> EmbeddingBatch:
    """Order an embeddings answer by index and join its vectors as float32 bytes."""
    items = sorted(body.get("data") or [], key=lambda item: item["index"])
    if len(items) != expected or any(item["index"] != i for i, item in enumerate(items)):
        raise ProviderError(
            "provider_error",
            f"the provider returned {len(items)} embeddings for {expected} inputs",
            retryable=True,
        )
    vectors: list[bytes] = []
    for item in items:
        value = item["embedding"]
        vectors.append(
            base64.b64decode(value) if isinstance(value, str) else to_float32_bytes(value)
        )
    width = len(vectors[0]) if vectors else 0
    if any(len(v) != width for v in vectors):
        raise ProviderError("provider_error", "embeddings of unequal length", retryable=True)
    usage = body.get("usage") or {}
    return EmbeddingBatch(
        vectors=b"".join(vectors),
        dimensions=width // 4,
        count=len(vectors),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
    )


def _guarded(guard: CallGuard | None, close: Callable[[], None]) -> AbstractContextManager[None]:
    """While reading a response: the watchdog may cut it with ``close``."""
    return guard.watch(close) if guard is not None else nullcontext()


def _failure(exc: BaseException, guard: CallGuard | None) -> ProviderError:
    """The classified error of a failed call; a call the watchdog cut is a timeout."""
    if guard is not None and guard.expired:
        return ProviderError(ErrorCode.TIMEOUT, guard.expired, retryable=True)
    if isinstance(exc, openai.OpenAIError | TransportError):
        return classify(exc)
    if isinstance(exc, ValueError):  # a chunk that is not JSON
        return ProviderError(
            ErrorCode.STREAM_INTERRUPTED, "the provider sent a chunk that is not JSON",
            retryable=True,
        )  # fmt: skip
    raise exc


def _read_stream(
    lines: Any,
    outcome: ChatOutcome,
    on_text: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> bool:
    """Consume SSE lines into ``outcome``; True once ``[DONE]`` arrived."""
    loads = json.loads
    refusal: list[str] = []
    for line in lines:
        if not line.startswith(_DATA):
            continue  # blank separators, comments, "event:" lines
        payload = line[len(_DATA) :].strip()
        if payload == b"[DONE]":
            if refusal:
                outcome.refusal = "".join(refusal)
            return outcome.finish_reason is not None
        chunk = loads(payload)
        if "error" in chunk and not chunk.get("choices"):
            error = chunk["error"] or {}
            raise ProviderError(
                str(error.get("code") or error.get("type") or ErrorCode.PROVIDER_ERROR),
                str(error.get("message") or "the provider reported an error mid-stream"),
                retryable=error.get("type") == "server_error",
            )
        usage = chunk.get("usage")
        if usage:  # the last chunk's, or every chunk's with continuous usage
            details = usage.get("prompt_tokens_details") or {}
            outcome.usage = {
                "prompt_tokens": int(usage.get("prompt_tokens") or 0),
                "completion_tokens": int(usage.get("completion_tokens") or 0),
                "total_tokens": int(usage.get("total_tokens") or 0),
                "cached_tokens": int(details.get("cached_tokens") or 0),
            }
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                on_text(text)
            if delta.get("refusal"):
                refusal.append(delta["refusal"])
            if choice.get("finish_reason"):
                outcome.finish_reason = choice["finish_reason"]
        if should_stop():
            outcome.stopped = True
            return False
    if refusal:
        outcome.refusal = "".join(refusal)
    return False


def _limits(max_connections: int) -> Any:
    try:
        import httpx2 as http
    except ImportError:  # pragma: no cover
        import httpx as http  # type: ignore[no-redef]
    return http.Limits(max_connections=max_connections, max_keepalive_connections=100)
