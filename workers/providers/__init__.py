"""Providers: where model calls go. One interface, one OpenAI-compatible implementation."""

from workers.providers.base import ChatOutcome, ChatRequest, Provider, ProviderError

__all__ = ["ChatOutcome", "ChatRequest", "Provider", "ProviderError"]
