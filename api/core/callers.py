"""Who a request acts for (a Caller), and what each API process remembers of the keys it has
looked up: a cache of callers by key hash, and the invalid keys each client address sent."""

import time
import uuid
from collections import deque
from dataclasses import dataclass

from db.schema import ANONYMOUS_OWNER


@dataclass(frozen=True)
class Caller:
    owner_id: uuid.UUID
    name: str
    admin: bool
    # Limits; None is unlimited.
    requests_per_minute: int | None = None
    max_queued_jobs: int | None = None
    tokens_per_day: int | None = None
    # The key's hash, to tell later whether it is still valid; None for the anonymous admin.
    key_hash: str | None = None

    @property
    def scope(self) -> uuid.UUID | None:
        """The owner whose rows this caller may see; None: every owner's."""
        return None if self.admin else self.owner_id


ANONYMOUS = Caller(ANONYMOUS_OWNER, "anonymous", admin=True)


class FailedKeys:
    """Invalid keys presented per client address over the last minute. Past the limit an
    address is refused at once, before any lookup: a flood of guessed keys (each one new, so
    never in the cache) would otherwise cost a Postgres query each."""

    MAX_ADDRESSES = 10_000
    WINDOW_S = 60.0

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> float:
        """Seconds until this address may try a key again; 0 when it may now."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        now = time.monotonic()
        while failures and now - failures[0] > self.WINDOW_S:
            failures.popleft()
        if len(failures) < self.per_minute:
            return 0.0
        return self.WINDOW_S - (now - failures[0])

    def add(self, address: str) -> None:
        if address not in self._failures and len(self._failures) >= self.MAX_ADDRESSES:
            self._failures.clear()  # bounded, whatever the number of addresses
        self._failures.setdefault(address, deque()).append(time.monotonic())


class KeyCache:
    """Key hash -> (caller or None for an unknown key, monotonic time it was looked up)."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float, failures_per_minute: int = 30) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[Caller | None, float]] = {}
        self.failed = FailedKeys(failures_per_minute)

    def get(self, key_hash: str) -> tuple[bool, Caller | None]:
        entry = self._entries.get(key_hash)
        if entry is None or time.monotonic() - entry[1] > self.ttl_s:
            return False, None
        return True, entry[0]

    def put(self, key_hash: str, caller: Caller | None) -> None:
        # Guessed keys must not grow the cache without end.
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[key_hash] = (caller, time.monotonic())
