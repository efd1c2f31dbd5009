"""A background response outlives its worker: the worker's main process is killed mid-response
(SIGKILL, the process alone), the stack's supervisor starts another, and the response runs
again from the text it had made. A client that kept its stream reads the whole text exactly
once; one that was cut off takes it up with `starting_after` and does too."""

import signal
import threading
import time
import uuid
from typing import Any

import openai

from tests.durability import Tally, report, wait_for_restart, wait_until
from vqueue.dev import stack
from vqueue.settings import Settings

MAX_TOKENS = 400


def _deltas(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_a_response_goes_on_from_its_text_after_its_worker_is_killed(
    oai: openai.OpenAI, settings: Settings, durability_report: list[dict[str, Any]]
) -> None:
    response = oai.responses.create(
        model=settings.model_name,
        input="Write a long story about a ship in a storm.",
        max_output_tokens=MAX_TOKENS,
        background=True,
        temperature=1.0,  # sampled: a run from the start would not repeat the text
        extra_body={"ignore_eos": True},
    )
    live: list[Any] = []

    def follow() -> None:
        with oai.responses.retrieve(response.id, stream=True, timeout=900) as stream:
            live.extend(stream)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    cut: list[Any] = []
    with oai.responses.retrieve(response.id, stream=True) as stream:
        for event in stream:
            cut.append(event)
            if sum(e.type == "response.output_text.delta" for e in cut) >= 3:
                break
    wait_until(lambda: len(_deltas(live)) >= 40, 300, 0.2)
    held = _deltas(live)

    worker = stack.running_pid(settings, "worker")
    assert worker is not None
    killed_at = time.monotonic()
    stack.kill(settings, "worker", signal.SIGKILL)  # the main process alone
    wait_for_restart(settings, "worker", worker)
    back_s = time.monotonic() - killed_at
    follower.join(timeout=900)
    assert not follower.is_alive()
    done_s = time.monotonic() - killed_at

    final = oai.responses.retrieve(response.id)
    assert final.usage is not None
    counts = Tally(
        lost=int(final.status != "incomplete"),
        duplicated=int(
            final.usage.output_tokens != MAX_TOKENS or _deltas(live) != final.output_text
        ),
        stuck=0,
    )
    report(
        durability_report,
        counts,
        fault="worker's main process killed mid-response (Responses API)",
        injection="SIGKILL to the worker's main pid alone, a background response streaming",
        in_flight=1,
        recovery=f"worker back in {back_s:.0f}s, the response done in {done_s:.0f}s",
        notes=f"attempt 2 went on from the {len(held)}+ characters streamed; the stream kept "
        "open and one resumed with starting_after each read the whole text once",
    )
    assert final.status == "incomplete"  # ran to max_output_tokens, over two attempts
    text = final.output_text
    assert text.startswith(held)
    assert len(text) > len(held)
    assert final.usage.output_tokens == MAX_TOKENS
    # The stream that was open all along: every character exactly once, numbers rising.
    assert live[-1].type == "response.incomplete"
    assert _deltas(live) == text
    numbers = [event.sequence_number for event in live]
    assert numbers == sorted(set(numbers))
    # The stream cut before the kill, taken up after it.
    rest = list(
        oai.responses.retrieve(response.id, stream=True, starting_after=cut[-1].sequence_number)
    )
    assert _deltas(cut) + _deltas(rest) == text
    assert rest[-1].type == "response.incomplete"
    job_id = uuid.UUID(hex=response.id.removeprefix("resp_"))
    log = (settings.run_dir / "worker.log").read_text(errors="replace")
    assert f"job {job_id}: attempt 2 goes on from" in log
