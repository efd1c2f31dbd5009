"""Keeps the machine's available memory near a level, as another tenant of the host would.

`python -m tests.memory_ballast LEAVE_MIB` takes memory in chunks until about LEAVE_MIB MiB is
available, and gives chunks back whenever other processes need more, so that it never drives
the machine into the OOM killer (and if the kernel must kill something, it picks this process
first: its oom_score_adj is the highest). It prints `ready` once the level is reached and
exits when its parent does.
"""

import mmap
import signal
import sys
import time
from pathlib import Path

import psutil

from worker.engine_guard import set_parent_death_signal

CHUNK = 64 * 1024 * 1024


def hold(leave: int) -> None:
    Path("/proc/self/oom_score_adj").write_text("1000")
    set_parent_death_signal(signal.SIGKILL)
    ones = b"\x01" * CHUNK
    chunks: list[mmap.mmap] = []
    ready = False
    while True:
        available = psutil.virtual_memory().available
        if available > leave + 2 * CHUNK:
            chunk = mmap.mmap(-1, CHUNK, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            chunk[:] = ones  # touched, so the pages are really taken
            chunks.append(chunk)
            continue
        if available < leave - CHUNK and chunks:
            chunks.pop().close()
            continue
        if not ready:
            ready = True
            print(f"ready: holding {len(chunks) * CHUNK >> 20} MiB", flush=True)
        time.sleep(0.05)


if __name__ == "__main__":
    hold(int(sys.argv[1]) * 1024 * 1024)
