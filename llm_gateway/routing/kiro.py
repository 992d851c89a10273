"""Where Kiro / Amazon Q requests go upstream: per operation and per region.

`KiroUpstream` is the router's chooser for the `kiro` provider (no I/O). The hosts (evidence in docs/kiro.md):

- the model runtime (`KiroRuntimeService.*` from Kiro CLI V3 / newer IDEs, and the streaming
  `AmazonCodeWhispererStreamingService.*` that Kiro CLI V2 sends to its `api.krs.service` endpoint, whose default
  is `runtime.{region}.kiro.dev` from 2.7.0): `https://runtime.{region}.kiro.dev`;
- Amazon Q CLI's SigV4 `AmazonQDeveloperStreamingService.SendMessage`, the non-streaming
  `AmazonCodeWhispererService.*` (model lists, profiles, telemetry: the capture has Kiro CLI 2.4.1's
  ListAvailableModels answered there) and the older IDE's restJson `POST /generateAssistantResponse`:
  `https://q.{region}.amazonaws.com`;
- the Kiro control plane (`KiroControlPlane*` / `KiroManagement*` targets, and restJson control-plane paths such as
  `/ListAvailableProfiles` or `/List-Available-Profiles`): `https://management.{region}.kiro.dev`.

A region is used only when it looks like one (`us-east-1`), so a crafted profileArn cannot pick the host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qs

DEFAULT_REGION = "us-east-1"

_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}", re.ASCII)
_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:([^:]*):[^:]*:.+")
_RUNTIME_SERVICES = frozenset({"KiroRuntimeService", "AmazonCodeWhispererStreamingService"})
_CONTROL_SERVICE_PREFIXES = ("KiroControlPlane", "KiroManagement")
#: control-plane operations, lowercased without separators, as restJson paths name them
_CONTROL_OPERATIONS = frozenset(
    {"listavailableprofiles", "listavailablemodels", "getprofile", "getusagelimits", "listavailablecustomizations"}
)


#: what the startup banner shows as Kiro's default upstream: `KiroUpstream` picks one per request
KIRO_HOSTS = "https://runtime.{region}.kiro.dev, q.{region}.amazonaws.com, management.{region}.kiro.dev"

ENV_PROFILE_ARN = "LLM_GATEWAY_KIRO_PROFILE_ARN"
ENV_REGION = "LLM_GATEWAY_KIRO_REGION"


class KiroUpstream:
    """Picks the default upstream of each Kiro / Q request from its operation and region. Without a region
    configured and none in the query, the model call's body has the last word (its profileArn)."""

    __slots__ = ("_region",)

    def __init__(self, env: Mapping[str, str]) -> None:
        self._region = kiro_region(env)

    def __repr__(self) -> str:
        return f"KiroUpstream(region={self._region or None!r})"

    def base_url(self, path: str, headers: Mapping[str, str]) -> tuple[str, bool]:
        bare, _, query = path.partition("?")
        needs_body = not self._region and "profileArn=" not in query
        return _base_url(headers, bare, query, self._region), needs_body

    def base_url_from_body(self, path: str, headers: Mapping[str, str], body: bytes) -> str | None:
        region = region_in_body(body)
        if not region:
            return None
        bare, _, query = path.partition("?")
        return _base_url(headers, bare, query, region)


def _base_url(headers: Mapping[str, str], path: str, query: str, region: str) -> str:
    return kiro_upstream(headers.get("x-amz-target", ""), path, query, region, headers.get("user-agent", ""))


def kiro_region(env: Mapping[str, str]) -> str:
    """The configured region: LLM_GATEWAY_KIRO_REGION, else the region of LLM_GATEWAY_KIRO_PROFILE_ARN, else
    AWS_REGION / AWS_DEFAULT_REGION, else empty (then a request's own profileArn query, else us-east-1)."""
    for value in (env.get(ENV_REGION), region_from_profile_arn(env.get(ENV_PROFILE_ARN) or ""),
                  env.get("AWS_REGION"), env.get("AWS_DEFAULT_REGION")):
        if value and _REGION.fullmatch(value):
            return value
    return ""


def region_from_profile_arn(arn: str) -> str | None:
    """`us-east-1` from `arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK`; None if not an ARN
    with a region."""
    match = _ARN.fullmatch(arn.strip())
    if match is None or not _REGION.fullmatch(match.group(1)):
        return None
    return match.group(1)


_BODY_ARN = re.compile(rb'"profileArn"\s*:\s*"([^"]{1,512})"')


def region_in_body(body: bytes) -> str | None:
    """The region of the `profileArn` a request body carries (Kiro CLI sends it with each model call), or None.
    Looked for from the end: it is a top-level field after the (long) conversation."""
    at = body.rfind(b'"profileArn"')
    match = _BODY_ARN.match(body, at) if at >= 0 else None
    return region_from_profile_arn(match.group(1).decode("utf-8", "replace")) if match else None


def kiro_upstream(target: str, path: str, query: str, region: str, user_agent: str = "") -> str:
    """The default upstream base URL (no trailing slash) for a Kiro / Q request. `region` is the router's choice
    (the configuration's, or the body's profileArn: `region_in_body`); when it is empty or not a region, the
    profileArn in the query (control-plane calls carry one) decides, else us-east-1."""
    if not _REGION.fullmatch(region or ""):
        arns = parse_qs(query).get("profileArn", [])
        region = (region_from_profile_arn(arns[0]) if arns else None) or DEFAULT_REGION
    service = target.partition(".")[0]
    if service in _RUNTIME_SERVICES and not _is_q_cli(user_agent):
        return f"https://runtime.{region}.kiro.dev"
    if service.startswith(_CONTROL_SERVICE_PREFIXES):
        return f"https://management.{region}.kiro.dev"
    if not target and _operation(path) in _CONTROL_OPERATIONS:
        return f"https://management.{region}.kiro.dev"
    return f"https://q.{region}.amazonaws.com"


def _is_q_cli(user_agent: str) -> bool:
    """Amazon Q Developer CLI (app version 1.x, no Kiro token) streams from the Q host, not Kiro's runtime."""
    return "md/appVersion-1." in user_agent and "kiro" not in user_agent.lower()


def _operation(path: str) -> str:
    """`/List-Available-Profiles?x` -> `listavailableprofiles`."""
    return path.partition("?")[0].strip("/").replace("-", "").replace("_", "").lower()
