"""Shared fixtures: a migrated test database, a clean Redis database, and the running stack.

The settings come from the environment, so the test values are set here, before any project
module reads them. The stack (API + one Celery worker with the real CPU engine) starts once per
session: the engine takes ~35 s to load.
"""

import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


from tests.faults import CuttableProxy  # noqa: E402

# Overridable so that two suites can run side by side (a CI run beside a developer's).
DATABASE = os.environ.get("VQUEUE_TEST_DATABASE", "vqueue_test")
REDIS_DB = os.environ.get("VQUEUE_TEST_REDIS_DB", "15")
DIRECT_DATABASE_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"
# The stack reaches Postgres through a proxy that the durability tests can cut.
POSTGRES_PROXY = CuttableProxy(5432)

_RUN_DIR = Path(tempfile.mkdtemp(prefix="vqueue-test-"))
os.environ.update(
    {
        "VQUEUE_DATABASE_URL": (
            f"postgresql+psycopg://postgres@127.0.0.1:{POSTGRES_PROXY.port}/{DATABASE}"
        ),
        "VQUEUE_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "VQUEUE_QUEUE_NAME": f"vqueue.{DATABASE}",
        "VQUEUE_API_PORT": str(free_port()),
        "VQUEUE_RUN_DIR": str(_RUN_DIR),
        # The suite's admin key (made by the db fixture); clients and the CLI read it here.
        "VQUEUE_API_KEY": "vq-test-" + secrets.token_urlsafe(24),
        # Revocations in the tests take effect this fast.
        "VQUEUE_KEY_CACHE_S": "0.5",
        # Small enough to keep the engine light on a 2-core machine, and to make an
        # over-long prompt cheap to build.
        "VQUEUE_MAX_MODEL_LEN": "2048",
        "VQUEUE_MAX_NUM_SEQS": "32",
        "VQUEUE_SSE_KEEPALIVE_S": "1",
        "VLLM_CPU_KVCACHE_SPACE": "2",
        # The engine's scheduler figures (KV-cache use...) in the heartbeat, for test_observe.
        "VQUEUE_ENGINE_STATS": "true",
        # Short enough for fault tests to see requeues and hand-backs within seconds.
        "VQUEUE_LEASE_S": "6",
        "VQUEUE_WORKER_HEARTBEAT_S": "1",
        "VQUEUE_RECONCILE_INTERVAL_S": "1",
        "VQUEUE_REQUEUE_GRACE_S": "2",
        "VQUEUE_SHUTDOWN_GRACE_S": "3",
        "VQUEUE_MAX_ATTEMPTS": "3",
        # Small upload limits, so that going over them costs little.
        "VQUEUE_MAX_BATCH_BYTES": str(4 * 1024 * 1024),
        "VQUEUE_MAX_BATCH_JOBS": "5000",
        "VQUEUE_MAX_BATCH_LINE_BYTES": str(512 * 1024),
    }
)

from redis import Redis  # noqa: E402
from sqlalchemy import Engine, create_engine, make_url, text  # noqa: E402

from db.keys import create_key  # noqa: E402
from db.migrate import reset_database  # noqa: E402
from tests import helpers  # noqa: E402
from vqueue import stack  # noqa: E402
from vqueue.client import VQueueClient  # noqa: E402
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
    """The API and one worker with the real engine, as `make up` starts them."""
    stack.up(settings)
    yield stack.base_url(settings)
    # The tests' shared client: its pooled connections closed here, not found open at exit.
    helpers.http.close()
    stack.down(settings)
    # Stopping twice is harmless too.
    stack.down(settings)
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


@pytest.fixture
def client(base_url: str) -> Iterator[VQueueClient]:
    with VQueueClient(base_url) as api:
        yield api


def count_jobs(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar_one())


REPORT_PATH = Path(__file__).resolve().parent.parent / "docs" / "durability.md"


@pytest.fixture(scope="session")
def durability_report() -> Iterator[list[dict[str, Any]]]:
    """Rows the fault-injection tests add; written to docs/durability.md at the end."""
    rows: list[dict[str, Any]] = []
    yield rows
    if not rows:
        return
    lines = [
        "# Durability under injected faults",
        "",
        "Written by `tests/test_durability.py` on every run of the suite (real Postgres, Redis,",
        "Celery worker and CPU engine). *Lost*: jobs that did not end `succeeded`. *Duplicated*:",
        "jobs whose result was recorded more than once or whose text is not one attempt's whole",
        "output.",
        "",
        "| fault | how it was injected | jobs in flight | lost | duplicated | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['fault']} | {r['injection']} | {r['in_flight']} | {r['lost']} | "
        f"{r['duplicated']} | {r['notes']} |"
        for r in rows
    ]
    REPORT_PATH.write_text("\n".join(lines) + "\n")


# Cases the schemathesis fuzz test ran (tests/test_fuzz.py), reported at the end of the run.
FUZZ_CASES: list[str] = []


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
        for name in ("worker", "api"):
            path = _RUN_DIR / f"{name}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-80:]
                report.sections.append((f"{name}.log, last lines", "\n".join(tail)))
    return report
