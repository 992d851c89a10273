"""Adds the configured profileArn to Kiro / Amazon Q GenerateAssistantResponse requests that lack one.

Amazon Q CLI drops `profileArn` when it talks to a custom endpoint, and IAM Identity Center profiles need it:
with `LLM_GATEWAY_KIRO_PROFILE_ARN` set, the gateway puts it back. This is the one place the gateway changes
a request, and only when the user asked for it.
"""

from __future__ import annotations

import orjson

from llm_gateway.flow import Flow
from llm_gateway.routing import Kind


class KiroProfileArn:
    def __init__(self, arn: str) -> None:
        self._arn = arn

    def __repr__(self) -> str:
        return f"KiroProfileArn({self._arn!r})"

    def request(self, flow: Flow) -> None:
        route = flow.route
        if route.protocol is None or route.protocol.upstream != "kiro" or route.kind is not Kind.CALL:
            return
        body = inject_profile_arn(flow.request_body, self._arn)
        if body is not None:
            flow.request_body = body  # the relay forwards flow.request_body; Content-Length is recomputed

    def response_headers(self, flow: Flow) -> None:
        pass

    def done(self, flow: Flow) -> None:
        pass

    def error(self, flow: Flow) -> None:
        pass


def inject_profile_arn(body: bytes, arn: str) -> bytes | None:
    """The GenerateAssistantResponse body with `profileArn` added, when it has none (Amazon Q CLI drops it on a
    custom endpoint; IAM Identity Center profiles need it). None in every other case: not JSON, not a GAR body,
    a profileArn key already there (even empty), or no ARN to add.

    The key is written right after the opening brace and every other byte is kept as sent, so numbers, key
    order and escapes are exactly the client's (a re-serialization could change them)."""
    if not arn:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "conversationState" not in doc or "profileArn" in doc:
        return None
    brace = len(body) - len(body.lstrip())  # a parsed object starts with "{" after any whitespace
    member = b'"profileArn":' + orjson.dumps(arn) + b","  # the object is not empty: it has conversationState
    return body[: brace + 1] + member + body[brace + 1 :]
