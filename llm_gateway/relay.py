"""The reverse proxy: forwards each request to its upstream and relays the answer chunk by chunk.

This module knows HTTP and nothing about any provider. Bytes go to the client first; addons get a copy
afterwards (see `flow.py`). A failing addon never breaks the relay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol
from urllib.parse import unquote

import aiohttp
import orjson
from aiohttp import HttpVersion11, web
from multidict import CIMultiDictProxy
from yarl import URL

from llm_gateway import __version__
from llm_gateway.config import Settings
from llm_gateway.errors import error_response
from llm_gateway.flow import Addon, Flow, call_hook, fail, finish, notify_chunk
from llm_gateway.front.request_head import RequestHead
from llm_gateway.proxy.connect import BadConnect
from llm_gateway.proxy.forward import ForwardProxy
from llm_gateway.proxy.intercept import ProxiedHost
from llm_gateway.redact import url_without_credentials
from llm_gateway.relayed_response import RelayedResponse
from llm_gateway.routing import Route, Router
from llm_gateway.upstream.connection import UpstreamError, UpstreamResponse, copy_body
from llm_gateway.upstream.http1 import Fields, end_to_end
from llm_gateway.upstream.pool import UpstreamPool
from llm_gateway.upstream.via_aiohttp import AiohttpResponse, AiohttpUpstream
from llm_gateway.websocket_relay import is_websocket_upgrade, relay_websocket

log = logging.getLogger("llm_gateway.relay")

HEALTH_PATH = "/_gateway/health"
GATEWAY_PATHS = "/_gateway/"
#: Answers the gateway's own `/_gateway/...` endpoints (MCP call reports); None lets the request be relayed.
InternalHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse | None]]

# Without this aiohttp would add Accept, Accept-Encoding, User-Agent and Content-Type the client never sent.
_SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})


def _all_utf8(fields: Fields) -> bool:
    try:
        for name, value in fields:
            name.decode("utf-8")
            value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class ClientSide(Protocol):
    """Where the relay writes an upstream's answer: aiohttp's server (`_AiohttpAnswer`) or the gateway's own
    (`front.connection.FrontConnection`). Each write raises ConnectionResetError once the client is gone."""

    async def start(self, status: int, reason: str, fields: Fields, whole: bytes | None) -> None:
        """Send the head, made from the upstream's `fields` as received; `whole`: the whole body, sent with it (the
        answer then ends there), or None when `relay_body` and `end` follow."""

    async def relay_body(self, upstream: UpstreamResponse | AiohttpResponse,
                         record: Callable[[bytes], None] | None) -> None:
        """The upstream's body, to its end, each chunk handed to `record` after it was written."""

    async def end(self) -> None: ...

    def abort(self) -> None:
        """Cut the connection: the client sees the body end before its end."""


class _AiohttpAnswer:
    """The client's side of an exchange aiohttp's server reads: a `RelayedResponse`."""

    __slots__ = ("request", "response")

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request
        self.response: RelayedResponse | None = None

    async def start(self, status: int, reason: str, fields: Fields, whole: bytes | None) -> None:
        response = self.response = RelayedResponse(status, reason, fields, head_with_body=whole is not None)
        await response.prepare(self.request)
        if whole is not None:
            await response.write_eof(whole)

    async def relay_body(self, upstream: UpstreamResponse | AiohttpResponse,
                         record: Callable[[bytes], None] | None) -> None:
        assert self.response is not None
        await copy_body(upstream.read, self.response.write, record)

    async def end(self) -> None:
        assert self.response is not None
        await self.response.write_eof()

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()


