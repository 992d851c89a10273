"""A local OTLP/HTTP receiver that accepts every export and discards it: `python -m bench.sink --port N`.

It only counts: export requests, bytes and spans (so a run can show the traced gateway really exported).
`GET /stats` returns the counts as JSON.
"""

from __future__ import annotations

import gzip

import orjson
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import serving


class Counts:
    """What arrived. Trace payloads are kept and only decoded when asked for `/stats`: decoding them as they
    arrive would take CPU away from the load generator and the upstream, which share this sink's CPU."""

    __slots__ = ("bytes", "exports", "payloads")

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0
        self.payloads: list[tuple[bytes, bool]] = []  # (trace export body, gzipped)

    def as_dict(self) -> dict[str, int]:
        return {"exports": self.exports, "bytes": self.bytes, "spans": sum(_spans(*p) for p in self.payloads)}


def _spans(payload: bytes, gzipped: bool) -> int:
    try:
        export = ExportTraceServiceRequest.FromString(gzip.decompress(payload) if gzipped else payload)
    except Exception:  # a body the sink cannot read was still accepted: it only counts
        return 0
    return sum(len(scope.spans) for resource in export.resource_spans for scope in resource.scope_spans)


def make_handler(counts: Counts):
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "GET" and request.path == "/stats":
            return web.Response(body=orjson.dumps(counts.as_dict()), content_type="application/json")
        payload = await request.read()
        counts.exports += 1
        counts.bytes += len(payload)
        if request.path.endswith("/v1/traces"):
            counts.payloads.append((payload, request.headers.get("Content-Encoding") == "gzip"))
        # An empty protobuf message is a valid Export*ServiceResponse (full success).
        return web.Response(body=b"", content_type="application/x-protobuf")

    return handle


if __name__ == "__main__":
    serving.main("python -m bench.sink", make_handler(Counts()))
