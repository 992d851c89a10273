"""Router: which protocol and upstream each request gets, from method, path and a few headers."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from llm_gateway.config import ConfigError, Settings, load_settings
from llm_gateway.routing import UPSTREAM_NAMES, Kind, Router, default_upstreams
from llm_gateway.routing.kiro import kiro_upstream
from llm_gateway.routing.providers import PROVIDERS, ROUTING_HEADERS

CALL, RELAY = Kind.CALL, Kind.RELAY
_VERTEX = "/v1/projects/p/locations/us-central1/publishers"

# (method, path, headers, protocol name, kind)
CASES = [
    # Anthropic Messages
    ("POST", "/v1/messages", {}, "anthropic.messages", CALL),
    ("POST", "/v1/messages?beta=true", {}, "anthropic.messages", CALL),
    ("POST", "/v1/messages/count_tokens?beta=true", {}, "anthropic.messages", RELAY),
    ("GET", "/v1/messages/batches", {}, "anthropic.messages", RELAY),
    ("GET", "/v1/messages", {}, "anthropic.messages", RELAY),
    ("POST", "/v1/complete", {}, "anthropic.messages", RELAY),
    # Anthropic's other /v1/ endpoints share paths with OpenAI's; the SDKs mark them with anthropic-version
    ("GET", "/v1/models", {"anthropic-version": "2023-06-01"}, "anthropic.messages", RELAY),
    ("POST", "/v1/files", {"Anthropic-Version": "2023-06-01"}, "anthropic.messages", RELAY),
    # OpenAI Chat Completions, also under a prefix (OpenRouter, Azure)
    ("POST", "/v1/chat/completions", {}, "openai.chat", CALL),
    ("GET", "/v1/chat/completions", {}, "openai.chat", RELAY),
    ("POST", "/api/v1/chat/completions", {}, "openai.chat", CALL),
    ("POST", "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21", {}, "openai.chat", CALL),
    # OpenAI Responses and the rest of OpenAI's API
    ("POST", "/v1/responses", {}, "openai.responses", CALL),
    ("GET", "/v1/responses", {"Upgrade": "websocket"}, "openai.responses", CALL),  # Responses over WebSocket
    ("POST", "/openai/v1/responses?api-version=preview", {}, "openai.responses", CALL),
    ("GET", "/v1/responses/resp_123", {}, "openai.responses", RELAY),
    ("POST", "/v1/responses/resp_123/cancel", {}, "openai.responses", RELAY),
    ("GET", "/v1/models", {}, "openai.responses", RELAY),
    ("POST", "/v1/embeddings", {}, "openai.responses", RELAY),
    ("POST", "/v1/traces/ingest", {}, "openai.responses", RELAY),
    ("POST", "/openai/deployments/emb/embeddings?api-version=2024-10-21", {}, "openai.responses", RELAY),
    # Kiro / Amazon Q: awsJson1_0 POST / with the operation in X-Amz-Target
    ("POST", "/", {"X-Amz-Target": "AmazonCodeWhispererStreamingService.GenerateAssistantResponse"}, "kiro", CALL),
    ("POST", "/", {"x-amz-target": "KiroRuntimeService.GenerateAssistantResponse"}, "kiro", CALL),
    ("POST", "/", {"X-Amz-Target": "AmazonQDeveloperStreamingService.SendMessage"}, "kiro", CALL),
    ("POST", "/", {"X-Amz-Target": "KiroRuntimeService.InvokeMCP"}, "kiro", RELAY),
    ("POST", "/?origin=KIRO_CLI", {"X-Amz-Target": "AmazonCodeWhispererService.ListAvailableModels"}, "kiro", RELAY),
    ("POST", "/generateAssistantResponse", {}, "kiro", CALL),
    # Bedrock runtime
    ("POST", "/model/amazon.nova-micro-v1%3A0/converse", {}, "bedrock", CALL),
    ("POST", "/model/amazon.nova-micro-v1%3A0/converse-stream", {}, "bedrock", CALL),
    ("POST", "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke", {}, "bedrock", CALL),
    ("POST", "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx/invoke-with-response-stream", {},
     "bedrock", CALL),
    ("POST", "/model/amazon.nova-micro-v1%3A0/count-tokens", {}, "bedrock", RELAY),
    ("GET", "/model/amazon.nova-micro-v1%3A0/converse", {}, "bedrock", RELAY),
    ("POST", "/guardrail/g1/version/1/apply", {}, "bedrock", RELAY),
    ("GET", "/async-invoke", {}, "bedrock", RELAY),
    # Gemini API, Code Assist (Gemini CLI) and Vertex AI
    ("POST", "/v1beta/models/gemini-2.0-flash:generateContent", {}, "gemini", CALL),
    ("POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", {}, "gemini", CALL),
    ("POST", "/v1beta/models/gemini-2.0-flash:countTokens", {}, "gemini", RELAY),
    ("GET", "/v1beta/models", {}, "gemini", RELAY),
    ("POST", "/upload/v1beta/files", {}, "gemini", RELAY),
    ("POST", "/v1internal:streamGenerateContent?alt=sse", {}, "gemini", CALL),
    ("POST", "/v1internal:loadCodeAssist", {}, "gemini", RELAY),
    ("POST", f"{_VERTEX}/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse", {}, "gemini", CALL),
    ("POST", f"{_VERTEX.replace('/v1/', '/v1beta1/')}/google/models/g:generateContent", {}, "gemini", CALL),
    ("POST", f"{_VERTEX}/anthropic/models/claude-sonnet-4:streamRawPredict", {}, "gemini", RELAY),
    ("GET", f"{_VERTEX}/google/models/gemini-2.0-flash", {}, "gemini", RELAY),
    # Ollama, also behind a prefix (Open WebUI serves it under /ollama)
    ("POST", "/api/chat", {}, "ollama", CALL),
    ("POST", "/api/generate", {}, "ollama", CALL),
    ("GET", "/api/tags", {}, "ollama", RELAY),
    ("POST", "/api/embed", {}, "ollama", RELAY),
    ("POST", "/ollama/api/chat", {}, "ollama", CALL),
]


def _router(**settings: object) -> Router:
    return Router(Settings(**settings), env={})


@pytest.mark.parametrize(("method", "path", "headers", "protocol", "kind"), CASES,
                         ids=[f"{c[0]} {c[1][:60]}" for c in CASES])
def test_recognized_request_routes_to_its_protocol_and_default_upstream(
    method: str, path: str, headers: dict[str, str], protocol: str, kind: Kind
) -> None:
    route = _router().resolve(method, path, CIMultiDict(headers))

    assert route is not None
    assert route.protocol is not None
    assert (route.protocol.name, route.kind) == (protocol, kind)
    if protocol == "kiro":  # per operation: tests/test_kiro_routing.py
        bare, _, query = path.partition("?")
        expected = kiro_upstream(CIMultiDict(headers).get("x-amz-target", ""), bare, query, "")
        assert route.base_url == expected
    else:
        assert route.base_url == default_upstreams({})[route.protocol.upstream]


def test_kiro_operations_go_to_runtime_q_or_control_plane_in_the_configured_region() -> None:
    router = Router(Settings(), env={"LLM_GATEWAY_KIRO_PROFILE_ARN": "arn:aws:codewhisperer:eu-central-1:1:profile/X"})
    gar = {"X-Amz-Target": "AmazonCodeWhispererStreamingService.GenerateAssistantResponse"}
    models = {"X-Amz-Target": "AmazonCodeWhispererService.ListAvailableModels"}
    assert router.resolve("POST", "/", CIMultiDict(gar)).base_url == "https://runtime.eu-central-1.kiro.dev"
    assert router.resolve("POST", "/", CIMultiDict(models)).base_url == "https://q.eu-central-1.amazonaws.com"
    q_cli = CIMultiDict({**gar, "User-Agent": "aws-sdk-rust/1.1 os/linux md/appVersion-1.19.4 app/AmazonQ-For-CLI"})
    assert router.resolve("POST", "/", q_cli).base_url == "https://q.eu-central-1.amazonaws.com"
    control = CIMultiDict({"X-Amz-Target": "KiroControlPlaneBearerService.GetUsageLimits"})
    assert router.resolve("POST", "/", control).base_url == "https://management.eu-central-1.kiro.dev"
    overridden = Router(Settings(upstreams={"kiro": "http://kiro.test"}), env={})
    assert overridden.resolve("POST", "/", CIMultiDict(gar)).base_url == "http://kiro.test"


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("POST", "/"), ("GET", "/favicon.ico"),
                                              ("POST", "/chat"), ("GET", "/v2/models")])
def test_unrecognized_request_without_catch_all_resolves_to_none(method: str, path: str) -> None:
    assert _router().resolve(method, path, CIMultiDict()) is None


def test_unrecognized_request_with_catch_all_goes_there_as_relay() -> None:
    route = _router(catch_all="http://catch.test").resolve("GET", "/", CIMultiDict())

    assert route is not None
    assert (route.protocol, route.kind, route.base_url) == (None, RELAY, "http://catch.test")


def test_named_upstream_replaces_only_its_default() -> None:
    router = _router(upstreams={"anthropic": "http://a.test"})

    assert router.upstreams["anthropic"] == "http://a.test"
    assert router.upstreams["openai"] == "https://api.openai.com"


def test_single_upstream_setting_covers_every_protocol_and_named_one_wins() -> None:
    router = Router(load_settings(env={"LLM_GATEWAY_UPSTREAM": "http://all.test",
                                       "LLM_GATEWAY_UPSTREAM_KIRO": "http://kiro.test"}), env={})

    assert router.upstreams == {**dict.fromkeys(UPSTREAM_NAMES, "http://all.test"), "kiro": "http://kiro.test"}
    assert router.catch_all == "http://all.test"
    assert router.resolve("GET", "/anything", CIMultiDict()) is not None


def test_bedrock_default_upstream_follows_aws_region() -> None:
    assert default_upstreams({"AWS_REGION": "eu-west-3"})["bedrock"] == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert default_upstreams({"AWS_DEFAULT_REGION": "ap-south-1"})["bedrock"].endswith(".ap-south-1.amazonaws.com")
    assert default_upstreams({})["bedrock"] == "https://bedrock-runtime.us-east-1.amazonaws.com"


@pytest.mark.parametrize("source", ["flag", "env"])
def test_unknown_upstream_name_is_config_error_listing_known_names(source: str) -> None:
    if source == "flag":
        settings = load_settings(env={}, upstream_flags=["antrhopic=http://a.test"])
    else:
        settings = load_settings(env={"LLM_GATEWAY_UPSTREAM_ANTRHOPIC": "http://a.test"})

    with pytest.raises(ConfigError) as caught:
        Router(settings, env={})

    message = str(caught.value)
    assert "antrhopic" in message
    assert all(name in message for name in UPSTREAM_NAMES)
    assert "default" in message


class _ReadHeaders(CIMultiDict):
    """Headers that note each name looked up."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key, default=None):  # type: ignore[override]
        self.read.add(key.lower())
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key).lower())
        return super().__contains__(key)

    def __getitem__(self, key):  # type: ignore[override]
        self.read.add(key.lower())
        return super().__getitem__(key)


def test_classifiers_read_no_header_but_the_routing_headers() -> None:
    # The router remembers its answers by the method, the path and these headers' values: a classifier reading
    # any other header would get answers meant for another request.
    read: set[str] = set()
    for method, path, headers, _, _ in CASES:
        for provider in PROVIDERS:
            seen = _ReadHeaders({**headers, "User-Agent": "x", "Content-Type": "application/json"})
            provider.classify(method, path, seen)
            read |= seen.read
    assert read <= set(ROUTING_HEADERS)
    assert read == set(ROUTING_HEADERS)  # each is read somewhere: the list is not wider than it needs


def test_a_router_remembering_its_answers_gives_each_request_its_own() -> None:
    # The cases share paths that their headers tell apart (/v1/models, /v1/responses, Kiro's /)
    router = _router()
    for _ in range(2):
        for method, path, headers, _, _ in CASES:
            assert router.resolve(method, path, CIMultiDict(headers)) == _router().resolve(
                method, path, CIMultiDict(headers))
