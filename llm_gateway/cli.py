"""The `llm-gateway` command."""

from __future__ import annotations

import argparse
import logging
import sys

from llm_gateway import __version__
from llm_gateway.config import ConfigError, load_settings
from llm_gateway.telemetry import TelemetryConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-gateway",
        description="A local tracing proxy for AI coding agents (OpenTelemetry GenAI traces).",
    )
    parser.add_argument("--version", action="version", version=f"llm-gateway {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--host", help="address to bind (LLM_GATEWAY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (LLM_GATEWAY_PORT, default 8787)")
    serve.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="replace a default upstream (anthropic, openai, gemini, bedrock, kiro, ollama; "
        "'default' for requests no protocol recognizes); repeatable",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        if args.command == "serve":
            from llm_gateway.server import run

            run(load_settings(host=args.host, port=args.port, upstream_flags=args.upstream))
    except (ConfigError, TelemetryConfigError) as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
