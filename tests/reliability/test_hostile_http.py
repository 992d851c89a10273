"""Issue 20, item 5: hostile HTTP on the gateway's own port, over raw sockets, against a real gateway process.

Every case gets well-formed answers (read by h11) or a closed connection; the gateway keeps serving others;
its memory and file descriptors stay bounded; and nothing reaches the upstream that the client did not send
(each request the upstream receives is one h11 read from the client's bytes, with its method, target, end-to-end
headers and body). LLM_GATEWAY_FUZZ_EXAMPLES sets how many cases hypothesis tries (CI: a few seconds' worth)."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings

from tests.reliability.hostile import Sent, conversations, read_answers, read_requests
from tests.reliability.support import clean_env, cli_process
from tests.support.servers import Arrived, RecordingUpstream, running_upstream

EXAMPLES = int(os.environ.get("LLM_GATEWAY_FUZZ_EXAMPLES", "100"))
MAX_BODY = 64 * 1024
ANSWER_WITHIN_S = 5.0  # a complete request is answered by then (the upstream answers at once)
QUIET_S = 0.05  # after the answers expected, how long to wait for anything more
# The relay keeps idle connections to the upstream for a while (aiohttp's pool): after many requests at once, that
# many descriptors more for some seconds.
POOLED_FDS = 64
_probes = itertools.count()
_WEBSOCKET_HANDSHAKE = {"upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
                        "sec-websocket-extensions", "sec-websocket-protocol"}


class LoopThread:
    """An event loop in a thread of its own, for the servers of a synchronous (hypothesis) test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


@dataclass
class Target:
    """The gateway process under attack and the upstream behind it."""

    port: int
    pid: int
    upstream: RecordingUpstream
    log: Path
    rss_at_start_kib: int = 0
    fds_at_start: int = 0

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def serves(self) -> bool:
        """A plain request from another client is relayed and answered."""
        path = f"/v1/messages?probe={next(_probes)}"
        request = f"POST {path} HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        data, closed = exchange(self.port, request.encode(), [], [], until_answers=1)
        answers, _ = read_answers(data, [b"POST"], closed)
        return [a.status for a in answers] == [200] and any(a.raw_path == path for a in self.upstream.arrived)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    background = LoopThread()
    stack = AsyncExitStack()
    upstream = RecordingUpstream()
    log = tmp_path_factory.mktemp("hostile") / "gateway.log"

    async def start() -> Target:
        url = await stack.enter_async_context(running_upstream(upstream.handle))
        env = clean_env(LLM_GATEWAY_UPSTREAM=url, LLM_GATEWAY_MAX_BODY_BYTES=str(MAX_BODY))
        gateway = await stack.enter_async_context(cli_process("serve", "--port", "0", env=env, log=log))
        return Target(int(gateway.url.rsplit(":", 1)[1]), gateway.process.pid, upstream, log)

    try:
        started = background.run(start())
        assert started.serves()  # warm: the upstream connection pool, the first request's imports
        started.rss_at_start_kib, started.fds_at_start = started.rss_kib(), started.open_fds()
        yield started
    finally:
        background.run(stack.aclose())
        background.close()


def exchange(port: int, data: bytes, cuts: list[int], pauses: list[float], until_answers: int,
             methods: list[bytes] | None = None) -> tuple[bytes, bool]:
    """Sends `data` in pieces (split at `cuts`, each after its pause) and reads what comes back: until the server
    closes (True), or until `until_answers` complete responses were followed by QUIET_S of silence, or
    ANSWER_WITHIN_S passed (False)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start, end, pause in zip([0, *cuts], [*cuts, len(data)], pauses or [0.0], strict=False):
            time.sleep(pause)
            try:
                sock.sendall(data[start:end])
            except (BrokenPipeError, ConnectionResetError):  # the server answered and closed already
                break
        received = bytearray()
        deadline = time.monotonic() + ANSWER_WITHIN_S
        quiet_from: float | None = None
        while time.monotonic() < deadline:
            sock.settimeout(0.05)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                chunk = None
            except ConnectionResetError:
                return bytes(received), True
            if chunk == b"":
                return bytes(received), True
            if chunk:
                received += chunk
                quiet_from = None
                continue
            try:
                complete = len(read_answers(bytes(received), methods or [], closed=False)[0])
            except h11.RemoteProtocolError:
                complete = 0
            if complete >= until_answers:
                quiet_from = quiet_from or time.monotonic()
                if time.monotonic() - quiet_from >= QUIET_S:
                    break
        return bytes(received), False


def _matches(arrived: Arrived, sent: Sent) -> bool:
    """`arrived` is `sent` as relayed: the same method, target, body and end-to-end fields, the ones the HTTP
    client computes (Host, Content-Length) apart, and a WebSocket handshake's own (negotiated anew upstream)."""

    def raw(text: str) -> bytes:
        return text.encode("utf-8", "surrogateescape")

    handshake = any(n.lower() == b"sec-websocket-key" for n, _ in sent.headers)
    own = {"host", "content-length"} | (_WEBSOCKET_HANDSHAKE if handshake else set())
    headers = [(raw(k), raw(v)) for k, v in arrived.headers if k.lower() not in own]
    expected = [(n, v) for n, v in sent.forwarded_headers() if not handshake or n.lower().decode() not in own]
    return (raw(arrived.method) == sent.method and raw(arrived.raw_path) == sent.target
            and arrived.body == bytes(sent.body) and headers == expected)


