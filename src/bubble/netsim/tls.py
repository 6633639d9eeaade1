"""The per-run TLS certificate that lets the sinkhole finish a handshake, so a client that
does not verify (curl -k, most malware) reveals its HTTPS request. Made on the first
ClientHello, not at start-up: `cryptography` costs ~60 ms to import and most runs speak no TLS.
The key lives in memory and in a 0600 file in a private directory removed at once (the ssl
module loads certificates from files only)."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import ssl
import tempfile

COMMON_NAME = "bubble-netsim.invalid"  # .invalid (RFC 2606): cannot be a real host


def _pem_pair() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(COMMON_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context() -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate; TLS 1.2 and 1.3."""
    cert_pem, key_pem = _pem_pair()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])  # we speak HTTP/1.1 only: no h2 preface to parse
    folder = tempfile.mkdtemp(prefix="bubble-netsim-")
    try:
        path = os.path.join(folder, "pair.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(cert_pem + key_pem)
        ctx.load_cert_chain(path)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)
    return ctx
