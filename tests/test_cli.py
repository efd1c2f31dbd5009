"""The `vqueue` command line against the running stack."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import Engine

from tests.faults import CuttableProxy
from tests.helpers import insert_unqueued_job
from vqueue.client.api_client import VQueueClient
from vqueue.settings import Settings


def vqueue(base_url: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the CLI; its output decoded as written. Text mode's universal newlines would turn
    a sampled "\r" into "\n" and fail a comparison with the job's text (a CI run did)."""
    done = subprocess.run(
        [sys.executable, "-m", "vqueue.client.cli", "--url", base_url, *args],
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


def test_submit_sends_a_chat_turn_unless_asked_for_a_raw_prompt(
    base_url: str, client: VQueueClient
) -> None:
    question = "What is the product of 9 and 8?"
    chat = vqueue(base_url, "submit", question, "--system", "Be brief.", "--no-wait")
    raw = vqueue(base_url, "submit", "Once upon a time", "--raw", "--no-wait")
    chat_job, raw_job = client.get(chat.stdout.strip()), client.get(raw.stdout.strip())
    assert chat_job["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": question},
    ]
    assert (chat_job["prompt"], raw_job["prompt"], raw_job["messages"]) == (
        None,
        "Once upon a time",
        None,
    )
    refused = vqueue(base_url, "submit", "x", "--raw", "--system", "y")
    assert refused.returncode == 2
    assert "--system" in refused.stderr


def test_submit_with_a_deadline_the_queue_cannot_meet(base_url: str, client: VQueueClient) -> None:
    # A pace to estimate by: a job that ended a moment ago.
    assert client.wait(client.submit(prompt="Count.", max_tokens=16)["id"])["status"] == "succeeded"
    long = ("Write a long essay.", "--max-tokens", "1500", "--deadline", "1")
    refused = vqueue(base_url, "submit", *long)
    assert refused.returncode == 2
    assert "429" in refused.stderr
    assert "deadline cannot be met" in refused.stderr
    accepted = vqueue(base_url, "submit", *long, "--accept-late", "--no-wait")
    assert accepted.returncode == 0, accepted.stderr
    assert "[warning: the deadline cannot be met" in accepted.stderr
    final = client.wait(accepted.stdout.strip())
    # The deadline went with it. The job ends cancelled or expired, unless the model ended
    # its answer by itself within the second (tests/test_deadlines.py holds a job to it).
    assert final["deadline_at"] is not None
    assert final["status"] in {"cancelled", "expired", "succeeded"}


def test_a_job_that_ends_with_no_text_says_so(base_url: str, client: VQueueClient) -> None:
    # Greedy, the answer's first token starts with a space: the stop string ends it at once.
    job = client.submit(prompt="The capital of France is", temperature=0, stop=[" "])
    final = client.wait(job["id"])
    assert (final["status"], final["text"]) == ("succeeded", "")
    tail = vqueue(base_url, "tail", job["id"])
    assert tail.returncode == 0
    assert "the job ended with no text (finish_reason: stop)" in tail.stderr


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
    # The CLI reaches the API through a proxy that drops the connection once the stream has
    # sent a set number of bytes (mid-event), and refuses reconnects for a second. A cut timed
    # by the test's clock raced the CLI's start: on CI the CLI once reached the API only after
    # a 1,500-token job had ended. The cut comes wherever the stream then is: in its live part
    # as a rule, in the replay of an ended job if the CLI starts that late; the text must come
    # out whole and once either way.
    proxy = CuttableProxy(settings.api_port)
    proxy.cut_after(server_bytes=1500, down_s=1.0)
    job = client.submit(prompt="Tell a long story:", max_tokens=200, ignore_eos=True)
    tail = vqueue(f"http://127.0.0.1:{proxy.port}", "tail", job["id"], timeout=300)
    proxy.cut()  # the tail has exited; its connections through the proxy close too
    final = client.wait(job["id"], timeout=120)
    assert final["status"] == "succeeded"
    assert proxy.cuts == 1
    assert tail.returncode == 0, tail.stderr
    assert "connection lost" in tail.stderr
    # Resumed where it broke off: every character once, in order.
    assert tail.stdout == final["text"] + "\n"


def test_cancel_and_unknown_ids(base_url: str, client: VQueueClient) -> None:
    job = client.submit(prompt="Long:", max_tokens=1500, ignore_eos=True)
    cancelled = vqueue(base_url, "cancel", job["id"])
    assert cancelled.returncode == 0
    assert cancelled.stdout.strip() in {"cancelled", "running"}
    assert client.wait(job["id"], timeout=60)["status"] == "cancelled"
    # Following a job that did not succeed says how it ended, and exits 1.
    tail = vqueue(base_url, "tail", job["id"])
    assert tail.returncode == 1
    assert "[cancelled:" in tail.stderr
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


def test_following_a_queued_job_says_where_it_stands(
    base_url: str, client: VQueueClient, db: Engine
) -> None:
    # A job no worker is sent (its message time is ahead of now): it waits while we look.
    job_id = insert_unqueued_job(db, released_in_s=86_400)
    tail = subprocess.Popen(
        [sys.executable, "-m", "vqueue.client.cli", "--url", base_url, "tail", job_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert tail.stderr is not None
        # Its first words on stderr (past any a library may print first) tell the wait.
        lines = [tail.stderr.readline().decode()]
        while not lines[-1].startswith("[queued: ") and lines[-1] and len(lines) < 20:
            lines.append(tail.stderr.readline().decode())
        assert lines[-1].startswith("[queued: "), lines
        assert " ahead" in lines[-1]
        client.cancel(job_id)
        _, rest = tail.communicate(timeout=120)
    finally:
        tail.kill()
    assert tail.returncode == 1
    assert "[cancelled:" in rest.decode()
