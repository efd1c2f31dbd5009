"""Webhooks on the real stack: receivers on this machine that verify signatures with the
Standard Webhooks library and the openai SDK, one that fails its first tries, one that hangs,
one that redirects; refused destinations; batches' progress; re-sending. A SIGKILL of the API
process while it is sending is in tests/test_durability_processes.py."""

import itertools
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from api.webhooks.signing import new_secret
from tests.durability import wait_until
from tests.test_auth import bearer, new_key
from tests.test_cli import vqueue
from tests.test_openai_files import request_line
from tests.webhook_receiver import Receiver, deliveries, settled, submit
from vqueue.client.api_client import VQueueClient
from vqueue.settings import Settings

pytestmark = pytest.mark.stack


def webhook_figures(client: VQueueClient) -> dict[str, float]:
    """The webhook samples of GET /metrics, read by Prometheus' own parser, by name (and
    outcome)."""
    figures = {}
    for family in text_string_to_metric_families(client.http.get("/metrics").text):
        for sample in family.samples:
            if sample.name.startswith("vqueue_webhook_"):
                outcome = sample.labels.get("outcome")
                figures[f"{sample.name}:{outcome}" if outcome else sample.name] = sample.value
    return figures


def test_a_job_s_end_is_delivered_signed(
    client: VQueueClient, receiver: Receiver, webhook_secret: str
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
    event = Webhook(webhook_secret).verify(request.body, request.headers)
    sdk = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9")
    sdk.webhooks.verify_signature(request.body, request.headers, secret=webhook_secret)
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
    client: VQueueClient, receiver: Receiver, webhook_secret: str
) -> None:
    job = submit(
        client, {"url": receiver.url("/ok/cancel")}, max_tokens=400, ignore_eos=True, priority=9
    )
    client.cancel(job["id"])
    [delivery] = settled(client, job_id=job["id"])
    assert delivery["type"] == "job.cancelled"
    assert delivery["status"] == "delivered"
    [request] = receiver.at("/ok/cancel")
    assert (
        Webhook(webhook_secret).verify(request.body, request.headers)["data"]["status"]
        == "cancelled"
    )


def test_a_failing_receiver_is_retried_with_the_same_id_and_body(
    client: VQueueClient, receiver: Receiver, webhook_secret: str
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
        Webhook(webhook_secret).verify(request.body, request.headers)


def test_a_hanging_receiver_times_out_and_holds_up_no_other(
    client: VQueueClient, receiver: Receiver, webhook_secret: str
) -> None:
    hung = submit(client, {"url": receiver.url("/hang")})
    assert receiver.arrived.wait(120)
    # An operator sees it: pending, and due for as long as the try has hung.
    waiting = webhook_figures(client)
    assert waiting["vqueue_webhook_deliveries_pending"] >= 1
    assert waiting["vqueue_webhook_oldest_due_seconds"] > 0
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
    assert webhook_figures(client)["vqueue_webhook_deliveries_pending"] == 0


def test_a_redirect_is_not_followed_and_the_delivery_is_given_up(
    client: VQueueClient, receiver: Receiver, webhook_secret: str
) -> None:
    before = webhook_figures(client)
    job = submit(client, {"url": receiver.url("/redirect")})
    [delivery] = settled(client, job_id=job["id"])
    after = webhook_figures(client)
    counted = {name: after[name] - before.get(name, 0) for name in after}
    assert counted["vqueue_webhook_tries_total:failed"] == 4
    assert counted["vqueue_webhook_tries_total:delivered"] == 0
    assert counted["vqueue_webhook_deliveries_failed_total"] == 1
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
    client: VQueueClient, receiver: Receiver, webhook_secret: str, base_url: str
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


def test_a_rotated_secret_keeps_the_old_one_signing_for_its_overlap(
    receiver: Receiver, base_url: str, settings: Settings
) -> None:
    with VQueueClient(base_url, api_key=new_key("rotator")["key"]) as api:
        assert api.http.get("/webhooks/secret").status_code == 404
        first = api.http.post("/webhooks/secret").json()
        assert api.http.get("/webhooks/secret").json() == {
            "secret": None,  # shown once, when made
            "created_at": first["created_at"],
            "previous_valid_until": None,
        }
        second = api.http.post("/webhooks/secret").json()
        assert second["secret"] != first["secret"]
        shown = api.http.get("/webhooks/secret").json()
        assert shown["secret"] is None
        assert shown["previous_valid_until"] == second["previous_valid_until"]
        overlap = datetime.fromisoformat(shown["previous_valid_until"]) - datetime.fromisoformat(
            shown["created_at"]
        )
        assert abs(overlap.total_seconds() - settings.webhook_secret_overlap_s) < 60
        job = submit(api, {"url": receiver.url("/ok/rotated")})
        [delivery] = settled(api, job_id=job["id"])
        assert delivery["status"] == "delivered"
    [request] = receiver.at("/ok/rotated")
    # Two signatures: a receiver still on the old secret and one already on the new both verify.
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (first["secret"], second["secret"]):
        assert Webhook(secret).verify(request.body, request.headers)["data"]["id"] == job["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


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
    client: VQueueClient,
    db: Engine,
    webhook_secret: str,
    webhook: dict[str, Any],
    status: int,
    named: str,
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
    client: VQueueClient, receiver: Receiver, webhook_secret: str, db: Engine
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
                Webhook(webhook_secret).verify(r.body, r.headers) for r in receiver.at("/ok/batch")
            )
            if event["type"] == "batch.progress"
        ]

    # A progress event follows the last short line within the interval.
    wait_until(lambda: any(e["data"]["counts"]["succeeded"] == 11 for e in progress()), timeout=300)
    client.cancel_batch(batch["id"])
    wait_until(lambda: b"batch.cancelled" in receiver.at("/ok/batch")[-1].body, timeout=120)
    events = [Webhook(webhook_secret).verify(r.body, r.headers) for r in receiver.at("/ok/batch")]
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
    oai: openai.OpenAI, receiver: Receiver, webhook_secret: str, settings: Settings
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
    event = oai.webhooks.unwrap(request.body, request.headers, secret=webhook_secret)
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
    oai: openai.OpenAI, receiver: Receiver, webhook_secret: str
) -> None:
    made = oai.responses.create(
        input="Say hello.",
        max_output_tokens=8,
        background=True,
        extra_body={"webhook": {"url": receiver.url("/ok/response")}},
    )
    wait_until(lambda: receiver.at("/ok/response") != [], timeout=120)
    [request] = receiver.at("/ok/response")
    event = oai.webhooks.unwrap(request.body, request.headers, secret=webhook_secret)
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


