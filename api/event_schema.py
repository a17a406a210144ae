"""A job's Server-Sent Events as the OpenAPI document describes them: one schema per
event type, each with the JSON its ``data`` line holds (``contentSchema``).

The data schemas name the fields a reader relies on and let the others through: a
``status`` event of a retry also says why and how long it waits, a ``reset`` may carry the
text so far. ``tests/api/test_openapi.py`` checks live streams against them.
"""

from __future__ import annotations

from typing import Any

_REF = "#/components/schemas/"
_ATTEMPT = {"type": "integer", "minimum": 0, "description": "the attempt that wrote it"}


def _data(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _event(name: str, description: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": name,
        "description": description,
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[0-9]+$",
                "description": "strictly increasing within the job: resume after it with "
                "`Last-Event-ID` or `?after=`",
            },
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
        },
    }


#: One frame of the stream (comments, ``: keep-alive``, and the opening ``retry:`` aside).
EVENT_ITEM_SCHEMA: dict[str, Any] = {
    "oneOf": [
        _event(
            "status",
            "The job's status changed; a retry says why (`reason`, `message`) and how long it "
            "waits (`wait_s`).",
            _data(
                ["status", "attempt"],
                {
                    "status": {"$ref": _REF + "JobStatus"},
                    "attempt": _ATTEMPT,
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                    "wait_s": {"type": "number"},
                    "backoff_max_s": {"type": "number"},
                },
            ),
        ),
        _event(
            "delta",
            "Generated text, in order.",
            _data(["text", "attempt"], {"text": {"type": "string"}, "attempt": _ATTEMPT}),
        ),
        _event(
            "progress",
            "Inputs embedded so far (embed jobs).",
            _data(
                ["done", "total", "attempt"],
                {"done": {"type": "integer"}, "total": {"type": "integer"}, "attempt": _ATTEMPT},
            ),
        ),
        _event(
            "reset",
            "A new attempt (or an extraction's repair round) starts: drop the text so far, "
            "or take `text` as the text so far when it is given.",
            _data(
                ["attempt"],
                {"attempt": _ATTEMPT, "text": {"type": "string"}, "round": {"type": "integer"}},
            ),
        ),
        _event(
            "result",
            "The job's `result` (an embed job's without its vectors: `GET /v1/jobs/{id}` has "
            "them).",
            {
                "anyOf": [
                    {"$ref": _REF + "GenerateResult"},
                    {"$ref": _REF + "ExtractResult"},
                    {"$ref": _REF + "EmbedResult"},
                ]
            },
        ),
        _event("error", "The job's `error`.", {"$ref": _REF + "JobError"}),
        _event(
            "done",
            "The last event: the server closes the stream after it.",
            _data(
                ["status"],
                {"status": {"type": "string", "enum": ["succeeded", "failed", "cancelled"]}},
            ),
        ),
    ]
}

EVENT_STREAM_EXAMPLE = (
    "retry: 2000\n\n"
    'id: 1\nevent: status\ndata: {"status":"running","attempt":1}\n\n'
    'id: 2\nevent: delta\ndata: {"text":"Hello","attempt":1}\n\n'
    ": keep-alive\n\n"
    'id: 3\nevent: delta\ndata: {"text":" there","attempt":1}\n\n'
    'id: 4\nevent: result\ndata: {"text":"Hello there","finish_reason":"stop"}\n\n'
    'id: 5\nevent: done\ndata: {"status":"succeeded"}\n\n'
)
