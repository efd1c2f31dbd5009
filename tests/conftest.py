"""Shared fixtures: a migrated test database, a clean Redis database, and the running stack.

The settings come from the environment, so the test values are set here, before any project
module reads them. The stack (API + one Celery worker with the real CPU engine) starts once per
session: the engine takes ~35 s to load.
"""

import atexit
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


from tests import redis_server  # noqa: E402
from tests.faults import CuttableProxy  # noqa: E402

# Overridable so that two suites can run side by side (a CI run beside a developer's).
DATABASE = os.environ.get("VQUEUE_TEST_DATABASE", "vqueue_test")
REDIS_DB = os.environ.get("VQUEUE_TEST_REDIS_DB", "15")
DIRECT_DATABASE_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"
# The stack reaches Postgres through a proxy that the durability tests can cut.
POSTGRES_PROXY = CuttableProxy(5432)

_RUN_DIR = Path(tempfile.mkdtemp(prefix="vqueue-test-"))
# A Redis of the suite's own where redis-server is installed (the Redis restart test stops
# and starts it); else the machine's, on a database of its own.
REDIS_SERVER = redis_server.RedisServer(_RUN_DIR / "redis") if redis_server.available() else None
if REDIS_SERVER is not None:
    REDIS_SERVER.start()
    atexit.register(REDIS_SERVER.stop)


def redis_url(db: int) -> str:
    if REDIS_SERVER is not None:
        return REDIS_SERVER.url(db)
    return f"redis://127.0.0.1:6379/{db}"


os.environ.update(
    {
        "VQUEUE_DATABASE_URL": (
            f"postgresql+psycopg://postgres@127.0.0.1:{POSTGRES_PROXY.port}/{DATABASE}"
        ),
        "VQUEUE_REDIS_URL": redis_url(int(REDIS_DB)),
        "VQUEUE_QUEUE_NAME": f"vqueue.{DATABASE}",
        "VQUEUE_API_PORT": str(free_port()),
        "VQUEUE_RUN_DIR": str(_RUN_DIR),
        # The suite's admin key (made by the db fixture); clients and the CLI read it here.
        "VQUEUE_API_KEY": "vq-test-" + secrets.token_urlsafe(24),
        # Revocations in the tests take effect this fast.
        "VQUEUE_KEY_CACHE_S": "0.5",
        # Every test calls from 127.0.0.1, some with bad keys on purpose: the per-address
        # limit on bad keys is tested on an API of its own (tests/test_auth_flood.py).
        "VQUEUE_AUTH_FAILURES_PER_MINUTE": "100000",
        # What a Prometheus scraper sends for GET /metrics instead of an API key.
        "VQUEUE_METRICS_TOKEN": "scrape-" + secrets.token_urlsafe(16),
        # Small enough to keep the engine light on a 2-core machine, and to make an
        # over-long prompt cheap to build.
        "VQUEUE_MAX_MODEL_LEN": "2048",
        "VQUEUE_MAX_NUM_SEQS": "32",
        # The default model's template shows no tools; a pythonic call it writes is read.
        "VQUEUE_TOOL_CALL_PARSER": "pythonic",
        "VQUEUE_SSE_KEEPALIVE_S": "1",
        "VLLM_CPU_KVCACHE_SPACE": "2",
        # The engine's scheduler figures (KV-cache use...) in the heartbeat, for test_observe.
        "VQUEUE_ENGINE_STATS": "true",
        # Short enough for fault tests to see requeues and hand-backs within seconds.
        "VQUEUE_LEASE_S": "6",
        "VQUEUE_WORKER_HEARTBEAT_S": "1",
        # An engine that answers nothing for this long (a test stops it) is given up on.
        "VQUEUE_ENGINE_STALL_S": "20",
        "VQUEUE_WORKER_HEALTH_FILE": str(_RUN_DIR / "worker-alive"),
        "VQUEUE_RECONCILE_INTERVAL_S": "1",
        "VQUEUE_REQUEUE_GRACE_S": "2",
        "VQUEUE_SHUTDOWN_GRACE_S": "3",
        "VQUEUE_MAX_ATTEMPTS": "3",
        # Small upload limits, so that going over them costs little.
        "VQUEUE_MAX_BATCH_BYTES": str(4 * 1024 * 1024),
        "VQUEUE_MAX_BATCH_JOBS": "5000",
        "VQUEUE_MAX_BATCH_LINE_BYTES": str(512 * 1024),
        # The webhook tests' receivers listen on this machine (refused by default); a try
        # that hangs and the retries after a failure take seconds, not hours.
        "VQUEUE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "VQUEUE_WEBHOOK_TIMEOUT_S": "2",
        "VQUEUE_WEBHOOK_RETRY_DELAYS_S": "1,1,1",
        "VQUEUE_WEBHOOK_PROGRESS_INTERVAL_S": "1",
        "VQUEUE_WEBHOOK_POLL_S": "0.2",
        # Small, so that a test's flood of one key's deliveries is a few.
        "VQUEUE_WEBHOOK_CONCURRENCY_PER_KEY": "2",
    }
)

