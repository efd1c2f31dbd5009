"""Every route fuzzed from its OpenAPI schema with schemathesis: no input makes the API fail
with a 5xx, and every response (status code, content type, headers, body) is one the schema
documents; a route that ignores the API key fails too. Runs against an API process of its own
(real Postgres and Redis, its own database and queue, no worker), so the jobs it submits never
reach the engine."""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from sqlalchemy import create_engine

from db.keys import create_key
from db.migrate import reset_database
from tests.conftest import DATABASE, FUZZ_CASES, REDIS_DB, free_port, redis_url
from tests.helpers import ADMIN_KEY, AUTH

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
)
FUZZ_DATABASE = f"{DATABASE}_fuzz"
FUZZ_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{FUZZ_DATABASE}"


@pytest.fixture(scope="module")
def fuzz_api() -> Iterator[str]:
    reset_database(FUZZ_URL)
    engine = create_engine(FUZZ_URL)
    with engine.begin() as conn:
        create_key(conn, "fuzz", admin=True, secret=ADMIN_KEY)
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "VQUEUE_DATABASE_URL": FUZZ_URL,
        "VQUEUE_REDIS_URL": redis_url(int(REDIS_DB) - 1),
        "VQUEUE_QUEUE_NAME": "vqueue.fuzz",
        "VQUEUE_API_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "api"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, "the fuzzed API exited"
        assert time.monotonic() < deadline, "the fuzzed API did not start"
        time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def api_schema(fuzz_api: str) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_api}/openapi.json")


def fuzz_each_operation(
    api_schema: Any,
    fuzz_api: str,
    cases: Callable[[Any], SearchStrategy[Any]],
    max_examples: int,
    checks: tuple[Any, ...],
) -> list[str]:
    """Runs `cases(operation)` against every operation (but /ready, which answers 503 by
    design here: this API has no worker); returns what failed, by operation."""
    failures: list[str] = []
    for result in api_schema.exclude(path="/ready").get_all_operations():
        operation = result.ok()

        @given(case=cases(operation))
        @settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            FUZZ_CASES.append(case.operation.label)
            response = case.call(base_url=fuzz_api, headers=AUTH, timeout=30)
            case.validate_response(response, checks=checks)

        try:
            fuzz()
        except (Exception, FailureGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
    return failures


@pytest.mark.slow
def test_no_input_makes_the_api_fail(api_schema: Any, fuzz_api: str) -> None:
    """Each operation gets up to 100 generated requests (valid and invalid); any 5xx or any
    response the schema does not describe fails."""
    failures = fuzz_each_operation(
        api_schema, fuzz_api, lambda operation: operation.as_strategy(), 100, CHECKS
    )
    assert not failures, "\n\n".join(failures)


# What a careless or hostile client puts in a string that Postgres or a log may refuse: a NUL
# (Postgres text cannot hold one) and a character outside the Basic Multilingual Plane.
AWKWARD = "\x00\U0001f600"


def poisoned(value: Any, keys: bool) -> Any:
    """Every string in `value` (and with `keys`, every object key) with AWKWARD added."""
    if isinstance(value, str):
        return value + AWKWARD
    if isinstance(value, list):
        return [poisoned(item, keys) for item in value]
    if isinstance(value, dict):
        return {
            (name + AWKWARD if keys and isinstance(name, str) else name): poisoned(item, keys)
            for name, item in value.items()
        }
    return value


def poison_case(case: Any, keys: bool) -> Any:
    """The case with every string of its body, query and path poisoned (keys: object keys
    too, but never the path's parameter names)."""
    if isinstance(case.body, dict | list | str):
        case.body = poisoned(case.body, keys)
    case.query = poisoned(case.query, keys) if case.query else case.query
    if case.path_parameters:
        case.path_parameters = poisoned(case.path_parameters, keys=False)
    return case


@pytest.mark.slow
def test_nul_and_non_bmp_in_every_string_field_answer_no_5xx(
    api_schema: Any, fuzz_api: str
) -> None:
    """Valid requests of each operation with every string of their body, query and path (and
    half the time every object key) carrying a NUL and a non-BMP character: a 4xx or a
    success, never a 5xx."""

    def cases(operation: Any) -> SearchStrategy[Any]:
        return st.builds(poison_case, operation.as_strategy(), st.booleans())

    failures = fuzz_each_operation(api_schema, fuzz_api, cases, 20, (not_a_server_error,))
    assert not failures, "\n\n".join(failures)
