"""The local CA: files and modes, reuse, leaves that real TLS clients accept (SAN = the host, SNI followed, ALPN
http/1.1 only), the bundle of system roots plus the CA."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from llm_gateway.proxy.ca import CertificateAuthority
from llm_gateway.proxy.ca_files import CAError, ca_dir, system_roots


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str | None,
              ) -> tuple[x509.Certificate, str | None]:
    """A TLS handshake in memory; the certificate the client got and the protocol ALPN chose."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client_side), ("server", server_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    der = client_side.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der), client_side.selected_alpn_protocol()


def client_context(ca: CertificateAuthority, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.files.cert))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def sans(cert: x509.Certificate) -> list[str]:
    return [str(v.value) for v in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value]


def test_made_once_with_a_private_key_then_reused(tmp_path: Path) -> None:
    directory = tmp_path / "gw"
    ca = CertificateAuthority.load_or_create(directory)
    assert stat.S_IMODE(ca.files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" not in ca.files.cert.read_bytes()
    again = CertificateAuthority.load_or_create(directory)
    assert again.cert == ca.cert
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca


def test_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path / "a")
    CertificateAuthority.load_or_create(tmp_path / "b")
    (tmp_path / "b" / "ca-key.pem").write_bytes(first.files.key.read_bytes())
    with pytest.raises(CAError, match="does not belong"):
        CertificateAuthority.load_or_create(tmp_path / "b")


def test_unwritable_directory_is_a_ca_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CAError, match=str(blocker)):
        CertificateAuthority.load_or_create(blocker / "ca")


@pytest.mark.parametrize("host", ["api.anthropic.com", "127.0.0.1", "::1"])
def test_leaf_is_accepted_by_a_client_trusting_the_ca(tmp_path: Path, host: str) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    cert, alpn = handshake(ca.context_for(host), client_context(ca, ["h2", "http/1.1"]), host)
    assert sans(cert) == [host]
    assert alpn == "http/1.1"  # HTTP/2 is never offered: clients fall back
    assert ca.context_for(host) is ca.context_for(host)


def test_leaf_follows_the_name_the_client_asks_for(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    cert, _ = handshake(ca.context_for("api.openai.com"), client_context(ca), "chatgpt.com")
    assert sans(cert) == ["chatgpt.com"]


def test_client_without_the_ca_refuses_the_leaf(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ca.context_for("api.anthropic.com"), ssl.create_default_context(), "api.anthropic.com")


def test_bundle_is_system_roots_then_the_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    roots = system_roots()
    assert roots is not None
    bundle = ca.write_bundle()
    assert bundle == tmp_path / "ca-bundle.pem"
    text = bundle.read_bytes()
    assert text.endswith(ca.cert_pem)
    assert text.count(b"BEGIN CERTIFICATE") == roots.count(b"BEGIN CERTIFICATE") + 1
    # the bundle verifies the gateway's leaves as well as public hosts' (it holds the system roots)
    cert, _ = handshake(ca.context_for("api.anthropic.com"), ssl.create_default_context(cafile=str(bundle)),
                        "api.anthropic.com")
    assert sans(cert) == ["api.anthropic.com"]


def test_directory_from_environment() -> None:
    assert ca_dir({"LLM_GATEWAY_CA_DIR": "/tmp/x"}) == Path("/tmp/x")
    assert ca_dir({}) == Path("~/.llm-gateway").expanduser()
