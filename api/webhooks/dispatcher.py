"""Each API process delivers webhooks: it claims due rows of the outbox (SKIP LOCKED, under a
lease), sends each, and records the try. A failed try is due again after the next delay of
VQUEUE_WEBHOOK_RETRY_DELAYS_S; past the last it is given up. A process that dies mid-send
leaves its lease to lapse, and another process takes the delivery over."""

import asyncio
import logging
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.webhooks.destinations import DestinationPolicy
from api.webhooks.events import event_body, message_id
from api.webhooks.metrics import count_try
from api.webhooks.sender import Outcome, send
from db.webhooks import claim_due, record_try, set_payload, signing_secrets
from vqueue.settings import Settings

log = logging.getLogger(__name__)
# Longer than a try may take: a lease that lapses means the process died.
LEASE_MARGIN_S = 10.0


def retry_delay(delays: list[float], tries: int) -> float | None:
    """Seconds until the next try after `tries` failed ones (within 20% jitter, so receivers
    that came back are not met by every retry at once); None: give up."""
    if tries > len(delays):
        return None
    return delays[tries - 1] * random.uniform(0.8, 1.2)


class Dispatcher:
    def __init__(self, settings: Settings, db: AsyncEngine, redis: Redis) -> None:
        self._settings = settings
        self._db = db
        self._redis = redis
        self._policy = DestinationPolicy.from_settings(settings)
        self._delays = settings.webhook_retry_delays
        self._lease_s = settings.webhook_timeout_s + LEASE_MARGIN_S
        self._in_flight: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
            # A receiver's connection is not kept: each try resolves and checks it anew.
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("webhook round failed: %s", exc)
            except Exception:
                # A bug in one round must not end the process's deliveries for good.
                log.exception("webhook round failed")
            await asyncio.sleep(self._settings.webhook_poll_s)

    async def round(self) -> int:
        """Claim what is due, as far as this process has room, and start sending it."""
        room = self._settings.webhook_concurrency - len(self._in_flight)
        if room <= 0:
            return 0
        async with self._db.begin() as conn:
            statement = claim_due(room, self._lease_s, self._settings.webhook_concurrency_per_key)
            claimed = (await conn.execute(statement)).mappings().all()
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(dict(delivery)))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(claimed)

    async def close(self) -> None:
        """Tries under way are dropped; their leases lapse and they are tried again."""
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._client.aclose()

    async def _deliver(self, delivery: Mapping[str, Any]) -> None:
        lease: uuid.UUID = delivery["lease_token"]
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        try:
            outcome = await self._try(delivery, lease)
        except SQLAlchemyError as exc:
            log.warning("webhook %s: %s", delivery["id"], exc)
            return  # the lease lapses and the try is made again
        except Exception as exc:
            # Recorded as a failed try, so the schedule still ends: never retried forever.
            log.exception("webhook %s: the try failed", delivery["id"])
            outcome = Outcome(error=f"internal error: {type(exc).__name__}")
        retry_in = (
            None if outcome.delivered else retry_delay(self._delays, delivery["attempt_count"])
        )
        if not outcome.delivered:
            log.info("webhook %s to %s: %s", delivery["id"], delivery["url"], outcome.error)
        try:
            async with self._db.begin() as conn:
                recorded = await conn.execute(
                    record_try(
                        delivery["id"],
                        lease,
                        outcome.record(at),
                        delivered=outcome.delivered,
                        retry_in_s=retry_in,
                    )
                )
        except SQLAlchemyError as exc:
            log.warning("webhook %s: its try was not recorded: %s", delivery["id"], exc)
            return
        if recorded.rowcount:  # not if the lease lapsed and another process took it over
            gave_up = not outcome.delivered and retry_in is None
            await count_try(self._redis, outcome.delivered, gave_up)

    async def _try(self, delivery: Mapping[str, Any], lease: uuid.UUID) -> Outcome:
        async with self._db.begin() as conn:
            body = delivery["payload"]
            if body is None:
                body = await event_body(conn, delivery)
                await conn.execute(set_payload(delivery["id"], lease, body))
            secrets = (await conn.execute(signing_secrets(delivery["owner_id"]))).first()
        if secrets is None:
            return Outcome(error="no signing secret: make one with POST /webhooks/secret")
        return await send(
            self._client,
            self._policy,
            delivery["url"],
            message_id(delivery["id"]),
            body.encode(),
            [secret for secret in (secrets.secret, secrets.previous) if secret],
            self._settings.webhook_timeout_s,
        )
