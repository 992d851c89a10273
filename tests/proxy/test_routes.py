"""Where a request read on an intercepted host goes (`Router.resolve_at`): its upstream's URL when the user set
one, else the host itself; that upstream's protocols say what it is, whatever the path."""

from __future__ import annotations

import pytest

from llm_gateway.config import Settings
from llm_gateway.proxy.intercept import PROVIDER_HOSTS
from llm_gateway.routing import UPSTREAM_NAMES, Kind, Router

KIRO_CALL = {"x-amz-target": "KiroRuntimeService.GenerateAssistantResponse"}


def test_every_intercepted_host_names_a_known_upstream() -> None:
    assert {upstream for _, upstream in PROVIDER_HOSTS} <= set(UPSTREAM_NAMES)


@pytest.mark.parametrize(("upstream", "origin", "method", "path", "headers", "protocol", "kind"), [
    ("anthropic", "https://api.anthropic.com", "POST", "/v1/messages?beta=true", {}, "anthropic.messages",
     Kind.CALL),
    # no anthropic-version header: still Anthropic's, never sent on as an OpenAI request
    ("anthropic", "https://api.anthropic.com", "GET", "/v1/models", {}, None, Kind.RELAY),
    ("openai", "https://chatgpt.com", "POST", "/backend-api/codex/responses", {}, "openai.responses", Kind.CALL),
    ("openai", "https://chatgpt.com", "GET", "/backend-api/codex/responses", {}, "openai.responses", Kind.RELAY),
    ("openai", "https://chatgpt.com", "GET", "/backend-api/wham/usage", {}, None, Kind.RELAY),
    ("gemini", "https://cloudcode-pa.googleapis.com", "POST", "/v1internal:streamGenerateContent?alt=sse", {},
     "gemini", Kind.CALL),
    ("kiro", "https://runtime.eu-central-1.kiro.dev", "POST", "/", KIRO_CALL, "kiro", Kind.CALL),
    ("bedrock", "https://bedrock-runtime.us-west-2.amazonaws.com", "POST", "/model/m/converse-stream", {},
     "bedrock", Kind.CALL),
    ("default", "https://llm.internal", "POST", "/v1/chat/completions", {}, "openai.chat", Kind.CALL),
    ("default", "https://llm.internal", "GET", "/", {}, None, Kind.RELAY),
])
def test_no_override_goes_to_the_host_itself(upstream: str, origin: str, method: str, path: str,
                                            headers: dict[str, str], protocol: str | None, kind: Kind) -> None:
    route = Router(Settings(), {}).resolve_at(upstream, origin, method, path, headers)
    assert route.base_url == origin
    assert (route.protocol.name if route.protocol else None, route.kind) == (protocol, kind)
    assert route.upstream_url(path) == origin + path
    assert not route.needs_body  # the host is known: Kiro's region is not guessed from the body


def test_named_override_wins_for_its_hosts_whatever_the_path() -> None:
    router = Router(Settings(upstreams={"kiro": "http://127.0.0.1:9/k", "anthropic": "http://127.0.0.1:9/a"}), {})
    route = router.resolve_at("kiro", "https://q.us-east-1.amazonaws.com", "GET", "/anything", {})
    assert route.upstream_url("/anything") == "http://127.0.0.1:9/k/anything"
    assert router.resolve_at("anthropic", "https://api.anthropic.com", "GET", "/x", {}).base_url.endswith("/a")
    assert router.resolve_at("openai", "https://api.openai.com", "GET", "/x", {}).base_url == "https://api.openai.com"


def test_added_hosts_go_to_the_catch_all_when_set_and_one_upstream_takes_everything() -> None:
    with_default = Router(Settings(catch_all="http://127.0.0.1:9"), {})
    assert with_default.resolve_at("default", "https://llm.internal", "GET", "/", {}).base_url == "http://127.0.0.1:9"
    assert with_default.resolve_at("openai", "https://api.openai.com", "GET", "/", {}).base_url == \
        "https://api.openai.com"
    one = Router(Settings(catch_all="http://127.0.0.1:8", force_all=True), {})
    assert one.resolve_at("gemini", "https://cloudcode-pa.googleapis.com", "GET", "/", {}).base_url == \
        "http://127.0.0.1:8"


def test_unread_host_is_relayed_to_itself_untraced() -> None:
    route = Router(Settings(upstreams={"openai": "http://127.0.0.1:9"}), {}).resolve_at(
        None, "http://example.org", "POST", "/v1/chat/completions", {})
    assert (route.protocol, route.kind, route.base_url) == (None, Kind.RELAY, "http://example.org")
