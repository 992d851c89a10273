"""Hostile HTTP/1.x for the gateway's own port: hypothesis strategies that build request bytes (request lines,
headers, bodies in every framing, pipelining, Expect: 100-continue, HTTP/1.0, oversized heads), and h11 as the
strict reference reader of what a client sent and of what the gateway answered."""

from __future__ import annotations

from dataclasses import dataclass, field

import h11
from hypothesis import strategies as st

from llm_gateway.upstream.http1 import HOP_BY_HOP

# ------------------------------------------------------------------------------------------------ strategies

_METHODS = [b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS"]
_TARGETS = [b"/v1/messages", b"/v1/chat/completions", b"/v1/models?limit=5", b"/", b"/a%20b/%zz",
            b"/v1/../../etc/passwd", b"//double", b"/_gateway/nothing"]
_NAMES = [b"Content-Type", b"Accept", b"x-api-key", b"Authorization", b"Cookie", b"User-Agent", b"Connection",
          b"Keep-Alive", b"Expect", b"Upgrade", b"TE", b"Trailer", b"Proxy-Connection", b"x-session-id",
          b"anthropic-version", b"Content-Encoding", b"X-Forwarded-For", b"x-custom"]
_VALUES = [b"close", b"keep-alive", b"100-continue", b"websocket", b"trailers", b"application/json", b"gzip",
           b"Upgrade", b"x-custom", b"sk-ant-secret", b"127.0.0.1", b""]
_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~", min_size=1,
                 max_size=12).map(str.encode)
_ANY = st.binary(max_size=16)
_CLEAN_VALUES = st.sampled_from(_VALUES) | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                                                    max_size=24).map(str.encode)
_OBS_TEXT = st.binary(min_size=1, max_size=8).map(lambda b: bytes(0x80 | x for x in b))  # 0x80-0xFF, rarely UTF-8

#: what a hostile (or broken) client may get wrong in a request, one or two at a time
MUTATIONS = ("method", "target", "version", "no-host", "name", "obs-text", "control", "any-value", "lf", "cr",
             "separator", "fold", "big-value", "many-fields", "long-line", "framing", "framing", "expect",
             "close", "upgrade", "absolute", "connect")


