"""llm-gateway: a local tracing proxy for AI coding agents."""

__version__ = "0.1.0"
