"""`llm-gateway ca`: make the CA if it is missing, write the bundle, and say how each kind of client trusts it."""

from __future__ import annotations

import shlex
from pathlib import Path

from llm_gateway.proxy.ca import CertificateAuthority


def ensure_ca(directory: Path) -> tuple[CertificateAuthority, bool, Path | None]:
    """The CA (made when missing: the second value says so) and its bundle file, written anew (None when the
    system has no root bundle to start from)."""
    existed = (directory / "ca.pem").exists()
    ca = CertificateAuthority.load_or_create(directory)
    return ca, not existed, ca.write_bundle()


def instructions(ca: CertificateAuthority, made: bool, bundle: Path | None, proxy_url: str) -> str:
    cert = shlex.quote(str(ca.files.cert))
    lines = [
        f"{'Made the' if made else 'The'} gateway's CA: {ca.files.cert}",
        f"  (its key {ca.files.key} stays in that directory, readable by you only)",
        "",
        "Send an agent's traffic through the gateway, and trust the CA in the same environment:",
        f"  export HTTPS_PROXY={proxy_url}",
        "",
        "Node agents (Claude Code, Gemini CLI, Kiro IDE, Kiro CLI's engine):",
        f"  export NODE_EXTRA_CA_CERTS={cert}",
        "Codex:",
        f"  export CODEX_CA_CERTIFICATE={cert}",
    ]
    if bundle is not None:
        quoted = shlex.quote(str(bundle))
        lines += [
            "Python (requests, httpx, the SDKs), curl, Rust agents that read SSL_CERT_FILE (Kiro CLI): a bundle of the",
            f"system's roots plus the CA, {bundle}:",
            f"  export SSL_CERT_FILE={quoted} REQUESTS_CA_BUNDLE={quoted}",
        ]
    lines += [
        "Or trust it system-wide (every client that uses the system store; undo by removing it again):",
        f"  Debian/Ubuntu: sudo cp {cert} /usr/local/share/ca-certificates/llm-gateway.crt"
        " && sudo update-ca-certificates",
        f"  macOS:         sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {cert}",
        "",
        "Requests to the provider hosts the gateway reads are traced; everything else passes through unread.",
    ]
    return "\n".join(lines)
