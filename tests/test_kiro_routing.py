"""Kiro / Q upstream choice, the region from a profileArn, and the profileArn injection (which must never touch a
body in any other way). Request bodies come from the recorded Kiro CLI 2.4.1 session."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from llm_gateway.addons.kiro_profile import inject_profile_arn
from llm_gateway.config import Settings
from llm_gateway.recordings import fixtures
from llm_gateway.routing import Router
from llm_gateway.routing.kiro import kiro_upstream, region_from_profile_arn, region_in_body
from tests.support import FIXTURES

SESSION = fixtures.load(FIXTURES / "kiro" / "cli-2.4.1-session.json")
ARN = "arn:aws:codewhisperer:eu-central-1:123456789012:profile/ABCDEFGHIJKL"


def recorded_gar_body() -> bytes:
    """The first recorded GenerateAssistantResponse body, which carries a profileArn."""
    return next(ex.request.body for ex in SESSION.exchanges
                if (fixtures.header(ex.request.headers, "x-amz-target") or "").endswith("GenerateAssistantResponse"))


def without_profile(body: bytes) -> bytes:
    doc = json.loads(body)
    del doc["profileArn"]
    return json.dumps(doc, ensure_ascii=False).encode()


# ---------------------------------------------------------------------------------------------------------
# Upstream


@pytest.mark.parametrize(("target", "path", "host"), [
    ("AmazonCodeWhispererStreamingService.GenerateAssistantResponse", "/", "runtime.eu-central-1.kiro.dev"),
    ("AmazonCodeWhispererStreamingService.InvokeMCP", "/", "runtime.eu-central-1.kiro.dev"),
    ("KiroRuntimeService.GenerateAssistantResponse", "/", "runtime.eu-central-1.kiro.dev"),
    ("KiroRuntimeService.GetFeatureConfiguration", "/", "runtime.eu-central-1.kiro.dev"),
    ("AmazonQDeveloperStreamingService.SendMessage", "/", "q.eu-central-1.amazonaws.com"),
    ("AmazonCodeWhispererService.ListAvailableModels", "/", "q.eu-central-1.amazonaws.com"),
    ("AmazonCodeWhispererService.SendTelemetryEvent", "/", "q.eu-central-1.amazonaws.com"),
    ("KiroControlPlaneBearerService.GetUsageLimits", "/", "management.eu-central-1.kiro.dev"),
    ("", "/generateAssistantResponse", "q.eu-central-1.amazonaws.com"),
    ("", "/List-Available-Profiles", "management.eu-central-1.kiro.dev"),
    ("", "/getUsageLimits?origin=KIRO_CLI", "management.eu-central-1.kiro.dev"),
])
def test_upstream_follows_the_target_then_the_path(target: str, path: str, host: str) -> None:
    assert kiro_upstream(target, path, "", "eu-central-1") == f"https://{host}"


def test_recorded_requests_go_to_their_service() -> None:
    hosts = [urlsplit(kiro_upstream(fixtures.header(ex.request.headers, "x-amz-target") or "",
                                    ex.request.path.partition("?")[0], ex.request.path.partition("?")[2],
                                    "us-east-1")).hostname for ex in SESSION.exchanges]
    # ListAvailableModels was answered by the legacy host in the capture; the model calls go to the runtime
    assert hosts == ["q.us-east-1.amazonaws.com"] + ["runtime.us-east-1.kiro.dev"] * (len(hosts) - 1)


def test_query_profile_arn_gives_the_region_when_the_router_has_none() -> None:
    query = SESSION.exchanges[0].request.path.partition("?")[2]  # ListAvailableModels: ?origin=...&profileArn=...
    assert kiro_upstream("AmazonCodeWhispererService.ListAvailableModels", "/", query, "") == (
        "https://q.us-east-1.amazonaws.com")
    assert kiro_upstream("KiroRuntimeService.GenerateAssistantResponse", "/", f"profileArn={ARN}", "") == (
        "https://runtime.eu-central-1.kiro.dev")


@pytest.mark.parametrize("region", ["", "evil.example.com/x", "us-east-1.attacker.net", "US-EAST-1", "../",
                                    "us-east-\u0661"])  # an Arabic-Indic digit is a digit to `\d`
def test_a_value_that_is_not_a_region_never_reaches_the_host(region: str) -> None:
    assert kiro_upstream("KiroRuntimeService.GenerateAssistantResponse", "/", "", region) == (
        "https://runtime.us-east-1.kiro.dev")


@settings(max_examples=100, deadline=None)
@given(target=st.text(max_size=40), path=st.text(max_size=40), query=st.text(max_size=60),
       region=st.text(max_size=20))
def test_any_input_gives_one_of_the_known_hosts(target: str, path: str, query: str, region: str) -> None:
    host = urlsplit(kiro_upstream(target, path, query, region)).hostname or ""
    assert host.startswith(("runtime.", "management.", "q.")) and host.endswith((".kiro.dev", ".amazonaws.com"))
    assert len(host.split(".")) == 4  # service, region, domain: nothing from the input but a checked region


# ---------------------------------------------------------------------------------------------------------
# Region from a profile ARN


def test_region_of_the_recorded_profile_arn() -> None:
    arn = json.loads(recorded_gar_body())["profileArn"]
    assert region_from_profile_arn(arn) == arn.split(":")[3]


@pytest.mark.parametrize("arn", ["", "not an arn", "arn:aws:codewhisperer::123:profile/X",
                                 "arn:aws:codewhisperer:evil.com:123:profile/X", "arn:aws:codewhisperer:us-east-1"])
def test_no_region_from_what_is_not_a_regional_arn(arn: str) -> None:
    assert region_from_profile_arn(arn) is None


# ---------------------------------------------------------------------------------------------------------
# profileArn injection


def test_missing_profile_arn_is_added_and_nothing_else_changes() -> None:
    body = without_profile(recorded_gar_body())
    injected = inject_profile_arn(body, ARN)
    assert injected is not None
    assert json.loads(injected) == {**json.loads(body), "profileArn": ARN}
    member = b'"profileArn":' + json.dumps(ARN).encode() + b","
    assert injected.replace(member, b"", 1) == body  # every other byte as sent


def test_body_with_a_profile_arn_is_left_alone() -> None:
    assert inject_profile_arn(recorded_gar_body(), ARN) is None
    assert inject_profile_arn(b'{"profileArn": null, "conversationState": {}}', ARN) is None


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"text"', b"{}", b'{"origin":"KIRO_CLI"}',  # not a GenerateAssistantResponse body
    b'{"conversationState": {}} trailing',
])
def test_other_bodies_are_left_alone(body: bytes) -> None:
    assert inject_profile_arn(body, ARN) is None


def test_no_arn_means_no_change() -> None:
    assert inject_profile_arn(without_profile(recorded_gar_body()), "") is None


def test_leading_whitespace_and_exotic_numbers_survive() -> None:
    body = b' \n{"conversationState":{"n":1.0e2,"big":123456789012345678901234567890,"s":"\\u00e9"}}'
    injected = inject_profile_arn(body, ARN)
    assert injected == b' \n{"profileArn":' + json.dumps(ARN).encode() + b"," + body[3:]


@settings(max_examples=100, deadline=None)
@given(doc=st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8), max_size=4),
       arn=st.text(min_size=1, max_size=30))
def test_injection_gives_valid_json_with_the_arn(doc: dict[str, Any], arn: str) -> None:
    body = json.dumps({"conversationState": {}, **doc}).encode()
    injected = inject_profile_arn(body, arn)
    if "profileArn" in doc:
        assert injected is None
    else:
        assert injected is not None and json.loads(injected) == {"conversationState": {}, **doc, "profileArn": arn}


# ---------------------------------------------------------------------------------------------------------
# Region from the body (no region configured)


def _gar_headers(ex: fixtures.Exchange) -> dict[str, str]:
    return {k: v for k, v in ex.request.headers if k.lower() in ("x-amz-target", "user-agent")}


def test_the_body_profile_arn_picks_the_region_when_nothing_else_does() -> None:
    ex = next(e for e in SESSION.exchanges if e.request.body == recorded_gar_body())
    recorded_arn = json.loads(ex.request.body)["profileArn"]
    moved = ex.request.body.replace(recorded_arn.encode(), ARN.encode())  # the same call from an eu-central-1 profile
    headers = CIMultiDict(_gar_headers(ex))
    router = Router(Settings(), env={})
    route = router.resolve("POST", ex.request.path, headers)
    assert route is not None and route.needs_body
    chosen = router.with_body(route, ex.request.path, headers, moved)
    region = region_from_profile_arn(ARN)
    assert urlsplit(chosen.base_url).hostname == urlsplit(kiro_upstream(
        headers["x-amz-target"], ex.request.path, "", region, headers.get("user-agent", ""))).hostname
    assert region in chosen.base_url and not chosen.needs_body
    # The recorded body's own ARN (us-east-1), and no ARN at all: the default region.
    assert router.with_body(route, ex.request.path, headers, ex.request.body).base_url == route.base_url
    assert router.with_body(route, ex.request.path, headers, without_profile(ex.request.body)).base_url == (
        route.base_url)
    # A configured region wins, and then the body is not needed.
    configured = Router(Settings(), env={"LLM_GATEWAY_KIRO_REGION": "us-west-2"})
    assert not configured.resolve("POST", ex.request.path, headers).needs_body


@pytest.mark.parametrize("body", [b"", b"{}", b'{"profileArn": "not-an-arn"}', b'{"profileArn": 7}',
                                  b'{"profileArn":"arn:aws:codewhisperer:../evil:1:profile/x"}'])
def test_no_region_from_a_body_without_a_regional_arn(body: bytes) -> None:
    assert region_in_body(body) is None
