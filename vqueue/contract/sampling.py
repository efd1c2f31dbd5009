"""The sampling parameters a job stores (jobs.params): the API validates them (SamplingFields),
the worker hands them to vLLM's SamplingParams under the same names."""

# OpenAI's names, which vLLM's server takes too.
OPENAI_SAMPLING_KEYS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
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
)
SAMPLING_KEYS = ("max_tokens", "stop", *OPENAI_SAMPLING_KEYS, *VLLM_SAMPLING_KEYS)
