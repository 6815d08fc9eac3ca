"""Access tokens: short-lived JWTs signed with a rotatable key set.

Each token names its key in the ``kid`` header; every configured key verifies, the first one signs, so a
key can be rotated in without logging anybody out and retired once its tokens have expired. The
algorithm is pinned on verification (``alg: none`` and algorithm confusion are refused), and ``iss``,
``aud``, ``exp`` and every claim the API relies on are required.
"""

from __future__ import annotations

import time
import uuid

import jwt
import msgspec

from app.auth.principal import Principal, Role

__all__ = ["AccessTokenClaims", "InvalidToken", "TokenService"]

ALGORITHM = "HS256"
_CACHE_SIZE = 50_000
REQUIRED = ["sub", "tid", "role", "sid", "jti", "iat", "exp", "iss", "aud"]


class InvalidToken(Exception):
    """The token is not one of ours, or no longer valid."""


class AccessTokenClaims(msgspec.Struct, frozen=True):
    sub: str
    tid: str
    role: str
    sid: str
    jti: str
    iat: int
    exp: int
    iss: str
    aud: str


class TokenService:
    def __init__(self, keys: list[tuple[str, bytes]], *, issuer: str, audience: str, ttl_seconds: int) -> None:
        if not keys:
            raise ValueError("at least one JWT signing key is required")
        self._keys = dict(keys)
        self._signing_kid, self._signing_key = keys[0]
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, *, user_id: uuid.UUID, tenant_id: uuid.UUID, role: Role, session_id: uuid.UUID) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id),
            "tid": str(tenant_id),
            "role": role.value,
            "sid": str(session_id),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "iss": self.issuer,
            "aud": self.audience,
        }
        return jwt.encode(claims, self._signing_key, algorithm=ALGORITHM, headers={"kid": self._signing_kid})

    def verify(self, token: str) -> Principal:
        """The principal of a valid token. Verified tokens are remembered until they expire, so a client
        sending the same token on every request pays for the signature check once."""
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        principal, expires = self._verify(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unexpected algorithm")
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise InvalidToken("unknown key id")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED},
                leeway=5,
            )
            role = Role(claims["role"])
            principal = Principal(
                tenant_id=uuid.UUID(claims["tid"]),
                subject_id=uuid.UUID(claims["sub"]),
                role=role,
                kind="user",
                session_id=uuid.UUID(claims["sid"]),
                token_id=str(claims["jti"]),
            )
            return principal, float(claims["exp"])
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise InvalidToken("invalid token") from exc
