"""The body of a job's webhook: the job as ``GET /v1/jobs/{id}`` shows it, without
embedding vectors (they can be hundreds of MB; the receiver fetches them) and without the
``webhook`` view itself (it changes with every attempt; the body must not).

Built from the row at each attempt rather than stored with the event, so retention and
``DELETE /v1/jobs/{id}`` reach a pending webhook's data too. A terminal row changes no
more, so every attempt sends the same bytes.
"""

from __future__ import annotations

import json

from aijobs.store.models import Job
from aijobs.store.public import public_job


def job_body(job: Job) -> bytes:
    """The webhook's JSON body for ``job``."""
    data = public_job(job).model_dump(mode="json", exclude={"webhook"})
    result = data.get("result")
    if isinstance(result, dict):
        result.pop("embeddings", None)  # the row never holds them; never send them
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
