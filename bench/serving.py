"""What the harness's own servers (fake upstream, OTLP sink) share: `python -m bench.X --port N`, aiohttp's
low-level server on uvloop, bound to loopback, running until the harness sends SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler, host: str, port: int) -> None:
    server = web.Server(handler, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    # A deep accept queue: the stall test opens up to 2000 streams at 1000 per second.
    await web.TCPSite(runner, host, port, backlog=4096, reuse_address=True).start()
    print(f"READY {port}", flush=True)
    await asyncio.Event().wait()


def main(prog: str, handler: Handler) -> None:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(_serve(handler, args.host, args.port))
