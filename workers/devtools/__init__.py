"""Local tools: the OpenAI-compatible simulator, a private Redis, and ``aijobs dev``."""
