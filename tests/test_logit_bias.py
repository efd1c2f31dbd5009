"""logit_bias on the real engine, through the official openai SDK."""

import openai
import pytest
from transformers import AutoTokenizer

from vqueue.contract.sampling import ENGINE_REFUSED
from vqueue.models.default_model import prepared_path
from vqueue.settings import Settings


def test_a_bias_of_100_makes_its_token_the_output(oai: openai.OpenAI, settings: Settings) -> None:
    tokenizer = AutoTokenizer.from_pretrained(prepared_path(settings.model_cache_dir))
    (banana,) = tokenizer.encode(" banana", add_special_tokens=False)
    completion = oai.completions.create(
        model=settings.model_name,
        prompt="The capital of France is",
        max_tokens=3,
        temperature=0,
        logit_bias={str(banana): 100},
    )
    assert completion.choices[0].text == tokenizer.decode([banana] * 3)
    unbiased = oai.completions.create(
        model=settings.model_name, prompt="The capital of France is", max_tokens=3, temperature=0
    )
    assert "banana" not in unbiased.choices[0].text


def test_a_token_outside_the_vocabulary_is_a_400(oai: openai.OpenAI, settings: Settings) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(
            model=settings.model_name,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=2,
            logit_bias={"999999999": 5},
        )
    assert ENGINE_REFUSED in refused.value.message
    assert "logit_bias" in refused.value.message
