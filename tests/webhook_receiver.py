"""A webhook receiver for the tests, on this machine, and helpers that read deliveries."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.durability import wait_until
from vqueue.client.api_client import VQueueClient


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server whose paths behave as their first part says: /ok, /fail/N (500 to the
    first N requests), /hang (the first request waits until released), /tarpit (while not
    released, every request waits until it is, unanswered), /redirect."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
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
            elif kind == "tarpit" and not got.release.is_set():
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
    try:
        yield holder[0]
    finally:
        holder[0].release.set()
        server.shutdown()
        server.server_close()


def make_secret(base_url: str) -> str:
    """The suite key's signing secret, made as a user would before naming webhooks."""
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
