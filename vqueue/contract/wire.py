"""What crosses the api/worker boundary: the task name, Redis key names and token-log entries.

A job's tokens live in a Redis Stream (its *log*) so that late or reconnecting readers can
replay them, and every entry is also published on one channel for the live tail. An entry's
position is a character offset into the job's text: `end` is the length of the text once the
entry is applied, so the concatenated deltas of one attempt are exactly the stored text and a
reader that has seen `end` characters can resume from the log or, once the log has expired,
from the text in Postgres.
"""

import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict, cast

import orjson

# One task message carries the ids of several jobs (those one submit or release sent together).
TASK_RUN_JOBS = "vqueue.run_jobs"
# The one-job task of earlier releases: workers still run such messages left in a queue.
TASK_RUN_JOB = "vqueue.run_job"
EVENTS_CHANNEL = "vqueue:events"
WORKER_KEY_PREFIX = "vqueue:worker:"
# API processes announce themselves too (api/ops/process_beat.py), for their GC pauses.
API_KEY_PREFIX = "vqueue:api:"


# "<pid>:<start time>" of the worker whose engine a process is (worker/engine_guard.py): in
# the environment of every engine process, so that none outlives its worker.
ENGINE_OWNER_ENV = "VQUEUE_ENGINE_OWNER"


# The live workers' registry: a sorted set of worker names scored by when each one's
# heartbeat expires, kept current by the heartbeats, so that nobody scans the keyspace (which
# holds a token log per recent job) to find the workers.
WORKERS_KEY = "vqueue:workers"
# A worker's free engine slots, announced for a few seconds at a time (worker/rebalance.py).
ROOM_KEY_PREFIX = "vqueue:room:"


class EngineFigures(TypedDict):
    """vLLM's own scheduler figures (VQUEUE_ENGINE_STATS)."""

    running: int
    waiting: int
    kv_cache_usage: float
    # Prompt tokens looked up in the prefix cache since the engine started, and of them found
    # there (absent from an earlier release's heartbeat).
    prefix_cache_queries: int
    prefix_cache_hits: int


class WorkerHeartbeat(TypedDict):
    """What a worker announces under worker_key(name) at each beat: what it serves, its engine
    settings and its load. Read by GET /ready, /stats, /v1/models and the batch feeder."""

    name: str
    model: str  # the name clients send (VQUEUE_SERVED_MODEL_NAME, else the model)
    root: str  # the model it loaded: a hub id or a folder
    vllm_version: str
    gpu: str | None
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int | None
    tensor_parallel_size: int
    concurrency: int
    max_jobs: int  # it takes no more messages while it holds this many jobs
    running: int  # jobs on its engine
    waiting: int  # claimed, not yet on its engine
    engine: EngineFigures | None  # None unless VQUEUE_ENGINE_STATS
    output_tokens: int
    tokens_per_s: float  # over the last heartbeat interval
    started_at: float
    beat_at: float
    gc: dict[str, Any]  # garbage-collection pauses since the start (vqueue/gc_heap.py)


def read_heartbeat(raw: bytes | str) -> WorkerHeartbeat:
    return cast(WorkerHeartbeat, orjson.loads(raw))


def token_log_key(job_id: str) -> str:
    return f"vqueue:job:{job_id}:log"


def process_name() -> str:
    """This process as its heartbeat key names it (`worker_key`, `api_key`): host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_key(worker_name: str) -> str:
    return f"{WORKER_KEY_PREFIX}{worker_name}"


def room_key(queue: str, worker_name: str) -> str:
    """Per queue: a worker's room is for the jobs of the queue it consumes."""
    return f"{ROOM_KEY_PREFIX}{queue}:{worker_name}"


def api_key(process_name: str) -> str:
    return f"{API_KEY_PREFIX}{process_name}"


class EntryKind(StrEnum):
    DELTA = "delta"  # text appended to the job's output
    END = "end"  # the attempt ended and Postgres holds the job's final state


@dataclass(frozen=True, slots=True)
class LogEntry:
    job_id: str
    attempt: int
    kind: EntryKind
    end: int
    text: str = ""
    status: str = ""
    # Unix time at which the worker produced the entry (delivery lag is measured against it).
    at: float = 0.0
    # END only, where the writer had it: the job's summary as Postgres recorded it (a JSON
    # object of db.attempts.SUMMARY_COLUMNS), so a stream can end without reading the row back.
    # On the wire it takes the text's place, which an END has none of: readers of earlier
    # releases ignore it there, and an END from an earlier writer comes without one.
    final: str = ""
    # DELTA only: the job's token counts once this delta was made (its prompt, and its
    # output so far), for streams that report usage as they go; 0 from an earlier writer.
    prompt_tokens: int = 0
    tokens: int = 0
    # Where the job asked for them (vqueue/contract/logprobs.py encode()): a DELTA's, of the
    # tokens its text came from; an END's, of the tokens after the last delta (an
    # end-of-sequence token has no text).
    logprobs: str = ""

    @property
    def start(self) -> int:
        return self.end - len(self.text)

    @property
    def stream_id(self) -> str:
        # Stream ids must grow strictly: within an attempt deltas are non-empty so `end` grows,
        # the END entry sits one past the last delta, and a later attempt sorts after.
        seq = self.end + 1 if self.kind is EntryKind.END else self.end
        return f"{self.attempt}-{seq}"

    @property
    def wire_text(self) -> str:
        return self.final if self.kind is EntryKind.END else self.text

    def stream_fields(self) -> dict[str, str]:
        return {
            "k": self.kind.value,
            "t": self.wire_text,
            "s": self.status,
            "w": repr(self.at),
            "p": str(self.prompt_tokens),
            "n": str(self.tokens),
            "l": self.logprobs,
        }

    def wire(self) -> list[Any]:
        """As encode_events() packs it: the fields LOG_SCRIPT writes, in its order."""
        return [
            self.job_id,
            self.attempt,
            self.kind.value,
            self.end,
            self.wire_text,
            self.status,
            self.at,
            self.prompt_tokens,
            self.tokens,
            self.logprobs,
        ]


