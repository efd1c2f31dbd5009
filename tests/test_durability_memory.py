"""A worker that starts while the machine's memory is nearly full: it refuses at once with a
message naming what it needs, its supervisor retries with backoff while the API keeps taking
jobs, and once the memory is free the worker starts and runs them; nobody acts on the stack.

Adds a row to docs/durability.md (see the durability_report fixture).
"""

import subprocess
import sys
import time
from typing import Any

from redis import Redis

from tests.durability import LogTail, finals_of, report, tally, wait_for_restart, wait_until
from tests.test_durability_postgres import submit_until_accepted
from vqueue.client.api_client import VQueueClient
from vqueue.dev import stack
from vqueue.settings import Settings

REFUSAL = "not enough free memory to start the engine"
# Below what the suite's engine needs (VLLM_CPU_KVCACHE_SPACE 2 GiB, the weights and the
# engine processes), above what the machine's other processes need meanwhile.
LEAVE_MIB = 1536


def test_a_worker_starting_with_memory_nearly_full(
    client: VQueueClient,
    settings: Settings,
    redis: Redis,
    durability_report: list[dict[str, Any]],
) -> None:
    max_tokens = 60
    base_url = stack.base_url(settings)
    old_worker = stack.running_pid(settings, "worker")
    assert old_worker is not None
    # The worker is stopped (as by a deploy) and meanwhile another tenant fills the memory.
    stack.hold(settings, "worker")
    worker_log = LogTail(settings.run_dir / "worker.log")
    ballast = subprocess.Popen(
        [sys.executable, "-m", "tests.memory_ballast", str(LEAVE_MIB)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert ballast.stdout is not None
        assert ballast.stdout.readline().startswith("ready"), "the ballast did not fill memory"
        body = {"prompt": "Once memory is back:", "max_tokens": max_tokens, "ignore_eos": True}
        jobs = [submit_until_accepted(base_url, body) for _ in range(4)]
        stack.release(settings, "worker")  # its supervisor starts it, and retries
        wait_until(lambda: len(worker_log.lines_with(REFUSAL)) >= 2, timeout=300, interval=0.5)
        # The API took jobs the whole time.
        jobs.append(submit_until_accepted(base_url, body))
    finally:
        ballast.kill()
        ballast.wait()
        assert ballast.stdout is not None
        ballast.stdout.close()
    freed_at = time.monotonic()
    refused = worker_log.lines_with(REFUSAL)
    new_worker = wait_for_restart(settings, "worker", old_worker)
    back_s = time.monotonic() - freed_at
    finals = finals_of(client, jobs, timeout=600)
    done_s = time.monotonic() - freed_at
    counts = tally(redis, finals, max_tokens)
    report(
        durability_report,
        counts,
        fault="worker started with memory nearly full",
        injection=f"another process kept {LEAVE_MIB / 1024:g} GiB of memory available while "
        "the supervisor started the worker",
        in_flight=f"{len(jobs)} submitted while no worker could start",
        recovery=f"worker up {back_s:.0f}s after the memory was freed, every job done in "
        f"{done_s:.0f}s",
        notes=f"the worker refused {len(refused)} times (exit code 3, nothing allocated), "
        "each naming what it needs and what was free; the API kept accepting jobs",
    )
    assert (counts.lost, counts.duplicated, counts.stuck) == (0, 0, 0)
    assert new_worker != old_worker
    # The refusal says what it needs and what is free, with the knob to turn.
    assert "GiB available" in refused[0]
    assert "VLLM_CPU_KVCACHE_SPACE" in refused[0]
