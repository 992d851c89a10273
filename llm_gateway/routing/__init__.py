"""Which upstream a request goes to, and whether it is a model call worth tracing.

`Router.resolve` reads the request line and headers; `Router.with_body` completes the route once the body is
read (only Kiro's upstream ever depends on it: `routing/kiro.py`).
"""

from llm_gateway.routing.router import (
    MCP_PROTOCOL,
    PROTOCOLS,
    UPSTREAM_NAMES,
    Kind,
    Protocol,
    Route,
    Router,
    UpstreamChooser,
    default_upstreams,
    protocol_named,
)

__all__ = [
    "MCP_PROTOCOL",
    "PROTOCOLS",
    "UPSTREAM_NAMES",
    "Kind",
    "Protocol",
    "Route",
    "Router",
    "UpstreamChooser",
    "default_upstreams",
    "protocol_named",
]
