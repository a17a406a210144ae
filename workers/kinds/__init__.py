"""The job kinds: plain functions against the provider interface, and their registry.

A kind owns its whole wiring (``kinds.base.Kind``): how much budget a job of it costs up
front, and how to run one attempt given what the attempt offers. The runner looks a kind
up by name; there is no ``isinstance`` chain anywhere.
"""

from __future__ import annotations

from aijobs.kinds.base import Kind


def _registry() -> dict[str, Kind]:
    from aijobs.kinds import embed, extract, generate

    return {kind.name.value: kind for kind in (generate.KIND, extract.KIND, embed.KIND)}


_KINDS: dict[str, Kind] = {}


def kind_for(name: str) -> Kind:
    """The wiring of the kind ``name`` (a ``JobKind`` value)."""
    if not _KINDS:
        _KINDS.update(_registry())
    return _KINDS[name]
