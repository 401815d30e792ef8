"""HttpLimits: what `serve` allows a client connection, from the settings."""

from __future__ import annotations

import resource
from dataclasses import dataclass

from app.config import Settings

MAX_AUTO_CONNECTIONS = 4096


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(
            settings.http_max_header_bytes,
            settings.http_header_timeout_s,
            settings.http_body_timeout_s,
            settings.http_max_connections or auto_max_connections(),
        )


def auto_max_connections() -> int:
    """Half the open-file limit, so that the database, the index and the models always
    have file descriptors left, and at most MAX_AUTO_CONNECTIONS."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_AUTO_CONNECTIONS
    return max(16, min(MAX_AUTO_CONNECTIONS, soft // 2))
