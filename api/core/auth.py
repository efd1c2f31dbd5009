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
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.core.callers import ANONYMOUS, Caller
from api.core.errors import TooManyRequestsError, UnauthorizedError
from api.core.resources import Resources, ResourcesDep, first_row
from db.keys import active_key_by_hash, hash_key

RATE_KEY_PREFIX = "vqueue:rate:"


async def _lookup_hash(resources: Resources, key_hash: str) -> Caller | None:
    found, caller = resources.keys.get(key_hash)
    return caller if found else await _query(resources, key_hash)


async def _query(resources: Resources, key_hash: str) -> Caller | None:
    """The key's caller from Postgres (None: unknown or revoked), kept in the key cache."""

    async def query() -> Any:
        return await first_row(resources.db, active_key_by_hash(key_hash))

    # A burst of requests with a key that just left the cache makes one query, not one each.
    row = await resources.reads.read(("key", key_hash), query)
    caller: Caller | None = None
    if row is not None:
        caller = Caller(
            row["id"],
            row["name"],
            row["admin"],
            row["requests_per_minute"],
            row["max_queued_jobs"],
            row["tokens_per_day"],
            key_hash,
        )
    resources.keys.put(key_hash, caller)
    return caller


async def key_still_valid(resources: Resources, caller: Caller) -> bool:
    """Whether the caller's key is still valid (not revoked), as this process's key cache
    knows it: a revoked key is seen within VQUEUE_KEY_CACHE_S."""
    return caller.key_hash is None or await _lookup_hash(resources, caller.key_hash) is not None


# A sliding window: the times of the key's requests in the last minute, in a sorted set that
# every API process shares. A request is admitted while fewer than the limit are in the
# window; otherwise the answer says when the oldest leaves it. (A fixed per-minute counter let
# twice the limit through around a minute boundary.)
SLIDING_WINDOW_SCRIPT = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('EXPIRE', key, math.ceil(window) + 1)
  return '0'
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
return tostring(tonumber(oldest) + window - now)
"""
WINDOW_S = 60.0


async def admit_request(
    redis: Any, key: str, limit: int, now: float, window_s: float = WINDOW_S
) -> float:
    """Count a request against `limit` per `window_s`; 0 if admitted, else the seconds until
    one would be."""
    wait = await redis.eval(
        SLIDING_WINDOW_SCRIPT, 1, key, repr(now), repr(window_s), limit, uuid.uuid4().hex
    )
    return float(wait)


async def _count_request(resources: Resources, caller: Caller, limit: int) -> None:
    key = f"{RATE_KEY_PREFIX}{caller.owner_id}"
    wait_s = await admit_request(resources.redis, key, limit, time.time())
    if wait_s > 0:
        retry_after = int(wait_s) + 1
        raise TooManyRequestsError(
            f"this key is limited to {limit} requests per minute; retry in {retry_after}s",
            retry_after,
        )


_bearer = HTTPBearer(auto_error=False, description="An API key made with `vqueue keys create`")


async def authenticate(
    request: Request,
    resources: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if not resources.settings.auth:
        return ANONYMOUS
    if credentials is None:
        raise UnauthorizedError("an API key is required: send 'Authorization: Bearer <key>'")
    address = request.client.host if request.client else "unknown"
    key_hash = hash_key(credentials.credentials)
    found, caller = resources.keys.get(key_hash)
    if not found:
        if (wait_s := resources.keys.failed.retry_after(address)) > 0:
            raise TooManyRequestsError(
                "too many invalid API keys from this address; retry later", int(wait_s) + 1
            )
        caller = await _query(resources, key_hash)
    if caller is None:
        resources.keys.failed.add(address)
        # Never echo the key back: error bodies end up in logs.
        raise UnauthorizedError("this API key is not valid (unknown or revoked)")
    if caller.requests_per_minute is not None:
        await _count_request(resources, caller, caller.requests_per_minute)
    return caller


CallerDep = Annotated[Caller, Depends(authenticate)]
