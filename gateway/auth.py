"""Bearer-token authentication for clients, providers (workers) and admins.

Tokens are JWTs signed with EdDSA (Ed25519) by the operator's auth key; every replica verifies
with the public key. Refused: any algorithm but EdDSA (`alg: none`, HS256 with a public key as
secret, RS/ES), a missing or wrong audience, a missing or past `exp`, an unknown role.

A token is verified once: the verified principal is cached by the token's SHA-256 (bounded, least
recently used dropped) until the token expires or `cache_s` passes, whichever comes first, so a
client's every call after the first costs a hash and a dict lookup instead of a signature check.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.gateway.errors import PermissionDenied, Unauthenticated

ROLES = frozenset({"client", "provider", "admin"})
TOKEN_BYTES_MAX = 4096
ACCOUNT_CHARS_MAX = 128  # a token's subject (the account it pays from or is credited to)


@dataclass(frozen=True)
class Principal:
    account: str
    role: str


class Authenticator:
    def __init__(
        self,
        public_keys_pem: Iterable[bytes],
        audience: str,
        *,
        cache_s: float = 300.0,
        cache_entries_max: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = []
        for pem in public_keys_pem:
            k = serialization.load_pem_public_key(pem)
            if not isinstance(k, Ed25519PublicKey):
                raise ValueError("auth keys must be Ed25519")
            keys.append(k)
        if not keys:
            raise ValueError("at least one auth public key is required")
        self._keys = keys
        self._audience = audience
        self._cache_s, self._cache_max, self._clock = cache_s, cache_entries_max, clock
        self._cache: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        token = None
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value[len("Bearer ") :]
        if token is None:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        if len(token) > TOKEN_BYTES_MAX:
            raise Unauthenticated("token too large")
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None:
            if now < hit[1]:
                self._cache.move_to_end(digest)
                return hit[0]
            del self._cache[digest]
        principal, exp = self._verify(token)
        if self._cache_max > 0:
            self._cache[digest] = (principal, min(exp, now + self._cache_s))
            while len(self._cache) > self._cache_max:
                self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("token is not a JWT") from exc
        if header.get("alg") != "EdDSA":
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} refused; only EdDSA")
        for k in self._keys:
            try:
                claims = jwt.decode(
                    token,
                    k,
                    algorithms=["EdDSA"],
                    audience=self._audience,
                    options={"require": ["exp", "sub", "aud", "iat"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as exc:
                raise Unauthenticated(f"token refused: {exc}") from exc
            role = claims.get("role")
            sub = claims["sub"]
            if (
                role not in ROLES
                or not isinstance(sub, str)
                or not 0 < len(sub) <= ACCOUNT_CHARS_MAX
            ):
                raise Unauthenticated("token has no valid role or subject")
            return Principal(account=sub, role=role), float(claims["exp"])
        raise Unauthenticated("token signature does not verify")

    @staticmethod
    def require(principal: Principal, *roles: str) -> None:
        if principal.role not in roles:
            raise PermissionDenied(f"role {principal.role!r} may not call this; needs {roles}")


def issue_token(
    key: Ed25519PrivateKey, *, sub: str, role: str, audience: str = "ccgw", ttl_s: int = 86_400
) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}")
    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "role": role, "aud": audience, "iat": now, "exp": now + ttl_s},
        key,
        algorithm="EdDSA",
    )
