"""The one mapping from a job's stored sampling parameters to vLLM's SamplingParams."""

from typing import Any

from vqueue.contract.sampling import SAMPLING_KEYS


def to_sampling_params(params: dict[str, Any]) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    given = {key: params[key] for key in SAMPLING_KEYS if params.get(key) is not None}
    if "logit_bias" in given:
        # Stored with JSON's string keys; the engine checks the ids against its vocabulary.
        given["logit_bias"] = {int(token): bias for token, bias in given["logit_bias"].items()}
    if "structured_outputs" in given:
        # Stored under vLLM's own names; the engine checks it when the request is added.
        given["structured_outputs"] = StructuredOutputsParams(**given["structured_outputs"])
    # DELTA: each output carries only the new text, which is what the token log stores.
    # skip_clone: made fresh for one job, as vLLM's OpenAI server makes its own, so the engine
    # need not deep-copy it on its loop, where a burst's copies delay every request behind
    # them.
    return SamplingParams(**given, output_kind=RequestOutputKind.DELTA, skip_clone=True)
