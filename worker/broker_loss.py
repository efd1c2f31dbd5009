"""Keep the worker alive when the broker's connection is lost with messages unacknowledged.

When Redis goes away (a restart, a network cut), Celery's consumer closes the dead connection
and reconnects. But kombu's Redis channel, once its connection is released, still tries to
reach Redis through it: closing the channel pushes its unacknowledged messages back, and a
task that ends later acknowledges its message on that channel. Both raise AttributeError
(`'NoneType' object has no attribute 'hostname'` / `'client'`), which Celery calls an
unrecoverable error: the worker exits and drops its resident engine. Every message of a
running task is unacknowledged (`task_acks_late`), so any Redis restart under load did this.

A released channel cannot reach Redis, so those calls do nothing instead: the messages stay in
Redis's unacknowledged set (kombu restores them after its visibility timeout, if Redis kept
them; a claim of a job that already ran is a no-op), and the jobs behind them are held by
vqueue's own leases, not by the messages.
"""

import logging
from collections.abc import Callable
from typing import Any

from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)

_QoS = kombu_redis.QoS
_originals: dict[str, Callable[..., Any]] = {
    name: getattr(_QoS, name) for name in ("restore_unacked", "ack", "reject")
}


def _released(qos: Any) -> bool:
    transport = qos.channel.connection
    return transport is None or transport.client is None


def _restore_unacked(self: Any, client: Any = None) -> Any:
    if client is None and _released(self):
        log.warning(
            "broker connection lost with %d unacknowledged messages: left for Redis to "
            "restore; their jobs are held by their leases",
            len(self._delivered),
        )
        self._delivered.clear()
        return None
    return _originals["restore_unacked"](self, client)


def _ack(self: Any, delivery_tag: Any) -> None:
    if _released(self):
        log.info("message %s not acknowledged: its broker connection was lost", delivery_tag)
        return
    _originals["ack"](self, delivery_tag)


def _reject(self: Any, delivery_tag: Any, requeue: bool = False) -> None:
    if _released(self):
        log.info("message %s not rejected: its broker connection was lost", delivery_tag)
        return
    _originals["reject"](self, delivery_tag, requeue)


def survive_broker_loss() -> None:
    """Install the guards (idempotent)."""
    _QoS.restore_unacked = _restore_unacked
    _QoS.ack = _ack
    _QoS.reject = _reject
