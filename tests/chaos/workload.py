"""The run's jobs: what is submitted when, which simulator requests belong to each job, and
what each job's output must be.

Everything comes from one ``random.Random`` (the run's seed): prompts, sizes, schemas,
submit times. Every prompt (and embedding input) is unique to its job, so the simulator's
request keys (``request_key_for_messages`` / ``request_key_for_inputs``) tell whose call
each request was, and with ``by_key`` chaos each job meets the same faults per seed
whatever the interleaving.

Expected outputs come from the same simulator code with chaos off, in this process (the
answer depends only on the request; a chaos draw's ``odd_text`` switches to the odd
variant, so a ``generate`` job has two candidate texts and its calls say which applies),
through the project's own kind functions so the requests are byte-for-byte the workers'.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import openai

from aijobs.devtools.simulator import (
    ChaosConfig,
    SimulatorConfig,
    request_key_for_inputs,
    request_key_for_messages,
    running_simulator,
)
from aijobs.kinds.embed import plan_batches
from aijobs.kinds.extract import run_extract
from aijobs.kinds.generate import run_generate
from aijobs.providers.openai_compat import OpenAIProvider
from aijobs.schemas import JOB_INPUT_ADAPTER
from tests.chaos.cluster import STACK_SETTINGS

CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"

WORDS = ("amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor", "iris",
         "juniper", "kelp", "lumen", "meadow", "nickel", "onyx", "prairie", "quartz", "reef",
         "sierra", "tundra", "umber", "vale", "willow", "yarrow", "zephyr")  # fmt: skip

#: Extraction schemas strict mode takes as they are: every property required, none
#: nullable, so the data a job returns is exactly the JSON its stream carried.
SCHEMAS: tuple[dict[str, Any], ...] = (
    {"type": "object",
     "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                    "active": {"type": "boolean"}},
     "required": ["name", "age", "active"]},
    {"type": "object",
     "properties": {"number": {"type": "string"}, "total": {"type": "number"},
                    "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
                    "lines": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"item": {"type": "string"}, "qty": {"type": "integer"}},
                        "required": ["item", "qty"]}}},
     "required": ["number", "total", "currency", "lines"]},
    {"type": "object",
     "properties": {"title": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}}},
     "required": ["title", "tags"]},
)  # fmt: skip


@dataclass
class ReaderPlan:
    """One reader of a job: how it connects and when it starts (after the submit)."""

    name: str
    transport: str  # "sse" | "ws"
    delay_s: float
    drop_p: float  # chance to drop the connection after each event
    seed: int


@dataclass
class JobPlan:
    """One job of the run."""

    index: int
    kind: str
    body: dict[str, Any]
    #: Simulator request keys of the job's calls: one for chat kinds, one per batch.
    keys: list[str]
    submit_at_s: float
    readers: list[ReaderPlan]
    job_id: str | None = None
    accepted_at: float | None = None
    submit_error: str | None = None

    @property
    def label(self) -> str:
        return f"#{self.index:03d} {self.kind} {self.job_id or '(not accepted)'}"


@dataclass
class Expected:
    """What a job must end with."""

    #: generate: the text by variant ("plain", "odd"); extract: {"plain": the JSON text}.
    texts: dict[str, str] = field(default_factory=dict)
    data: Any = None
    #: embed: float32 bytes per input, in order.
    vectors: list[bytes] = field(default_factory=list)
    dimensions: int = 0


def _phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_plans(seed: int, *, jobs: int, spread_s: float) -> list[JobPlan]:
    """``jobs`` jobs (half generate, a quarter each extract and embed), submitted over
    ``spread_s`` seconds, each with its readers."""
    rng = random.Random(f"{seed}/plans")
    kinds = ["generate"] * (jobs - 2 * (jobs // 4)) + ["extract"] * (jobs // 4)
    kinds += ["embed"] * (jobs // 4)
    rng.shuffle(kinds)
    times = sorted(rng.uniform(0, spread_s) for _ in kinds)
    batch = int(str(STACK_SETTINGS["embed_batch_size"]))
    plans: list[JobPlan] = []
    for index, (kind, at) in enumerate(zip(kinds, times, strict=True)):
        tag = f"chaos {seed}/{index}:"
        if kind == "generate":
            messages = [{"role": "user", "content": f"{tag} {_phrase(rng, 6)}"}]
            if rng.random() < 0.3:
                messages.insert(0, {"role": "system", "content": _phrase(rng, 4)})
            body: dict[str, Any] = {
                "kind": "generate",
                "model": CHAT_MODEL,
                "max_tokens": rng.randint(30, 120),
                "messages": messages,
            }
            keys = [request_key_for_messages(messages)]
        elif kind == "extract":
            body = {
                "kind": "extract",
                "model": CHAT_MODEL,
                "text": f"{tag} {_phrase(rng, 12)}",
                "schema": rng.choice(SCHEMAS),
            }
            if rng.random() < 0.3:
                body["instructions"] = f"Extract carefully. {_phrase(rng, 3)}"
            keys = [request_key_for_messages([{"role": "user", "content": body["text"]}])]
        else:
            texts = [f"{tag} text {k} {_phrase(rng, rng.randint(3, 9))}"
                     for k in range(rng.randint(2, 10))]  # fmt: skip
            body = {
                "kind": "embed",
                "model": EMBED_MODEL,
                "input": texts,
                "dimensions": rng.choice((16, 32, 64)),
            }
            spans = plan_batches(texts, max_inputs=batch, max_tokens=250_000)
            keys = [request_key_for_inputs(texts[start:end]) for start, end in spans]
        readers = [_reader(rng, f"{index}.0", delay_s=0.0)]
        if rng.random() < 0.4:  # a late reader: mid-job, or long after the end
            readers.append(_reader(rng, f"{index}.1", delay_s=rng.uniform(2, 40)))
        plans.append(JobPlan(index, kind, body, keys, at, readers))
    return plans


def _reader(rng: random.Random, name: str, *, delay_s: float) -> ReaderPlan:
    return ReaderPlan(name, "ws" if rng.random() < 0.4 else "sse", delay_s,
                      drop_p=rng.uniform(0.02, 0.12), seed=rng.getrandbits(32))  # fmt: skip


# -- expected outputs -----------------------------------------------------------------------


@contextmanager
def reference_simulators() -> Iterator[dict[str, str]]:
    """Two chaos-free simulators in this process: plain text, and odd text on every answer.

    Yields their OpenAI base URLs by variant.
    """
    with ExitStack() as stack:
        plain = stack.enter_context(running_simulator(SimulatorConfig(tokens_per_second=0)))
        odd = stack.enter_context(running_simulator(
            SimulatorConfig(tokens_per_second=0, chaos=ChaosConfig(odd_text=1.0))))  # fmt: skip
        yield {"plain": plain.api_base, "odd": odd.api_base}


def expected_output(plan: JobPlan, bases: dict[str, str]) -> Expected:
    """What the job must end with, asked of the reference simulators."""
    spec = JOB_INPUT_ADAPTER.validate_python(plan.body)
    providers = {variant: OpenAIProvider(api_key="sk-reference", base_url=url, timeout_s=30)
                 for variant, url in bases.items()}  # fmt: skip
    try:
        expected = Expected()
        if plan.kind == "generate":
            for variant, provider in providers.items():
                out = run_generate(spec, provider, lambda _t: None, lambda: False)
                expected.texts[variant] = out.text
        elif plan.kind == "extract":
            out = run_extract(spec, providers["plain"], lambda _t: None, lambda _r: None,
                              lambda: False, repair_rounds=0)  # fmt: skip
            expected.data = out.data
            expected.texts["plain"] = out.text
        else:
            client = openai.OpenAI(api_key="sk-reference", base_url=bases["plain"],
                                   max_retries=0)  # fmt: skip
            try:
                answer = client.embeddings.create(
                    model=plan.body["model"], input=plan.body["input"],
                    dimensions=plan.body["dimensions"], encoding_format="base64",
                )  # fmt: skip
            finally:
                client.close()
            items = sorted(answer.data, key=lambda item: item.index)
            expected.vectors = [base64.b64decode(str(item.embedding)) for item in items]
            expected.dimensions = plan.body["dimensions"]
        return expected
    finally:
        for provider in providers.values():
            provider.close()
