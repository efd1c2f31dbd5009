"""Why the worker tokenizes off its engine loop: one thread tokenizing prompts while others
run Python. The tokenizer gives up the GIL for its Rust part and must then wait for it behind
a busy thread, up to the switch interval (5 ms by default) per call.

    python -m vqueue.bench.gil_convoy [PROMPTS] [BUSY_THREADS...]
"""

import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vqueue.bench.workload import WORDS
from vqueue.settings import get_settings
from worker.model_source import load_tokenizer


@contextmanager
def busy_threads(count: int) -> Iterator[None]:
    """`count` threads running Python while the block runs, as a busy engine loop and the
    other task threads do beside a worker's thread: each of its calls that gives up the GIL
    waits for it behind them."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=spin, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def tokenize_beside_busy_threads(tokenizer: object, prompts: list[str], busy: int) -> float:
    """Seconds to tokenize `prompts` one by one on this thread while `busy` threads spin."""
    with busy_threads(busy):
        started = time.perf_counter()
        for prompt in prompts:
            tokenizer(prompt)  # type: ignore[operator]
        return time.perf_counter() - started


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    busy_counts = [int(arg) for arg in sys.argv[2:]] or [0, 1, 4]
    tokenizer = load_tokenizer(get_settings())
    rng = random.Random(0)
    prompts = [" ".join(rng.choice(WORDS) for _ in range(120)) for _ in range(count)]
    interval_ms = sys.getswitchinterval() * 1000
    for busy in busy_counts:
        seconds = tokenize_beside_busy_threads(tokenizer, prompts, busy)
        print(
            f"{count} tokenizations beside {busy} busy threads "
            f"(switch interval {interval_ms:g} ms): {seconds * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
