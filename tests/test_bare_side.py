"""What the benchmark's bare side hands AsyncLLM.generate, as text or prepared; the engine is
not the subject here, so a stand-in records the calls (the real one runs in `make bench`)."""

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from benchmarks.bare_side import BareEngine
from benchmarks.workload import Workload

WORKLOAD = Workload(jobs=3, prompt_tokens=8, output_tokens=4, temperature=0.8, top_p=0.95)


class RecordingEngine:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, str]] = []

    def get_tokenizer(self) -> Any:
        return lambda texts: {"input_ids": [[len(text), 7] for text in texts]}

    async def generate(self, prompt: Any, sampling: Any, request_id: str) -> AsyncIterator[Any]:
        self.calls.append((prompt, sampling, request_id))
        for _ in range(2):
            await asyncio.sleep(0)
            yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=[1, 2])])


def bare_with(engine: RecordingEngine) -> BareEngine:
    bare = BareEngine.__new__(BareEngine)  # without loading a model
    bare.engine, bare._ids = engine, 0
    return bare


def test_the_bare_side_passes_text_and_one_shared_parameter_set_by_default() -> None:
    engine = RecordingEngine()
    run = asyncio.run(bare_with(engine).run(["a", "bb", "ccc"], WORKLOAD))
    assert [prompt for prompt, _, _ in engine.calls] == ["a", "bb", "ccc"]
    shared = {id(sampling) for _, sampling, _ in engine.calls}
    assert len(shared) == 1
    assert not engine.calls[0][1].skip_clone  # the engine copies it for each request
    assert (run.jobs, run.tokens, len(run.ttft_s)) == (3, 12, 3)
    assert len({request_id for _, _, request_id in engine.calls}) == 3


def test_prepared_inputs_are_token_ids_and_parameters_the_engine_need_not_copy() -> None:
    engine = RecordingEngine()
    run = asyncio.run(bare_with(engine).run(["a", "bb", "ccc"], WORKLOAD, prepared=True))
    assert [prompt for prompt, _, _ in engine.calls] == [
        {"type": "token", "prompt_token_ids": [n, 7]} for n in (1, 2, 3)
    ]
    samplings = [sampling for _, sampling, _ in engine.calls]
    assert len({id(sampling) for sampling in samplings}) == 3
    assert all(sampling.skip_clone for sampling in samplings)
    assert (samplings[0].temperature, samplings[0].top_p, samplings[0].max_tokens) == (0.8, 0.95, 4)
    assert run.tokens == 12
