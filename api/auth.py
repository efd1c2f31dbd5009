"""Who is calling: the API key behind `Authorization: Bearer ...`, and its request rate.

Every route but the web page, /health and /ready depends on `authenticate`. The caller it
returns scopes what the route may see: a key sees only what it made (another key's ids are
404, so they do not leak), an admin key sees everything. With VQUEUE_AUTH off every request
is the anonymous admin.

Keys are looked up in Postgres and trusted for VQUEUE_KEY_CACHE_S by each API process, so a
submit costs no extra round trip; a revoked key stops working within that time.
"""

import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import Resources, ResourcesDep, first_row
from api.errors import TooManyRequestsError, UnauthorizedError
from db.keys import active_key_by_hash, hash_key
from db.schema import ANONYMOUS_OWNER

RATE_KEY_PREFIX = "vqueue:rate:"


@dataclass(frozen=True)
class Caller:
    owner_id: uuid.UUID
    name: str
    admin: bool
    # Limits; None is unlimited.
    requests_per_minute: int | None = None
    max_queued_jobs: int | None = None
    tokens_per_day: int | None = None

    @property
    def scope(self) -> uuid.UUID | None:
        """The owner whose rows this caller may see; None: every owner's."""
        return None if self.admin else self.owner_id


ANONYMOUS = Caller(ANONYMOUS_OWNER, "anonymous", admin=True)


class KeyCache:
    """Key hash -> (caller or None for an unknown key, monotonic time it was looked up)."""

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[Caller | None, float]] = {}

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


async def _lookup(resources: Resources, secret: str) -> Caller | None:
    key_hash = hash_key(secret)
    found, caller = resources.keys.get(key_hash)
    if found:
        return caller

    async def query() -> Any:
        return await first_row(resources.db, active_key_by_hash(key_hash))

    # A burst of requests with a key that just left the cache makes one query, not one each.
    row = await resources.reads.read(("key", key_hash), query)
    if row is not None:
        caller = Caller(
            row["id"],
            row["name"],
            row["admin"],
            row["requests_per_minute"],
            row["max_queued_jobs"],
            row["tokens_per_day"],
        )
    resources.keys.put(key_hash, caller)
    return caller


async def _count_request(resources: Resources, caller: Caller, limit: int) -> None:
    """A fixed one-minute window per key, counted in Redis so every API process shares it."""
    now = time.time()
    window = int(now // 60)
    key = f"{RATE_KEY_PREFIX}{caller.owner_id}:{window}"
    pipe = resources.redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 120)
    count, _ = await pipe.execute()
    if count > limit:
        retry_after = int((window + 1) * 60 - now) + 1
        raise TooManyRequestsError(
            f"this key is limited to {limit} requests per minute; retry in {retry_after}s",
            retry_after,
        )


_bearer = HTTPBearer(auto_error=False, description="An API key made with `vqueue keys create`")


async def authenticate(
    resources: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if not resources.settings.auth:
        return ANONYMOUS
    if credentials is None:
        raise UnauthorizedError("an API key is required: send 'Authorization: Bearer <key>'")
    # Never echo the key back: error bodies end up in logs.
    caller = await _lookup(resources, credentials.credentials)
    if caller is None:
        raise UnauthorizedError("this API key is not valid (unknown or revoked)")
    if caller.requests_per_minute is not None:
        await _count_request(resources, caller, caller.requests_per_minute)
    return caller


CallerDep = Annotated[Caller, Depends(authenticate)]
