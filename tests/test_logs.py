"""Structured logs: JSON lines off a terminal, the job id on every line about a job."""

import io
import logging
import time

import orjson

from vqueue.client import VQueueClient
from vqueue.logs import JobIdFilter, JsonFormatter, job_context
from vqueue.settings import Settings


def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobIdFilter())
    logger = logging.getLogger(f"test-logs-{time.monotonic_ns()}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_the_job_id_comes_from_the_context_the_extra_or_the_message() -> None:
    logger, stream = capture()
    with job_context("from-context"):
        logger.info("working")
    logger.info("explicit", extra={"job_id": "from-extra"})
    logger.warning("job %s: went wrong", "from-message")
    logger.info("nothing about a job")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("job_id") for line in lines] == [
        "from-context",
        "from-extra",
        "from-message",
        None,
        None,
    ]
    assert lines[2]["message"] == "job from-message: went wrong"
    assert lines[2]["level"] == "WARNING"
    assert "ValueError: boom" in lines[4]["exception"]
    assert lines[0]["ts"].endswith("Z")


def test_the_worker_writes_json_lines_naming_the_job(
    client: VQueueClient, settings: Settings
) -> None:
    job = client.submit(prompt="Hi", max_tokens=3)
    client.wait(job["id"], timeout=120)
    deadline = time.monotonic() + 10
    about_job: list[dict[str, str]] = []
    while not any("started" in line["message"] for line in about_job):
        assert time.monotonic() < deadline, "no log line about the job"
        time.sleep(0.2)
        text = (settings.run_dir / "worker.log").read_text(errors="replace")
        lines = [orjson.loads(line) for line in text.splitlines() if line.startswith('{"ts"')]
        about_job = [line for line in lines if line.get("job_id") == job["id"]]
    assert any("succeeded" in line["message"] for line in about_job)
