"""A response run again goes on from the text its lost attempt published: the text is read
back from the token log as far as it joins up, and the engine input is the prompt followed by
it, with what is left of the token budget (vqueue/contract/carry.py, worker/prompts.py)."""

from tests.stand_ins import claimed_job, prompt_maker
from vqueue.contract.carry import NOTHING, carried, carries_text
from vqueue.contract.wire import EntryKind, LogEntry
from vqueue.settings import Settings
from worker.prompts import EngineInput


def delta(attempt: int, end: int, text: str, tokens: int) -> LogEntry:
    return LogEntry("j", attempt, EntryKind.DELTA, end, text, prompt_tokens=9, tokens=tokens)


def test_the_latest_attempts_text_is_carried_as_far_as_it_joins() -> None:
    entries = [
        delta(1, 5, "Once ", 2),
        delta(1, 10, "upon ", 4),
        # The second attempt carried the first's text and went on.
        delta(2, 10, "Once upon ", 4),
        delta(2, 12, "a ", 5),
        LogEntry("j", 2, EntryKind.END, 12, status="cancelled"),
        delta(3, 4, "Once", 1),  # the attempt that now runs: not its own carry
    ]
    found = carried(entries, before_attempt=3)
    assert (found.text, found.tokens, found.prompt_tokens) == ("Once upon a ", 5, 9)
    # A gap (entries Redis lost) ends the text where it is still whole.
    assert carried([delta(1, 5, "Once ", 2), delta(1, 12, "a time", 4)], 2).text == "Once "
    assert carried([], 2) == NOTHING
    assert carried([delta(1, 5, "Once ", 2)], 1) == NOTHING


def test_a_grammar_does_not_carry_on() -> None:
    assert carries_text({"max_tokens": 8})
    assert not carries_text({"structured_outputs": {"json": {"type": "object"}}})


def test_the_engine_goes_on_from_the_carried_text_within_the_budget(settings: Settings) -> None:
    maker = prompt_maker(settings, 256)
    job = claimed_job(
        messages=[{"role": "user", "content": "Tell a story."}],
        params={"max_tokens": 40, "min_tokens": 10},
        attempt=2,
        continues=True,
    )
    carry = carried([delta(1, 10, "Once upon ", 4)], 2)
    made = maker.make({"a": job, "b": job}, {"a": carry})
    on, anew = made["a"], made["b"]
    assert isinstance(on, EngineInput)
    assert isinstance(anew, EngineInput)
    tokenizer = maker.host.tokenizer()
    text = tokenizer.decode(on.prompt["prompt_token_ids"])
    assert text == tokenizer.decode(anew.prompt["prompt_token_ids"]) + "Once upon "
    assert (on.sampling.max_tokens, on.sampling.min_tokens) == (36, 6)
    assert (anew.sampling.max_tokens, anew.sampling.min_tokens) == (40, 10)
    assert on.carry == carry
