"""Test helpers: running recorded exchanges through adapters, real servers on loopback, an OTLP receiver."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