class Relay:
    """The aiohttp request handler. One instance per server; holds the pooled upstream session."""

    def __init__(self, settings: Settings, router: Router, addons: Sequence[Addon] = (), trace_configs=(),
                 internal: InternalHandler | None = None, health: Callable[[], dict] | None = None,
                 proxy: ForwardProxy | None = None):
        self.settings = settings
        self.router = router
        self.addons = tuple(addons)
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None
        self._upstream: UpstreamPool | AiohttpUpstream | None = None
        self._internal = internal
        self._health = health  # more for `GET /_gateway/health` (the telemetry process's state)
        self.proxy = proxy  # the forward proxy on the same port, for absolute-form requests
        #: HTTP exchanges being relayed now (`gc_schedule.py` collects when there are none); a WebSocket, idle
        #: between an agent's turns for most of its life, is not counted
        self.in_flight = 0

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=self.settings.connect_timeout,
            sock_read=self.settings.read_timeout,
        )
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,  # compressed bodies pass through compressed
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies are the client's business, never stored here
            trace_configs=self._trace_configs or None,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
        )
        # WebSockets always go through aiohttp's client; plain requests too when its instrumentation is asked for
        self._upstream = (AiohttpUpstream(self._session) if self._trace_configs
                          else UpstreamPool(self.settings.connect_timeout, self.settings.read_timeout))

    async def close(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, request: web.BaseRequest, via: ProxiedHost | None = None) -> web.StreamResponse:
        """`via`: the host a request came for through the forward proxy (`proxy/`); None for direct requests."""
        if request.method == "CONNECT":
            # The proxy takes a CONNECT off the connection before aiohttp parses it, unless requests came before
            # it. Relayed, it would reach the upstream as a CONNECT to the upstream's own address.
            refused = error_response(400, "bad_request_target", "llm-gateway: a CONNECT must be the first request "
                                     "on its connection")
            refused.force_close()  # aiohttp reads what follows a CONNECT as a tunnel's bytes
            return refused
        raw_path = request.raw_path
        if via is None:
            if raw_path == HEALTH_PATH:
                extra = self._health() if self._health is not None else {}
                return web.json_response({"status": "ok", "version": __version__, **extra}, dumps=_dumps)
            if self._internal is not None and raw_path.startswith(GATEWAY_PATHS):
                answer = await self._internal(request)
                if answer is not None:
                    return answer
            if raw_path[:1] != "/":
                return await self._absolute_form(request)
            route = self.router.resolve(request.method, raw_path, request.headers)
        else:  # inside a connection the proxy reads: every path is that host's
            route = self.router.resolve_at(via.upstream, via.origin, request.method, raw_path, request.headers)
        if route is None:
            return _not_found(request.method, request.path)
        if _unknown_transfer_coding(request.headers):
            refused = error_response(501, "transfer_coding_not_implemented", "llm-gateway takes request bodies "
                                     "framed with Transfer-Encoding: chunked alone (RFC 9112, section 6.1)")
            refused.force_close()  # where this body ends is a guess: nothing after it is read as a request
            return refused
        if is_websocket_upgrade(request):
            assert self._session is not None, "Relay.start() was not awaited"
            return await relay_websocket(self._session, self.addons, request, route)

        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _too_large(limit)
        body = await _read_body(request, limit)
        if body is None:
            return _too_large(limit)
        answer = _AiohttpAnswer(request)
        failed = await self._relay(request.method, raw_path, request.headers, request.raw_headers,
                                   end_to_end(request.raw_headers), body, route, answer)
        if failed is not None:
            return failed
        assert answer.response is not None  # started, or an exception was raised
        return answer.response

    async def serve(self, head: RequestHead, body: bytes, answer: ClientSide,
                    via: ProxiedHost | None = None) -> web.Response | None:
        """A request the gateway's own front end read (`front/`), relayed as `handle` relays one (`via`: the host
        it came for through the forward proxy); returns the error to answer with when nothing was."""
        if via is not None:
            route = self.router.resolve_at(via.upstream, via.origin, head.method, head.target, head.headers)
        elif (route := self.router.resolve(head.method, head.target, head.headers)) is None:
            return _not_found(head.method, unquote(head.target.partition("?")[0]))
        return await self._relay(head.method, head.target, head.headers, head.fields, head.forwarded, body, route,
                                 answer)

    async def _relay(self, method: str, raw_path: str, headers: Mapping[str, str], raw_fields: Fields,
                     fields: Fields, body: bytes, route: Route, answer: ClientSide) -> web.Response | None:
        """`headers`: the request's as text (for the router), `raw_fields` as received, `fields` the end-to-end
        ones (`end_to_end`)."""
        route = self.router.with_body(route, raw_path, headers, body)
        assert self._upstream is not None, "Relay.start() was not awaited"
        if self._upstream.writes_header_text and not _all_utf8(fields):
            return error_response(400, "header_not_utf8", "llm-gateway relays header values byte for byte; with "
                                  "LLM_GATEWAY_HTTP_SPANS=aiohttp its HTTP client (aiohttp's) writes header text as "
                                  "UTF-8 and cannot send one that is not")
        flow = Flow(method, raw_path, raw_fields, body, route, route.upstream_url(raw_path), time.time_ns())
        if self.addons:
            call_hook(self.addons, "request", flow)
        try:
            return await self._forward(answer, flow, fields)
        except (asyncio.CancelledError, ConnectionResetError):  # the latter: gone before the head was written
            fail(self.addons, flow, "client_gone", "the client closed the connection before the response ended")
            raise
        except BaseException as exc:
            fail(self.addons, flow, "gateway_error", repr(exc))
            raise

    async def _absolute_form(self, request: web.BaseRequest) -> web.StreamResponse:
        """A request for this gateway as a plain HTTP proxy (`POST http://host/path`): relayed like one the proxy
        read on that host (to the host itself when the proxy does not read it)."""
        if self.proxy is None:
            return error_response(400, "bad_request_target", "llm-gateway: the request target is not a path, and "
                                  "this gateway is not a proxy")
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        try:
            via, path = self.proxy.absolute_target(request.raw_path, sockname)
        except BadConnect as exc:
            return error_response(400, "bad_request_target", f"llm-gateway: {exc}")
        return await self.handle(request.clone(rel_url=URL(path, encoded=True)), via)

    async def _forward(self, answer: ClientSide, flow: Flow, fields: Fields) -> web.Response | None:
        """`fields`: the request's end-to-end header fields (`end_to_end`). Returns the error to answer with when
        the upstream gave no answer to relay."""
        self.in_flight += 1
        try:
            return await self._exchange(answer, flow, fields)
        finally:
            self.in_flight -= 1

    async def _exchange(self, answer: ClientSide, flow: Flow, fields: Fields) -> web.Response | None:
        assert self._upstream is not None
        flow.upstream_started_ns = time.time_ns()
        try:
            upstream = await self._upstream.request(flow.method, flow.upstream_url, fields, flow.request_body)
        except TimeoutError as exc:
            return self._upstream_failed(flow, 504, "upstream_timeout", exc)
        except UpstreamError as exc:
            return self._upstream_failed(flow, 502, "upstream_unreachable", exc)

        try:
            flow.status = upstream.status
            flow.response_fields = upstream.raw_headers  # read as text only if an addon asks
            flow.response_started_ns = time.time_ns()
            if self.addons:
                call_hook(self.addons, "response_headers", flow)
            whole = upstream.whole_body()
            await answer.start(upstream.status, upstream.reason, upstream.raw_headers, whole)
            record = _chunk_recorder(flow)
            try:
                if whole is not None:
                    # The flow has ended before its one chunk is observed: an observer can tell it is the last
                    # (`observe_chunks`). Nothing is awaited from here to `finish`.
                    flow.ended_ns = time.time_ns()
                    if whole and record is not None:
                        record(whole, flow.ended_ns)
                else:
                    await answer.relay_body(upstream, record)
            except ConnectionResetError:  # raised by the write: aiohttp's ClientConnectionResetError
                fail(self.addons, flow, "client_gone", "the client closed the connection before the response ended")
                return None
            except (TimeoutError, UpstreamError) as exc:
                # Headers are out: the only honest signal left is to cut the connection, so the client sees a
                # truncated body instead of a clean end.
                fail(self.addons, flow, "upstream_stream_cut", f"{type(exc).__name__}: {exc}")
                answer.abort()
                return None
            if whole is None:
                await answer.end()
        finally:
            upstream.release()  # a whole answer leaves its connection to the pool; else the upstream sees the cancel
        if flow.ended_ns is None:
            flow.ended_ns = time.time_ns()
        finish(self.addons, flow)
        return None

    def _upstream_failed(self, flow: Flow, status: int, cause: str, exc: BaseException) -> web.Response:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        origin = URL(flow.route.base_url)
        verb = "did not answer in time" if status == 504 else "could not be reached"
        fail(self.addons, flow, cause, detail)
        return error_response(
            status,
            cause,
            f"llm-gateway: the upstream {origin.origin()} {verb} ({detail})",
            upstream=url_without_credentials(flow.route.base_url),
            cause=detail,
        )


