"""The TLS files, read and checked once before any port is bound: each failure names the file and why.

Both servers would otherwise find a bad file only while binding, where gRPC reports any failure as a
port it cannot bind. Only the standard library is used: OpenSSL (through `ssl`) judges the PEM and the
key pair, and the certificates' validity dates are read from their DER (X.509's fixed field order).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from service.settings import ServeSettings, StartupError

_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)
_KEY_BLOCK = re.compile(rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----")


class TLSFileError(StartupError):
    """One unusable TLS file: `str()` is the line to show (setting, file, reason)."""

    def __init__(self, env: str, path: Path, reason: str) -> None:
        super().__init__(f"{env}={path}: {reason}")


@dataclass(frozen=True)
class TLSFiles:
    """The checked PEM bytes, as both servers load them."""

    cert_chain: bytes
    key: bytes
    client_ca: bytes | None


def load_tls(settings: ServeSettings, now: dt.datetime | None = None) -> TLSFiles | None:
    """None without TLS; otherwise the files, each proven usable (raises TLSFileError)."""
    cert_path, key_path, ca_path = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if cert_path is None or key_path is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    cert = _read("IMGCLF_TLS_CERT_FILE", cert_path)
    leaf = _certificates("IMGCLF_TLS_CERT_FILE", cert_path, cert)[0]
    _check_dates("IMGCLF_TLS_CERT_FILE", cert_path, [leaf], now)
    _check_openssl("IMGCLF_TLS_CERT_FILE", cert_path, cert)
    key = _read("IMGCLF_TLS_KEY_FILE", key_path)
    _check_pair(cert_path, key_path, key)
    ca = None
    if ca_path is not None:
        ca = _read("IMGCLF_TLS_CLIENT_CA_FILE", ca_path)
        _check_dates("IMGCLF_TLS_CLIENT_CA_FILE", ca_path,
                     _certificates("IMGCLF_TLS_CLIENT_CA_FILE", ca_path, ca), now)
        _check_openssl("IMGCLF_TLS_CLIENT_CA_FILE", ca_path, ca)
    return TLSFiles(cert, key, ca)


def _check_openssl(env: str, path: Path, pem: bytes) -> None:
    """OpenSSL itself reads every certificate in the file (as both servers will)."""
    try:
        ssl.create_default_context(cadata=pem.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        raise TLSFileError(env, path, f"a certificate OpenSSL cannot read ({exc.reason or exc})") from None


def _read(env: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSFileError(env, path, f"unreadable ({exc.strerror})") from None


def _certificates(env: str, path: Path, pem: bytes) -> list[bytes]:
    """The DER of every certificate in a PEM file; the file must hold at least one, all decodable."""
    blocks = _CERT_BLOCK.findall(pem)
    if not blocks:
        raise TLSFileError(env, path, "not a PEM certificate (no -----BEGIN CERTIFICATE----- block)")
    ders = []
    for n, block in enumerate(blocks, 1):
        try:
            ders.append(base64.b64decode(b"".join(block.split()), validate=True))
        except binascii.Error:
            raise TLSFileError(env, path, f"not PEM: certificate {n} is not valid base64") from None
    return ders


def _check_dates(env: str, path: Path, ders: list[bytes], now: dt.datetime) -> None:
    """Every certificate parses; the server's own (one given) or at least one CA (several) is current."""
    spans = []
    for n, der in enumerate(ders, 1):
        try:
            spans.append(validity(der))
        except ValueError as exc:
            raise TLSFileError(env, path, f"certificate {n} is not an X.509 certificate ({exc})") from None
    if any(start <= now <= end for start, end in spans):
        return
    start, end = spans[0]
    which = "certificate" if len(spans) == 1 else "every certificate in the bundle"
    if now > end:
        raise TLSFileError(env, path, f"{which} expired (not after {end:%Y-%m-%d %H:%M} UTC)")
    raise TLSFileError(env, path, f"{which} not valid yet (not before {start:%Y-%m-%d %H:%M} UTC)")


def _check_pair(cert_path: Path, key_path: Path, key: bytes) -> None:
    match = _KEY_BLOCK.search(key)
    if match is None:
        raise TLSFileError("IMGCLF_TLS_KEY_FILE", key_path, "not a PEM private key (no -----BEGIN PRIVATE "
                           "KEY----- block)")
    if match[1].startswith(b"ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in key:
        raise TLSFileError("IMGCLF_TLS_KEY_FILE", key_path, "the private key is encrypted (a passphrase "
                           "cannot be given: decrypt it, e.g. `openssl pkey -in KEY -out KEY.plain`)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=lambda: b"")
    except ssl.SSLError as exc:
        reason = (f"key does not match the certificate {cert_path} (IMGCLF_TLS_CERT_FILE)"
                  if exc.reason == "KEY_VALUES_MISMATCH" else f"private key unreadable ({exc.reason or exc})")
        raise TLSFileError("IMGCLF_TLS_KEY_FILE", key_path, reason) from None


def validity(der: bytes) -> tuple[dt.datetime, dt.datetime]:
    """(notBefore, notAfter) of a DER certificate: Certificate > TBSCertificate > [version], serial,
    signature, issuer, validity (RFC 5280 4.1)."""
    tbs = _children(_children(der)[0][1])[0][1]
    fields = _children(tbs)
    if fields and fields[0][0] == 0xA0:  # the explicit version tag is optional (v1 certificates)
        fields = fields[1:]
    if len(fields) < 4 or fields[3][0] != 0x30:
        raise ValueError("no validity field")
    times = _children(fields[3][1])
    if len(times) != 2:
        raise ValueError("bad validity field")
    start, end = (_time(tag, value) for tag, value in times)
    return start, end


def _children(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) of each DER element in `data`."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("truncated")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            size = length & 0x7F
            if size == 0 or size > 4 or pos + size > len(data):
                raise ValueError("bad length")
            length = int.from_bytes(data[pos:pos + size], "big")
            pos += size
        if pos + length > len(data):
            raise ValueError("truncated")
        out.append((tag, data[pos:pos + length]))
        pos += length
    if not out:
        raise ValueError("empty")
    return out


def _time(tag: int, value: bytes) -> dt.datetime:
    text = value.decode("ascii", "replace")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, years 1950-2049
        parsed = dt.datetime.strptime(text, "%y%m%d%H%M%SZ")
        if parsed.year >= 2050:
            parsed = parsed.replace(year=parsed.year - 100)
    elif tag == 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
        parsed = dt.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError("bad time")
    return parsed.replace(tzinfo=dt.UTC)
