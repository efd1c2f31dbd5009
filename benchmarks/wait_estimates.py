"""How right a queued job's estimated start is: `python -m benchmarks.wait_estimates --label L`.

The stack's own workers, a steady load above what they serve (so a queue forms and stays):
after a warm-up wave (the pace the estimates are made from), jobs arrive at `--over` times
the rate the warm-up ended them, for `--seconds`; each is read back (GET /jobs/{id}) right
after its submit, and the `queue.estimated_start_at` it shows then is compared with the
`started_at` it got. The error of one job is |estimated - actual| over the wait it had from
that read to its start (jobs that waited under `--min-wait-s` are left out: a few
milliseconds' miss is no measure). Writes OUT/wait-estimates-LABEL.json and .md.
"""

import argparse
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.sides import clean_slate, report_head, running_stack, write_report
from vqueue.client.api_client import VQueueClient
from vqueue.settings import get_settings

JOB = {"prompt": "Tell a long story about a lighthouse.", "ignore_eos": True}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--warm-up", type=int, default=64, help="jobs of the warm-up wave")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0, help="of steady arrivals")
    parser.add_argument("--over", type=float, default=1.3, help="arrivals over the served rate")
    parser.add_argument("--min-wait-s", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def warm_up(client: VQueueClient, jobs: int, max_tokens: int) -> float:
    """Jobs ended per second over one wave (its first start to its last end)."""
    ids = [client.submit(**JOB, max_tokens=max_tokens)["id"] for _ in range(jobs)]
    ended = [client.wait(job_id, timeout=900) for job_id in ids]
    first = min(at(job["started_at"]) for job in ended)
    last = max(at(job["finished_at"]) for job in ended)
    return jobs / max(last - first, 1e-3)


def steady_load(
    client: VQueueClient, rate: float, seconds: float, max_tokens: int
) -> list[dict[str, Any]]:
    """Jobs submitted at `rate` a second for `seconds`, each read right after; what each read
    showed."""
    reads: list[dict[str, Any]] = []
    began = time.monotonic()
    count = int(rate * seconds)
    for index in range(count):
        # Evenly spaced: a steady load, not bursts.
        delay = began + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        job_id = client.submit(**JOB, max_tokens=max_tokens)["id"]
        read_at = time.time()
        shown = client.get(job_id)
        reads.append({"id": job_id, "read_at": read_at, "queue": shown["queue"]})
    return reads


def errors(
    client: VQueueClient, reads: list[dict[str, Any]], min_wait_s: float
) -> list[dict[str, Any]]:
    found = []
    for read in reads:
        job = client.wait(read["id"], timeout=1800)
        wait = read["queue"]
        if job["started_at"] is None or wait is None or wait["estimated_start_at"] is None:
            continue
        waited = at(job["started_at"]) - read["read_at"]
        if waited < min_wait_s:
            continue
        missed = at(wait["estimated_start_at"]) - at(job["started_at"])
        found.append(
            {
                "position": wait["position"],
                "waited_s": round(waited, 3),
                "missed_s": round(missed, 3),
                "relative_error": round(abs(missed) / waited, 4),
            }
        )
    return found


def summary(found: list[dict[str, Any]], reads: int) -> dict[str, Any]:
    relative = sorted(entry["relative_error"] for entry in found)
    late = sum(1 for entry in found if entry["missed_s"] < 0)
    return {
        "jobs_read": reads,
        "jobs_measured": len(found),
        "median_relative_error": round(statistics.median(relative), 4) if relative else None,
        "p90_relative_error": round(relative[int(0.9 * (len(relative) - 1))], 4)
        if relative
        else None,
        "started_later_than_estimated": late,
        "median_wait_s": round(statistics.median(e["waited_s"] for e in found), 2)
        if found
        else None,
    }


def table(results: dict[str, Any]) -> str:
    s = results["summary"]
    return (
        "| jobs read / measured | median wait s | median relative error | p90 | started later "
        "than estimated |\n| --- | --- | --- | --- | --- |\n"
        f"| {s['jobs_read']} / {s['jobs_measured']} | {s['median_wait_s']} | "
        f"{s['median_relative_error']} | {s['p90_relative_error']} | "
        f"{s['started_later_than_estimated']} |\n"
    )


def main() -> None:
    args = parse_args()
    settings = get_settings()
    results = report_head(args)
    key = clean_slate(settings)
    with (
        running_stack(settings) as base_url,
        VQueueClient(base_url, timeout=120, api_key=key or None) as client,
    ):
        served = warm_up(client, args.warm_up, args.max_tokens)
        rate = served * args.over
        results["served_jobs_per_s"] = round(served, 3)
        results["arrivals_per_s"] = round(rate, 3)
        print(f"warm-up: {served:.2f} jobs/s served; arrivals at {rate:.2f}/s", flush=True)
        reads = steady_load(client, rate, args.seconds, args.max_tokens)
        found = errors(client, reads, args.min_wait_s)
    results["summary"] = summary(found, len(reads))
    results["jobs"] = found
    write_report(args, "wait-estimates", results, table(results))


if __name__ == "__main__":
    main()
