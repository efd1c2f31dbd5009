"""Structured logs: JSON lines off a terminal, the job id on every line about a job."""

import io
import logging
import logging.config
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from vqueue.client.api_client import VQueueClient
from vqueue.logs import JobIdFilter, JsonFormatter, QueuedLines, configure_logging, job_context
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


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger as configure_logging leaves it, put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def written(root: logging.Logger) -> None:
    """Until the writer thread has written every line queued so far."""
    (queued,) = [h for h in root.handlers if isinstance(h, QueuedLines)]
    queued.close()


def test_lines_are_queued_with_what_only_the_caller_knows(
    root_logging: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    assert isinstance(root_logging.handlers[-1], QueuedLines)
    logger = logging.getLogger("test-logs-queued")
    changing = ["before"]

    def task_thread() -> None:
        with job_context("from-context"):
            logger.info("working on %s", changing)
            changing.append("after")  # once logged, a line does not change
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")

    thread = threading.Thread(target=task_thread)
    thread.start()
    thread.join()
    written(root_logging)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["working on ['before']", "failed"]
    assert [line.get("job_id") for line in lines] == ["from-context", "from-context"]
    assert "ValueError: boom" in lines[1]["exception"]


def test_lines_go_on_after_a_library_reconfigures_logging(
    root_logging: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    # As vLLM does when its engine starts: this shuts every existing handler down.
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    logging.getLogger("test-logs-after").warning("still written")
    written(root_logging)
    assert [orjson.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
        "still written"
    ]


def test_a_forked_child_writes_its_lines_itself(
    root_logging: logging.Logger, tmp_path: Path
) -> None:
    path = tmp_path / "lines.log"
    with path.open("w") as stream:
        configure_logging("json", stream=stream)
        pid = os.fork()
        if pid == 0:  # the child: no writer thread came with it
            logging.getLogger("test-logs-child").warning("job %s: from the child", "forked")
            os._exit(0)  # no logging.shutdown(): nothing may wait in a queue
        _, status = os.waitpid(pid, 0)
        assert status == 0
        written(root_logging)
    (line,) = [orjson.loads(text) for text in path.read_text().splitlines()]
    assert line["message"] == "job forked: from the child"
    assert line["job_id"] == "forked"


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
