"""The forward proxy's configuration and decisions: which hosts it reads, the CA (made on first need), who may use
it, where an absolute-form request goes, and the lines it logs."""

from __future__ import annotations

import ipaddress
import logging
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from llm_gateway.config import DEFAULT_HOST, Settings
from llm_gateway.proxy.ca_files import ca_dir
from llm_gateway.proxy.connect import BadConnect, Target, parse_authority
from llm_gateway.proxy.intercept import ADDED, ENV_INTERCEPT, InterceptList, ProxiedHost

if TYPE_CHECKING:
    from llm_gateway.proxy.ca import CertificateAuthority

log = logging.getLogger("llm_gateway.proxy")

#: a client's TLS alert that says it refused the certificate the gateway showed
_REFUSED_CERTIFICATE = frozenset({
    "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_ACCESS_DENIED", "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
})
#: one handshake-failure line per host at most this often (clients retry in a loop)
_LOG_EVERY_S = 60.0


class ForwardProxy:
    """One per gateway. `ca()` loads or creates the CA the first time a connection needs it."""

    __slots__ = ("_ca", "_logged", "allow_remote", "ca_dir", "connect_timeout", "intercept")

    def __init__(self, intercept: InterceptList, ca_directory: Path, *, allow_remote: bool = False,
                 connect_timeout: float = 10.0) -> None:
        self.intercept = intercept
        self.ca_dir = ca_directory
        self.allow_remote = allow_remote
        self.connect_timeout = connect_timeout
        self._ca: CertificateAuthority | None = None
        self._logged: dict[str, float] = {}

    @classmethod
    def from_env(cls, settings: Settings, env: Mapping[str, str]) -> ForwardProxy:
        # Bound to loopback (the default) the port takes loopback clients only; a CONNECT from elsewhere is refused
        # unless the user chose another address to listen on.
        return cls(InterceptList.from_env(env), ca_dir(env), allow_remote=not _is_loopback(settings.host),
                   connect_timeout=settings.connect_timeout)

    def ca(self) -> CertificateAuthority:
        if self._ca is None:
            # `cryptography` is loaded here, on the first intercepted CONNECT: a gateway used only as a base URL
            # never holds it (some 10 MiB)
            from llm_gateway.proxy.ca import CertificateAuthority

            self._ca = CertificateAuthority.load_or_create(self.ca_dir)
        return self._ca

    def host(self, target: Target, scheme: str = "https") -> ProxiedHost:
        """Where `target`'s requests go (`upstream` None: the proxy does not read this host)."""
        return ProxiedHost(target.host, target.port, self.intercept.upstream_of(target.host), target.origin(scheme))

    def admits(self, peername: object) -> bool:
        if self.allow_remote:
            return True
        address = peername[0] if isinstance(peername, tuple) and peername else None
        return isinstance(address, str) and _is_loopback(address)

    def absolute_target(self, raw_path: str, sockname: object) -> tuple[ProxiedHost | None, str]:
        """The host and the origin-form path of an absolute-form request target (`http://host/path?q`). The host
        is None when the request names this gateway itself: then it is an ordinary direct request. Raises
        BadConnect for a target that is not an http(s) URL."""
        scheme, sep, rest = raw_path.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("http", "https"):
            raise BadConnect(f"a proxy request needs an http:// or https:// target, got {raw_path[:100]!r}")
        cut = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
        authority, path = rest[:cut], rest[cut:]
        if "@" in authority:
            raise BadConnect("a proxy request target must not carry user information")
        if not authority.endswith("]") and ":" not in authority:
            authority += ":443" if scheme == "https" else ":80"
        target = parse_authority(authority)
        path = path if path.startswith("/") else "/" + path
        if isinstance(sockname, tuple) and target.port == sockname[1] and (
            target.host == "localhost" or target.host == sockname[0] or _is_loopback(target.host)
        ):
            return None, path
        return self.host(target, scheme), path

    def handshake_failed(self, host: str, exc: BaseException) -> None:
        """One line, per host at most once a minute, when a client refused the gateway's certificate: with an
        alert that says so, or by dropping the connection in the handshake (Python's ssl and others reset it)."""
        reason = getattr(exc, "reason", None)
        if reason in _REFUSED_CERTIFICATE:
            how = f"refused the gateway's certificate for {host} ({_alert(exc)}):"
        elif isinstance(exc, (ConnectionError, ssl.SSLEOFError)):
            how = f"dropped the TLS handshake for {host} ({type(exc).__name__}), most likely because"
        else:
            log.debug("TLS handshake with a client for %s failed: %r", host, exc)
            return
        now = time.monotonic()
        if now - self._logged.get(host, -_LOG_EVERY_S) < _LOG_EVERY_S:
            return
        self._logged[host] = now
        cert = self.ca_dir / "ca.pem"
        log.warning(
            "llm-gateway: a client %s it does not trust the gateway's CA %s. Trust it (NODE_EXTRA_CA_CERTS=%s for "
            "Node agents; `llm-gateway ca` shows every way), or tunnel every host unread with %s=none",
            how, cert, cert, ENV_INTERCEPT,
        )

    def describe(self, url: str) -> list[str]:
        """The startup lines."""
        added = sum(1 for _, upstream in self.intercept.entries if upstream == ADDED)
        builtin = len(self.intercept) - added
        reads = f"reads {builtin} provider host pattern(s)" if builtin else "reads no provider host"
        if added:
            reads += f" (+{added} from {ENV_INTERCEPT})"
        made = "" if (self.ca_dir / "ca.pem").exists() else " (made on first use)"
        return [
            f"  {'proxy':<10} -> HTTPS_PROXY={url}: {reads}, tunnels the rest unread",
            f"  {'proxy CA':<10} -> {self.ca_dir / 'ca.pem'}{made}; `llm-gateway ca` shows how to trust it",
        ]


def _alert(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return str(reason).lower().replace("_", " ")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host == DEFAULT_HOST:
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback or (mapped is not None and mapped.is_loopback)

