"""API keys: parsing FACE_API_KEYS and constant-time role checks."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Literal

Role = Literal["client", "admin"]
# Shorter keys are accepted, with a warning at start-up: 16 random characters are out of
# reach of guessing over HTTP, a word or a short code is not.
MIN_KEY_LENGTH = 16
ROLES: tuple[Role, ...] = ("client", "admin")


def key_digest(key: str) -> bytes:
    """What the service keeps of a key: its sha256. Spaces and tabs around it are not
    part of it (RFC 9110 5.5: a header value has none; not every HTTP parser strips them)."""
    return hashlib.sha256(key.strip(" \t").encode()).digest()


@dataclass(frozen=True)
class KeyRing:
    """Holds only sha256 digests of the configured keys, never the keys themselves."""

    entries: tuple[tuple[bytes, Role], ...]
    short_keys: int = 0  # keys under MIN_KEY_LENGTH characters, worth a warning

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        entries: list[tuple[bytes, Role]] = []
        short = 0
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            role, sep, key = item.partition(":")
            if not sep or role not in ROLES or not key:
                raise ValueError("FACE_API_KEYS entries must look like 'admin:KEY' or 'client:KEY'")
            if not (key.isascii() and key.isprintable()) or key != key.strip():
                # Headers arrive as bytes, read as Latin-1, with the spaces around a value
                # stripped: a key with other characters, or with spaces at either end
                # ("admin: KEY"), could never be matched; every request would get 401.
                raise ValueError(
                    "FACE_API_KEYS keys must be printable ASCII, without spaces at either end"
                )
            digest = key_digest(key)
            if any(d == digest and r != role for d, r in entries):
                # It would quietly act as admin wherever the client role was meant.
                raise ValueError("FACE_API_KEYS gives one key two roles; give each role its own")
            entries.append((digest, role))  # type: ignore[arg-type]
            short += len(key) < MIN_KEY_LENGTH
        return cls(tuple(entries), short)

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def role_of(self, key: str | None) -> Role | None:
        """Role of `key`, comparing against every entry so timing reveals nothing."""
        if key is None:
            return None
        candidate = key_digest(key)
        found: Role | None = None
        for digest, role in self.entries:
            if hmac.compare_digest(candidate, digest) and found != "admin":
                found = role
        return found


def allows(role: Role, required: Role) -> bool:
    return role == "admin" or role == required


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine's loopback interface ("localhost", 127.0.0.0/8,
    ::1, or 127.x mapped into IPv6)."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def is_remote_address(host: str) -> bool:
    """Whether `host` is an IP address off the loopback interface. Names that are not
    addresses (a test client's "testserver", a Unix socket path) are not."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return not is_loopback(host)
