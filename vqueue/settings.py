"""The one settings object, read from VQUEUE_* environment variables (see README)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VQUEUE_", extra="ignore")

    # Where state lives.
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/vqueue"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The Celery broker; empty means the same Redis as the token streams.
    broker_url: str = ""
    queue_name: str = "vqueue.jobs"

    # "auto": JSON lines when stderr is not a terminal (a log file, a container), else text.
    log_format: str = Field("auto", pattern="^(auto|json|text)$")

    # Where `make up` keeps pid files and logs.
    run_dir: Path = Path(".run")
    # How long `make up` / `make run` wait for the API and a loaded engine.
    start_timeout_s: float = Field(900.0, gt=0)

    # Access: every request but the web page, /health and /ready needs an API key (`vqueue keys
    # create`). Off only for a single user on a trusted machine.
    auth: bool = True
    # How long an API process trusts a key it has looked up; a revoked key stops working
    # within this.
    key_cache_s: float = Field(5.0, ge=0)
    # Jobs waiting in the queue, all callers together; past it submits are refused (503)
    # rather than letting the backlog grow without end.
    max_queued_jobs: int = Field(200_000, gt=0)

    # The API process.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Processes serving the API (each with its own pub/sub fan-out); more for many SSE readers.
    api_workers: int = Field(1, gt=0)
    # How long an idle client connection stays open. Longer than a client's or proxy's own
    # idle limit (httpx's 5 s, a load balancer's 60 s), so that the client always drops it
    # first: a server closing it at the instant the client reuses it fails that request
    # with no response at all.
    api_keepalive_s: int = Field(75, gt=0)
    sse_keepalive_s: float = Field(15.0, gt=0)
    # How long a finished job's token log stays in Redis; after that streams replay from Postgres.
    stream_retention_s: int = Field(3600, gt=0)
    max_prompt_chars: int = Field(200_000, gt=0)
    # Any request body but a batch upload's; larger ones are refused before they are read.
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_messages: int = Field(256, gt=0)
    max_output_tokens: int = Field(8192, gt=0)
    max_stop_strings: int = Field(16, gt=0)
    # Free-form metadata kept with a job (a batch line's extra CSV columns, say), as JSON.
    max_metadata_bytes: int = Field(16_384, gt=0)

    # Batches (bulk uploads).
    max_batch_bytes: int = Field(200 * 1024 * 1024, gt=0)
    max_batch_jobs: int = Field(50_000, gt=0)
    # One line of an upload (a JSONL object, a CSV record); longer lines are refused.
    max_batch_line_bytes: int = Field(2 * 1024 * 1024, gt=0)
    # Jobs of batches waiting in the broker at once; 0: twice the engine slots of the live
    # workers (at least 64), enough to keep every engine full without queueing a whole
    # batch ahead of single jobs.
    batch_window: int = Field(0, ge=0)
    # How often the batch feeder tops the window up (it is also woken by each upload).
    batch_feed_interval_s: float = Field(0.5, gt=0)
    # Jobs sent together (one submit round, one batch release) share task messages of up to
    # this many: a worker's Celery consumer takes messages one at a time, too slowly for bursts.
    jobs_per_message: int = Field(16, ge=1, le=1000)

    # Job control and durability.
    # The longest a job may run, and the run time of a job that names none.
    max_job_timeout_s: int = Field(3600, gt=0)
    # How long a job may wait in the queue before it expires (per job: up to this).
    queue_timeout_s: int = Field(86_400, gt=0)
    # A running job whose worker has not renewed its lease this long is queued again.
    lease_s: float = Field(30.0, gt=0)
    # Runs (first one included) before a job whose workers keep dying is failed.
    max_attempts: int = Field(3, gt=0)
    reconcile_interval_s: float = Field(5.0, gt=0)
    # A queued job younger than this is not yet checked against the broker.
    requeue_grace_s: float = Field(10.0, ge=0)
    # How often a worker looks for cancel requests of the jobs it runs.
    cancel_poll_s: float = Field(0.25, gt=0)
    # On SIGTERM a worker finishes its jobs for this long, then hands the rest back.
    shutdown_grace_s: float = Field(30.0, ge=0)

    # The model and engine of a worker.
    model: str = DEFAULT_MODEL
    model_revision: str | None = None
    model_cache_dir: Path = Path("~/.cache/vqueue").expanduser()
    # A tokenizer folder or id other than the model's (e.g. for shape-only dummy models).
    tokenizer: str | None = None
    # "auto" loads the weights; "dummy" gives random weights of the real shape (benchmarks).
    load_format: str = "auto"
    served_model_name: str | None = None
    max_num_seqs: int = Field(256, gt=0)
    max_num_batched_tokens: int = Field(8192, gt=0)
    max_model_len: int | None = Field(None, gt=0)
    dtype: str = "auto"
    tensor_parallel_size: int = Field(1, gt=0)
    # None: the engine's default. On the CPU build it is the share of RAM vLLM reserves.
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    # None: eager on the CPU build (graph compilation triples its start-up), graphs on a GPU.
    enforce_eager: bool | None = None
    seed: int = 0
    # vLLM's per-step statistics: useful figures, but they cost a busy worker's event loop
    # about a fifth of its time (profiled on an H100 at 256 concurrent jobs).
    engine_stats: bool = False
    # A sweep of prefill steps of every size before taking jobs, so kernels that compile per
    # batch shape do it then (worker/warmup.py). None: on a GPU, not on the CPU build.
    engine_warmup: bool | None = None
    # "priority" lets the engine order waiting requests by the jobs' priorities; "fcfs" does not.
    scheduling_policy: str = Field("priority", pattern="^(priority|fcfs)$")
    # Celery task threads feeding the one engine; 0: max_num_seqs, so the engine can batch fully.
    worker_concurrency: int = Field(0, ge=0)
    # Jobs a worker holds at most (running, or claimed and waiting in its engine); past it the
    # worker fetches no more messages and leaves them to workers with room. 0: 2 x max_num_seqs,
    # so the engine has a full batch waiting as its running jobs end.
    worker_max_jobs: int = Field(0, ge=0)
    worker_heartbeat_s: float = Field(5.0, gt=0)

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def effective_worker_concurrency(self) -> int:
        return self.worker_concurrency or self.max_num_seqs

    @property
    def effective_worker_max_jobs(self) -> int:
        return self.worker_max_jobs or 2 * self.max_num_seqs

    @property
    def model_name(self) -> str:
        """The name clients see for the model this worker serves."""
        return self.served_model_name or self.model


@lru_cache
def get_settings() -> Settings:
    return Settings()
