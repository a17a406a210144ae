"""Providers: where model calls go. One interface, one OpenAI-compatible implementation."""

from aijobs.providers.base import ChatOutcome, ChatRequest, Provider, ProviderError

__all__ = ["ChatOutcome", "ChatRequest", "Provider", "ProviderError"]
