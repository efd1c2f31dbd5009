"""What a full garbage collection costs in a worker and in an API process, frozen or not.

Why both freeze their startup heap (vqueue/gc_heap.py): builds each process's long-lived
state as it starts (the worker's engine with its settings, the API's app), then times full
collections over that heap, before and after `gc.freeze()`, and `gc.get_freeze_count()`,
which walks the frozen heap too (why a heartbeat must not call it, vqueue/gc_heap.py).

    python -m vqueue.bench.gc_probe [worker|api ...]   (both, one process each, by default)
"""

import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from vqueue.settings import get_settings


def full_collection_ms(times: int = 3) -> float:
    """The median of `times` full collections, in ms."""
    taken = []
    for _ in range(times):
        started = time.perf_counter()
        gc.collect()
        taken.append((time.perf_counter() - started) * 1000)
    return statistics.median(taken)


def worker_heap() -> Any:
    from worker.engine import EngineHost
    from worker.model_source import resolve_model

    settings = get_settings()
    path = resolve_model(
        settings.model, revision=settings.model_revision, cache_dir=settings.model_cache_dir
    )
    return EngineHost(settings, path).start()


def api_heap() -> Any:
    from api.app import create_app

    app = create_app()
    app.openapi()  # built on first request; part of a serving process's heap
    return app


def probe(build: Callable[[], Any]) -> dict[str, Any]:
    held = build()
    tracked = len(gc.get_objects())
    unfrozen = full_collection_ms()
    gc.freeze()
    frozen = full_collection_ms()
    started = time.perf_counter()
    gc.get_freeze_count()
    count_ms = (time.perf_counter() - started) * 1000
    gc.unfreeze()
    if hasattr(held, "close"):
        held.close()
    return {
        "tracked_objects": tracked,
        "full_ms": round(unfrozen, 1),
        "frozen_ms": round(frozen, 3),
        "freeze_count_ms": round(count_ms, 1),
    }


BUILDERS = {"worker": worker_heap, "api": api_heap}


def main() -> None:
    names = sys.argv[1:] or list(BUILDERS)
    if len(names) > 1:  # each in a process of its own, with nothing of the other's heap
        for name in names:
            subprocess.run([sys.executable, "-m", "vqueue.bench.gc_probe", name], check=True)
        return
    print(names[0], probe(BUILDERS[names[0]]), flush=True)


if __name__ == "__main__":  # the engine's core process is spawned: it imports this module
    main()
