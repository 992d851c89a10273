"""The `llm-gateway` command: serve, run, mcp, ca, demo, replay, fixtures."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import sys
from pathlib import Path

from llm_gateway import __version__
from llm_gateway.config import ConfigError, load_settings
from llm_gateway.routing import UPSTREAM_NAMES
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
    _gateway_options(serve)

    run = commands.add_parser(
        "run", help="run a command (an agent) through a gateway started for it: run [OPTIONS] -- COMMAND [ARGS...]",
        description="Starts a gateway on a free loopback port, runs COMMAND with every agent pointed at it (base "
        "URLs, HTTPS_PROXY and the gateway's CA), and when COMMAND exits ends its sessions, flushes the spans and "
        "exits with COMMAND's status. TRACEPARENT/TRACESTATE in the environment make every session a child of "
        "that span. The last stderr line names the trace id(s).",
    )
    run.add_argument("--host", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    _gateway_options(run)
    run.add_argument("--log", metavar="FILE", help="write the gateway's lines to FILE (default: stderr, before "
                     "COMMAND starts and after it exits)")
    run.add_argument("agent_command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")

    mcp = commands.add_parser(
        "mcp", help="run a stdio MCP server through the gateway's tracing: mcp [--name NAME] -- COMMAND [ARGS...]",
        description="Runs COMMAND as the MCP server, passes its stdin/stdout/stderr through unchanged and reports "
        "each call to the gateway at LLM_GATEWAY_URL (default http://127.0.0.1:8787), or exports it with the "
        "OTEL_* environment when no gateway takes it. Exits with the server's exit code.",
    )
    mcp.add_argument("--name", help="the server's name on spans (default: the name it gives in initialize)")
    mcp.add_argument("server_command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")

    demo = commands.add_parser("demo", help="replay a bundled Kiro session through the gateway, offline, "
                                            "and print its trace tree")
    demo.add_argument("fixtures", nargs="*", help="fixture files to replay instead of the bundled session")

    replay = commands.add_parser("replay", help="serve recorded responses as a fake upstream")
    replay.add_argument("fixtures", nargs="+", help="fixture files (llm-gateway/fixture@1)")
    replay.add_argument("--host", default="127.0.0.1")
    replay.add_argument("--port", type=int, default=8788)
    replay.add_argument("--speed", type=float, default=1.0,
                        help="1 = recorded timing, N = N times faster, 0 = no delays")

    ca = commands.add_parser(
        "ca", help="make the forward proxy's CA if missing and show how to trust it",
        description="Makes the CA in LLM_GATEWAY_CA_DIR (default ~/.llm-gateway) when it is missing, writes "
        "ca-bundle.pem (the system's roots plus the CA) beside it, and prints how each kind of client trusts it.",
    )
    ca.add_argument("--path", action="store_true", help="print the certificate's path only (for scripts)")

    fixtures = commands.add_parser("fixtures", help="convert recordings into fixtures")
    fixture_commands = fixtures.add_subparsers(dest="fixtures_command", required=True)
    vcr = fixture_commands.add_parser("import-vcr", help="convert a vcrpy cassette (YAML)")
    vcr.add_argument("cassette")
    vcr.add_argument("-o", "--output", help="fixture file to write (default: the cassette's name, .json)")
    return parser


def _gateway_options(command: argparse.ArgumentParser) -> None:
    """The options `serve` and `run` share, besides the address."""
    command.add_argument(
        "--upstream", action="append", default=[], metavar="NAME=URL",
        help=f"replace a default upstream ({', '.join(UPSTREAM_NAMES)}; "
        "'default' for requests no protocol recognizes); repeatable",
    )
    command.add_argument("--record", metavar="DIR",
                         help="write every exchange to a fixture file per session in DIR (LLM_GATEWAY_RECORD_DIR)")
    command.add_argument(
        "--mcp", action="append", default=[], metavar="NAME=URL",
        help="relay /mcp/NAME to the streamable HTTP MCP server at URL and trace its calls "
        "(LLM_GATEWAY_MCP_<NAME>=URL); repeatable",
    )


def _run(args: argparse.Namespace) -> int:
    from llm_gateway.agent_run import main as run_main
    from llm_gateway.config import DEFAULT_HOST

    command = args.agent_command[1:] if args.agent_command[:1] == ["--"] else args.agent_command
    if not command:
        print("llm-gateway run: give the command after --, e.g. llm-gateway run -- claude", file=sys.stderr)
        return 2
    # Loopback and a free port unless chosen here: LLM_GATEWAY_HOST/PORT are serve's.
    settings = load_settings(host=args.host or DEFAULT_HOST, port=args.port if args.port is not None else 0,
                             upstream_flags=args.upstream, record_dir=args.record, mcp_flags=args.mcp)
    return run_main(command, settings, log_path=args.log, verbose=args.verbose)


async def _replay(paths: list[str], host: str, port: int, speed: float) -> None:
    from llm_gateway.recordings import load
    from llm_gateway.recordings.replay import ReplayUpstream

    try:
        fixtures = [load(p) for p in paths]
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:  # not a fixture; one cut short loads up to its last complete exchange
        raise ConfigError(str(exc)) from None
    try:
        upstream = await ReplayUpstream(fixtures, speed=speed, host=host, port=port).start()
    except OSError as exc:
        problem = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
        raise ConfigError(f"{host}:{port} {problem}; choose another with --host/--port") from None
    print(f"llm-gateway replay: serving {len(paths)} fixture(s) on {upstream.url}", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await upstream.stop()


def _import_vcr(cassette: str, output: str | None) -> int:
    from llm_gateway.recordings import save
    from llm_gateway.recordings.importers import import_vcr

    target = Path(output) if output else Path(cassette).with_suffix(".json")
    fixture = import_vcr(cassette)
    save(fixture, target)
    print(f"wrote {target} ({len(fixture.exchanges)} exchanges)", file=sys.stderr)
    return 0


def _mcp(command: list[str], name: str | None) -> int:
    from llm_gateway.mcp.stdio import main as mcp_main

    command = command[1:] if command[:1] == ["--"] else command
    if not command:
        print("llm-gateway mcp: give the server's command after --, e.g. llm-gateway mcp -- npx -y SERVER",
              file=sys.stderr)
        return 2
    return mcp_main(command, name)


def _ca(path_only: bool) -> int:
    from llm_gateway.proxy import CAError, ca_dir
    from llm_gateway.proxy.trust import ensure_ca, instructions

    settings = load_settings()
    try:
        ca, made, bundle = ensure_ca(ca_dir())
    except CAError as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the CA is there, its bundle cannot be written beside it
        print(f"llm-gateway: cannot write {exc.filename2 or exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    if path_only:
        print(ca.files.cert)
    else:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # listening everywhere
        print(instructions(ca, made, bundle, f"http://{host}:{settings.port}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        if args.command == "serve":
            from llm_gateway.server import run

            run(load_settings(host=args.host, port=args.port, upstream_flags=args.upstream, record_dir=args.record,
                              mcp_flags=args.mcp))
        elif args.command == "run":
            return _run(args)
        elif args.command == "mcp":
            return _mcp(args.server_command, args.name)
        elif args.command == "demo":
            from llm_gateway.demo import main as demo_main

            return demo_main(args.fixtures)
        elif args.command == "replay":
            asyncio.run(_replay(args.fixtures, args.host, args.port, args.speed))
        elif args.command == "ca":
            return _ca(args.path)
        elif args.command == "fixtures":
            return _import_vcr(args.cassette, args.output)
    except (ConfigError, TelemetryConfigError) as exc:
        print(f"llm-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
