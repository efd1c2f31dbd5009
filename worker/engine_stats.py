"""The engine's own scheduler figures (running, waiting, KV-cache use, prefix-cache hits),
for the heartbeat.

vLLM reports them with every step only when its statistics are on (VQUEUE_ENGINE_STATS), which
costs a busy worker's event loop noticeably; off, the heartbeat carries the worker's own
counts and no KV-cache figure.
"""

from typing import Any

from vqueue.contract.wire import EngineFigures


class SchedulerSnapshot:
    """Holds the latest figures; `factory` is handed to AsyncLLM as a stat logger."""

    def __init__(self) -> None:
        self.latest: EngineFigures | None = None
        # vLLM reports each step's prefix-cache lookups; the heartbeat carries their sums.
        self.prefix_queries = 0
        self.prefix_hits = 0

    def factory(self, vllm_config: Any, engine_index: int = 0) -> Any:
        from vllm.v1.metrics.loggers import StatLoggerBase

        snapshot = self

        class Recorder(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(
                self,
                scheduler_stats: Any,
                iteration_stats: Any,
                mm_cache_stats: Any = None,
                engine_idx: int = 0,
            ) -> None:
                if scheduler_stats is None:
                    return
                if (prefix := scheduler_stats.prefix_cache_stats) is not None:
                    snapshot.prefix_queries += prefix.queries
                    snapshot.prefix_hits += prefix.hits
                snapshot.latest = EngineFigures(
                    running=scheduler_stats.num_running_reqs,
                    waiting=scheduler_stats.num_waiting_reqs,
                    kv_cache_usage=round(scheduler_stats.kv_cache_usage, 4),
                    prefix_cache_queries=snapshot.prefix_queries,
                    prefix_cache_hits=snapshot.prefix_hits,
                )

            def log_engine_initialized(self) -> None:
                pass

        return Recorder(vllm_config, engine_index)
