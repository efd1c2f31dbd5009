"""The `vqueue` command line against the running stack."""

import json
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.faults import CuttableProxy
from tests.helpers import wait_for_text
from vqueue.client import VQueueClient
from vqueue.settings import Settings


def vqueue(base_url: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the CLI; its output decoded as written. Text mode's universal newlines would turn
    a sampled "\r" into "\n" and fail a comparison with the job's text (a CI run did)."""
    done = subprocess.run(
        [sys.executable, "-m", "vqueue.cli", "--url", base_url, *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def test_submit_prints_the_answer_and_status_finds_it(base_url: str) -> None:
    done = vqueue(base_url, "submit", "The capital of France is", "--max-tokens", "8")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    queued = vqueue(base_url, "submit", "Hello", "--max-tokens", "4", "--no-wait")
    job_id = queued.stdout.strip()
    assert uuid.UUID(job_id)
    status = vqueue(base_url, "status", job_id)
    assert json.loads(status.stdout)["id"] == job_id


def test_tail_resumes_at_an_offset(base_url: str, client: VQueueClient) -> None:
    job = client.submit(prompt="Once upon a time", max_tokens=40, ignore_eos=True)
    final = client.wait(job["id"], timeout=120)
    whole = vqueue(base_url, "tail", job["id"])
    resumed = vqueue(base_url, "tail", job["id"], "--offset", "10")
    assert whole.stdout == final["text"] + "\n"
    assert resumed.stdout == final["text"][10:] + "\n"


def test_tail_survives_a_dropped_connection_and_loses_nothing(
    client: VQueueClient, settings: Settings
) -> None:
    # The CLI reaches the API through a proxy whose connections can be cut. The job is long
    # enough to outlast a slow start of the CLI (300 tokens did not, once, in CI); it is
    # cancelled once the stream has gone on past the cut, so the test does not wait it out.
    proxy = CuttableProxy(settings.api_port)
    job = client.submit(prompt="Tell a long story:", max_tokens=1500, ignore_eos=True)
    url = f"http://127.0.0.1:{proxy.port}"
    with subprocess.Popen(
        [sys.executable, "-m", "vqueue.cli", "--url", url, "tail", job["id"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as tail:
        try:
            wait_for_text(client, job["id"])
            # The tail streams through the proxy once its first text is in the pipe (looked at,
            # not read: communicate() below reads it all).
            streaming, _, _ = select.select([tail.stdout], [], [], 120)
            assert streaming, "the tail printed nothing"
            assert client.get(job["id"])["status"] == "running"
            proxy.cut()  # the stream drops, and reconnecting fails for a while
            time.sleep(1)
            proxy.restore()
            wait_for_growth(client, job["id"])
            client.cancel(job["id"])
            out, err = tail.communicate(timeout=180)
        finally:
            tail.kill()  # a failed assertion must not leave it following the job
            proxy.cut()
    final = client.wait(job["id"], timeout=120)
    assert final["status"] == "cancelled"
    assert tail.returncode == 1, err  # the job did not succeed: it was cancelled
    assert b"connection lost" in err
    # Resumed where it broke off: every character once, in order (bytes: see vqueue() above).
    assert out == (final["text"] + "\n").encode()


def wait_for_growth(client: VQueueClient, job_id: str, chars: int = 40) -> None:
    """Until the job's text is `chars` longer than it is now."""
    start = len(client.get(job_id)["text"])
    deadline = time.monotonic() + 120
    while len(client.get(job_id)["text"]) < start + chars:
        assert time.monotonic() < deadline, "the job stopped producing text"
        time.sleep(0.05)


def test_cancel_and_unknown_ids(base_url: str, client: VQueueClient) -> None:
    job = client.submit(prompt="Long:", max_tokens=1500, ignore_eos=True)
    cancelled = vqueue(base_url, "cancel", job["id"])
    assert cancelled.returncode == 0
    assert cancelled.stdout.strip() in {"cancelled", "running"}
    assert client.wait(job["id"], timeout=60)["status"] == "cancelled"
    missing = vqueue(base_url, "status", str(uuid.uuid4()))
    assert missing.returncode == 2
    assert "404" in missing.stderr


def test_batch_waits_and_downloads_results(base_url: str, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Red is\nBlue is\nGreen is\n")
    output = tmp_path / "out.jsonl"
    done = vqueue(
        base_url, "batch", str(prompts), "--max-tokens", "4", "--wait", "--output", str(output)
    )
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stderr
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["1", "2", "3"]
    assert all(line["status"] == "succeeded" for line in lines)


def test_stats_prints_the_queue(base_url: str) -> None:
    shown = vqueue(base_url, "stats")
    assert shown.returncode == 0
    assert "backlog" in shown.stdout
    assert "running" in shown.stdout
    as_json = json.loads(vqueue(base_url, "stats", "--json").stdout)
    assert as_json["runners"] >= 1


def test_an_unreachable_server_is_a_clear_error() -> None:
    failed = vqueue("http://127.0.0.1:9", "stats", timeout=30)
    assert failed.returncode == 2
    assert "cannot reach" in failed.stderr
