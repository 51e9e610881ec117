"""Time-sortable ids and timestamps for rows of the store (and of branch trees)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A time-sortable id (ULID layout: 48-bit milliseconds then 80 random bits, Crockford base32)."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def utc_now() -> str:
    """An ISO-8601 UTC timestamp."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
