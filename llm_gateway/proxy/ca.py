"""The gateway's local certificate authority: made once, kept in LLM_GATEWAY_CA_DIR, signs a leaf per host.

`ca.pem` is what clients trust; `ca-key.pem` (mode 0600) never leaves the directory, is never logged and never put
on a span. Keys are ECDSA P-256: every TLS stack the agents use accepts them (OpenSSL, Node, rustls/webpki, Go,
macOS), and minting a leaf is a signature, not a key search. All leaves share one key made per process, so a new
host costs one signature and one SSL context.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import socket
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from llm_gateway.proxy.ca_files import CAError, CAFiles, system_roots, write_atomic

CA_VALID_DAYS = 3650
# Apple platforms refuse server certificates valid for more than 825 days, whoever issued them.
LEAF_VALID_DAYS = 365
# Tolerate a client clock a little behind ours.
BACKDATE = datetime.timedelta(days=1)
#: Leaf SSL contexts kept; past this the cache starts over (a new host costs about a millisecond).
MAX_CACHED_HOSTS = 1024


class CertificateAuthority:
    """The CA and the leaves it signs. `load_or_create` reads the files, making them when absent."""

    __slots__ = ("_contexts", "_leaf_key", "_leaf_key_pem", "_scratch", "cert", "files", "key")

    def __init__(self, files: CAFiles, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.files = files
        self.cert = cert
        self.key = key
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._leaf_key_pem = _key_pem(self._leaf_key)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._scratch: tempfile.TemporaryDirectory | None = None

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        files = CAFiles(directory)
        try:
            if not (files.cert.exists() and files.key.exists()):
                _create(files)
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
            key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        except OSError as exc:
            raise CAError(f"cannot use the CA in {directory}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise CAError(f"{files.cert} or {files.key} is not a PEM certificate / key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            raise CAError(f"{files.key} does not belong to {files.cert}; remove both to make a new CA")
        return cls(files, cert, key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def leaf(self, host: str) -> x509.Certificate:
        """A certificate for `host` (a DNS name or an IP address), signed by the CA, with the shared leaf key."""
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
        public = self._leaf_key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=LEAF_VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName([_general_name(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(leaf=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def context_for(self, host: str) -> ssl.SSLContext:
        """A server-side SSL context presenting a leaf for `host`, made on first use and cached. ALPN offers
        http/1.1 only, so clients that would speak HTTP/2 fall back."""
        context = self._contexts.get(host)
        if context is None:
            if len(self._contexts) >= MAX_CACHED_HOSTS:
                self._contexts.clear()
            context = self._contexts[host] = self._server_context(host)
        return context

    def _server_context(self, host: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        context.sni_callback = self._choose_by_sni
        chain = self.leaf(host).public_bytes(serialization.Encoding.PEM) + self.cert_pem
        # The ssl module loads certificates from files only: write the chain and key to a private directory,
        # load them, remove the file.
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="llm-gateway-leaf-")
        path = Path(self._scratch.name) / f"{secrets.token_hex(8)}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(chain + self._leaf_key_pem)
            context.load_cert_chain(path)
        finally:
            path.unlink(missing_ok=True)
        return context

    def _choose_by_sni(self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        """The certificate follows the name the client asks for in its hello (it checks that one), whatever host
        the CONNECT named."""
        if server_name and server_name.isascii():
            chosen = self.context_for(server_name.lower())
            if chosen is not context:
                ssl_object.context = chosen

    def write_bundle(self) -> Path | None:
        """`ca-bundle.pem`: the system's roots followed by this CA, for clients that take one bundle file
        (SSL_CERT_FILE, REQUESTS_CA_BUNDLE). None when no system bundle was found."""
        roots = system_roots(exclude=self.files.bundle)
        if roots is None:
            return None
        write_atomic(self.files.bundle, roots.rstrip(b"\n") + b"\n" + self.cert_pem, 0o644)
        return self.files.bundle


def _create(files: CAFiles) -> None:
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "llm-gateway"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"llm-gateway local CA ({socket.gethostname()[:30]})"),
    ])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(leaf=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a cert without its key is never left behind to be mistaken for a usable CA.
    write_atomic(files.key, _key_pem(key), 0o600)
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(*, leaf: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=not leaf, crl_sign=not leaf, encipher_only=False, decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _serial() -> int:
    return secrets.randbits(126) | 1  # positive, non-zero, under 20 bytes
