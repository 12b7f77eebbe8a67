"""Bearer-token authentication for clients, providers (workers) and admins.

Tokens are JWTs signed with EdDSA (Ed25519) by the operator's auth key; every replica verifies
with the public key. Refused: any algorithm but EdDSA (`alg: none`, HS256 with a public key as
secret, RS/ES), a missing or wrong audience, a missing or past `exp`, an unknown role.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.gateway.errors import PermissionDenied, Unauthenticated

ROLES = frozenset({"client", "provider", "admin"})
TOKEN_BYTES_MAX = 4096


@dataclass(frozen=True)
class Principal:
    account: str
    role: str


class Authenticator:
    def __init__(self, public_keys_pem: Iterable[bytes], audience: str) -> None:
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

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        token = None
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value[len("Bearer ") :]
        if token is None:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        if len(token) > TOKEN_BYTES_MAX:
            raise Unauthenticated("token too large")
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
            if role not in ROLES or not isinstance(claims["sub"], str) or not claims["sub"]:
                raise Unauthenticated("token has no valid role or subject")
            return Principal(account=claims["sub"], role=role)
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
