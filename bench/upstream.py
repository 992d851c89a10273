"""The fake model upstream: `python -m bench.upstream --port N`.

A non-streamed request gets the ~1 KB answer at once. A streamed one gets `chunks` SSE writes, the first at
once and then one every `interval_us` on a fixed schedule (a late write does not push the later ones back);
each write carries its real send time (see `wire.py`). aiohttp's low-level server on uvloop, no routing.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from bench import serving, wire

_JSON_HEADERS = {"Content-Type": "application/json", "request-id": "req_bench"}
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                "request-id": "req_bench"}


async def handle(request: web.BaseRequest) -> web.StreamResponse:
    body = await request.read()
    if request.method != "POST" or not body:
        return web.Response(body=b'{"status":"ok"}', headers=_JSON_HEADERS)
    stream, chunks, interval_us = wire.stream_params(body)
    if not stream:
        return web.Response(body=wire.ANSWER_BODY, headers=_JSON_HEADERS)
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    await _send_stream(response, max(chunks, 1), interval_us * 1000)
    await response.write_eof()
    return response


async def _send_stream(response: web.StreamResponse, chunks: int, interval_ns: int) -> None:
    start = time.monotonic_ns()
    for index in range(chunks):
        due = start + index * interval_ns
        wait = due - time.monotonic_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        await response.write(wire.stream_chunk(index, chunks, time.monotonic_ns()))


if __name__ == "__main__":
    serving.main("python -m bench.upstream", handle)
