"""Where the gateway's local CA lives (LLM_GATEWAY_CA_DIR), its file names, and the system's roots: all that needs
no cryptography, so the relay loads `cryptography` (`ca.py`) only when a CONNECT is first intercepted."""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_CA_DIR = "LLM_GATEWAY_CA_DIR"
DEFAULT_CA_DIR = "~/.llm-gateway"
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CA_BUNDLE = "ca-bundle.pem"  # the system roots plus the gateway's CA, for SSL_CERT_FILE / REQUESTS_CA_BUNDLE

# Where the system's root bundle lives, for ca-bundle.pem: OpenSSL's own idea first, then the usual places
# (Debian/Ubuntu, Fedora/RHEL, macOS/Alpine/BSD), then certifi when installed.
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


class CAError(OSError):
    """The CA directory cannot be read or written; the message names the path."""


def ca_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(ENV_CA_DIR) or DEFAULT_CA_DIR).expanduser()


@dataclass(frozen=True, slots=True)
class CAFiles:
    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / CA_CERT

    @property
    def key(self) -> Path:
        return self.directory / CA_KEY

    @property
    def bundle(self) -> Path:
        return self.directory / CA_BUNDLE


def system_roots(exclude: Path | None = None) -> bytes | None:
    """The PEM text of the system's root certificates, or None."""
    candidates = [ssl.get_default_verify_paths().openssl_cafile, *_SYSTEM_BUNDLES]
    try:
        import certifi

        candidates.append(certifi.where())
    except ImportError:
        pass
    for candidate in candidates:
        path = Path(candidate)
        if exclude is not None and path.exists() and exclude.exists() and path.samefile(exclude):
            continue
        try:
            text = path.read_bytes()
        except OSError:
            continue
        if b"-----BEGIN CERTIFICATE-----" in text:
            return text
    return None


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
