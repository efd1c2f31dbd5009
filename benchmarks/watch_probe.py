"""Whether following a job's stream slows the engine: single jobs one after the other against
a running stack (`make up`), in turns followed over SSE and left unwatched (one poll a
second), each timed by its own first-token and finish times, which the worker writes, so the
client's side is not in the figure.

On a 2-core host the engine core keeps both cores busy; each streamed step wakes the worker's
publisher, Redis, the API and the client. This shows whether that costs the engine speed.

    python -m benchmarks.watch_probe [PAIRS] [OUTPUT_TOKENS]   (4 128 by default)

It reads VQUEUE_URL (default http://127.0.0.1:8000) and VQUEUE_API_KEY, as the CLI does.
"""

import os
import statistics
import sys
import time
from datetime import datetime
from typing import Any

from benchmarks.workload import Workload
from vqueue.client.api_client import VQueueClient

PROMPT = "Write a story about the sea and a lighthouse keeper:"


def _at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def run_one(client: VQueueClient, workload: Workload, watched: bool) -> dict[str, Any]:
    """One job; its decode speed (tokens after the first over first token to finish)."""
    submitted = time.time()
    job = client.submit(prompt=PROMPT, **workload.sampling())
    if watched:
        for _ in client.stream(job["id"]):
            pass
        final = client.get(job["id"])
    else:
        while (final := client.get(job["id"]))["status"] in {"queued", "running"}:
            time.sleep(1.0)
    if final["status"] != "succeeded":
        raise SystemExit(f"job {job['id']} ended {final['status']}: {final['error']}")
    first, finished = _at(final["first_token_at"]), _at(final["finished_at"])
    return {
        "tok_s": (final["usage"]["completion_tokens"] - 1) / (finished - first),
        "to_first_ms": 1000 * (first - submitted),
    }


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    workload = Workload(jobs=1, prompt_tokens=0, output_tokens=tokens)
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    with VQueueClient(os.environ.get("VQUEUE_URL", "http://127.0.0.1:8000")) as client:
        for _ in range(pairs):
            for watched in (True, False):
                run = run_one(client, workload, watched)
                runs[watched].append(run)
                side = "streamed " if watched else "unwatched"
                print(f"{side} {run['tok_s']:5.1f} tok/s, first token {run['to_first_ms']:.0f} ms")
    for watched, label in ((True, "streamed"), (False, "unwatched")):
        speeds = [run["tok_s"] for run in runs[watched]]
        print(f"{label}: mean {statistics.mean(speeds):.1f} tok/s over {len(speeds)} jobs")


if __name__ == "__main__":
    main()