@st.composite
def bodies(draw, hostile: bool = False) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The framing headers and the bytes that follow the head: framed right (none, Content-Length, chunked), or,
    when `hostile`, framed wrong in one of the ways that confuse a server or a proxy behind it."""
    body = draw(st.binary(max_size=64) | st.sampled_from([b'{"model":"m","messages":[]}', b"GET / HTTP/1.1\r\n\r\n"]))
    chunks = _chunked(body, draw(st.lists(st.integers(1, 16), max_size=6)), draw(st.booleans()))
    if not hostile:
        how = draw(st.sampled_from(["none", "length", "chunked"]))
        if how == "none":
            return [], b""
        if how == "length":
            return [(b"Content-Length", str(len(body)).encode())], body
        return [(b"Transfer-Encoding", b"chunked")], chunks
    how = draw(st.sampled_from(["short", "long", "bad-chunk", "both", "twice", "odd-te"]))
    if how == "short":  # the client says more than it sends: the server waits, or the next request is swallowed
        return [(b"Content-Length", str(len(body) + draw(st.integers(1, 40))).encode())], body
    if how == "long":  # the client sends more than it says: the rest is read as the next request
        return [(b"Content-Length", str(max(0, len(body) - draw(st.integers(1, 40)))).encode())], body
    if how == "bad-chunk":
        bad = draw(st.sampled_from([b"zz\r\nab\r\n0\r\n\r\n", b"-1\r\n\r\n", b"ffffffffffffffffff\r\nx\r\n",
                                    b"3\r\nabcdef\r\n0\r\n\r\n", b"1;" + b"x" * 300 + b"\r\na\r\n0\r\n\r\n",
                                    b"0\r\nTrailer: x\r\n", b"3\nabc\n0\n\n", b"0x3\r\nabc\r\n0\r\n\r\n"]))
        return [(b"Transfer-Encoding", b"chunked")], bad
    if how == "both":  # the smuggling classic
        return [(b"Content-Length", str(len(body)).encode()), (b"Transfer-Encoding", b"chunked")], chunks
    if how == "twice":
        second = draw(st.sampled_from([len(body), len(body) + 1]))
        return [(b"Content-Length", str(len(body)).encode()), (b"Content-Length", str(second).encode())], body
    te = draw(st.sampled_from([b"gzip, chunked", b"chunked, gzip", b" chunked", b"Chunked", b"chunked, chunked",
                               b"identity", b"chunked\x0b"]))
    return [(b"Transfer-Encoding", te)], chunks


def _chunked(body: bytes, sizes: list[int], extension: bool) -> bytes:
    out, at = bytearray(), 0
    for size in [*sizes, len(body)]:
        piece = body[at : at + size]
        if not piece:
            break
        out += b"%x%s\r\n%s\r\n" % (len(piece), b";ext=1" if extension else b"", piece)
        at += len(piece)
    return bytes(out + b"0\r\n\r\n")


@st.composite
def requests(draw) -> bytes:
    """One request: well formed, with none, one or two of MUTATIONS."""
    mutations = set(draw(st.just([]) | st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=2)))
    method = draw(_TOKEN | _ANY) if "method" in mutations else draw(st.sampled_from(_METHODS))
    target = draw(st.sampled_from(_TARGETS))
    if "target" in mutations:
        target = draw(st.sampled_from([b"*", b"/a b", b"/\x00", b"/%", b"", b"/" + b"\xff" * 3, b"v1"]) | _ANY)
    if "absolute" in mutations:  # a proxy's request form, to a port where nothing listens
        target = b"http://127.0.0.1:9" + target
    if "connect" in mutations:  # a proxy's tunnel, to a port where nothing listens
        method, target = b"CONNECT", draw(st.sampled_from([b"127.0.0.1:9", b"127.0.0.1", b"[::1]:9", b"/v1"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    if "version" in mutations:
        version = draw(st.sampled_from([b"HTTP/2.0", b"HTTP/1.2", b"http/1.1", b"HTTP/1", b"HTTP/1.1 ", b""]) | _ANY)
    fields = [] if "no-host" in mutations else [(b"Host", b"127.0.0.1")]
    fields += draw(st.lists(st.tuples(st.sampled_from(_NAMES) | _TOKEN, _CLEAN_VALUES), max_size=4))
    if "name" in mutations:
        fields.append((draw(_ANY | st.sampled_from([b"", b"na me", b"name\x00", b"n\xe9"])), b"v"))
    for mutation, value in (("obs-text", _OBS_TEXT), ("control", st.sampled_from([b"a\x00b", b"a\x7fb", b"\x01"])),
                            ("any-value", _ANY)):
        if mutation in mutations:
            fields.append((b"x-custom", draw(value)))
    for mutation, extra in (("expect", (b"Expect", b"100-continue")), ("close", (b"Connection", b"close")),
                            ("upgrade", (b"Upgrade", b"websocket"))):
        if mutation in mutations:
            fields.append(extra)
    if "upgrade" in mutations:
        fields.append((b"Connection", b"Upgrade"))
    framing, body = draw(bodies(hostile="framing" in mutations))
    fields = draw(st.permutations(fields + framing))
    if "big-value" in mutations:
        fields.append((b"x-big", b"v" * draw(st.sampled_from([8_000, 9_000, 70_000]))))
    if "many-fields" in mutations:
        fields += [(b"x-%d" % i, b"v") for i in range(draw(st.sampled_from([100, 200])))]
    separator = draw(st.sampled_from([b":", b" : ", b":\t", b" :"])) if "separator" in mutations else b": "
    head = [method + b" " + target + b" " + version]
    if "long-line" in mutations:
        head[0] = head[0].replace(b" ", b" /" + b"a" * 9_000, 1)
    head += [name + separator + value for name, value in fields]
    if "fold" in mutations:  # obsolete line folding: a field value continued on the next line
        head.insert(len(head) // 2 + 1, b" folded")
    end = b"\n" if "lf" in mutations else b"\r" if "cr" in mutations else b"\r\n"
    return end.join(head) + end + end + body


@st.composite
def conversations(draw) -> tuple[bytes, list[int], list[float]]:
    """What one client sends on one connection: one to three requests back to back (pipelined), perhaps with
    junk after them; where it splits the bytes into writes, and how long it waits before each."""
    data = b"".join(draw(st.lists(requests(), min_size=1, max_size=3)))
    data += draw(st.sampled_from([b""] * 6 + [b"\r\n", b"GARBAGE", b"\x00\xff\x16\x03\x01"]))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=4, unique=True)))
    pauses = draw(st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.01, 0.05]), min_size=len(cuts) + 1,
                           max_size=len(cuts) + 1))
    return data, cuts, pauses


# ------------------------------------------------------------------------------------------------ reference


@dataclass(slots=True)
class Sent:
    """A request as h11 reads it from the client's bytes."""

    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)

    def forwarded_headers(self) -> list[tuple[bytes, bytes]]:
        """The fields the relay may pass on: not hop-by-hop, not named in Connection."""
        listed = {t.strip().lower() for n, v in self.headers if n.lower() == b"connection" for t in v.split(b",")}
        drop = {h.encode() for h in HOP_BY_HOP} | listed
        return [(n, v) for n, v in self.headers if n.lower() not in drop]