def _entry(
    job_id: str,
    attempt: int,
    kind: EntryKind,
    end: int,
    text: str,
    status: str,
    at: float,
    prompt_tokens: int = 0,
    tokens: int = 0,
    logprobs: str = "",
) -> LogEntry:
    if kind is EntryKind.END:
        return LogEntry(job_id, attempt, kind, end, "", status, at, final=text, logprobs=logprobs)
    return LogEntry(
        job_id, attempt, kind, end, text, status, at, "", prompt_tokens, tokens, logprobs
    )


# A log whose job never ends (its worker died) still goes away eventually.
ORPHAN_LOG_TTL_S = 24 * 3600

# Writes one engine step: every entry into its job's log, then one PUBLISH of the same payload
# for live readers. Redis does the per-entry work: packing hundreds of XADDs per step in Python
# took a fifth of a busy worker's event loop. (Keys are derived inside, so not for Cluster.)
LOG_SCRIPT = """
local entries = cjson.decode(ARGV[1])
for _, e in ipairs(entries) do
  local key = 'vqueue:job:' .. e[1] .. ':log'
  local seq = e[4]
  if e[3] == 'end' then seq = seq + 1 end
  local id = string.format('%d-%d', e[2], seq)
  local at = string.format('%.6f', e[7])
  if e[10] == '' then
    redis.pcall('XADD', key, id, 'k', e[3], 't', e[5], 's', e[6], 'w', at, 'p', e[8], 'n', e[9])
  else
    redis.pcall('XADD', key, id, 'k', e[3], 't', e[5], 's', e[6], 'w', at, 'p', e[8], 'n', e[9],
                'l', e[10])
  end
  if e[3] == 'end' then
    redis.call('EXPIRE', key, ARGV[2])
  else
    redis.call('EXPIRE', key, ARGV[3], 'NX')
  end
end
redis.call('PUBLISH', ARGV[4], ARGV[1])
return #entries
"""


def log_script_args(entries: list[LogEntry], retention_s: int) -> list[Any]:
    return [encode_events(entries), retention_s, ORPHAN_LOG_TTL_S, EVENTS_CHANNEL]


def entries_from_xrange(job_id: str, rows: Any) -> list[LogEntry]:
    """A job's token log entries as XRANGE answers them (as bytes or as text)."""
    return [entry_from_stream(job_id, _str(sid), _fields(raw)) for sid, raw in rows or ()]


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(raw: dict[bytes | str, bytes | str]) -> dict[str, str]:
    return {_str(key): _str(value) for key, value in raw.items()}


def entry_from_stream(job_id: str, stream_id: str, fields: dict[str, str]) -> LogEntry:
    attempt, seq = (int(part) for part in stream_id.split("-"))
    kind = EntryKind(fields["k"])
    end = seq - 1 if kind is EntryKind.END else seq
    at = float(fields.get("w", 0.0))
    return _entry(
        job_id,
        attempt,
        kind,
        end,
        fields.get("t", ""),
        fields.get("s", ""),
        at,
        int(fields.get("p", 0)),
        int(fields.get("n", 0)),
        fields.get("l", ""),
    )


def encode_events(entries: list[LogEntry]) -> bytes:
    """One pub/sub message for all entries of one engine step, whatever job they belong to."""
    return orjson.dumps([entry.wire() for entry in entries])


def decode_events(payload: bytes | str) -> list[LogEntry]:
    # An earlier writer's entries have only the first seven fields.
    return [
        _entry(job_id, attempt, EntryKind(kind), end, *rest)
        for job_id, attempt, kind, end, *rest in orjson.loads(payload)
    ]


# Ids of queued jobs that were handed to the broker; the reconciler re-enqueues queued jobs
# missing from it (never enqueued, or lost with Redis's data).
ENQUEUED_SET = "vqueue:enqueued"

# Producer and consumer must agree on these: Redis has no native priorities, so kombu keeps
# one list per step ("<queue>:<step>") and consumers read them in order, 0 first.
BROKER_TRANSPORT_OPTIONS = {
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
}
