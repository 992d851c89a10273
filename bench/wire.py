"""The exchange every path carries: an Anthropic Messages request, a ~1 KB answer, or an SSE stream whose every
event names the time the upstream sent it.

Send times are CLOCK_MONOTONIC nanoseconds (`time.monotonic_ns`), one clock for every process on the machine, so
the client can tell a proxy's delay from the upstream's own timer jitter. Sans-IO: bytes in, bytes out.
"""

from __future__ import annotations

import orjson

MESSAGES_PATH = "/v1/messages"
#: the name the HTTPS paths ask for: a host the gateway intercepts as a forward proxy (named upstream `anthropic`)
TLS_SERVER_NAME = "api.anthropic.com"
HTTPS_PORT = 443
MODEL = "claude-bench-1"
# Marks the upstream's send time inside a text delta: `"text":"@t<ns>@ ..."`.
_MARK = b'"@t'

SYSTEM_PROMPT = (
    "You are a coding agent working in a large repository. Read the files you are given, explain what you change "
    "and why, keep changes small, run the tests after each change and report their outcome. "
) * 2
USER_PROMPT = (
    "Here is the failing test output; find the cause, propose a fix, and show the diff. The test checks that the "
    "relay forwards each chunk before it parses it, and it times out after five seconds on a slow stream. "
) * 2
ANSWER_TEXT = (
    "The relay awaits the parser before it writes the chunk, so a slow parse delays every byte that follows. "
    "Write first, then feed the parser a copy; the test then passes within its deadline. "
) * 4


def request_body(*, stream: bool, chunks: int = 0, interval_us: int = 0) -> bytes:
    """About 1 KB. A streamed request also tells the fake upstream how many events to send and how often."""
    body: dict[str, object] = {
        "model": MODEL,
        "max_tokens": 1024,
        "system": SYSTEM_PROMPT,
        "messages": [{"role": "user", "content": USER_PROMPT}],
        "stream": stream,
    }
    if stream:
        body["bench"] = {"chunks": chunks, "interval_us": interval_us}
    return orjson.dumps(body)


def request_headers(host: str, port: int) -> list[tuple[str, str]]:
    """What an Anthropic SDK sends, minus the noise (about 250 bytes)."""
    return [
        ("Host", f"{host}:{port}"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", "sk-bench-not-a-real-key"),
        ("User-Agent", "llm-gateway-bench/1"),
    ]


def http_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """A complete HTTP/1.1 POST with a keep-alive connection."""
    lines = [f"POST {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in request_headers(host, port)]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def connect_request(host: str, port: int) -> bytes:
    """What a client sends a forward proxy to open a tunnel to `host:port`."""
    return f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("ascii")


def stream_params(body: bytes) -> tuple[bool, int, int]:
    """(stream, chunks, interval_us) of a request built by `request_body`."""
    parsed = orjson.loads(body)
    bench = parsed.get("bench") or {}
    return bool(parsed.get("stream")), int(bench.get("chunks", 0)), int(bench.get("interval_us", 0))


ANSWER_BODY = orjson.dumps(
    {
        "id": "msg_bench0000000000000000000000",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": ANSWER_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 212, "output_tokens": 118, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0},
    }
)

_STREAM_HEAD = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_bench0000000000000000000000",'
    b'"type":"message","role":"assistant","model":"' + MODEL.encode() + b'","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":212,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)


def _stream_tail(chunks: int) -> bytes:
    return (
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        b'"stop_sequence":null},"usage":{"output_tokens":' + str(chunks).encode() + b"}}\n\n"
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )


def stream_chunk(index: int, chunks: int, sent_ns: int) -> bytes:
    """The bytes of write number `index` (0-based) of `chunks`: one timestamped text delta, with the message's
    opening events before the first and its closing events after the last, so every write carries a mark."""
    delta = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"@t' + str(sent_ns).encode() + b'@ one more token"}}\n\n'
    )
    if index == 0:
        delta = _STREAM_HEAD + delta
    if index == chunks - 1:
        delta += _stream_tail(chunks)
    return delta


def sent_ns_of(event: bytes) -> int | None:
    """The upstream's send time written into one SSE event, or None for an event without a mark."""
    start = event.find(_MARK)
    if start < 0:
        return None
    start += len(_MARK)
    end = event.find(b"@", start)
    return int(event[start:end]) if end > start else None
