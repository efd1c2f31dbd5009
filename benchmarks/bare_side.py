"""The bare side: the same prompts through a bare AsyncLLM with the worker's engine settings."""

import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks.workload import RunResult, Workload
from vqueue.gc_heap import freeze_startup_heap
from vqueue.settings import Settings


class BareEngine:
    def __init__(self, settings: Settings, model_path: Path) -> None:
        from vllm.v1.engine.async_llm import AsyncLLM

        from worker.engine import engine_args, warmup_wanted

        # The worker's own function, so both sides run identical engine settings.
        self.engine: Any = AsyncLLM.from_engine_args(engine_args(settings, model_path))
        self._ids = 0
        self._sweeps = warmup_wanted(settings)

    async def start(self) -> None:
        """The worker's own start-up warm-up (worker/warmup.py), where the worker runs one, and
        its frozen heap (vqueue/gc_heap.py): the bare engine as vLLM's own server runs it, with
        no full collection over the start-up heap inside a measured run."""
        from worker.warmup import warm_up

        if self._sweeps:
            await warm_up(self.engine)
        freeze_startup_heap()

    def _sampling(self, workload: Workload, skip_clone: bool = False) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            **workload.sampling(), output_kind=RequestOutputKind.DELTA, skip_clone=skip_clone
        )

    def _prepared(self, prompts: list[str], workload: Workload) -> list[tuple[Any, Any]]:
        """Each prompt as typed token input with parameters of its own that the engine need not
        copy: the most the engine loop can be spared, as the worker spares it, but made here
        before the clock starts, where the worker's tokenizing is inside the queue's time."""
        ids = self.engine.get_tokenizer()(prompts)["input_ids"]
        return [
            ({"type": "token", "prompt_token_ids": one}, self._sampling(workload, skip_clone=True))
            for one in ids
        ]

    async def run(
        self,
        prompts: list[str],
        workload: Workload,
        delays: list[float] | None = None,
        prepared: bool = False,
    ) -> RunResult:
        """All prompts at once, or each `delays[i]` seconds after the start. As the text and
        one shared SamplingParams, AsyncLLM's own examples' way, or `prepared` (above)."""
        if prepared:
            inputs = self._prepared(prompts, workload)
        else:
            sampling = self._sampling(workload)
            inputs = [(prompt, sampling) for prompt in prompts]
        started = time.perf_counter()

        async def one(prompt: Any, sampling: Any, delay: float) -> tuple[float, int, float]:
            if delay > 0:
                await asyncio.sleep(started + delay - time.perf_counter())
            self._ids += 1
            sent = time.perf_counter()
            first = None
            tokens = 0
            async for output in self.engine.generate(prompt, sampling, f"bare-{self._ids}"):
                if first is None:
                    first = time.perf_counter()
                tokens += len(output.outputs[0].token_ids)
            assert first is not None
            return first - sent, tokens, time.perf_counter() - started

        waits = delays or [0.0] * len(prompts)
        results = await asyncio.gather(
            *(
                one(prompt, sampling, delay)
                for (prompt, sampling), delay in zip(inputs, waits, strict=True)
            )
        )
        seconds = time.perf_counter() - started
        return RunResult(
            len(prompts),
            sum(tokens for _, tokens, _ in results),
            seconds,
            [ttft for ttft, _, _ in results],
            ends={"last token made": [ended for _, _, ended in results]},
        )

    def shutdown(self) -> None:
        self.engine.shutdown()
