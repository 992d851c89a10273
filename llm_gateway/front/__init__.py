"""The gateway's own HTTP/1.1 server for the requests it relays most: a plain request with its body framed by
Content-Length, on a connection the client keeps alive, directly or inside a connection the forward proxy reads.
With a handler that answers at once, the gateway's process spends about 183k instructions a request under
aiohttp's server and 120k under this one (bench/README, item 35).
aiohttp still serves everything else: a request this front end does not take hands the connection over to it, at
that request's first byte.

`request_head.py` reads a head (sans-IO), `response_head.py` writes one (sans-IO, aiohttp's path uses it too),
`connection.py` is the protocol that serves a connection.
"""

from __future__ import annotations

from collections.abc import Mapping

from llm_gateway.config import ConfigError

ENV_FRONT = "LLM_GATEWAY_FRONT"


def front_enabled(env: Mapping[str, str]) -> bool:
    """`LLM_GATEWAY_FRONT=aiohttp` has aiohttp's server read every request (to compare, or to rule this one out);
    `own`, the default, serves the plain ones here."""
    value = env.get(ENV_FRONT, "own").strip().lower() or "own"
    if value not in ("own", "aiohttp"):
        raise ConfigError(f"{ENV_FRONT} must be 'own' or 'aiohttp', not {value!r}")
    return value == "own"