def check_conversation(target: Target, data: bytes, cuts: list[int], pauses: list[float]) -> None:
    sent, ending = read_requests(data)
    methods = [s.method for s in sent]
    before = len(target.upstream.arrived)
    received, closed = exchange(target.port, data, cuts, pauses, len(sent), methods)
    # Well-formed answers, or a closed connection: no bytes that are not a response.
    try:
        answers, rest = read_answers(received, methods, closed)
    except h11.RemoteProtocolError as exc:
        raise AssertionError(f"not an HTTP response ({exc}): {received[:300]!r}") from None
    assert rest == b"" or not closed, f"a response cut short: {rest[:300]!r}"
    assert all(100 <= a.status < 600 for a in answers)
    if not closed and ending != "partial":
        assert len(answers) >= len(sent), f"{len(sent)} requests, {len(answers)} answers, connection left open"
    # Nothing reaches the upstream that the client did not send: each arrival is one of the client's requests,
    # in order, with its method, target, end-to-end headers and body.
    arrived = target.upstream.arrived[before:]
    position = 0
    for one in arrived:
        while position < len(sent) and not _matches(one, sent[position]):
            position += 1
        assert position < len(sent), f"the upstream got {one!r}; the client sent {sent!r}"
        position += 1


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(conversation=conversations())
def test_any_request_bytes_get_well_formed_answers_or_a_close_and_reach_the_upstream_only_as_sent(
    target: Target, conversation: tuple[bytes, list[int], list[float]]
) -> None:
    check_conversation(target, *conversation)


def test_slow_senders_hold_up_no_one_else(target: Target) -> None:
    """50 clients each send a request a byte at a time, 10 ms apart; others are answered meanwhile at once, and
    the slow ones in the end."""
    request = b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    slow = [socket.create_connection(("127.0.0.1", target.port)) for _ in range(50)]
    try:
        def trickle() -> None:
            for i in range(len(request)):
                for sock in slow:
                    sock.sendall(request[i : i + 1])
                time.sleep(0.01)

        sender = threading.Thread(target=trickle)
        sender.start()
        waits = []
        while sender.is_alive():
            began = time.monotonic()
            assert target.serves()
            waits.append(time.monotonic() - began)
        sender.join()
        for sock in slow:
            sock.settimeout(ANSWER_WITHIN_S)
            answer = b"".join(iter(lambda s=sock: s.recv(65536), b""))
            assert [a.status for a in read_answers(answer, [b"POST"], closed=True)[0]] == [200]
    finally:
        for sock in slow:
            sock.close()
    assert len(waits) > 5 and max(waits) < 0.5, waits


def test_two_thousand_idle_connections_leave_the_gateway_serving_within_bounded_memory(target: Target) -> None:
    """Connections that send nothing, half a request head, or a head and half its body, and then wait."""
    rss, fds = target.rss_kib(), target.open_fds()
    openers = [b"", b"POST /v1/messages HTTP/1.1\r\nHost: g\r\n",
               b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\n\r\n{\"model\": "]
    idle: list[socket.socket] = []
    try:
        for i in range(2000):
            sock = socket.create_connection(("127.0.0.1", target.port))
            sock.sendall(openers[i % 3])
            idle.append(sock)
        _until(lambda: target.open_fds() >= fds + 2000)
        began = time.monotonic()
        assert target.serves()
        served_in = time.monotonic() - began
        held_kib = target.rss_kib() - rss
    finally:
        for sock in idle:
            sock.close()
    _until(lambda: target.open_fds() <= fds + POOLED_FDS)
    print(f"2000 idle connections: a request answered in {served_in * 1e3:.1f} ms; {held_kib / 1024:.1f} MiB "
          "more resident while they were open")
    assert served_in < 0.5
    assert held_kib < 64 * 1024  # some 30 KiB a connection, at most
    assert target.serves()


def test_bodies_past_the_limit_are_refused_without_being_held(target: Target) -> None:
    rss = target.rss_kib()
    huge = b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nContent-Length: 1000000000000\r\n\r\n{"
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    chunked = b"POST /v1/messages HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 64
    for request in (huge, chunked):
        data, _ = exchange(target.port, request, [], [], until_answers=1)
        assert [a.status for a in read_answers(data, [b"POST"], closed=True)[0]] == [413]
    assert target.rss_kib() - rss < 16 * 1024


def test_the_gateway_ends_the_hostile_cases_serving_with_its_memory_and_descriptors_back(target: Target) -> None:
    assert target.serves()
    _until(lambda: target.open_fds() <= target.fds_at_start + POOLED_FDS)
    grown = target.rss_kib() - target.rss_at_start_kib
    print(f"after the hostile cases: {grown / 1024:.1f} MiB more resident than at the start")
    assert grown < 64 * 1024
    assert "Traceback" not in target.log.read_text(errors="replace")


def _until(condition, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)
