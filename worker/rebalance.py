"""A worker whose engine holds more jobs than it runs at once hands the ones that wait to a
worker whose engine has free slots.

A worker takes messages until it holds VQUEUE_WORKER_MAX_JOBS (twice its engine's slots by
default), so that its engine has a full batch waiting as its running jobs end. With several
workers that waiting batch is a backlog that another worker could be running now: one that
finished its share and finds the queue empty. Every REBALANCE_S each worker

- announces its free engine slots (max_num_seqs less the jobs on its engine or on their
  way to it) under room_key(queue, name), for a few seconds, withdrawn the moment a message
  reaches it;
- when its engine holds more jobs than its slots and the queue's lists are empty (a worker with
  room takes what is there itself), takes up to that excess from the room the others announced,
  atomically (two busy workers never fill the same room twice), and hands back that many of
  its jobs with no token yet, the last to be scheduled first. They go back to the queue, where
  the worker with room takes them: this worker takes no more messages than its slots until
  one of them is free (worker/intake.py), so it does not take them back itself.

A job handed back starts anew elsewhere: only jobs with no token yet are chosen, so nothing a
client read is taken back.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from celery.signals import task_received
from redis import Redis
from redis.exceptions import RedisError

from vqueue.contract.queueing import JobQueue
from vqueue.contract.wire import room_key
from worker.intake import CEILING, IntakeCeiling, held_jobs
from worker.runner import JobRunner

log = logging.getLogger(__name__)

REBALANCE_S = 1.0
# A room announcement outlives a few missed rounds, not a dead worker by long.
ROOM_TTL_S = 3
# Room taken by others whose jobs went to a third worker is announced again after this.
REANNOUNCE_S = 5.0

# KEYS: the other workers' room keys; ARGV[1]: the slots wanted. Takes what is there, in order,
# and answers how many it took.
TAKE_ROOM = """
local wanted = tonumber(ARGV[1])
local taken = 0
for _, key in ipairs(KEYS) do
  if taken >= wanted then break end
  local room = tonumber(redis.call('GET', key) or '0')
  if room > 0 then
    local take = math.min(room, wanted - taken)
    redis.call('DECRBY', key, take)
    taken = taken + take
  end
end
return taken
"""


class Rebalancer:
    def __init__(
        self,
        redis: Redis,
        queue: JobQueue,
        runner: JobRunner,
        name: str,
        slots: int,
        reserved: Callable[[], int] = held_jobs,
        ceiling: IntakeCeiling = CEILING,
    ) -> None:
        self._redis = redis
        self._queue = queue
        self._runner = runner
        self._name = name
        self._slots = slots
        self._reserved = reserved
        self._ceiling = ceiling
        self._key = room_key(queue.queue, name)
        self._take_room = redis.register_script(TAKE_ROOM)
        self._announced: tuple[int, float] | None = None  # (jobs held, when), last announced
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rebalance", daemon=True)

    def start(self) -> None:
        # A message taken ends this worker's room at once, not at the next round: another
        # worker must not hand jobs to room that a burst has just filled.
        task_received.connect(self._received, weak=False)
        self._thread.start()

    def _received(self, **_: object) -> None:
        self._announced = None
        with contextlib.suppress(RedisError):
            self._redis.delete(self._key)

    def stop(self) -> None:
        task_received.disconnect(self._received)
        self._stop.set()
        with contextlib.suppress(RedisError):  # else it expires by itself
            self._redis.delete(self._key)

    def _loop(self) -> None:
        while not self._stop.wait(REBALANCE_S):
            try:
                self.rebalance()
            except RedisError as exc:
                log.debug("rebalancing skipped: %s", exc)

    def rebalance(self) -> int:
        """One round: announce this worker's room, or hand back what another has room for.
        Answers how many jobs were handed back."""
        held = self._runner.held_count()
        # Jobs of the messages taken and not yet on the engine are on their way: no room.
        coming = max(held, self._reserved())
        if coming < self._slots:
            self._ceiling.restore()
            self._announce(coming, self._slots - coming)
            return 0
        if self._announced is not None:
            self._redis.delete(self._key)
            self._announced = None
        excess = held - self._slots
        if excess <= 0 or any(self._queue.depths()):
            return 0
        queue = self._queue.queue
        others = [
            room_key(queue, name) for name in self._queue.live_workers() if name != self._name
        ]
        if not others:
            return 0
        taken = int(self._take_room(keys=others, args=[excess]))
        if not taken:
            return 0
        shed = self._runner.shed(taken)
        if shed:
            self._ceiling.lower_to(self._slots)
            log.info("handed back %d waiting jobs to workers with free slots", len(shed))
        return len(shed)

    def _announce(self, held: int, room: int) -> None:
        """Room is announced afresh when this worker's load changed (or every REANNOUNCE_S),
        else only kept alive: what others took of it stays taken until their jobs arrive."""
        now = time.monotonic()
        last = self._announced
        if last is None or last[0] != held or now - last[1] > REANNOUNCE_S:
            self._redis.set(self._key, room, ex=ROOM_TTL_S)
            self._announced = (held, now)
        else:
            self._redis.expire(self._key, ROOM_TTL_S)
