"""The runs of a benchmark: the queue's through the stack, the bare engine's, and the two
taken in turns (benchmarks/turns.py).
"""

import asyncio
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import queue_side
from benchmarks.bare_side import BareEngine
from benchmarks.cpu_use import CpuUse
from benchmarks.gc_pauses import heartbeats_after, pauses_in_run
from benchmarks.intake import (
    intake_lines,
    intake_stages,
    record_lines,
    record_stages,
    with_intake,
)
from benchmarks.late_tokens import late_bursts
from benchmarks.profile import Profiler
from benchmarks.step_tap import StepTap
from benchmarks.timeline import claim_offsets, job_times, timeline
from benchmarks.turns import SETTLE_S, QueueRun, median_pair, take_turns
from benchmarks.workload import Prompts, RunResult, Workload, ms, percentile, spread
from vqueue.dev import stack
from vqueue.settings import Settings

SINGLE_RUNS = 3


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", flush=True)


def median_single(results: list[RunResult]) -> float:
    return statistics.median(result.tok_s for result in results)


async def queue_phase(
    settings: Settings,
    prompts: Prompts,
    workload: Workload,
    levels: list[int],
    args: Any,
    bare: BareEngine | None = None,
) -> dict[str, Any]:
    """The queue's runs; with `bare`, its measured and single-job runs take turns with the
    bare engine's."""
    base_url = stack.base_url(settings)

    async def run_streamed(chosen: list[str]) -> RunResult:
        if args.client_processes > 1 and len(chosen) > 1:
            return await asyncio.to_thread(
                queue_side.run_streamed_in_processes,
                base_url,
                chosen,
                workload,
                args.client_processes,
            )
        return await queue_side.run_streamed(base_url, chosen, workload)

    n = workload.jobs
    for i in range(args.warmups):
        log(f"queue: warm-up with {n} jobs")
        await run_streamed(prompts.take(f"warm-up {i}", n))
    profiler = Profiler(settings, args.profile, args.profile_seconds) if args.profile else None

    async def measured(name: str) -> QueueRun:
        nonlocal profiler
        log(f"queue: {name}, SSE")
        if profiler is not None:
            profiler.start("measured")
        tap = await asyncio.to_thread(StepTap(settings.redis_url).start)
        cpu = CpuUse()
        run = await run_streamed(prompts.take(name, n))
        cpu_use = cpu.read()
        received, lags, firsts = await asyncio.to_thread(tap.stop)
        if profiler is not None:  # the first measured run only
            await asyncio.to_thread(profiler.wait)
            profiler = None
        started = datetime.fromtimestamp(run.started_at, UTC)
        rows = await asyncio.to_thread(job_times, settings.database_url, started)
        window = (run.started_at, run.started_at + run.seconds)
        at_redis = {
            "lag_p50_ms": ms(percentile(lags, 50)),
            "lag_p99_ms": ms(percentile(lags, 99)),
            "late": late_bursts(lags, received, run.started_at),
            # (ms after the first submit, jobs): when the burst's prefill steps ended.
            "first_tokens_by_step": [
                [round(1000 * (made - run.started_at), 1), count]
                for made, count in firsts
                if window[0] <= made <= window[1]
            ],
        }
        intake = intake_lines(settings.run_dir, window)
        details = {
            "timeline": with_intake(timeline(rows, started), intake_stages(intake, window[0]))
            | record_stages(record_lines(settings.run_dir, window), window[0]),
            "cpu": cpu_use,
            "window": window,
            "at_redis": at_redis,
        }
        return QueueRun(run, {**details, "claims": claim_offsets(rows, started)})

    async def bare_measured(name: str) -> RunResult:
        assert bare is not None
        run = await bare.run(prompts.take(name, n), workload)
        log(f"bare: {name}, {run.tok_s:.1f} tok/s")
        return run

    pair = None
    if bare is None:
        pairs = []
        chosen = await measured("measured")
    else:
        pairs = await take_turns(
            [f"measured {i}" for i in range(args.pairs)], measured, bare_measured
        )
        pair = median_pair(pairs)
        chosen = pair.queue
    streamed = chosen.run
    log(f"queue: {streamed.tok_s:.1f} tok/s; polling variant")
    polled = await queue_side.run_polled(base_url, prompts.take("polled", n), workload)
    by_level = {n: streamed.tok_s}
    for level in levels:
        by_level[level] = (await run_streamed(prompts.take(f"level {level}", level))).tok_s
    single_names = [f"single {i}" for i in range(SINGLE_RUNS)]

    async def queue_single(name: str) -> QueueRun:
        return QueueRun(await run_streamed(prompts.take(name, 1)))

    async def bare_single(name: str) -> RunResult:
        assert bare is not None
        return await bare.run(prompts.take(name, 1), workload)

    if bare is None:
        singles, bare_singles = [(await queue_single(name)).run for name in single_names], []
    else:
        single_pairs = await take_turns(single_names, queue_single, bare_single)
        singles = [each.queue.run for each in single_pairs]
        bare_singles = [each.bare for each in single_pairs]
    clients_per_job = max(1, args.fan_out_clients // args.fan_out_jobs)
    log(f"queue: {clients_per_job * args.fan_out_jobs} SSE clients on {args.fan_out_jobs} jobs")
    fan_out = await queue_side.fan_out(
        base_url, prompts.take("fan-out", args.fan_out_jobs), workload, clients_per_job
    )
    start, end = chosen.details["window"]
    beats = await asyncio.to_thread(
        heartbeats_after, settings.redis_url, end, 3 * settings.worker_heartbeat_s
    )
    result = {
        "stack_gc": pauses_in_run(beats + chosen.run.client_gc, start, end),
        "streamed": streamed.summary(),
        "timeline": chosen.details["timeline"],
        "cpu": chosen.details["cpu"],
        "at_redis": chosen.details["at_redis"],
        "pairs": [each.summary() for each in pairs],
        "polled": polled.summary(),
        "levels": {str(k): round(v, 1) for k, v in sorted(by_level.items())},
        "single_tok_s": round(median_single(singles), 1),
        "fan_out": fan_out,
        "_streamed": streamed,
        "_claims": chosen.details["claims"],
    }
    if pair is not None:  # the bare engine's runs of the pairs, for bare_phase
        result |= {"_bare_streamed": pair.bare, "_bare_singles": bare_singles}
    return result


async def bare_warm_up(engine: BareEngine, prompts: Prompts, workload: Workload, runs: int) -> None:
    await engine.start()
    for i in range(runs):
        log(f"bare: warm-up with {workload.jobs} jobs")
        await engine.run(prompts.take(f"warm-up {i}", workload.jobs), workload)


async def bare_phase(
    engine: BareEngine,
    prompts: Prompts,
    workload: Workload,
    levels: list[int],
    claims: list[float],
    streamed: RunResult | None = None,
    singles: list[RunResult] | None = None,
) -> dict[str, Any]:
    """The bare engine's runs, on a warm engine; the measured and single-job runs are those
    taken in turns with the queue's, where they were."""
    n = workload.jobs
    if streamed is None:
        streamed = await engine.run(prompts.take("measured", n), workload)
        log(f"bare: {streamed.tok_s:.1f} tok/s")
    # The bare engine spared the work the worker spares its loop (token ids, parameters it
    # need not copy), and more: made before its clock starts. A run of its own.
    prepared = await engine.run(prompts.take("prepared", n), workload, prepared=True)
    log(f"bare, inputs prepared: {prepared.tok_s:.1f} tok/s")
    # Is the queue's time to first token the engine's answer to arrivals spread out as the
    # worker's claims were, or the worker's own? Feed the bare engine at those instants.
    fed = None
    if claims:  # new prompts: the queue's measured run had not seen its own before
        fed = await engine.run(prompts.take("fed", len(claims)), workload, delays=claims)
    by_level = {n: streamed.tok_s}
    for level in levels:
        chosen = prompts.take(f"level {level}", level)
        by_level[level] = (await engine.run(chosen, workload)).tok_s
    if not singles:
        singles = [
            await engine.run(prompts.take(f"single {i}", 1), workload) for i in range(SINGLE_RUNS)
        ]
    return {
        "streamed": streamed.summary(),
        "prepared": prepared.summary(),
        "_prepared": prepared,
        "at_claim_times": None if fed is None else _first_tokens(fed, claims),
        "levels": {str(k): round(v, 1) for k, v in sorted(by_level.items())},
        "single_tok_s": round(median_single(singles), 1),
        "_streamed": streamed,
    }


def _first_tokens(run: RunResult, delays: list[float]) -> dict[str, Any]:
    """When a run fed at `delays` gave its first and last tokens, in ms after its start."""
    offsets = [1000 * (delay + ttft) for delay, ttft in zip(delays, run.ttft_s, strict=True)]
    ended = [1000 * offset for offset in run.ends.get("last token made", [])]
    return {
        "tok_s": round(run.tok_s, 1),
        "first_token": spread(offsets),
        "last_token": spread(ended),
    }


async def both_sides_in_turns(
    settings: Settings,
    model_path: Path,
    prompts: Prompts,
    workload: Workload,
    levels: list[int],
    args: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    log("bare: starting its engine beside the stack")
    engine = BareEngine(settings, model_path)
    try:
        await bare_warm_up(engine, prompts, workload, args.warmups)
        queue = await queue_phase(settings, prompts, workload, levels, args, engine)
        await asyncio.sleep(SETTLE_S)  # the worker's engine's busy loop (benchmarks/turns.py)
        bare = await bare_phase(
            engine,
            prompts,
            workload,
            levels,
            queue.pop("_claims"),
            queue.pop("_bare_streamed"),
            queue.pop("_bare_singles"),
        )
    finally:
        engine.shutdown()
    return queue, bare


async def bare_after_queue(
    settings: Settings,
    model_path: Path,
    prompts: Prompts,
    workload: Workload,
    levels: list[int],
    warmups: int,
    claims: list[float],
) -> dict[str, Any]:
    log("bare: starting the engine")
    engine = BareEngine(settings, model_path)
    try:
        await bare_warm_up(engine, prompts, workload, warmups)
        return await bare_phase(engine, prompts, workload, levels, claims)
    finally:
        engine.shutdown()
