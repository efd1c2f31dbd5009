"""Everything a worker process holds for its lifetime, built once when the worker starts."""

import logging
import os
import threading
import time
from contextlib import suppress

import orjson
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from db.engine import make_sync_engine
from vqueue.contract.queueing import JobQueue
from vqueue.contract.wire import (
    WORKERS_KEY,
    LogEntry,
    WorkerHeartbeat,
    entries_from_xrange,
    process_name,
    token_log_key,
    worker_key,
)
from vqueue.gc_heap import GcPauses, freeze_startup_heap
from vqueue.loops.batch_feeder import BatchFeeder
from vqueue.loops.reconciler import Reconciler
from vqueue.models.source import resolve_model
from vqueue.settings import Settings
from worker.active_runs import StopReason
from worker.claims import Claimer
from worker.engine import EngineHost
from worker.publisher import TokenLogPublisher
from worker.rebalance import Rebalancer
from worker.recorder import Recorder
from worker.runner import JobRunner
from worker.supervisor import Supervisor
from worker.tool_calls import ToolCallReader

log = logging.getLogger(__name__)

EXIT_ENGINE_DEAD = 70


def _gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return None


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = process_name()
        self.started_at = time.time()
        self._stop = threading.Event()
        self.gc_pauses = GcPauses().install()
        model_path = resolve_model(
            settings.model, revision=settings.model_revision, cache_dir=settings.model_cache_dir
        )
        # A tool parser vLLM does not know stops the worker before its engine loads.
        tool_calls = ToolCallReader(settings.tool_call_parser, lambda: self.host.tokenizer())
        self.host = EngineHost(settings, model_path).start()
        self.db = make_sync_engine(
            settings.database_url,
            pool_size=min(settings.effective_worker_concurrency, 20),
            # A worker stopped mid-transaction is as gone as one whose lease lapsed: its locks
            # must not hold back the reconciler that requeues its jobs.
            idle_in_transaction_s=settings.lease_s,
        )
        self.queue = JobQueue.from_settings(settings)
        self._redis = SyncRedis.from_url(settings.redis_url)
        self.publisher: TokenLogPublisher = self.host.submit(self._start_publisher()).result()
        self.runner = JobRunner(
            self.host,
            Claimer(self.db, self.queue, self.name, settings.lease_s),
            Recorder(self.host, self.db, self.publisher, self.queue, tool_calls=tool_calls),
            self.publisher,
            on_engine_dead=self._engine_dead,
            token_log=self._token_log,
        )
        self.supervisor = Supervisor(settings, self.db, self.runner, self.name)
        self.supervisor.start()
        self.reconciler = Reconciler(settings, self.db, self.queue)
        self.reconciler.start()
        self.feeder = BatchFeeder(settings, self.db, self.queue)
        self.feeder.start()
        self.gpu = _gpu_name()
        self._last_sample = (time.monotonic(), 0)
        # Last, before the first job: what the engine and its warm-up left is never walked by a
        # full collection again (vqueue/gc_heap.py).
        frozen = freeze_startup_heap()
        log.info("froze the startup heap: %d objects out of the collector's reach", frozen)
        self._heartbeat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self.rebalancer = Rebalancer(
            self._redis, self.queue, self.runner, self.name, settings.max_num_seqs
        )

    def announce(self) -> None:
        """Start the heartbeat, once Celery consumes from the queue: a worker that is listed
        (GET /ready, the submitter's message sizing, the health file) can take jobs, not only
        hold an engine."""
        self._heartbeat.start()
        self.rebalancer.start()

    async def _start_publisher(self) -> TokenLogPublisher:
        # The async Redis client belongs to the engine loop, where all publishing happens.
        self._async_redis = Redis.from_url(self.settings.redis_url)
        publisher = TokenLogPublisher(self._async_redis, self.settings.stream_retention_s)
        publisher.start()
        return publisher

    def _token_log(self, job_id: str) -> list[LogEntry]:
        return entries_from_xrange(job_id, self._redis.xrange(token_log_key(job_id)))

    def run_jobs(self, job_ids: list[str]) -> int:
        return self.runner.run(job_ids)

    def describe(self) -> WorkerHeartbeat:
        settings = self.settings
        now, tokens = time.monotonic(), self.runner.output_tokens
        last_at, last_tokens = self._last_sample
        self._last_sample = (now, tokens)
        return WorkerHeartbeat(
            name=self.name,
            model=settings.model_name,
            root=settings.model,
            vllm_version=self.host.vllm_version,
            gpu=self.gpu,
            max_num_seqs=settings.max_num_seqs,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            max_model_len=self.host.max_model_len,
            tensor_parallel_size=settings.tensor_parallel_size,
            concurrency=settings.effective_worker_concurrency,
            max_jobs=settings.effective_worker_max_jobs,
            running=len(self.runner.active_ids()),
            waiting=self.runner.waiting_count(),
            # vLLM's own figures (None unless VQUEUE_ENGINE_STATS): running, waiting, KV use.
            engine=self.host.scheduler.latest,
            output_tokens=tokens,
            # Over the last heartbeat interval.
            tokens_per_s=round((tokens - last_tokens) / max(now - last_at, 1e-6), 1),
            started_at=self.started_at,
            beat_at=time.time(),
            # Garbage collection pauses since the start; a long one stalls every stream.
            gc=self.gc_pauses.snapshot(),
        )

    def _beat(self) -> None:
        """Announce this worker (engine loaded, consuming) in Redis; the key expires soon after
        it dies."""
        interval = self.settings.worker_heartbeat_s
        while not self._stop.is_set():
            try:
                ttl = int(interval * 3) + 1
                pipe = self._redis.pipeline(transaction=False)
                pipe.set(worker_key(self.name), orjson.dumps(self.describe()), ex=ttl)
                pipe.zadd(WORKERS_KEY, {self.name: time.time() + ttl})
                # Workers that died without leaving leave the registry here.
                pipe.zremrangebyscore(WORKERS_KEY, "-inf", time.time())
                pipe.execute()
                self.settings.worker_health_file.touch()
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(interval)

    def begin_shutdown(self) -> None:
        """SIGTERM: Celery stops taking jobs and waits for the running ones; after the grace
        period, whatever still runs is aborted and handed back to the queue."""

        def hand_back_after_grace() -> None:
            deadline = time.monotonic() + self.settings.shutdown_grace_s
            while self.runner.active_ids() and time.monotonic() < deadline:
                time.sleep(0.2)
            for job_id in self.runner.active_ids():
                self.runner.stop(job_id, StopReason.HANDED_BACK)

        log.info(
            "shutting down: finishing running jobs for up to %ss", self.settings.shutdown_grace_s
        )
        self.rebalancer.stop()  # no more jobs come here: it announces no room
        threading.Thread(target=hand_back_after_grace, name="shutdown", daemon=True).start()

    def _engine_dead(self, exc: BaseException) -> None:
        # Nothing more can run here. Exiting lets a supervisor start a fresh worker, and the
        # reconciler requeues this worker's jobs once their leases lapse.
        log.critical("the engine died or is stuck (%s); the worker exits", exc)
        logging.shutdown()
        os._exit(EXIT_ENGINE_DEAD)

    def close(self) -> None:
        self._stop.set()
        self.runner.claimer.close()
        self.runner.recorder.close()
        self.supervisor.close()
        self.reconciler.close()
        self.feeder.close()
        with suppress(RedisError):
            self._redis.delete(worker_key(self.name))
            self._redis.zrem(WORKERS_KEY, self.name)
        self.host.submit(self.publisher.close()).result(timeout=10)
        self.host.submit(self._async_redis.aclose()).result(timeout=10)
        self.host.close()
        self.db.dispose()
        self.queue.close()
        self._redis.close()
        self.gc_pauses.uninstall()
