"""The start-up sweep of prefill step sizes: its plan, and a run on the real (CPU) engine."""

import itertools
import logging

import pytest

from vqueue.settings import Settings
from worker.engine import EngineHost, warmup_wanted
from worker.model_source import resolve_model
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


@pytest.mark.timeout(300)
# vLLM and torch warn about their own internals as the engine is built in this process.
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_the_worker_engine_sweeps_before_it_is_ready_and_then_serves(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from vllm import SamplingParams

    # A context shorter than the step budget: the larger steps need several prompts.
    small = settings.model_copy(
        update={
            "engine_warmup": True,
            "max_num_batched_tokens": 96,
            "max_model_len": 64,
            "max_num_seqs": 8,
        }
    )
    model = resolve_model(small.model, revision=None, cache_dir=small.model_cache_dir)
    with caplog.at_level(logging.INFO, logger="worker.warmup"):
        host = EngineHost(small, model).start()
    try:
        assert f"engine warm-up: {len(step_sizes(96))} step sizes up to 96 tokens" in caplog.text
        assert not host.engine.output_processor.has_unfinished_requests()

        async def generate() -> int:
            params = SamplingParams(max_tokens=5, ignore_eos=True)
            tokens = 0
            async for output in host.engine.generate("Hello", params, "after-warmup"):
                tokens = len(output.outputs[0].token_ids)  # cumulative outputs
            return tokens

        assert host.submit(generate()).result(timeout=120) == 5
    finally:
        host.close()
