"""The Celery app of the workers: one process, a threads pool, one resident engine."""

import logging
import os

from celery import Celery, signals

from vqueue.contract.queueing import configure_broker
from vqueue.contract.wire import TASK_RUN_JOB, TASK_RUN_JOBS
from vqueue.settings import get_settings
from worker.broker_loss import survive_broker_loss
from worker.intake import IntakeLimit
from worker.memory_check import NotEnoughMemory
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

settings = get_settings()

EXIT_NO_ENGINE = 3

app = Celery("vqueue", broker=settings.effective_broker_url)
configure_broker(app)
app.conf.update(
    task_default_queue=settings.queue_name,
    # A task is acknowledged after it ran, and handed back if its worker is lost mid-run.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Each thread holds one message (its jobs in the engine); reserve no more than that.
    worker_prefetch_multiplier=1,
    worker_pool="threads",
    worker_concurrency=settings.effective_worker_concurrency,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
# No more jobs than the engine can soon run: the rest stay in the queue for other workers.
app.steps["consumer"].add(IntakeLimit)
survive_broker_loss()

_runtime: WorkerRuntime | None = None


@signals.worker_init.connect
def _start_engine(**_: object) -> None:
    # Built here, in the main process, before the pool starts: the threads pool shares it and
    # vLLM may spawn its engine-core process (a prefork child could not).
    global _runtime
    try:
        _runtime = WorkerRuntime(settings)
    except BaseException as exc:
        # Celery would log a failed signal handler and go on consuming without an engine.
        if isinstance(exc, NotEnoughMemory):
            log.error("%s", exc)  # says all there is: no traceback
        else:
            log.exception("the worker cannot start its engine; exiting")
        logging.shutdown()
        os._exit(EXIT_NO_ENGINE)


@signals.worker_ready.connect
def _announce(**_: object) -> None:
    # Sent once the task consumer is on the queue; the heartbeat before it would list a worker
    # that takes no jobs yet.
    if _runtime is not None:
        _runtime.announce()


@signals.worker_shutting_down.connect
def _hand_back_after_grace(**_: object) -> None:
    if _runtime is not None:
        _runtime.begin_shutdown()


@signals.worker_shutdown.connect
def _stop_engine(**_: object) -> None:
    if _runtime is not None:
        _runtime.close()


@app.task(name=TASK_RUN_JOBS)
def run_jobs(job_ids: list[str]) -> int:
    """Runs the jobs of one message together; acknowledged once they have all ended."""
    if _runtime is None:
        raise RuntimeError("the worker's engine is not running")
    return _runtime.run_jobs(job_ids)


@app.task(name=TASK_RUN_JOB)
def run_job(job_id: str) -> int:
    """A message from a release that sent one job per message, still in a queue."""
    ran: int = run_jobs([job_id])
    return ran
