"""OpenAI-compatible HTTP simulator: the development default provider and the test double.

It speaks the wire format of ``/v1/chat/completions`` (streamed and not), ``/v1/embeddings``
and ``/v1/models``, with deterministic answers, optional pacing/latency/RPM limits, scripted
and random faults, and a ``/_sim`` admin API:

- ``POST /_sim/faults`` ``{"faults": [spec, ...]}`` queues fault specs (see
  :class:`~aijobs.devtools.simulator.faults.FaultSpec`); ``GET`` lists, ``DELETE`` clears them.
- ``GET /_sim/stats`` returns counters (``faults_served``, ``chaos_served``, streams, ...).
- ``GET /_sim/requests[?key=K][&since=N]`` returns the request log (below).
- ``POST /_sim/reset`` clears counters, faults and the request log, and restarts the chaos
  sequence; the config is kept.
- ``GET``/``PUT /_sim/config`` reads/updates :class:`SimulatorConfig` fields at run time.

Fault kinds: ``rate_limit`` (429 ``rate_limit_exceeded`` + retry headers),
``insufficient_quota`` (429, no retry headers), ``bad_request`` (400), ``server_error`` (500
or ``status``), ``cut`` (streams: ``after_chunks`` content chunks, then the connection drops
without the final chunk or ``[DONE]``; non-streamed: the status line and headers, then the
connection drops). With the openai SDK (which is built on ``httpx2``) a typed stream raises
``openai.APIConnectionError`` (``__cause__``: ``httpx2.RemoteProtocolError``) while iterating,
a raw ``with_streaming_response`` stream raises ``httpx2.RemoteProtocolError`` from
``iter_lines()``, and a non-streamed call raises ``openai.APIConnectionError``.
``trickle`` (streams: one chunk every ``interval_s``, then a normal end; non-streamed: the
headers, then the JSON body in 8 pieces, ``interval_s`` apart), ``stall`` (streams:
``after_chunks`` content chunks, then only ``: keep-alive`` SSE comments every ``interval_s``
until the client goes away; non-streamed: the headers, then a newline every ``interval_s``,
forever). Neither lets a read timeout fire: only a total deadline on the client ends a stall.
Then ``hang`` (``seconds`` before answering), ``refusal``, ``invalid_json``,
``schema_violation``, ``length`` and ``content_filter``.

Chaos (random faults) is the ``chaos`` section of the config, off by default: set it with
``PUT /_sim/config`` ``{"chaos": {...}}`` (which replaces the whole section and restarts its
sequence; ``{"chaos": null}`` turns it off) or at start with ``AIJOBS_SIM_CHAOS`` (the same
object as JSON). Fields (see :class:`ChaosConfig`)::

    {"seed": 7, "by_key": false,
     "rate_limit": 0.05, "server_error": 0.05, "cut": 0.05, "trickle": 0.02, "stall": 0.02,
     "odd_text": 0.3,
     "retry_after_min_s": 0.05, "retry_after_max_s": 1.0,
     "trickle_min_s": 1.0, "trickle_max_s": 3.0,
     "stall_after_max_chunks": 3, "stall_keepalive_s": 1.0}

Each chat/embeddings request that passes validation takes one draw from its own RNG, seeded
by ``seed`` and the request's number since the last restart (``by_key``: by its key and the
number of earlier requests with that key, so a job's outcomes do not depend on how
concurrent jobs interleave). The draw picks at most one of ``rate_limit`` (a wait between the
two bounds), ``server_error`` (500, sometimes 502 or 503), ``cut`` (after a random number of
content chunks), ``trickle`` (one interval between the bounds) and ``stall`` (after 0 to
``stall_after_max_chunks`` chunks), and independently ``odd_text``. The RPM limiter and
scripted faults take precedence; the draw is taken anyway, so they do not shift later ones.

Odd text: generated answers (plain and ``json_object``, not echoes or ``json_schema``
answers) hold U+2028, U+2029 and U+0085 (from 3 tokens on) plus accents, CJK, emoji,
combining marks, other scripts and zero-width characters (every kind from 8 tokens on).
They travel raw in the JSON (only ``\\n``, ``\\r`` and other controls below U+0020 are
escaped), so a client that splits lines on anything but ``\\n`` breaks. The text depends
only on the prompt, and ``"".join`` of the streamed tokens equals the non-streamed answer.

Request log: every chat/embeddings request gets a record (the last 100,000 are kept) with
``seq``, ``endpoint``, ``key``, ``model``, ``stream``, ``outcome`` (``ok``, a fault kind,
``invalid_request``), ``source`` (``chaos``, ``fault``, ``rpm_limit`` or null), ``odd_text``,
``status``, ``end`` (``open``, ``completed``, ``error``, ``dropped``, ``client_closed``,
``aborted``), ``started``/``ended`` (epoch seconds), ``chunks`` (streams) and ``detail`` (the
outcome's parameters). ``key`` is :func:`request_key_for_messages` of a chat request (the first
``user`` message, which all repair rounds of a job repeat) or :func:`request_key_for_inputs`
of an embeddings request (the first input), so a test can find its own jobs' calls.

A prompt containing ``[[echo]]`` is answered with the last user message (marker removed).
"""

from aijobs.devtools.simulator.app import create_app
from aijobs.devtools.simulator.config import ChaosConfig, SimulatorConfig
from aijobs.devtools.simulator.request_keys import (
    request_key_for_inputs,
    request_key_for_messages,
    request_key_for_text,
)
from aijobs.devtools.simulator.server import RunningSimulator, running_simulator, serve

__all__ = [
    "ChaosConfig",
    "RunningSimulator",
    "SimulatorConfig",
    "create_app",
    "request_key_for_inputs",
    "request_key_for_messages",
    "request_key_for_text",
    "running_simulator",
    "serve",
]
