"""Which upstream a request goes to, and whether it is a model call worth tracing.

`providers.py` is the table of provider protocols (one entry each), `router.py` resolves a request against it,
and `kiro.py` picks Kiro's upstream per operation and region.
"""

from llm_gateway.routing.providers import (
    MCP_PROTOCOL,
    PROVIDERS,
    UPSTREAM_NAMES,
    Kind,
    Provider,
    UpstreamChooser,
    adapter_for,
    default_upstreams,
    protocol_named,
)
from llm_gateway.routing.router import Route, Router

__all__ = [
    "MCP_PROTOCOL",
    "PROVIDERS",
    "UPSTREAM_NAMES",
    "Kind",
    "Provider",
    "Route",
    "Router",
    "UpstreamChooser",
    "adapter_for",
    "default_upstreams",
    "protocol_named",
]
