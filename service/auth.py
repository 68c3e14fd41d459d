"""API keys shared by REST and gRPC: constant-time comparison, several keys, exempt paths."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from service.settings import ServeSettings

# v1alpha is what grpcio-reflection serves; v1 is listed too so a newer one stays covered by the setting
REFLECTION_METHODS = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")


class KeyChecker:
    """`allowed(path, credentials)`: one rule for an HTTP path and a gRPC method name."""

    def __init__(self, settings: ServeSettings) -> None:
        self._keys = [k.get_secret_value().encode() for k in settings.api_keys]
        # a trailing / makes a prefix, except "/" itself (the page): as a prefix it would open every route
        # one list for both transports: REST paths and gRPC "/package.Service/Method" names
        exempt = [*settings.auth_exempt_paths, *(REFLECTION_METHODS if settings.auth_exempt_reflection else ())]
        self._exact = {p for p in exempt if not p.endswith("/") or p == "/"}
        self._prefixes = tuple(p for p in exempt if p.endswith("/") and p != "/")

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def exempt(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)

    def valid(self, presented: bytes) -> bool:
        # every key is compared, so the time taken tells nothing about which one nearly matched
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(presented, key)
        return ok and bool(presented)

    def allowed(self, path: str, authorization: bytes | None, api_key: bytes | None) -> bool:
        if not self._keys or self.exempt(path):
            return True
        return any(self.valid(c) for c in _candidates(authorization, api_key))


def _candidates(authorization: bytes | None, api_key: bytes | None) -> Iterable[bytes]:
    if authorization:
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer":
            yield token.strip()
    if api_key:
        yield api_key.strip()


UNAUTHENTICATED_MESSAGE = ("missing or invalid API key: send `Authorization: Bearer <key>` or "
                           "`X-API-Key: <key>`")
