"""The one settings object, read from VQUEUE_* environment variables. Each field's docstring is
its documentation: docs/configuration.md is written from them
(`python -m vqueue.dev.settings_doc`)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VQUEUE_", extra="ignore", use_attribute_docstrings=True
    )

    # Where state lives.
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/vqueue"
    """Postgres, the source of truth for jobs, batches, files and keys (SQLAlchemy URL, psycopg
    driver); `make migrate` creates the database if it is missing."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for token streams, pub/sub, worker heartbeats and rate windows."""
    broker_url: str = ""
    """The Celery broker; empty means the same Redis as the token streams."""
    queue_name: str = "vqueue.jobs"
    """The Celery queue the API enqueues on and workers consume; workers of one model share one."""

    log_format: str = Field("auto", pattern="^(auto|json|text)$")
    """"auto": JSON lines when stderr is not a terminal (a log file, a container), else text."""

    run_dir: Path = Path(".run")
    """Where `make up` keeps pid files and logs."""
    start_timeout_s: float = Field(900.0, gt=0)
    """How long `make up` / `make run` wait for the API and a loaded engine."""

    auth: bool = True
    """API keys required: every request but the web page, /health and /ready needs one (`vqueue
    keys create`). Off only for a single user on a trusted machine."""
    key_cache_s: float = Field(5.0, ge=0)
    """How long an API process trusts a key it has looked up; a revoked key stops working
    within this."""
    metrics_token: str = ""
    """GET /metrics answers an admin key, or this bearer token (for a Prometheus scraper, which
    then needs no API key); empty: admin keys only."""
    auth_failures_per_minute: int = Field(30, gt=0)
    """Invalid keys one client address may present per minute; past it, that address is refused
    (429) before any lookup, so a flood of guessed keys costs no queries."""
    max_queued_jobs: int = Field(200_000, gt=0)
    """Jobs waiting in the queue, all callers together; past it submits are refused (503)
    rather than letting the backlog grow without end."""
    max_queued_tokens: int = Field(50_000_000, gt=0)
    """The same bound in tokens (each queued job: max_tokens plus its prompt at ~4 characters a
    token), so that a few very long jobs cannot fill the queue's wait where many are refused."""

    redis_max_connections: int = Field(512, gt=0)
    """An API process's Redis connections. A request that finds them all busy waits up to the
    timeout for one (then 503), rather than failing at once while Redis is healthy."""
    redis_pool_timeout_s: float = Field(10.0, gt=0)
    """How long a request waits for a free Redis connection before it answers 503."""

    # The API process.
    api_host: str = "127.0.0.1"
    """The address the API listens on."""
    api_port: int = 8000
    """The port the API listens on."""
    api_workers: int = Field(1, gt=0)
    """Processes serving the API (each with its own pub/sub fan-out); more for many SSE
    readers."""
    api_keepalive_s: int = Field(75, gt=0)
    """How long an idle client connection stays open. Longer than a client's or proxy's own
    idle limit (httpx's 5 s, a load balancer's 60 s), so that the client always drops it first:
    a server closing it at the instant the client reuses it fails that request with no response
    at all."""
    sse_keepalive_s: float = Field(15.0, gt=0)
    """Seconds between keep-alive comments on an idle SSE stream, so proxies keep it open."""
    stream_retention_s: int = Field(3600, gt=0)
    """How long a finished job's token log stays in Redis; after that streams replay from
    Postgres."""
    max_prompt_chars: int = Field(200_000, gt=0)
    """The longest prompt (or all messages together) a job may have, in characters."""
    max_request_bytes: int = Field(4 * 1024 * 1024, gt=0)
    """Any request body but a batch upload's; larger ones are refused before they are read."""
    max_messages: int = Field(256, gt=0)
    """The most chat messages one job may have."""
    max_choices: int = Field(16, gt=0)
    """The most choices (`n`) one /v1 completion may ask for; each choice is a job of its own."""
    max_output_tokens: int = Field(8192, gt=0)
    """The largest `max_tokens` a job may ask for."""
    max_stop_strings: int = Field(16, gt=0)
    """The most stop strings one job may have."""
    max_metadata_bytes: int = Field(16_384, gt=0)
    """Free-form metadata kept with a job (a batch line's extra CSV columns, say), as JSON."""

    # Batches (bulk uploads).
    max_batch_bytes: int = Field(200 * 1024 * 1024, gt=0)
    """The largest batch upload, in bytes."""
    max_batch_jobs: int = Field(50_000, gt=0)
    """The most jobs (lines) one batch may have."""
    max_batch_line_bytes: int = Field(2 * 1024 * 1024, gt=0)
    """One line of an upload (a JSONL object, a CSV record); longer lines are refused."""
    batch_window: int = Field(0, ge=0)
    """Jobs of batches waiting in the broker at once; 0: twice the engine slots of the live
    workers (at least 64), enough to keep every engine full without queueing a whole batch
    ahead of single jobs."""
    batch_feed_interval_s: float = Field(0.5, gt=0)
    """How often the batch feeder tops the window up (it is also woken by each upload)."""
    jobs_per_message: int = Field(16, ge=1, le=1000)
    """Jobs sent together (one submit round, one batch release) share task messages of up to
    this many: a worker's Celery consumer takes messages one at a time, too slowly for bursts."""

    # Webhooks (api/webhooks/).
    webhook_allowed_networks: str = ""
    """Networks (CIDR, comma-separated) a webhook may reach although they are not public:
    loopback, private, link-local and other non-global addresses are refused unless listed
    here (e.g. `10.20.0.0/16` for receivers inside the cluster)."""
    webhook_allowed_hosts: str = ""
    """When set, the only hosts a webhook URL may name (comma-separated; `.example.com` allows
    its subdomains)."""
    webhook_timeout_s: float = Field(10.0, gt=0)
    """How long one delivery may take, connection to answer; a slower receiver's try fails and
    is retried."""
    webhook_retry_delays_s: str = "5,300,1800,7200,18000,36000,36000"
    """Seconds before each retry of a failed delivery (comma-separated; each within 20%
    jitter); after the last, the delivery is given up. The default retries for about 27 hours."""
    webhook_progress_interval_s: float = Field(5.0, gt=0)
    """The shortest time between two `progress` events of one batch."""
    webhook_poll_s: float = Field(0.5, gt=0)
    """How often each API process looks for deliveries that are due."""
    webhook_concurrency: int = Field(32, gt=0)
    """Deliveries one API process has in flight at once."""
    webhook_concurrency_per_key: int = Field(8, gt=0)
    """Deliveries of one key's events in flight at once, over all API processes: a key whose
    receivers are slow or hang holds this many tries, and the other keys' events go out."""
    webhook_secret_overlap_s: int = Field(86_400, ge=0)
    """After a key's signing secret is rotated, the old one also signs this long, so
    receivers can move over."""

    # Job control and durability.
    max_job_timeout_s: int = Field(3600, gt=0)
    """The longest a job may run, and the run time of a job that names none."""
    queue_timeout_s: int = Field(86_400, gt=0)
    """How long a job may wait in the queue before it expires (per job: up to this)."""
    lease_s: float = Field(30.0, gt=0)
    """A running job whose worker has not renewed its lease this long is queued again; a worker's
    (or a control loop's) transaction left idle this long is ended by Postgres, its locks freed."""
    max_attempts: int = Field(3, gt=0)
    """Runs (first one included) before a job whose workers keep dying is failed."""
    reconcile_interval_s: float = Field(5.0, gt=0)
    """How often the reconciler requeues jobs whose lease ran out and queued jobs missing from the
    broker."""
    requeue_grace_s: float = Field(10.0, ge=0)
    """A queued job younger than this is not yet checked against the broker."""
    cancel_poll_s: float = Field(0.25, gt=0)
    """How often a worker looks for cancel requests of the jobs it runs."""
    shutdown_grace_s: float = Field(30.0, ge=0)
    """On SIGTERM a worker finishes its jobs for this long, then hands the rest back."""

    # The model and engine of a worker.
    model: str = DEFAULT_MODEL
    """The model a worker serves: a Hugging Face id or a local folder."""
    model_revision: str | None = None
    """A branch, tag or commit of `model` on the hub; None: the default branch."""
    model_cache_dir: Path = Path("~/.cache/vqueue").expanduser()
    """Where downloaded and prepared models are kept; workers of one host may share it."""
    tokenizer: str | None = None
    """A tokenizer folder or id other than the model's (e.g. for shape-only dummy models)."""
    load_format: str = "auto"
    """"auto" loads the weights; "dummy" gives random weights of the real shape (benchmarks)."""
    served_model_name: str | None = None
    """The model name clients see and send (`/v1/models`, `model` fields); None: `model`."""
    tool_call_parser: str | None = None
    """vLLM's tool parser for the served model's tool-call format (e.g. "hermes", "llama3_json",
    "mistral", "pythonic", as `vllm serve --tool-call-parser`); it reads the calls of
    `tool_choice: auto`. None: `auto` is refused, and only a named or `required` tool choice
    (which the engine constrains, whatever the model) gives tool calls."""
    max_num_seqs: int = Field(256, gt=0)
    """Jobs the engine runs in one batch at most (vLLM's max_num_seqs)."""
    max_num_batched_tokens: int = Field(8192, gt=0)
    """Tokens the engine schedules in one step at most (vLLM's max_num_batched_tokens)."""
    max_model_len: int | None = Field(None, gt=0)
    """The context length (prompt plus output, in tokens); None: the model's."""
    dtype: str = "auto"
    """The engine's weight and activation type (vLLM's dtype). "auto" is the model's own, except
    float32 on a CPU without native bf16 (AVX2 only), where bf16 runs several times slower."""
    tensor_parallel_size: int = Field(1, gt=0)
    """GPUs one worker's engine spans (vLLM's tensor_parallel_size)."""
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    """The share of GPU memory vLLM may take; on the CPU build, the share of RAM it reserves,
    which must be free at start. None: the engine's default."""
    enforce_eager: bool | None = None
    """CUDA graphs and compilation off. None: eager on the CPU build (graph compilation triples
    its start-up), graphs on a GPU; never set it true on a GPU."""
    seed: int = 0
    """The engine's random seed; a job's own `seed` overrides it for that job."""
    engine_stats: bool = False
    """vLLM's per-step statistics (the KV-cache and engine queue figures of /stats and /metrics):
    useful, but they cost a busy worker's event loop a large share of its time at hundreds of
    concurrent jobs."""
    engine_warmup: bool | None = None
    """A sweep of prefill steps of every size before taking jobs, so kernels that compile per
    batch shape do it then (worker/warmup.py). None: on a GPU, not on the CPU build."""
    engine_stall_s: float = Field(300.0, gt=0)
    """An engine with jobs on it that yields no output for this long is stuck (a hung device
    call, a stopped engine process): the worker exits so that its jobs run elsewhere and a
    fresh worker takes its place. Longer than the slowest prefill of a full batch. Time the
    worker itself was not running (stopped, a stalled host) is not counted."""
    scheduling_policy: str = Field("priority", pattern="^(priority|fcfs)$")
    """"priority" lets the engine order waiting requests by the jobs' priorities; "fcfs" does
    not."""
    worker_concurrency: int = Field(0, ge=0)
    """Celery task threads feeding the one engine; 0: max_num_seqs, so the engine can batch
    fully."""
    worker_max_jobs: int = Field(0, ge=0)
    """Jobs a worker holds at most (running, or claimed and waiting in its engine); past it the
    worker fetches no more messages and leaves them to workers with room. 0: 2 x max_num_seqs,
    so the engine has a full batch waiting as its running jobs end; while the queue is empty,
    those waiting go to a worker with free slots."""
    worker_heartbeat_s: float = Field(5.0, gt=0)
    """How often a worker announces itself in Redis; it is taken for dead after three missed
    beats."""
    worker_health_file: Path = Path("/tmp/vqueue-worker-alive")
    """Touched at each heartbeat that reached Redis; `python -m worker.healthcheck` (a
    container's health check) finds the worker healthy while it is fresh."""

    @property
    def webhook_retry_delays(self) -> list[float]:
        return [float(delay) for delay in self.webhook_retry_delays_s.split(",") if delay.strip()]

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
