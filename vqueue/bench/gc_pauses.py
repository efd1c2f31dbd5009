"""The workers' long garbage-collection pauses in a measured run, read from their heartbeats.

A full collection over a worker's unfrozen heap held the whole process for ~320 ms on the
2-core test machine (vqueue/gc_heap.py); one in a measured run stalls every job's stream at
once and shows as delivery lag and lost throughput. The report says whether one happened.
"""

import time
from typing import Any

import orjson
from redis import Redis

from vqueue.contract import WORKER_KEY_PREFIX
from vqueue.gc_heap import NOTABLE_PAUSE_S


def _heartbeats(redis_url: str) -> list[dict[str, Any]]:
    with Redis.from_url(redis_url) as redis:
        keys = list(redis.scan_iter(match=f"{WORKER_KEY_PREFIX}*"))
        values = redis.mget(keys) if keys else []
    return [orjson.loads(value) for value in values if value]


def heartbeats_after(redis_url: str, instant: float, timeout: float) -> list[dict[str, Any]]:
    """Every live worker's heartbeat, once each was sent after `instant` (wall clock)."""
    deadline = time.monotonic() + timeout
    while True:
        beats = _heartbeats(redis_url)
        if all(beat.get("beat_at", 0.0) > instant for beat in beats):
            return beats
        if time.monotonic() > deadline:
            return beats  # what there is: a worker that stopped beating reports no later pause
        time.sleep(0.2)


def pauses_in_run(beats: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """The notable pauses (vqueue/gc_heap.py NOTABLE_PAUSE_S) that ended between `start` and
    `end`, in ms after `start`, and how much of each worker's heap was frozen."""
    pauses = [
        {
            "worker": beat["name"],
            "at_ms": round((at - start) * 1000),
            "generation": generation,
            "ms": ms,
        }
        for beat in beats
        for at, generation, ms in beat.get("gc", {}).get("recent", [])
        if start <= at <= end
    ]
    frozen = {beat["name"]: beat.get("gc", {}).get("frozen_objects") for beat in beats}
    return {
        "frozen_objects": frozen,
        "pauses": sorted(pauses, key=lambda pause: pause["at_ms"]),
    }


def describe(found: dict[str, Any]) -> str:
    """One line for the Markdown report."""
    frozen = ", ".join(f"{n:,}" for n in found["frozen_objects"].values() if n is not None)
    heap = f" (objects frozen at startup: {frozen})" if frozen else ""
    what = "Worker garbage collection in the measured run"
    if not found["pauses"]:
        return f"{what}: no pause of {NOTABLE_PAUSE_S * 1000:g} ms or more{heap}."
    listed = "; ".join(
        f"{pause['ms']:.0f} ms (generation {pause['generation']}) at {pause['at_ms']} ms"
        for pause in found["pauses"]
    )
    return f"{what}, its pauses: {listed}{heap}."
