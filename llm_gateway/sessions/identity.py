"""Who is calling: the session, the agent within it, and the client's name, from headers and the parsed body.

Strongest evidence first: an explicit id the client sends, then a fingerprint of the client, its system prompt
and the first user message. Pure functions over plain data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from llm_gateway.protocols.exchange import ChatRequest, fingerprint

# (header, where the id comes from), strongest first
_SESSION_HEADERS = (
    ("x-claude-code-session-id", "claude-code header"),
    ("session-id", "codex header"),
    ("session_id", "codex header"),
    ("thread-id", "codex header"),
    ("agent-session-id", "goose header"),
    ("x-parent-session-id", "opencode parent session"),
    ("x-session-affinity", "opencode header"),
    ("x-client-session-id", "copilot header"),
    ("x-kilocode-taskid", "kilo header"),
    ("x-session-id", "x-session-id header"),
)
_LEGACY_USER_ID_SESSION = re.compile(r"_session_([0-9A-Za-z-]+)$")


@dataclass(frozen=True, slots=True)
class Identity:
    session_key: str
    session_source: str  # which evidence named the session, e.g. "claude-code header", "fingerprint"
    explicit: bool  # the client named the session itself (it becomes gen_ai.conversation.id)
    agent_key: str
    parent_agent_key: str | None
    client: str  # the agent's product name, e.g. "Claude Code"
    auxiliary: bool  # a side call (title, summary, checkpoint): no tools while the session's agents have some
    #: the client is a coding agent the gateway knows (not an SDK or an unknown program): a call of it without
    #: tools is a side call even before its main loop offered any (a title call that starts first)
    agentic: bool = False


#: the products `client_name` knows as agents, whose tool-less calls serve a main loop
AGENT_CLIENTS = frozenset({"Claude Code", "Codex", "Gemini CLI", "opencode", "Goose", "Kiro IDE", "Kiro Agent",
                           "Amazon Q CLI", "Aider"})


def client_name(headers: Mapping[str, str], request: ChatRequest) -> str:
    """The product people know the client by, from its User-Agent and tell-tale headers."""
    ua = headers.get("user-agent", "")
    low = ua.lower()
    if "claude-cli/" in low or "claude-code/" in low or headers.get("x-app") == "cli":
        return "Claude Code"
    if "codex" in low or headers.get("originator", "").startswith("codex"):
        return "Codex"
    if "geminicli" in low:  # GeminiCLI/ and, from 0.61, GeminiCLI-tui/
        return "Gemini CLI"
    if "opencode/" in low:
        return "opencode"
    if "goose" in low:
        return "Goose"
    if "kiroide" in low:
        return "Kiro IDE"
    if "app/amazonq-for-cli" in low or request.hints.get("origin") in ("KIRO_CLI", "AI_EDITOR", "CLI"):
        if request.hints.get("origin") == "CLI" and "kirocli" not in low:
            return "Amazon Q CLI"
        return "Kiro Agent"
    if "aider" in low:
        return "Aider"
    if low.startswith(("anthropic/", "asyncanthropic/")):
        return "Anthropic SDK"
    if low.startswith("openai/") or low.startswith("asyncopenai/"):
        return "OpenAI SDK"
    if "boto3" in low or "botocore" in low:
        return "AWS SDK"
    if "google-genai" in low or "gl-python" in low:
        return "Google GenAI SDK"
    product = ua.split("/", 1)[0].strip()
    return product or "agent"


def _session_from_user_id(user_id: str) -> str | None:
    """Claude Code's metadata.user_id: a JSON string with session_id (>= 2.1.78) or `..._session_<uuid>`."""
    if user_id.startswith("{"):
        try:
            doc = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            return None
        value = doc.get("session_id") if isinstance(doc, dict) else None
        return str(value) if value else None
    match = _LEGACY_USER_ID_SESSION.search(user_id)
    return match.group(1) if match else None


def _codex_turn_metadata(headers: Mapping[str, str]) -> dict:
    raw = headers.get("x-codex-turn-metadata")
    if not raw:
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def session_key(headers: Mapping[str, str], request: ChatRequest, client: str) -> tuple[str, str, bool]:
    """(key, source, explicit)."""
    hints = request.hints
    if hints.get("conversation_id"):
        return hints["conversation_id"], "conversation id", True
    for name, source in _SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return value, source, True
    if hints.get("user_id"):
        session = _session_from_user_id(hints["user_id"])
        if session:
            return session, "metadata.user_id", True
    for hint in ("session_id", "prompt_cache_key"):
        if hints.get(hint):
            return hints[hint], hint, True
    key = "fp-" + fingerprint(client, request.conversation_fingerprint)
    return key, "fingerprint", False


def identify(headers: Mapping[str, str], request: ChatRequest, *, agent_name: str | None = None) -> Identity:
    product = client_name(headers, request)
    client = agent_name or product
    key, source, explicit = session_key(headers, request, client)
    parent: str | None = None
    agent = headers.get("x-claude-code-agent-id")
    if agent:
        parent = headers.get("x-claude-code-parent-agent-id") or None
    elif headers.get("x-openai-subagent"):
        agent = f"subagent:{headers['x-openai-subagent']}"
    elif codex_agent := _codex_turn_metadata(headers).get("agent_name"):
        agent = f"agent:{codex_agent}"
    elif headers.get("x-parent-session-id") and headers.get("x-session-affinity"):
        agent = f"session:{headers['x-session-affinity']}"  # an opencode child session is a subagent
    else:
        agent = "fp-" + (request.agent_fingerprint or fingerprint(client))
    auxiliary = not request.tool_names and not request.tool_results
    return Identity(key, source, explicit, agent, parent, client, auxiliary, product in AGENT_CLIENTS)
