"""The garbage collector in the long-lived processes: the startup heap frozen, pauses counted.

A worker holds the engine's frontend, and torch, transformers and vLLM leave ~630,000 objects
tracked by the collector (the CPU build with SmolLM2). A full collection, of generation 2,
walks every one of them with the GIL held: hundreds of milliseconds on a small machine, in
which the engine loop, the publisher and every task thread stand still. Python starts one
whenever the objects that survived into generation 2 since the last one reach a quarter of
those already there, which a long burst of jobs can do in the middle of a run; it then shows
as a stall in every job's token stream. Freezing the heap once the process is ready moves
everything alive into a permanent generation the collector never walks, as vLLM's own server
does (`freeze_gc_heap`); objects made later are collected as before. An API process holds
fewer objects, but a full collection still stalls every stream it serves.

`GcPauses` records how long each collection held the process, so a stall is visible in the
worker's heartbeat and in the benchmark's report instead of guessed at.
"""

import gc
import time
from collections import deque
from typing import Any

# Pauses at least this long are kept with their time, for the benchmark to match to its runs:
# long enough to leave out the young generations' routine collections (well under 1 ms).
NOTABLE_PAUSE_S = 0.005
RECENT_PAUSES = 64


# How many objects this process froze, counted once when it froze them: gc.get_freeze_count()
# walks the whole frozen list with the GIL held (tens of milliseconds over a worker's heap),
# which, called on every heartbeat, stalled every thread of the worker.
_frozen_objects = 0


def freeze_startup_heap() -> int:
    """Collect what startup left as garbage, then freeze the rest; returns how many objects
    the collector will no longer walk."""
    global _frozen_objects
    gc.collect()
    gc.freeze()
    _frozen_objects = gc.get_freeze_count()
    return _frozen_objects


def frozen_objects() -> int:
    """The count of the last `freeze_startup_heap()`, without walking the heap again."""
    return _frozen_objects


class GcPauses:
    """Every collection's pause in this process, by generation, from `gc.callbacks`.

    The callback runs in whichever thread triggered the collection, holding the GIL, and one
    collection runs at a time, so the counters need no lock."""

    def __init__(self) -> None:
        self._started: float | None = None
        self.collections = [0, 0, 0]
        self.pause_s = [0.0, 0.0, 0.0]
        self.longest_s = [0.0, 0.0, 0.0]
        # (wall-clock end, generation, seconds) of the notable ones, newest last.
        self.recent: deque[tuple[float, int, float]] = deque(maxlen=RECENT_PAUSES)

    def install(self) -> "GcPauses":
        gc.callbacks.append(self._observe)
        return self

    def uninstall(self) -> None:
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._started is None:  # installed in the middle of a collection
            return
        pause = time.perf_counter() - self._started
        self._started = None
        generation = info["generation"]
        self.collections[generation] += 1
        self.pause_s[generation] += pause
        self.longest_s[generation] = max(self.longest_s[generation], pause)
        if pause >= NOTABLE_PAUSE_S:
            self.recent.append((time.time(), generation, pause))

    def snapshot(self) -> dict[str, Any]:
        """Totals by generation since `install`, and the latest notable pauses."""
        # Copied in one C call first: a collection that this method's own allocations set off
        # appends to the deque, which must not happen while Python code iterates it.
        recent = tuple(self.recent)
        return {
            "frozen_objects": frozen_objects(),
            "collections": list(self.collections),
            "pause_ms": [round(s * 1000, 3) for s in self.pause_s],
            "longest_ms": [round(s * 1000, 3) for s in self.longest_s],
            "recent": [[round(at, 3), gen, round(s * 1000, 3)] for at, gen, s in recent],
        }
