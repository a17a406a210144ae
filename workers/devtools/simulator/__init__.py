"""OpenAI-compatible HTTP simulator: the development default provider and the test double.

It speaks the wire format of ``/v1/chat/completions`` (streamed and not), ``/v1/embeddings``
and ``/v1/models``, with deterministic answers, optional pacing/latency/RPM limits, and a
``/_sim`` admin API to script faults and read counters:

- ``POST /_sim/faults`` ``{"faults": [spec, ...]}`` queues fault specs (see
  :class:`~aijobs.devtools.simulator.faults.FaultSpec`); ``GET`` lists, ``DELETE`` clears them.
- ``GET /_sim/stats`` returns counters; ``POST /_sim/reset`` clears counters and faults.
- ``GET``/``PUT /_sim/config`` reads/updates :class:`SimulatorConfig` fields at run time.

Fault kinds: ``rate_limit`` (429 ``rate_limit_exceeded`` + retry headers),
``insufficient_quota`` (429, no retry headers), ``bad_request`` (400), ``server_error`` (500
or ``status``), ``cut`` (streams: ``after_chunks`` content chunks, then the connection drops
without the final chunk or ``[DONE]``; non-streamed: the status line and headers, then the
connection drops). With the openai SDK (which is built on ``httpx2``) a typed stream raises
``openai.APIConnectionError`` (``__cause__``: ``httpx2.RemoteProtocolError``) while iterating,
a raw ``with_streaming_response`` stream raises ``httpx2.RemoteProtocolError`` from
``iter_lines()``, and a non-streamed call raises ``openai.APIConnectionError``.
Then ``hang`` (``seconds`` before answering), ``refusal``, ``invalid_json``,
``schema_violation``, ``length`` and ``content_filter``.

A prompt containing ``[[echo]]`` is answered with the last user message (marker removed).
"""

from aijobs.devtools.simulator.app import create_app
from aijobs.devtools.simulator.config import SimulatorConfig
from aijobs.devtools.simulator.server import RunningSimulator, running_simulator, serve

__all__ = ["RunningSimulator", "SimulatorConfig", "create_app", "running_simulator", "serve"]
