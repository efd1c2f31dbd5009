"""The start-up sweep of prefill step sizes: its plan, and a run on the real (CPU) engine."""

import itertools
import logging
import os
import subprocess
import sys

import pytest

from vqueue.models.source import resolve_model
from vqueue.settings import Settings, get_settings
from worker.engine import EngineHost, warmup_wanted
from worker.warmup import prompt_lengths, step_sizes


def test_the_sizes_climb_to_the_budget_with_both_sides_of_each_multiple_of_16() -> None:
    sizes = step_sizes(8192)
    assert sizes == sorted(set(sizes))
    assert sizes[0] == 1
    assert sizes[-1] == 8192
    for power in (16, 32, 64, 512, 4096):
        assert {power, power + 1} <= set(sizes)
    # No gap wider than half a step: every size the engine meets has a neighbour within 1.5x.
    assert all(b <= 1.5 * a + 1 for a, b in itertools.pairwise(sizes))


def test_an_odd_budget_is_itself_a_size_and_nothing_exceeds_it() -> None:
    sizes = step_sizes(100)
    assert sizes[-1] == 100
    assert all(size <= 100 for size in sizes)


def test_prompts_split_evenly_under_the_context_length() -> None:
    assert prompt_lengths(10, 2047) == [10]
    lengths = prompt_lengths(5000, 2047)
    assert sum(lengths) == 5000
    assert len(lengths) == 3
    assert max(lengths) - min(lengths) <= 1


def test_on_by_default_only_on_a_gpu(settings: Settings) -> None:
    assert warmup_wanted(settings.model_copy(update={"engine_warmup": None})) is False  # CPU
    assert warmup_wanted(settings.model_copy(update={"engine_warmup": True})) is True


@pytest.mark.stack  # a real engine of its own
def test_the_worker_engine_sweeps_before_it_is_ready_and_then_serves() -> None:
    # A context shorter than the step budget: the larger steps need several prompts.
    small = {
        "VQUEUE_ENGINE_WARMUP": "true",
        "VQUEUE_MAX_NUM_BATCHED_TOKENS": "96",
        "VQUEUE_MAX_MODEL_LEN": "64",
        "VQUEUE_MAX_NUM_SEQS": "8",
    }
    # In a child process: a shut-down vLLM engine leaves sockets and a loop to the garbage
    # collector, which pytest would report as unraisable warnings of its own process.
    child = subprocess.run(
        [sys.executable, "-c", "from tests.test_warmup import serve_after_warmup as s; s()"],
        env={**os.environ, **small},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    steps, batches = len(step_sizes(96)), len(step_sizes(8))
    expected = f"{steps} step sizes up to 96 tokens, {batches} batch sizes up to 8 sequences"
    assert expected in child.stderr
    assert "served 5 tokens; unfinished requests: False" in child.stdout


def serve_after_warmup() -> None:
    """The child: start the worker's engine (which sweeps), then serve one request."""
    from vllm import SamplingParams

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings = get_settings()
    model = resolve_model(settings.model, revision=None, cache_dir=settings.model_cache_dir)
    host = EngineHost(settings, model).start()
    try:
        unfinished = host.engine.output_processor.has_unfinished_requests()

        async def generate() -> int:
            params = SamplingParams(max_tokens=5, ignore_eos=True)
            tokens = 0
            async for output in host.engine.generate("Hello", params, "after-warmup"):
                tokens = len(output.outputs[0].token_ids)  # cumulative outputs
            return tokens

        tokens = host.submit(generate()).result(timeout=120)
        print(f"served {tokens} tokens; unfinished requests: {unfinished}", flush=True)
    finally:
        host.close()
