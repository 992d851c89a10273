"""Relayed requests through aiohttp's client, for `LLM_GATEWAY_HTTP_SPANS=aiohttp`: the aiohttp-client
instrumentation's HTTP spans exist only for requests aiohttp sends. Same calls and errors as `UpstreamPool`."""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from llm_gateway.upstream.connection import UpstreamClosed, UpstreamUnreachable
from llm_gateway.upstream.http1 import BODY_METHODS, Fields


class AiohttpResponse:
    """An aiohttp ClientResponse seen as an `UpstreamResponse`."""

    __slots__ = ("_response", "headers", "raw_headers", "reason", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.reason = response.reason or ""
        self.headers: CIMultiDictProxy[str] = response.headers
        self.raw_headers = response.raw_headers
        self._response = response

    async def read(self) -> bytes:
        try:
            return await self._response.content.readany()
        except aiohttp.ServerTimeoutError as exc:
            raise TimeoutError(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamClosed(f"{type(exc).__name__}: {exc}", True) from exc

    def whole_body(self) -> None:
        return None  # read as it comes

    def at_eof(self) -> bool:
        return self._response.content.at_eof()

    def release(self) -> None:
        if self.at_eof():
            self._response.release()  # back to the pool
        else:
            self._response.close()  # the upstream sees the cancel at once


class AiohttpUpstream:
    """`request()` through an aiohttp ClientSession (the relay's, which also carries its WebSockets)."""

    #: aiohttp's client writes header text as UTF-8: a value that is not UTF-8 cannot go on unchanged
    writes_header_text = True

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def request(self, method: str, url: str, fields: Fields, body: bytes | None) -> AiohttpResponse:
        """`fields`: UTF-8 (the relay refuses a request whose fields are not, see `writes_header_text`)."""
        headers = CIMultiDict([(name.decode(), value.decode()) for name, value in fields])
        try:
            response = await self._session.request(method, URL(url, encoded=True), headers=headers,
                                                   data=body if body or method in BODY_METHODS else None,
                                                   allow_redirects=False)
        except aiohttp.ServerTimeoutError as exc:
            raise TimeoutError(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return AiohttpResponse(response)

    def close(self) -> None:
        """The session is the relay's to close."""
