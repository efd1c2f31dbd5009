"""A stream whose API cannot go on (Postgres unreachable when the job's end is read) ends with
an error event naming what to do, never with a connection cut mid-frame; the reader resumes
with Last-Event-ID once Postgres is back and gets the job's whole text (real stack)."""

import httpx
import orjson

from tests.conftest import POSTGRES_PROXY
from vqueue.client.api_client import VQueueClient


def test_a_stream_that_cannot_go_on_ends_with_an_error_event(
    base_url: str, client: VQueueClient
) -> None:
    job = client.submit(prompt="A short note:", max_tokens=60, ignore_eos=True)
    lines: list[str] = []
    last_id: str | None = None
    text = ""
    cut = False
    with httpx.Client(base_url=base_url, headers=client.http.headers, timeout=120) as http:
        try:
            with http.stream("GET", f"/jobs/{job['id']}/stream") as response:
                assert response.status_code == 200
                event = ""
                # Cut once text flows: the generation ends, the worker cannot record it, and
                # the stream, quiet, reads the job's row to see whether it ended unseen.
                for line in response.iter_lines():  # raises if the connection is cut
                    lines.append(line)
                    if line.startswith("id: "):
                        last_id = line[4:]
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "delta":
                        text += orjson.loads(line[6:])["text"]
                        if not cut:
                            POSTGRES_PROXY.cut()
                            cut = True
        finally:
            POSTGRES_PROXY.restore()
    assert "event: error" in lines, lines[-5:]
    assert "broke off" in lines[lines.index("event: error") + 1]
    assert "event: done" not in lines
    # Once Postgres is back the reader resumes where it was and gets the rest.
    rest = list(client.stream(job["id"], last_event_id=last_id))
    assert rest[-1].event == "done"
    text += "".join(e.data["text"] for e in rest if e.event == "delta")
    assert text == client.wait(job["id"])["text"]
