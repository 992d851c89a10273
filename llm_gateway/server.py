"""Assembles the gateway (settings, router, telemetry, addons, relay) and runs it until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from aiohttp import web

from llm_gateway.addons import default_addons
from llm_gateway.config import ENV_HOST, ENV_PORT, ConfigError, Settings
from llm_gateway.flow import call_hook
from llm_gateway.front import front_enabled
from llm_gateway.gc_schedule import collect_when_due, take_over_full_collections
from llm_gateway.mcp.endpoint import GatewayEndpoints
from llm_gateway.offload import FlowShipper, TelemetryProcess
from llm_gateway.proxy import CAError, ForwardProxy, ProxyServer
from llm_gateway.proxy.ca_files import CA_CERT, ENV_CA_DIR
from llm_gateway.proxy.intercept import ENV_INTERCEPT
from llm_gateway.redact import url_without_credentials
from llm_gateway.relay import Relay
from llm_gateway.routing import Router
from llm_gateway.sessions.state import SessionState
from llm_gateway.telemetry import Telemetry, configure, upstream_trace_configs
from llm_gateway.telemetry.setup import describe, export_plan
from llm_gateway.telemetry.upstream_spans import http_span_mode

# How long in-flight streams may run on after SIGTERM / SIGINT before they are cut.
SHUTDOWN_GRACE_SECONDS = 10.0
# How long `serve` waits, after that, for the telemetry process to flush before leaving it to finish alone.
SHUTDOWN_TELEMETRY_WAIT_S = 3.0


class ListenError(ConfigError):
    """The gateway cannot listen on its address; the message names the address and how to choose another.
    `taken`: another server has it (perhaps another gateway)."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        self.host, self.port, self.taken = host, port, exc.errno == errno.EADDRINUSE
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.taken:
            problem, choose = f"{address} is already in use (another llm-gateway?)", f"--port or {ENV_PORT}"
        else:  # not an address of this machine, a port below 1024, a host name that does not resolve
            reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
            problem, choose = f"cannot listen on {address}: {reason}", f"--host/--port or {ENV_HOST}/{ENV_PORT}"
        super().__init__(f"{problem}; choose another with {choose}")


def _check_ca(proxy: ForwardProxy) -> None:
    """When the forward proxy reads provider hosts, its CA must load, or its directory take the files made on first
    use: found out at startup, not at an agent's first HTTPS connection."""
    if not len(proxy.intercept):
        return
    directory = proxy.ca_dir
    try:
        if (directory / CA_CERT).exists():
            proxy.ca()
        else:  # where it will be made: the directory, or the nearest parent that exists
            nearest = next(p for p in (directory, *directory.parents) if p.exists())
            with tempfile.TemporaryFile(dir=nearest):
                pass
    except CAError as exc:
        problem = str(exc)
    except OSError as exc:
        problem = f"cannot make the proxy's CA in {directory}: {exc.strerror or exc}"
    else:
        return
    raise ConfigError(f"{problem}; set {ENV_CA_DIR} to a writable directory, or {ENV_INTERCEPT}=none to tunnel "
                      "HTTPS unread")