def test_a_deleted_response_s_text_leaves_its_webhook_events_too(
    oai: openai.OpenAI, client: VQueueClient, receiver: Receiver, webhook_secret: str
) -> None:
    made = oai.responses.create(
        input="Name three colours.",
        max_output_tokens=12,
        background=True,
        extra_body={"webhook": {"url": receiver.url("/ok/deleted")}},
    )
    job_id = str(uuid.UUID(made.id.removeprefix("resp_")))
    [delivery] = settled(client, job_id=job_id)
    text = oai.responses.retrieve(made.id).output_text
    assert text
    assert delivery["event"]["data"]["output"][0]["content"][0]["text"] == text
    assert oai.responses.delete(made.id) is None
    [kept] = deliveries(client, job_id=job_id)
    assert kept["event"] is None  # the record of the tries stays; the text does not
    assert [a["status_code"] for a in kept["attempts"]] == [200]
    # Sent again, it says the response is gone, and still verifies.
    assert client.http.post(f"/webhooks/deliveries/{kept['id']}/resend").status_code == 202
    wait_until(lambda: len(receiver.at("/ok/deleted")) == 2, timeout=60)
    again = receiver.at("/ok/deleted")[1]
    event = Webhook(webhook_secret).verify(again.body, again.headers)
    assert event["data"] == {"id": made.id, "object": "response", "deleted": True}
    assert text not in again.body.decode()


def test_the_cli_names_webhooks(
    base_url: str, client: VQueueClient, receiver: Receiver, webhook_secret: str, tmp_path: Path
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
    job_event = Webhook(webhook_secret).verify(
        receiver.at("/ok/cli-job")[0].body, receiver.at("/ok/cli-job")[0].headers
    )
    assert job_event["data"]["id"] == queued.stdout.strip()
    batch_event = Webhook(webhook_secret).verify(
        receiver.at("/ok/cli-batch")[0].body, receiver.at("/ok/cli-batch")[0].headers
    )
    assert batch_event["type"] == "batch.completed"
    assert batch_event["data"]["id"] == done.stdout.strip()
    refused = vqueue(base_url, "submit", "Hi", "--no-wait", "--webhook", "http://10.0.0.1/")
    assert refused.returncode != 0
    assert "private address" in refused.stderr


def test_a_key_whose_receiver_hangs_holds_its_share_of_tries_and_no_more(
    client: VQueueClient,
    receiver: Receiver,
    webhook_secret: str,
    base_url: str,
    db: Engine,
    settings: Settings,
) -> None:
    share = settings.webhook_concurrency_per_key
    flooder = new_key(f"flooder-{uuid.uuid4().hex[:8]}")
    with VQueueClient(base_url, api_key=flooder["key"]) as api:
        assert api.http.post("/webhooks/secret").status_code == 201
        receiver.release.set()  # the tarpit answers at once, for now
        jobs = [submit(api, {"url": receiver.url(f"/tarpit/{n}")}) for n in range(3 * share)]
        sent = [settled(api, job_id=job["id"])[0] for job in jobs]
        assert {delivery["status"] for delivery in sent} == {"delivered"}
        # Now it hangs, and every one of those events is sent again at once.
        receiver.release.clear()
        for delivery in sent:
            assert api.http.post(f"/webhooks/deliveries/{delivery['id']}/resend").status_code == 202
        in_flight: list[int] = []
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                with db.connect() as conn:
                    in_flight.append(
                        conn.execute(
                            text(
                                "SELECT count(*) FROM webhook_deliveries d JOIN api_keys k "
                                "ON k.id = d.owner_id WHERE k.name = :name AND "
                                "d.status = 'pending' AND d.lease_expires_at > now()"
                            ),
                            {"name": flooder["name"]},
                        ).scalar_one()
                    )
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            wait_until(lambda: share in in_flight, timeout=60)
            # Another key's event goes out while the flood holds its share.
            other = submit(client, {"url": receiver.url("/ok/beside-the-flood")})
            [delivery] = settled(client, job_id=other["id"])
            assert delivery["status"] == "delivered"
            assert any(d["status"] == "pending" for d in deliveries(api, limit="100"))
        finally:
            watching.set()
            watcher.join(timeout=10)
            receiver.release.set()
        assert max(in_flight) == share
        # Released, the flood is delivered: nothing of it is left for later tests.
        for job in jobs:
            assert settled(api, job_id=job["id"])[0]["status"] == "delivered"