def _chunk_recorder(flow: Flow) -> Callable[[bytes, int | None], None] | None:
    """What hands each relayed body chunk to the flow's addons, with the time it went out; None when none asked."""
    chunks, observers = flow.chunks, flow.chunk_observers
    if chunks is None and observers is None:
        return None

    def record(chunk: bytes, at_ns: int | None = None) -> None:
        if at_ns is None:
            at_ns = time.time_ns()
        if chunks is not None:
            chunks.append((at_ns, chunk))
        if observers is not None:
            notify_chunk(observers, at_ns, chunk)

    return record


def _unknown_transfer_coding(headers: CIMultiDictProxy[str]) -> bool:
    """A transfer coding besides chunked (`gzip, chunked`): its body would go on decoded of the chunks only, the
    coding lost with the hop-by-hop field that named it."""
    codings = headers.getall("Transfer-Encoding", ())
    return bool(codings) and [c.strip().lower() for v in codings for c in v.split(",")] != ["chunked"]


async def _read_body(request: web.BaseRequest, limit: int) -> bytes | None:
    """The whole request body, or None when it is larger than `limit`."""
    if not request.body_exists:
        return b""
    if request.version >= HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        # The client holds the body back until told to go on (curl waits a second, then sends anyway). The
        # low-level web.Server does not answer this by itself; aiohttp's router would.
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim response is not part of the response's own size
    content = request.content
    if content.is_eof():  # the whole body came with the head (a model call mostly does): no wait, no iteration
        body = content.read_nowait()
        return body if len(body) <= limit else None
    parts: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> web.Response:
    return error_response(
        413, "request_too_large",
        f"llm-gateway accepts request bodies up to {limit} bytes (LLM_GATEWAY_MAX_BODY_BYTES)",
    )


def _not_found(method: str, path: str) -> web.Response:
    return error_response(
        404,
        "route_not_found",
        f"llm-gateway does not know where to send {method} {path}: no provider protocol recognizes this path. Set "
        "a catch-all upstream with --upstream default=URL (or LLM_GATEWAY_UPSTREAM_DEFAULT=URL), or send all "
        "traffic to one upstream with LLM_GATEWAY_UPSTREAM=URL.",
        path=path,
    )


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