import openai  # noqa: E402
from redis import Redis  # noqa: E402
from sqlalchemy import Engine, create_engine, make_url, text  # noqa: E402

from db.keys import create_key  # noqa: E402
from db.migrate import reset_database  # noqa: E402
from tests import helpers  # noqa: E402
from tests.webhook_receiver import Receiver, make_secret, running_receiver  # noqa: E402
from vqueue.client.api_client import VQueueClient  # noqa: E402
from vqueue.dev import stack  # noqa: E402
from vqueue.settings import Settings, get_settings  # noqa: E402


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Engine]:
    """A freshly created and migrated test database."""
    reset_database(DIRECT_DATABASE_URL)
    engine = create_engine(make_url(DIRECT_DATABASE_URL))
    with engine.begin() as conn:
        create_key(conn, "test suite", admin=True, secret=os.environ["VQUEUE_API_KEY"])
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def redis(settings: Settings) -> Iterator[Redis]:
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_url(settings: Settings, db: Engine, redis: Redis) -> Iterator[str]:
    """The API and one worker with the real engine, as `make up` starts them (under the
    stack's supervisor, which restarts what dies)."""
    try:
        stack.up(settings)
    except BaseException:
        stack.down(settings)  # `up` leaves the stack running (and retrying) when it fails
        raise
    yield stack.base_url(settings)
    # The tests' shared client: its pooled connections closed here, not found open at exit.
    helpers.http.close()
    stack.down(settings)
    # Stopping twice is harmless too.
    stack.down(settings)
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on this machine (tests/webhook_receiver.py)."""
    with running_receiver() as running:
        yield running


@pytest.fixture(scope="session")
def webhook_secret(base_url: str) -> str:
    """The suite key's webhook signing secret, made once."""
    return make_secret(base_url)


@pytest.fixture
def client(base_url: str) -> Iterator[VQueueClient]:
    with VQueueClient(base_url) as api:
        yield api


@pytest.fixture
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    """The official OpenAI client on the stack's /v1, with the suite's key and no retries."""
    with openai.OpenAI(
        base_url=f"{base_url}/v1", api_key=os.environ["VQUEUE_API_KEY"], max_retries=0
    ) as api:
        yield api


def count_jobs(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())


REPORT_PATH = Path(__file__).resolve().parent.parent / "docs" / "durability.md"
# The part of docs/durability.md that the fault tests write; the rest is written by hand.
REPORT_START, REPORT_END = "<!-- fault results: start -->", "<!-- fault results: end -->"


@pytest.fixture(scope="session")
def durability_report() -> Iterator[list[dict[str, Any]]]:
    """Rows the fault-injection tests add; written into docs/durability.md at the end of a
    `make test` run (VQUEUE_FAULT_REPORT=1), never of a few tests run alone: their rows would
    replace the whole table."""
    rows: list[dict[str, Any]] = []
    yield rows
    if not rows or os.environ.get("VQUEUE_FAULT_REPORT") != "1":
        return
    lines = [
        REPORT_START,
        f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `make test`, CPU engine "
        f"({os.cpu_count()} cores):",
        "",
        "| fault | how it was injected | jobs in flight | lost | duplicated | stuck | "
        "recovery | person acted | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['fault']} | {r['injection']} | {r['in_flight']} | {r['lost']} | "
        f"{r['duplicated']} | {r.get('stuck', 0)} | {r.get('recovery', '-')} | "
        f"{r.get('person', 'no')} | {r['notes']} |"
        for r in rows
    ]
    lines.append(REPORT_END)
    document = REPORT_PATH.read_text()
    before, _, rest = document.partition(REPORT_START)
    _, _, after = rest.partition(REPORT_END)
    REPORT_PATH.write_text(before + "\n".join(lines) + after)


# Cases the schemathesis fuzz test ran (tests/test_fuzz.py), reported at the end of the run.
FUZZ_CASES: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the running stack is marked `stack`, so that `make test-fast`
    (`pytest -m "not stack"`) runs the others alone, without starting the engine."""
    for item in items:
        if "base_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FUZZ_CASES:
        operations = len(set(FUZZ_CASES))
        terminalreporter.write_line(
            f"schemathesis: {len(FUZZ_CASES)} generated cases run against {operations} operations"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test against the stack shows the end of the API's and worker's logs: on CI
    they are the only account of what the processes were doing."""
    report = yield
    if report.failed and "base_url" in getattr(item, "fixturenames", ()):
        for path in sorted(_RUN_DIR.glob("*.log")):  # the stack's, and any a test started
            tail = path.read_text(errors="replace").splitlines()[-80:]
            report.sections.append((f"{path.name}, last lines", "\n".join(tail)))
    return report
