"""How long a message's requests take to reach the engine core once handed to the engine loop,
with the real engine, by what the worker gives `AsyncLLM.generate`:

- "untyped": `{"prompt_token_ids": ids}`, as the worker did up to this probe. vLLM renders it
  again as a raw prompt, and since 0.32 sends each one through the renderer's thread pool and
  back to the loop.
- "typed": `{"type": "token", "prompt_token_ids": ids}`, the rendered input vLLM's own front
  end passes: the loop only validates it and makes the request.
- "typed, no clone": that, with SamplingParams made with `skip_clone=True`, as vLLM's OpenAI
  server makes them for each request: the loop no longer deep-copies each job's parameters,
  which the worker makes fresh for every job anyway.

Each round hands JOBS requests of 128 prompt tokens to the loop at once (EngineHost.submit_all)
and times until the last `add_request` returned, i.e. its request was sent to the engine core;
then aborts them all. Busy threads stand for what shares the worker's GIL while a burst comes in.
The forms are measured in turns, so they meet the same spells of the machine.

    python -m vqueue.bench.add_probe [JOBS] [BUSY_THREADS...]   (256; 0 1 by default)
"""

import random
import statistics
import sys
import time
import uuid
from typing import Any, NamedTuple

from vqueue.bench.gil_convoy import busy_threads
from vqueue.settings import get_settings
from worker.engine import EngineHost
from worker.model_source import resolve_model

ROUNDS = 7
PROMPT_TOKENS = 128


class Form(NamedTuple):
    name: str
    typed: bool
    skip_clone: bool


FORMS = (
    Form("untyped", typed=False, skip_clone=False),
    Form("typed", typed=True, skip_clone=False),
    Form("typed, no clone", typed=True, skip_clone=True),
)


async def _add(engine: Any, request_id: str, prompt: dict[str, Any], params: Any) -> float:
    await engine.add_request(request_id, prompt, params)
    return time.perf_counter()


def added_ms(host: EngineHost, form: Form, jobs: int, rng: random.Random) -> float:
    """From the hand-over to the last request sent to the engine core."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    requests = []
    request_ids = [f"probe-{uuid.uuid4()}" for _ in range(jobs)]
    for request_id in request_ids:
        ids = [rng.randrange(1000, 20000) for _ in range(PROMPT_TOKENS)]
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        if form.typed:
            prompt["type"] = "token"
        params = SamplingParams(
            max_tokens=256,
            temperature=0.8,
            top_p=0.95,
            output_kind=RequestOutputKind.DELTA,
            skip_clone=form.skip_clone,
        )
        requests.append(_add(host.engine, request_id, prompt, params))
    started = time.perf_counter()
    last = max(future.result() for future in host.submit_all(requests))
    host.submit(host.engine.abort(request_ids)).result()
    time.sleep(0.5)  # the engine core drops the aborted requests before the next round
    return (last - started) * 1000


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    busy_counts = [int(arg) for arg in sys.argv[2:]] or [0, 1]
    settings = get_settings()
    rng = random.Random(0)
    model = resolve_model(
        settings.model, revision=settings.model_revision, cache_dir=settings.model_cache_dir
    )
    with EngineHost(settings, model) as host:
        for form in FORMS:  # first calls, not measured
            added_ms(host, form, jobs, rng)
        print(f"{jobs} requests of {PROMPT_TOKENS} prompt tokens, {ROUNDS} rounds; medians")
        for busy in busy_counts:
            taken: dict[Form, list[float]] = {form: [] for form in FORMS}
            with busy_threads(busy):
                for _ in range(ROUNDS):
                    for form in FORMS:
                        taken[form].append(added_ms(host, form, jobs, rng))
            for form in FORMS:
                times = taken[form]
                print(
                    f"beside {busy} busy threads, {form.name}: all sent to the engine core in "
                    f"{statistics.median(times):.0f} ms (range {min(times):.0f}-{max(times):.0f})"
                )


if __name__ == "__main__":
    main()