@dataclass(slots=True)
class Gateway:
    """A running gateway: `await Gateway.start(...)`, then `await gateway.stop()`."""

    settings: Settings
    router: Router
    telemetry: Telemetry | None  # tracing in this process (the demo; LLM_GATEWAY_HTTP_SPANS=aiohttp)
    relay: Relay
    runner: web.ServerRunner
    port: int
    telemetry_process: TelemetryProcess | None = None  # tracing in its own process (exporting, the default)
    ticker: asyncio.Task | None = None

    @classmethod
    async def start(
        cls,
        settings: Settings,
        env: Mapping[str, str] | None = None,
        *,
        on_session_finished: Callable[[SessionState], None] | None = None,
    ) -> Gateway:
        """`on_session_finished`: build spans in this process even when nothing exports them, and call this with
        each session as it ends (the demo prints them as trees).

        A setting it cannot use (the address: `ListenError`; a directory it cannot write; a bad OTEL_* value) raises
        ConfigError or TelemetryConfigError, whose message is the one line to show, after what it had started
        was stopped."""
        env = os.environ if env is None else env
        router = Router(settings, env)
        local = on_session_finished is not None
        plan = export_plan(env)
        proxy = ForwardProxy.from_env(settings, env)
        _check_ca(proxy)
        # What is started is stopped again when a later step fails: no telemetry process or client session is
        # left behind by a taken port or an unwritable directory.
        async with contextlib.AsyncExitStack() as undo:
            telemetry = process = shipper = None
            if plan and not local and http_span_mode(env) != "aiohttp":
                process = TelemetryProcess(env, describe(plan))
                undo.callback(process.discard)
                shipper = FlowShipper(process)
            else:
                telemetry = configure(env, local=local)
                if telemetry is not None:
                    undo.push_async_callback(asyncio.to_thread, telemetry.shutdown)
            tracing = shipper or telemetry
            addons = default_addons(env, settings, tracing=tracing, on_session_finished=on_session_finished)
            # `llm-gateway mcp` wrappers report here; the addon with a `report` hook takes it (MCP spans or shipper)
            report = partial(call_hook, addons, "report") if tracing is not None else None
            relay = Relay(settings, router, addons, upstream_trace_configs(telemetry, env),
                          internal=GatewayEndpoints(report), health=shipper.health if shipper is not None else None,
                          proxy=proxy)
            await relay.start()
            undo.push_async_callback(relay.close)
            # also an HTTP forward proxy on the same port (CONNECT, absolute-form requests): `proxy/`
            server = ProxyServer(relay.handle, proxy=proxy, serve=relay.serve if front_enabled(env) else None,
                                 max_body_bytes=settings.max_body_bytes, handler_cancellation=True, access_log=None)
            runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
            await runner.setup()
            undo.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise ListenError(settings.host, settings.port, exc) from None
            undo.pop_all()
        port = site._server.sockets[0].getsockname()[1]  # the real one when settings.port is 0
        gateway = cls(settings, router, telemetry, relay, runner, port, process)
        if telemetry is not None:  # sessions end when idle; in the telemetry process, its own ticker ends them
            gateway.ticker = asyncio.create_task(gateway._tick_forever())
        return gateway

    async def _tick_forever(self, every: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every)
            call_hook(self.relay.addons, "tick", time.time_ns())

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    async def stop(self, telemetry_wait_s: float = 30.0) -> None:
        """Stop serving, end the open sessions and flush the spans, waiting up to `telemetry_wait_s` for the
        telemetry process (after that it finishes in the background)."""
        await self.runner.cleanup()  # stops accepting, lets in-flight requests finish within the grace time
        await self.relay.close()
        if self.ticker is not None:
            self.ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.ticker
        call_hook(self.relay.addons, "close")  # open sessions end at their last activity
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.shutdown)  # flush pending spans
        if self.telemetry_process is not None:
            await self.telemetry_process.close(telemetry_wait_s)  # it ends the open sessions and flushes

    def describe(self) -> str:
        lines = [f"llm-gateway listening on {self.url}"]
        # the URLs as configured, but for credentials in them (these lines end up in logs)
        for name, url in sorted(self.router.upstreams.items()):
            lines.append(f"  {name:<10} -> {url_without_credentials(url)}")
        catch_all = self.router.catch_all
        lines.append(f"  {'(other)':<10} -> "
                     f"{url_without_credentials(catch_all) if catch_all else '404 (no catch-all upstream set)'}")
        for name, url in sorted(self.router.mcp_servers.items()):
            lines.append(f"  {'mcp/' + name:<10} -> {url_without_credentials(url)}  (MCP: {self.url}/mcp/{name})")
        if self.relay.proxy is not None:
            lines += self.relay.proxy.describe(self.url)
        tracing = self.telemetry or self.telemetry_process
        where = tracing.destination if tracing is not None else describe([])
        lines.append(f"  traces     -> {where}")
        return "\n".join(lines)


async def serve(settings: Settings) -> None:
    # Ctrl-C or SIGTERM from here on, even during startup, ends the gateway the same orderly way.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gateway = await Gateway.start(settings)
    # Everything alive now lives as long as the process: keep the cyclic collector from walking it again and
    # again. On a 2-core machine a full collection over the SDK's and aiohttp's objects stalled live streams
    # for tens of milliseconds (bench/, stall test).
    gc.collect()
    gc.freeze()
    # Full collections, which walk every live stream's objects at once, only when nothing is in flight (or seldom).
    take_over_full_collections()
    collector = asyncio.create_task(collect_when_due(lambda: gateway.relay.in_flight))
    print(gateway.describe(), file=sys.stderr, flush=True)
    try:
        await stop.wait()
        print("llm-gateway: shutting down, finishing in-flight streams", file=sys.stderr, flush=True)
    finally:
        collector.cancel()
        # Ctrl-C or a service manager's SIGTERM: a dead trace backend must not hold up the exit (the exporter
        # retries for seconds); the telemetry process finishes on its own.
        await gateway.stop(telemetry_wait_s=SHUTDOWN_TELEMETRY_WAIT_S)


def run(settings: Settings) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
