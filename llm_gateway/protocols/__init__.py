"""Sans-IO protocol code: framing decoders, provider adapters and the normalized exchange model.

Nothing in this package does I/O or imports aiohttp, asyncio or OpenTelemetry.
"""