def read_requests(data: bytes) -> tuple[list[Sent], str]:
    """The complete requests h11 reads from `data`, in order, and how the bytes end after them: `"done"`,
    `"partial"` (an incomplete request) or `"error"` (bytes no strict server would take). Requests after one that
    asks to close the connection (HTTP/1.0, `Connection: close`) are read too: a server may answer them (aiohttp
    does, where the fields disagree), and they are what the client sent."""
    found: list[Sent] = []
    while data:
        connection = h11.Connection(h11.SERVER)
        connection.receive_data(data)
        current: Sent | None = None
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError:
                return found, "error"
            if event is h11.NEED_DATA:
                return found, "partial"
            if isinstance(event, h11.Request):
                current = Sent(event.method, event.target, event.http_version, list(event.headers.raw_items()))
            elif isinstance(event, h11.Data):
                assert current is not None
                current.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert current is not None
                found.append(current)
                data = connection.trailing_data[0]
                break
    return found, "done"


@dataclass(slots=True)
class Answer:
    status: int
    interim: list[int]  # 1xx before it


def read_answers(data: bytes, methods: list[bytes], closed: bool) -> tuple[list[Answer], bytes]:
    """The complete responses in `data` (h11 as the client; `methods[i]` is the method of the request the i-th
    answers, for HEAD's bodiless answers), and the bytes after them; `closed`: the server closed the connection
    after `data`. Raises h11.RemoteProtocolError on bytes that are not a well-formed HTTP/1.1 response."""
    answers: list[Answer] = []
    while data:
        method = methods[len(answers)] if len(answers) < len(methods) else b"GET"
        answer, rest = _read_answer(data, method, closed)
        if method == b"HEAD" and rest and not rest.startswith(b"HTTP/"):
            # A request refused for its head (a 400) is answered with a body even when it was a HEAD: the server
            # did not take it as one. It closes the connection after it.
            answer, rest = _read_answer(data, b"GET", closed)
        if answer is None:
            return answers, data
        answers.append(answer)
        data = rest
    return answers, data


def _read_answer(data: bytes, method: bytes, closed: bool) -> tuple[Answer | None, bytes]:
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method=b"HEAD" if method == b"HEAD" else b"GET", target=b"/",
                                headers=[(b"Host", b"gateway")]))
    connection.send(h11.EndOfMessage())
    connection.receive_data(data)
    if closed:
        connection.receive_data(b"")
    interim: list[int] = []
    status = None
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return None, data
        if isinstance(event, h11.InformationalResponse):
            interim.append(event.status_code)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            assert status is not None
            return Answer(status, interim), connection.trailing_data[0]
