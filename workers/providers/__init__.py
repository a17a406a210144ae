"""Providers: where model calls go. One interface, one OpenAI-compatible implementation."""

from aijobs.providers.base import CallGuard, ChatOutcome, ChatRequest, Provider, ProviderError

__all__ = ["CallGuard", "ChatOutcome", "ChatRequest", "Provider", "ProviderError"]
