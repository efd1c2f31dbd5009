"""The resident engine: one vLLM AsyncLLM on its own asyncio loop thread, for the worker's life.

Celery task threads hand coroutines to that loop (`submit`) and wait on the result, so many
tasks feed one engine that batches them continuously.
"""

import asyncio
import functools
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Self, TypeVar

from vqueue.settings import Settings
from worker.engine_guard import mark_as_owner, reap_stale_engines
from worker.engine_stats import SchedulerSnapshot
from worker.memory_check import check_cpu_memory
from worker.warmup import warm_up

T = TypeVar("T")

CPU_MEMORY_UTILIZATION = 0.5

log = logging.getLogger(__name__)


def cpu_dtype(requested: str) -> str:
    """On a CPU without native bf16 (AVX2 only), bf16 matrix products take a slow scalar path:
    measured here, float32 ran 32 jobs of 3 tokens in 1.25 s against 6.8 s, and 64 concurrent
    jobs at 145 against 28 tok/s. "auto" picks float32 there; an explicit dtype is kept."""
    import torch

    if requested != "auto" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return requested
    return "float32"


def engine_kwargs(settings: Settings, model_path: Path) -> dict[str, Any]:
    """The engine's arguments under vLLM's names (AsyncEngineArgs fields, and `vllm serve`'s
    flags with dashes), so a peer server can be started on exactly these."""
    from vllm.platforms import current_platform

    enforce_eager = settings.enforce_eager
    if enforce_eager is None:
        enforce_eager = current_platform.is_cpu()
    # max_num_seqs and the token budget are always explicit: AsyncLLM's own defaults (128
    # sequences, a small budget) cut throughput by more than half (see docs/design.md).
    optional = {}
    dtype = cpu_dtype(settings.dtype) if current_platform.is_cpu() else settings.dtype
    if settings.gpu_memory_utilization is not None:
        optional["gpu_memory_utilization"] = settings.gpu_memory_utilization
    elif current_platform.is_cpu():
        # On the CPU build this is the share of the NUMA node's RAM that must be free at
        # start (vLLM's 0.92 fails whenever the page cache holds a few GB); the KV cache
        # itself is sized by VLLM_CPU_KVCACHE_SPACE.
        optional["gpu_memory_utilization"] = CPU_MEMORY_UTILIZATION
    return {
        "model": str(model_path),
        "served_model_name": settings.model_name,
        "tokenizer": settings.tokenizer or str(model_path),
        "load_format": settings.load_format,
        "max_num_seqs": settings.max_num_seqs,
        "max_num_batched_tokens": settings.max_num_batched_tokens,
        "max_model_len": settings.max_model_len,
        "dtype": dtype,
        "tensor_parallel_size": settings.tensor_parallel_size,
        "enforce_eager": enforce_eager,
        "seed": settings.seed,
        "scheduling_policy": settings.scheduling_policy,
        "disable_log_stats": not settings.engine_stats,
        **optional,
    }


def engine_args(settings: Settings, model_path: Path) -> Any:
    from vllm import AsyncEngineArgs

    return AsyncEngineArgs(**engine_kwargs(settings, model_path))


def warmup_wanted(settings: Settings) -> bool:
    if settings.engine_warmup is not None:
        return settings.engine_warmup
    from vllm.platforms import current_platform

    return not current_platform.is_cpu()


def _settle(future: "Future[Any]", task: "asyncio.Task[Any]") -> None:
    """Give `future` the outcome of the loop's `task`, as run_coroutine_threadsafe does."""
    if task.cancelled():
        future.cancel()
    if not future.set_running_or_notify_cancel():
        return
    exception = task.exception()
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(task.result())


class EngineHost:
    """Owns the loop thread and the engine; use `start()` then `close()` (or `with`)."""

    def __init__(self, settings: Settings, model_path: Path) -> None:
        self.settings = settings
        self.model_path = model_path
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="engine-loop", daemon=True)
        self.engine: Any = None
        self.max_model_len = 0
        self.vocab_size = 0
        self.vllm_version = ""
        self.scheduler = SchedulerSnapshot()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start_loop(self) -> Self:
        """The loop thread alone, for code that runs there before (or without) an engine."""
        self._thread.start()
        return self

    def start(self) -> "EngineHost":
        import vllm
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        # A dead worker's engine would hold the memory this one needs; ours dies with us.
        reap_stale_engines()
        args = engine_args(self.settings, self.model_path)
        if current_platform.is_cpu():
            check_cpu_memory(self.model_path, args.gpu_memory_utilization)
        mark_as_owner()
        self.start_loop()

        recorders = [self.scheduler.factory] if self.settings.engine_stats else None

        async def build() -> Any:
            # AsyncLLM binds its output handler to the running loop, so build it there.
            return AsyncLLM.from_engine_args(args, stat_loggers=recorders)

        self.engine = self.submit(build()).result()
        self.max_model_len = self.engine.vllm_config.model_config.max_model_len
        self.vocab_size = self.engine.vllm_config.model_config.get_vocab_size()
        self.vllm_version = vllm.__version__
        if warmup_wanted(self.settings):
            try:
                self.submit(warm_up(self.engine)).result()
            except Exception:
                # Only a speed-up: a worker whose engine still runs serves without it.
                if self.engine.errored:
                    raise
                log.exception("engine warm-up failed; serving without it")
        log.info("engine ready: %s (max_model_len %d)", self.model_path, self.max_model_len)
        return self

    def submit(self, coro: Coroutine[Any, Any, T]) -> "Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def submit_all(self, coros: list[Coroutine[Any, Any, Any]]) -> "list[Future[Any]]":
        """`submit` for each, in one hand-over, started in order. Submitted one by one, each
        coroutine wakes the loop thread, which then trades the GIL with the thread still
        handing over the rest: beside a busy thread, a message of hundreds of runs reaches the
        engine much later one by one than all at once."""
        futures: list[Future[Any]] = [Future() for _ in coros]

        def start() -> None:
            for coro, future in zip(coros, futures, strict=True):
                if future.cancelled():
                    coro.close()
                    continue
                task = self.loop.create_task(coro)
                task.add_done_callback(functools.partial(_settle, future))

        self.loop.call_soon_threadsafe(start)
        return futures

    def tokenizer(self) -> Any:
        return self.engine.get_tokenizer()

    def close(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()  # its self-pipe sockets, which a stopped loop still holds

    def __enter__(self) -> "EngineHost":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
