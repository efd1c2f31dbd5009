"""The sampling parameters a job stores (jobs.params): the API validates them (SamplingFields),
the worker hands them to vLLM's SamplingParams under the same names."""

# OpenAI's names, which vLLM's server takes too.
OPENAI_SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)
# vLLM's extensions to the OpenAI body.
VLLM_SAMPLING_KEYS = (
    "top_k",
    "ignore_eos",
    "repetition_penalty",
    "min_p",
    "min_tokens",
    "stop_token_ids",
    "skip_special_tokens",
    "include_stop_str_in_output",
    "structured_outputs",
)
# `logprobs`: how many alternatives to log per output token (vqueue/contract/logprobs.py);
# OpenAI's chat and completion bodies each spell it their own way (api/openai/requests.py).
SAMPLING_KEYS = ("max_tokens", "stop", "logprobs", *OPENAI_SAMPLING_KEYS, *VLLM_SAMPLING_KEYS)

# How a job's error begins when the engine refused its request as invalid (vLLM's client
# errors, such as a JSON schema its grammar backend cannot compile): the API answers 400.
ENGINE_REFUSED = "the engine refused the request: "
