"""What goes wrong inside a response: the provider's own error document (a non-2xx body, or an error event inside
a stream), and the `ParseIssue` that stands for what a parser could not read."""

from __future__ import annotations

import orjson

from llm_gateway.protocols import events as ev


class ErrorBodyParser:
    """Reads a non-2xx body for the provider's error type and message (Anthropic, OpenAI, Gemini, AWS shapes)."""

    __slots__ = ("_parts", "_status")

    #: error bodies past this size are not kept for reading
    MAX_BYTES = 256 * 1024

    def __init__(self, status: int) -> None:
        self._status = status
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> list[ev.Event]:
        if sum(map(len, self._parts)) < self.MAX_BYTES:
            self._parts.append(data)
        return []

    def close(self) -> list[ev.Event]:
        etype, message = error_fields(b"".join(self._parts))
        return [ev.ProviderError(etype or str(self._status), message)]


def error_fields(body: bytes) -> tuple[str | None, str | None]:
    """(type, message) from a provider error document, or (None, None) when the body is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:500].decode("utf-8", "replace").strip()
        return None, text or None
    if isinstance(doc, list) and doc:  # Gemini's JSON-array streams wrap errors too
        doc = doc[0]
    if not isinstance(doc, dict):
        return None, None
    err = doc.get("error", doc)
    if isinstance(err, str):
        return None, err
    if not isinstance(err, dict):
        return None, None
    etype = err.get("type") or err.get("code") or err.get("status") or doc.get("__type")
    if isinstance(etype, str) and "#" in etype:  # AWS: "com.amazon...#ValidationException"
        etype = etype.rpartition("#")[2]
    message = err.get("message") or err.get("Message") or doc.get("message")
    return (str(etype) if etype is not None else None), (str(message) if message is not None else None)


def issue_from(where: str, exc: Exception) -> ev.ParseIssue:
    """A `ParseIssue` naming where reading failed and the exception, kept short for a span attribute."""
    return ev.ParseIssue(f"{where}: {type(exc).__name__}: {exc}"[:300])
