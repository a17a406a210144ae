"""``POST /v1/chat/completions``: deterministic answers, streamed or not, with faults."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aijobs.devtools.simulator import text as txt
from aijobs.devtools.simulator.admission import (
    Rejected,
    admit,
    client_left,
    missing_param,
    note_odd_text,
    pause,
    response_headers,
    serve,
)
from aijobs.devtools.simulator.errors import invalid_request
from aijobs.devtools.simulator.faults import FaultSpec, JsonMode
from aijobs.devtools.simulator.request_log import RequestRecord
from aijobs.devtools.simulator.schema_answer import SchemaError, build_value, violate
from aijobs.devtools.simulator.slow_bodies import StalledBody, TrickledBody
from aijobs.devtools.simulator.state import SimulatorState
from aijobs.devtools.simulator.streaming import (
    SYSTEM_FINGERPRINT,
    ChatStream,
    DropConnection,
    StreamPlan,
    billed_usage,
)

#: Fields of a chat request the request log keeps (``params``): what shapes the answer,
#: never the messages. Anything else outside the standard ones (a provider's own field,
#: sent through the SDK's ``extra_body``) is kept too.
_LOGGED_PARAMS = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop",
    "response_format", "reasoning_effort", "stream_options",
})  # fmt: skip
_STANDARD_PARAMS = frozenset({"model", "messages", "stream", "n", "user", "metadata"})


def _params(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k in _LOGGED_PARAMS or k not in _STANDARD_PARAMS}


def _prompt_key(messages: list[Any]) -> str:
    raw = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# --- chat completions ------------------------------------------------------------------------


def _int_param(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Rejected(invalid_request(f"Invalid '{name}': expected an integer >= 1.", name))
    return value


def _response_format(body: Mapping[str, Any]) -> tuple[JsonMode, Mapping[str, Any] | None]:
    fmt = body.get("response_format")
    if fmt is None:
        return None, None
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        return "json_object", None
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise missing_param("response_format.json_schema.name")
        schema = spec.get("schema")
        if not isinstance(schema, Mapping):
            raise Rejected(
                invalid_request(
                    f"Invalid schema for response_format '{spec['name']}': schema must be a "
                    "JSON Schema object.",
                    "response_format",
                )
            )
        try:
            build_value(schema)
        except (SchemaError, TypeError, ValueError, AttributeError) as exc:
            raise Rejected(
                invalid_request(
                    f"Invalid schema for response_format '{spec['name']}': {exc}",
                    "response_format",
                )
            ) from None
        return "json_schema", schema
    raise Rejected(
        invalid_request(
            "Invalid value for 'response_format.type': expected one of 'text', 'json_object' "
            "or 'json_schema'.",
            "response_format.type",
            "invalid_value",
        )
    )


def _answer(
    body: Mapping[str, Any],
    messages: list[Any],
    json_mode: JsonMode,
    schema: Mapping[str, Any] | None,
    fault: FaultSpec | None,
    max_tokens: int | None,
    default_tokens: int,
    odd: bool,
) -> tuple[list[str], str, str, bool]:
    """Return (tokens, finish_reason, field, odd_text) of the answer.

    ``odd`` asks for odd text (:func:`~aijobs.devtools.simulator.text.odd_tokens`) where the
    text is generated: plain answers and ``json_object`` ones, not echoes or schema answers
    (whose strings must keep their formats); the last item says whether it was used.
    """
    kind = fault.kind if fault is not None else None
    if kind == "refusal":
        return txt.split_tokens(txt.REFUSAL_TEXT), "stop", "refusal", False
    words_of = txt.odd_tokens if odd else txt.generated_tokens
    used_odd = False
    finish = "stop"
    salt = json.dumps(body.get("response_format"), sort_keys=True, default=str)
    seed = txt.prompt_seed(messages, salt)
    if json_mode is not None:
        if schema is not None:
            value: Any = build_value(schema, seed)
            if kind == "schema_violation":
                value = violate(schema, value)
        else:
            words = words_of(seed, 6)
            used_odd = odd
            value = {"answer": "".join(words), "confidence": round(0.5 + (seed % 50) / 100, 2)}
        content = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if kind == "invalid_json":
            content = _broken_json(content)
        tokens = txt.json_pieces(content, seed)
        if kind == "length":
            tokens = tokens[: max(1, len(tokens) // 2)]
            finish = "length"
    elif txt.is_echo(messages):
        tokens = txt.echo_tokens(messages)
        if max_tokens is not None and len(tokens) > max_tokens:
            tokens = tokens[:max_tokens]
            finish = "length"
    else:
        tokens = words_of(seed, max_tokens or default_tokens)
        used_odd = odd
    if kind == "length":
        finish = "length"
    elif kind == "content_filter":
        tokens = tokens[: len(tokens) // 2]
        finish = "content_filter"
    return tokens, finish, "content", used_odd


def _broken_json(content: str) -> str:
    cut = content[: max(1, len(content) // 2)]
    try:
        json.loads(cut)
    except ValueError:
        return cut
    return cut + ',"'


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions`` (streamed or not)."""
    return await serve(request, "chat", _chat)


