"""Webhook deliveries in GET /metrics: the outbox's backlog as Postgres holds it, and the
outcome of every try, counted in the metrics hash by the dispatcher that made it (so every API
process serves the same figures)."""

import logging
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vqueue.contract.metrics import METRICS_KEY, Exposition

log = logging.getLogger(__name__)

TRIES_PREFIX = "webhook_tries:"
GAVE_UP = "webhook_gave_up"
OUTCOMES = ("delivered", "failed")


async def count_try(redis: Redis, delivered: bool, gave_up: bool) -> None:
    """Count one recorded try; a lost count is not worth failing or delaying a delivery."""
    outcome = OUTCOMES[0] if delivered else OUTCOMES[1]
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(METRICS_KEY, f"{TRIES_PREFIX}{outcome}", 1)
            if gave_up:
                pipe.hincrby(METRICS_KEY, GAVE_UP, 1)
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("webhook try not counted: %s", exc)


def add_webhook_metrics(
    out: Exposition, pending: int, overdue_s: float | None, fields: Mapping[str, str]
) -> None:
    out.metric(
        "vqueue_webhook_deliveries_pending",
        "gauge",
        "Webhook deliveries not yet delivered nor given up (waiting for a retry included)",
        [({}, pending)],
    )
    out.metric(
        "vqueue_webhook_oldest_due_seconds",
        "gauge",
        "How long the longest-overdue webhook delivery has been due (0: none is late)",
        [({}, round(float(overdue_s or 0.0), 3))],
    )
    out.metric(
        "vqueue_webhook_tries_total",
        "counter",
        "Webhook delivery tries, by outcome (failed: an error or a status other than 2xx)",
        [({"outcome": o}, float(fields.get(f"{TRIES_PREFIX}{o}", 0))) for o in OUTCOMES],
    )
    out.metric(
        "vqueue_webhook_deliveries_failed_total",
        "counter",
        "Webhook deliveries given up after their last retry",
        [({}, float(fields.get(GAVE_UP, 0)))],
    )
