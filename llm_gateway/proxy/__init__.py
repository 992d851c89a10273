"""The gateway's port as an HTTP forward proxy that reads the model traffic it is trusted to read.

`listener.ProxyServer` takes CONNECTs off the port before aiohttp sees them: hosts on the intercept list
(`intercept.py`) get TLS terminated with a leaf from the local CA (`ca.py`; its files and directory: `ca_files.py`)
and their requests served by the relay like direct ones; every other host is tunnelled byte for byte
(`tunnel.py`). `forward.ForwardProxy` holds the configuration and the decisions; `connect.py` reads the CONNECT
head without I/O.
"""

from llm_gateway.proxy.ca_files import CAError, ca_dir
from llm_gateway.proxy.connect import BadConnect
from llm_gateway.proxy.forward import ForwardProxy
from llm_gateway.proxy.intercept import InterceptList, ProxiedHost
from llm_gateway.proxy.listener import ProxyServer

__all__ = [
    "BadConnect",
    "CAError",
    "ForwardProxy",
    "InterceptList",
    "ProxiedHost",
    "ProxyServer",
    "ca_dir",
]