async def _chat(
    request: Request, state: SimulatorState, body: dict[str, Any], record: RequestRecord
) -> Response:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise missing_param("model")
    messages = body.get("messages")
    if messages is None:
        raise missing_param("messages")
    if not isinstance(messages, list) or not messages:
        raise Rejected(
            invalid_request(
                "Invalid 'messages': expected a non-empty array.", "messages", "invalid_value"
            )
        )
    stream = bool(body.get("stream"))
    stream_options = body.get("stream_options")
    if stream_options is not None and not stream:
        raise Rejected(
            invalid_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        )
    n = body.get("n")
    if n is not None and n != 1:
        raise Rejected(invalid_request("The simulator only supports n=1.", "n"))
    max_tokens = _int_param(body, "max_completion_tokens") or _int_param(body, "max_tokens")
    json_mode, schema = _response_format(body)
    include_usage = isinstance(stream_options, Mapping) and bool(
        stream_options.get("include_usage")
    )
    # vLLM's extension: usage so far in every chunk, so a stream cut short still says
    # what it cost.
    continuous_usage = (include_usage and isinstance(stream_options, Mapping)
                        and bool(stream_options.get("continuous_usage_stats")))  # fmt: skip
    record.params = _params(body)

    admission = admit(state, "chat", model, json_mode, record)
    cfg = state.config
    stats = state.stats
    stats.enter()
    entered = True
    try:
        scripted = admission.fault
        hang_s = scripted.seconds if scripted is not None and scripted.kind == "hang" else 0.0
        if not await pause(request, hang_s):
            return client_left(record)
        tokens, finish, field, odd = _answer(
            body,
            messages,
            json_mode,
            schema,
            scripted,
            max_tokens,
            cfg.max_tokens_default,
            admission.odd_text,
        )
        if odd:
            note_odd_text(state, record)
        fault = admission.answer_fault(record, len(tokens))
        kind = fault.kind if fault is not None else None
        request_id = "req_" + secrets.token_hex(16)
        completion_id = "chatcmpl-" + secrets.token_urlsafe(21)
        prompt_tokens = txt.count_prompt_tokens(messages)
        cached = 0
        if cfg.prompt_cache:
            key = _prompt_key(messages)
            cached = prompt_tokens if key in state.seen_prompts else 0
            state.seen_prompts.add(key)
        usage = _usage(prompt_tokens, len(tokens), cached)
        headers = response_headers(state, request_id)
        if stream:
            plan = StreamPlan(
                completion_id=completion_id,
                created=int(time.time()),
                model=model,
                tokens=tokens,
                finish_reason=finish,
                usage=usage,
                include_usage=include_usage,
                continuous_usage=continuous_usage,
                field=field,
                cut_after=fault.after_chunks if fault is not None and kind == "cut" else None,
                stall_after=fault.after_chunks if fault is not None and kind == "stall" else None,
                keepalive_s=fault.interval_s if fault is not None else 1.0,
                latency_s=cfg.latency_ms / 1000,
                # A trickle is a stream paced at one chunk per interval.
                tokens_per_second=(
                    1 / fault.interval_s
                    if fault is not None and kind == "trickle"
                    else cfg.tokens_per_second
                ),
            )
            entered = False  # the stream leaves when it ends
            return ChatStream(plan, stats, headers, record)
        if not await pause(request, cfg.latency_ms / 1000):
            return client_left(record)
        if kind == "cut":
            entered = False
            return DropConnection(stats)
        if fault is not None and kind == "stall":
            entered = False
            return StalledBody(headers, fault.interval_s, stats)
        record.usage = billed_usage(usage, len(tokens))
        text = "".join(tokens)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if field == "content" else None,
            "refusal": text if field == "refusal" else None,
            "annotations": [],
        }
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        answer = JSONResponse(payload, headers=headers)
        if fault is not None and kind == "trickle":
            entered = False
            return TrickledBody(bytes(answer.body), headers, fault.interval_s, stats)
        return answer
    finally:
        if entered:
            stats.leave()
