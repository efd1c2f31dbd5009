"""What both sides of the benchmark run: the same prompts, lengths and sampling."""

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.late_tokens import late_bursts

WORDS = [
    "river",
    "mountain",
    "lantern",
    "orchard",
    "harbor",
    "meadow",
    "violin",
    "glacier",
    "compass",
    "thunder",
    "library",
    "canyon",
    "falcon",
    "ember",
    "prairie",
    "lighthouse",
    "marble",
    "quartz",
    "willow",
    "saffron",
    "tundra",
    "beacon",
    "cathedral",
    "monsoon",
    "archive",
    "nebula",
    "pepper",
    "scaffold",
    "tapestry",
    "voyage",
]


@dataclass(frozen=True)
class Workload:
    jobs: int
    prompt_tokens: int
    output_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95

    def sampling(self) -> dict[str, Any]:
        """The API's job fields; the bare side maps the same values to SamplingParams."""
        return {
            "max_tokens": self.output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "ignore_eos": True,
        }


class Prompts:
    """Distinct prompts of about `tokens` tokens each (counted by the model's tokenizer), new
    ones for each run and the same for the same run on both sides. An engine serves a prompt
    it has seen from its prefix cache: had the measured run repeated the warm-up's prompts,
    both sides would skip their prefill, and with several workers each worker would have
    seen only the part of the warm-up it was handed, while the bare engine had seen it all."""

    def __init__(self, tokenizer_path: Path, tokens: int) -> None:
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path))
        self._tokens = tokens
        self._made = 0
        self._runs: dict[str, list[str]] = {}

    def take(self, run: str, count: int) -> list[str]:
        """The prompts of the run named `run` (made on first asking)."""
        prompts = self._runs.setdefault(run, [])
        while len(prompts) < count:
            prompts.append(self._make(self._made))
            self._made += 1
        return prompts[:count]

    def _make(self, i: int) -> str:
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(self._tokens * 2)]
        text = f"Request {i}: write a story that mentions " + " ".join(words)
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"][: self._tokens]
        decoded: str = self._tokenizer.decode(ids)
        return decoded


@dataclass
class RunResult:
    """One measured run: jobs started together, all ran to their full length."""

    jobs: int
    tokens: int
    seconds: float
    ttft_s: list[float] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)
    # Tokens made before their client's stream opened (sent from the token log on connect):
    # kept apart, as no delivery path could have brought them sooner.
    replay_lag_s: list[float] = field(default_factory=list)
    started_at: float = 0.0  # wall clock (time.time()) of the first submit
    # When each token of `lag_s` arrived (wall clock), in the same order.
    lag_received_at: list[float] = field(default_factory=list)
    # The client processes' own GC pauses, as heartbeat-shaped entries (benchmarks/gc_pauses.py):
    # a client that stalls receives every stream's tokens late, and the queue is not to blame.
    client_gc: list[dict[str, Any]] = field(default_factory=list)
    # How each job ended, by moment (e.g. "last token made", "done received"): seconds after
    # the start, one per job. Where the time between the last token and the end goes.
    ends: dict[str, list[float]] = field(default_factory=dict)

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds

    def summary(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "tok_s": round(self.tok_s, 1),
            "ttft_p50_ms": ms(percentile(self.ttft_s, 50)),
            "ttft_p99_ms": ms(percentile(self.ttft_s, 99)),
            # Where the jobs' first tokens fell, p10 to p90: a burst's prefill takes a few
            # engine steps, and a median between two of them reads either one.
            "ttft_deciles_ms": [ms(percentile(self.ttft_s, p)) for p in range(10, 100, 10)],
            "lag_p50_ms": ms(percentile(self.lag_s, 50)),
            "lag_p99_ms": ms(percentile(self.lag_s, 99)),
            "replayed_tokens": len(self.replay_lag_s),
            "replay_lag_p99_ms": ms(percentile(self.replay_lag_s, 99)),
            "late": late_bursts(self.lag_s, self.lag_received_at, self.started_at),
            "ends": {
                moment: spread([1000 * offset for offset in offsets])
                for moment, offsets in self.ends.items()
                if offsets
            },
        }


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def spread(offsets_ms: list[float]) -> dict[str, float | None]:
    """First, median and last of some jobs' offsets, in ms to a tenth."""
    return {
        "first": _tenth(min(offsets_ms)) if offsets_ms else None,
        "p50": _tenth(percentile(offsets_ms, 50)),
        "last": _tenth(max(offsets_ms)) if offsets_ms else None,
    }


def _tenth(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
