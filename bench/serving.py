"""What the harness's own servers (fake upstream, OTLP sink) share: `python -m bench.X --port N`, aiohttp's
low-level server on uvloop, bound to loopback, running until the harness sends SIGTERM. With `--tls-ca-dir DIR`
it serves HTTPS as `wire.TLS_SERVER_NAME`, with a certificate from the gateway's CA code and the CA in DIR (the
one the gateway's forward proxy signs with, so one `ca.pem` is trusted for both HTTPS paths)."""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from bench import wire

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def _tls_context(ca_dir: Path) -> ssl.SSLContext:
    from llm_gateway.proxy.ca import CertificateAuthority

    return CertificateAuthority.load_or_create(ca_dir).context_for(wire.TLS_SERVER_NAME)


async def _serve(handler: Handler, host: str, port: int, tls: ssl.SSLContext | None) -> None:
    server = web.Server(handler, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    # A deep accept queue: the stall test opens up to 2000 streams at 1000 per second.
    await web.TCPSite(runner, host, port, backlog=4096, reuse_address=True, ssl_context=tls).start()
    print(f"READY {port}", flush=True)
    await asyncio.Event().wait()


def main(prog: str, handler: Handler) -> None:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-ca-dir", type=Path, help="serve HTTPS with a certificate signed by the CA in DIR")
    args = parser.parse_args()
    import uvloop

    tls = _tls_context(args.tls_ca_dir) if args.tls_ca_dir else None
    uvloop.run(_serve(handler, args.host, args.port, tls))
