"""API keys: parsing FACE_API_KEYS and constant-time role checks."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

Role = Literal["client", "admin"]
ROLES: tuple[Role, ...] = ("client", "admin")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class KeyRing:
    """Holds only sha256 digests of the configured keys, never the keys themselves."""

    entries: tuple[tuple[bytes, Role], ...]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        entries: list[tuple[bytes, Role]] = []
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            role, sep, key = item.partition(":")
            if not sep or role not in ROLES or not key:
                raise ValueError("FACE_API_KEYS entries must look like 'admin:KEY' or 'client:KEY'")
            entries.append((_digest(key), role))  # type: ignore[arg-type]
        return cls(tuple(entries))

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def role_of(self, key: str | None) -> Role | None:
        """Role of `key`, comparing against every entry so timing reveals nothing."""
        if key is None:
            return None
        candidate = _digest(key)
        found: Role | None = None
        for digest, role in self.entries:
            if hmac.compare_digest(candidate, digest) and found != "admin":
                found = role
        return found


def allows(role: Role, required: Role) -> bool:
    return role == "admin" or role == required
