"""The stack's long garbage-collection pauses in a measured run, read from its heartbeats.

A full collection over a worker's unfrozen heap held the whole process for ~320 ms on the
2-core test machine, and over an API process's for ~90 ms (vqueue/gc_heap.py); one in a
measured run stalls every stream of that process at once and shows as late tokens and lost
throughput. The report says whether one happened, and when, to hold against the bursts of
late tokens (late_tokens.py).
"""

import time
from typing import Any

import orjson
from redis import Redis

from vqueue.contract.wire import API_KEY_PREFIX, WORKER_KEY_PREFIX
from vqueue.gc_heap import NOTABLE_PAUSE_S

PARTS = {"worker": WORKER_KEY_PREFIX, "api": API_KEY_PREFIX}


def _heartbeats(redis_url: str) -> list[dict[str, Any]]:
    beats = []
    with Redis.from_url(redis_url) as redis:
        for part, prefix in PARTS.items():
            keys = list(redis.scan_iter(match=f"{prefix}*"))
            for value in redis.mget(keys) if keys else []:
                if value:
                    beat = orjson.loads(value)
                    beats.append({**beat, "process": f"{part} {beat['name']}"})
    return beats


def heartbeats_after(redis_url: str, instant: float, timeout: float) -> list[dict[str, Any]]:
    """Every live worker's and API process's heartbeat, once each was sent after `instant`
    (wall clock)."""
    deadline = time.monotonic() + timeout
    while True:
        beats = _heartbeats(redis_url)
        if all(beat.get("beat_at", 0.0) > instant for beat in beats):
            return beats
        if time.monotonic() > deadline:
            return beats  # what there is: a process that stopped beating reports no later pause
        time.sleep(0.2)


def pauses_in_run(beats: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """The notable pauses (vqueue/gc_heap.py NOTABLE_PAUSE_S) that ended between `start` and
    `end`, in ms after `start`, and how much of each process's heap was frozen."""
    pauses = [
        {
            "process": beat["process"],
            "at_ms": round((at - start) * 1000),
            "generation": generation,
            "ms": ms,
        }
        for beat in beats
        for at, generation, ms in beat.get("gc", {}).get("recent", [])
        if start <= at <= end
    ]
    frozen = {beat["process"]: beat.get("gc", {}).get("frozen_objects") for beat in beats}
    return {
        "frozen_objects": frozen,
        "pauses": sorted(pauses, key=lambda pause: pause["at_ms"]),
    }


def describe(found: dict[str, Any]) -> str:
    """One line for the Markdown report."""
    frozen = ", ".join(f"{name} {n:,}" for name, n in found["frozen_objects"].items() if n)
    heap = f" (objects frozen at startup: {frozen})" if frozen else ""
    what = (
        "Garbage collection in the workers, the API processes and the bench's clients during "
        "the measured run"
    )
    if not found["pauses"]:
        return f"{what}: no pause of {NOTABLE_PAUSE_S * 1000:g} ms or more{heap}."
    listed = "; ".join(
        f"{pause['process']}: {pause['ms']:.0f} ms (generation {pause['generation']}) "
        f"at {pause['at_ms']} ms"
        for pause in found["pauses"]
    )
    return f"{what}, its pauses: {listed}{heap}."
