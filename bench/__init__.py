"""Benchmark harness: llm-gateway side by side with direct, nginx and LiteLLM on one local fake upstream.

Run `python -m bench` (full, under 10 minutes) or `python -m bench --quick` from the repository root.
"""
