"""Webhooks on the real stack: receivers on this machine that verify signatures with the
Standard Webhooks library and the openai SDK, one that fails its first tries, one that hangs,
one that redirects; refused destinations; batches' progress; re-sending; and a SIGKILL of the
API process while it is sending."""

import itertools
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from sqlalchemy import Engine, text
from standardwebhooks import Webhook

from db.webhooks import LOST_TRY
from tests.durability import Tally, report, wait_for_restart, wait_until
from tests.test_auth import bearer, new_key
from tests.test_cli import vqueue
from tests.test_openai_files import request_line
from vqueue.client.api_client import VQueueClient
from vqueue.dev import stack
from vqueue.settings import Settings

pytestmark = pytest.mark.stack


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server whose paths behave as their first part says: /ok, /fail/N (500 to the
    first N requests), /hang (the first request waits until released), /redirect."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got = holder[0]
            body = self.rfile.read(int(self.headers["content-length"]))
            got.received.append(Received(self.path, dict(self.headers), body))
            seen = got.counts[self.path] = got.counts.get(self.path, 0) + 1
            kind = self.path.split("/")[1]
            status = 200
            if kind == "fail" and seen <= int(self.path.split("/")[2]):
                status = 500
            elif kind == "hang" and seen == 1:
                got.arrived.set()
                got.release.wait(60)
                return
            elif kind == "redirect":
                self.send_response(302)
                self.send_header("Location", got.url("/ok/redirected"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder.append(Receiver(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder[0]
    holder[0].release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def secret(base_url: str) -> str:
    """The suite key's signing secret, made once (as a user would, before naming webhooks)."""
    with VQueueClient(base_url) as api:
        made = api.http.post("/webhooks/secret")
    assert made.status_code == 201, made.text
    value: str = made.json()["secret"]
    return value


def deliveries(client: VQueueClient, **filters: str) -> list[dict[str, Any]]:
    answer = client.http.get("/webhooks/deliveries", params={"limit": 100, **filters})
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def settled(client: VQueueClient, timeout: float = 120, **filters: str) -> list[dict[str, Any]]:
    """The deliveries matching `filters`, once there is one and none is pending."""
    found: list[dict[str, Any]] = []

    def done() -> bool:
        found[:] = deliveries(client, **filters)
        return bool(found) and all(d["status"] != "pending" for d in found)

    wait_until(done, timeout=timeout, interval=0.3)
    return found


def submit(client: VQueueClient, webhook: dict[str, Any], **body: Any) -> dict[str, Any]:
    answer = client.http.post(
        "/jobs", json={"prompt": "Count to five:", "max_tokens": 8, "webhook": webhook, **body}
    )
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    return job


def test_a_job_s_end_is_delivered_signed(
    client: VQueueClient, receiver: Receiver, secret: str
) -> None:
    url = receiver.url("/ok/job")
    job = submit(client, {"url": url})
    assert job["webhook"] == {"url": url, "events": ["cancelled", "completed", "expired", "failed"]}
    only_failures = submit(client, {"url": url, "events": ["failed"]})
    [delivery] = settled(client, job_id=job["id"])
    assert delivery["status"] == "delivered"
    assert delivery["type"] == "job.completed"
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    [request] = receiver.at("/ok/job")
    event = Webhook(secret).verify(request.body, request.headers)
    sdk = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9")
    sdk.webhooks.verify_signature(request.body, request.headers, secret=secret)
    assert request.headers["webhook-id"] == delivery["id"] == event["id"]
    assert event["type"] == "job.completed"
    assert event == delivery["event"]
    final = client.wait(job["id"])
    assert event["data"]["id"] == job["id"]
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["text"] == final["text"]
    # Subscribed to failures only: its success announced nothing.
    assert client.wait(only_failures["id"])["status"] == "succeeded"
    assert deliveries(client, job_id=only_failures["id"]) == []


def test_a_cancelled_job_announces_it(
    client: VQueueClient, receiver: Receiver, secret: str
) -> None:
    job = submit(
        client, {"url": receiver.url("/ok/cancel")}, max_tokens=400, ignore_eos=True, priority=9
    )
    client.cancel(job["id"])
    [delivery] = settled(client, job_id=job["id"])
    assert delivery["type"] == "job.cancelled"
    assert delivery["status"] == "delivered"
    [request] = receiver.at("/ok/cancel")
    assert Webhook(secret).verify(request.body, request.headers)["data"]["status"] == "cancelled"


def test_a_failing_receiver_is_retried_with_the_same_id_and_body(
    client: VQueueClient, receiver: Receiver, secret: str
) -> None:
    job = submit(client, {"url": receiver.url("/fail/2")})
    [delivery] = settled(client, job_id=job["id"])
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert delivery["attempts"][0]["error"] == "answered 500"
    tries = receiver.at("/fail/2")
    assert len(tries) == 3
    assert {t.headers["webhook-id"] for t in tries} == {delivery["id"]}
    assert {t.body for t in tries} == {tries[0].body}
    for request in tries:
        Webhook(secret).verify(request.body, request.headers)


def test_a_hanging_receiver_times_out_and_holds_up_no_other(
    client: VQueueClient, receiver: Receiver, secret: str
) -> None:
    hung = submit(client, {"url": receiver.url("/hang")})
    assert receiver.arrived.wait(120)
    [trying] = deliveries(client, job_id=hung["id"])
    busy = client.http.post(f"/webhooks/deliveries/{trying['id']}/resend")
    assert busy.status_code == 409
    assert "still being tried" in busy.text
    other = submit(client, {"url": receiver.url("/ok/meanwhile")})
    [meanwhile] = settled(client, job_id=other["id"])
    assert meanwhile["status"] == "delivered"
    [delivery] = settled(client, job_id=hung["id"])
    assert delivery["status"] == "delivered"
    assert [(a["status_code"], a["error"]) for a in delivery["attempts"]] == [
        (None, "timed out"),
        (200, None),
    ]


def test_a_redirect_is_not_followed_and_the_delivery_is_given_up(
    client: VQueueClient, receiver: Receiver, secret: str
) -> None:
    job = submit(client, {"url": receiver.url("/redirect")})
    [delivery] = settled(client, job_id=job["id"])
    # The first try and the three retries of VQUEUE_WEBHOOK_RETRY_DELAYS_S, then no more.
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [302] * 4
    assert delivery["attempts"][0]["error"] == "redirect not followed"
    assert receiver.at("/ok/redirected") == []
    # Re-sent, it goes to the same URL with the same id; the receiver now answers 200 there.
    resent = client.http.post(f"/webhooks/deliveries/{delivery['id']}/resend")
    assert resent.status_code == 202, resent.text
    again = settled(client, job_id=job["id"])[0]
    assert len(again["attempts"]) == 8
    assert again["status"] == "failed"
    assert {r.headers["webhook-id"] for r in receiver.at("/redirect")} == {delivery["id"]}


def test_re_sending_a_delivered_event(
    client: VQueueClient, receiver: Receiver, secret: str, base_url: str
) -> None:
    job = submit(client, {"url": receiver.url("/ok/resend")})
    [delivery] = settled(client, job_id=job["id"])
    answer = client.http.post(f"/webhooks/deliveries/{delivery['id']}/resend")
    assert answer.status_code == 202
    assert answer.json()["status"] == "pending"
    wait_until(lambda: len(receiver.at("/ok/resend")) == 2, timeout=60)
    first, second = receiver.at("/ok/resend")
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    read = client.http.get(f"/webhooks/deliveries/{delivery['id']}")
    wait_until(
        lambda: (
            len(client.http.get(f"/webhooks/deliveries/{delivery['id']}").json()["attempts"]) == 2
        ),
        timeout=30,
    )
    assert read.status_code == 200
    assert client.http.post("/webhooks/deliveries/msg_nope/resend").status_code == 404
    # Another key sees none of it.
    other = httpx.Client(base_url=base_url, headers=bearer(new_key("outsider")), timeout=30)
    with other:
        assert other.get(f"/webhooks/deliveries/{delivery['id']}").status_code == 404
        assert other.post(f"/webhooks/deliveries/{delivery['id']}/resend").status_code == 404
        assert other.get("/webhooks/deliveries").json()["data"] == []
        assert other.get("/webhooks/secret").status_code == 404
        # And it cannot name a webhook before it has a secret of its own.
        refused = other.post(
            "/jobs", json={"prompt": "x", "webhook": {"url": receiver.url("/ok/outsider")}}
        )
        assert refused.status_code == 400
        assert "signing secret" in refused.text


@pytest.mark.parametrize(
    ("webhook", "status", "named"),
    [
        ({"url": "http://10.0.0.1/hook"}, 400, "private address"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, 400, "link-local"),
        ({"url": "http://[::1]:8080/hook"}, 400, "loopback"),
        ({"url": "http://no-such-host.invalid/hook"}, 400, "does not resolve"),
        ({"url": "ftp://example.com/hook"}, 422, "http or https"),
        ({"url": "https://user:pw@example.com/hook"}, 422, "credentials"),
        ({"url": "http://127.0.0.1/hook", "events": ["done"]}, 422, "events"),
        ({"url": "http://127.0.0.1/hook", "secret": "x"}, 422, "secret"),
    ],
)
def test_refused_webhooks_name_the_problem_and_write_nothing(
    client: VQueueClient, db: Engine, secret: str, webhook: dict[str, Any], status: int, named: str
) -> None:
    with db.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
    answer = client.http.post("/jobs", json={"prompt": "x", "webhook": webhook})
    assert answer.status_code == status, answer.text
    assert named in answer.text
    assert "webhook" in answer.text
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar_one() == before


def test_a_batch_announces_its_progress_then_its_cancellation(
    client: VQueueClient, receiver: Receiver, secret: str, db: Engine
) -> None:
    # Eleven short lines, and one long enough to be running still when the test cancels it.
    lines = [
        {"prompt": f"Say {i}:", "max_tokens": 4 + 4 * i, "ignore_eos": True} for i in range(11)
    ]
    lines.append({"prompt": "Go on:", "max_tokens": 1800, "ignore_eos": True})
    answer = client.http.post(
        "/batches",
        params={
            "format": "jsonl",
            "webhook_url": receiver.url("/ok/batch"),
            "webhook_events": "progress,cancelled",
        },
        content=b"".join(orjson.dumps(line) + b"\n" for line in lines),
    )
    assert answer.status_code == 202, answer.text
    batch = answer.json()
    assert batch["webhook"]["events"] == ["cancelled", "progress"]

    def progress() -> list[dict[str, Any]]:
        return [
            event
            for event in (
                Webhook(secret).verify(r.body, r.headers) for r in receiver.at("/ok/batch")
            )
            if event["type"] == "batch.progress"
        ]

    # A progress event follows the last short line within the interval.
    wait_until(lambda: any(e["data"]["counts"]["succeeded"] == 11 for e in progress()), timeout=300)
    client.cancel_batch(batch["id"])
    wait_until(lambda: b"batch.cancelled" in receiver.at("/ok/batch")[-1].body, timeout=120)
    events = [Webhook(secret).verify(r.body, r.headers) for r in receiver.at("/ok/batch")]
    assert [e["type"] for e in events].count("batch.cancelled") == 1
    assert events[-1]["data"]["status"] == "cancelled"
    assert events[-1]["data"]["counts"]["cancelled"] == 1
    counted = [e["data"]["counts"]["succeeded"] for e in events[:-1]]
    assert counted == sorted(counted)  # each progress event as current as when it was sent
    # Progress events are due at least VQUEUE_WEBHOOK_PROGRESS_INTERVAL_S apart.
    with db.connect() as conn:
        due = conn.execute(
            text(
                "SELECT due_at FROM webhook_deliveries WHERE batch_id = :id "
                "AND type = 'batch.progress' ORDER BY due_at"
            ),
            {"id": batch["id"]},
        ).scalars()
        times = list(due)
    assert len(times) == len(counted)
    assert all((b - a).total_seconds() >= 0.99 for a, b in itertools.pairwise(times))


def test_an_openai_batch_announces_its_end(
    oai: openai.OpenAI, receiver: Receiver, secret: str, settings: Settings
) -> None:
    uploaded = oai.files.create(
        file=("in.jsonl", request_line("a", settings) + request_line("b", settings)),
        purpose="batch",
    )
    batch = oai.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/completions",
        completion_window="24h",
        extra_body={"webhook": {"url": receiver.url("/ok/openai-batch")}},
    )
    wait_until(lambda: receiver.at("/ok/openai-batch") != [], timeout=120)
    [request] = receiver.at("/ok/openai-batch")
    event = oai.webhooks.unwrap(request.body, request.headers, secret=secret)
    assert event.type == "batch.completed"
    assert event.data.id == batch.id
    data = orjson.loads(request.body)["data"]
    assert data["object"] == "batch"
    assert data["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    with pytest.raises(openai.BadRequestError, match=r"webhook\.url.*link-local"):
        oai.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/completions",
            completion_window="24h",
            extra_body={"webhook": {"url": "http://169.254.169.254/"}},
        )


def test_a_background_response_announces_its_end_as_openai_does(
    oai: openai.OpenAI, receiver: Receiver, secret: str
) -> None:
    made = oai.responses.create(
        input="Say hello.",
        max_output_tokens=8,
        background=True,
        extra_body={"webhook": {"url": receiver.url("/ok/response")}},
    )
    wait_until(lambda: receiver.at("/ok/response") != [], timeout=120)
    [request] = receiver.at("/ok/response")
    event = oai.webhooks.unwrap(request.body, request.headers, secret=secret)
    assert event.type in ("response.completed", "response.incomplete")
    assert event.data.id == made.id
    with pytest.raises(openai.BadRequestError, match=r"webhook\.url.*loopback"):
        oai.responses.create(input="x", extra_body={"webhook": {"url": "http://[::1]:9/"}})
    with pytest.raises(openai.BadRequestError, match=r"webhook\.events"):
        oai.responses.create(
            input="x", extra_body={"webhook": {"url": receiver.url("/x"), "events": ["progress"]}}
        )
    final = oai.responses.retrieve(made.id)
    data = orjson.loads(request.body)["data"]
    assert data["status"] == final.status
    assert data["output"][0]["content"][0]["text"] == final.output_text


def test_a_delivery_survives_a_sigkill_of_the_api_mid_send(
    client: VQueueClient,
    receiver: Receiver,
    secret: str,
    settings: Settings,
    durability_report: list[dict[str, Any]],
) -> None:
    job = submit(client, {"url": receiver.url("/hang")})
    assert receiver.arrived.wait(120)
    api = stack.running_pid(settings, "api")
    assert api is not None
    killed_at = time.monotonic()
    stack.kill(settings, "api", signal.SIGKILL)
    wait_for_restart(settings, "api", api, timeout=120)
    back_s = time.monotonic() - killed_at
    [delivery] = settled(client, job_id=job["id"], timeout=120)
    sent_s = time.monotonic() - killed_at
    report(
        durability_report,
        Tally(lost=int(delivery["status"] != "delivered"), duplicated=0, stuck=0),
        fault="API process killed mid-webhook",
        injection="SIGKILL to the API process while its webhook try waits on the receiver",
        in_flight=1,
        recovery=f"API back in {back_s:.0f}s, the event delivered {sent_s:.0f}s after the kill",
        notes=f"{len(receiver.at('/hang'))} requests, one webhook-id (receivers drop repeats "
        "by it); the lost try is in the delivery's record",
    )
    assert delivery["status"] == "delivered"
    # The try the killed process was making is written down as lost when another took it
    # over (or, where the machine stalled past the try's timeout first, as timed out).
    assert delivery["attempts"][0]["error"] in (LOST_TRY, "timed out")
    assert delivery["attempts"][-1]["status_code"] == 200
    ids = {r.headers["webhook-id"] for r in receiver.at("/hang")}
    assert ids == {delivery["id"]}
    assert len(receiver.at("/hang")) >= 2


def test_the_cli_names_webhooks(
    base_url: str, client: VQueueClient, receiver: Receiver, secret: str, tmp_path: Path
) -> None:
    queued = vqueue(
        base_url,
        "submit",
        "Hi",
        "--max-tokens",
        "4",
        "--no-wait",
        "--webhook",
        receiver.url("/ok/cli-job"),
    )
    assert queued.returncode == 0, queued.stderr
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Red is\nBlue is\n")
    done = vqueue(
        base_url,
        "batch",
        str(prompts),
        "--max-tokens",
        "4",
        "--webhook",
        receiver.url("/ok/cli-batch"),
    )
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: receiver.at("/ok/cli-job") != [] and receiver.at("/ok/cli-batch") != [],
        timeout=120,
    )
    job_event = Webhook(secret).verify(
        receiver.at("/ok/cli-job")[0].body, receiver.at("/ok/cli-job")[0].headers
    )
    assert job_event["data"]["id"] == queued.stdout.strip()
    batch_event = Webhook(secret).verify(
        receiver.at("/ok/cli-batch")[0].body, receiver.at("/ok/cli-batch")[0].headers
    )
    assert batch_event["type"] == "batch.completed"
    assert batch_event["data"]["id"] == done.stdout.strip()
    refused = vqueue(base_url, "submit", "Hi", "--no-wait", "--webhook", "http://10.0.0.1/")
    assert refused.returncode != 0
    assert "private address" in refused.stderr
