"""worker/gather.py: requests from many threads served together by one thread."""

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from worker.gather import Gatherer


class Held:
    """A serve function that holds its first round until released, and notes every round."""

    def __init__(self) -> None:
        self.rounds: list[list[list[int]]] = []
        self.release = threading.Event()

    def __call__(self, requests: list[list[int]]) -> list[int]:
        self.rounds.append(requests)
        if len(self.rounds) == 1:
            self.release.wait(timeout=30)
        if any(-1 in request for request in requests):
            raise ValueError("a request this round cannot serve")
        return [sum(request) for request in requests]


@pytest.fixture
def held() -> Held:
    return Held()


@pytest.fixture
def gatherer(held: Held) -> Iterator[Gatherer[list[int], int]]:
    made: Gatherer[list[int], int] = Gatherer("test-gatherer", held, len, 10)
    yield made
    held.release.set()
    made.close()


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_requests_that_gather_share_a_round_of_whole_requests_up_to_the_bound(
    held: Held, gatherer: Gatherer[list[int], int]
) -> None:
    first = gatherer.submit([1])
    wait_for(lambda: len(held.rounds) == 1)
    # Sizes 4, 5, 3, 12 and 1 pile up behind the held round; the bound is 10.
    sizes = [4, 5, 3, 12, 1]
    later = [gatherer.submit([1] * size) for size in sizes]
    held.release.set()
    assert first.result(timeout=10) == 1
    assert [future.result(timeout=10) for future in later] == sizes
    # Whole requests only; one bigger than the bound goes alone rather than waiting forever.
    assert [[len(request) for request in round_] for round_ in held.rounds] == [
        [1],
        [4, 5],
        [3],
        [12],
        [1],
    ]


def test_a_failed_round_fails_each_of_its_requests_and_the_next_round_is_served(
    held: Held, gatherer: Gatherer[list[int], int]
) -> None:
    held.release.set()
    failed = gatherer.submit([-1])
    with pytest.raises(ValueError, match="cannot serve"):
        failed.result(timeout=10)
    assert gatherer.submit([2, 3]).result(timeout=10) == 5


def test_closing_serves_what_is_pending_then_refuses_more(held: Held) -> None:
    gatherer: Gatherer[list[int], int] = Gatherer("test-gatherer", held, len, 10)
    first = gatherer.submit([1])
    wait_for(lambda: len(held.rounds) == 1)
    pending = gatherer.submit([2])
    closing = threading.Thread(target=gatherer.close)
    closing.start()
    held.release.set()
    closing.join(timeout=10)
    assert not closing.is_alive()
    assert (first.result(timeout=1), pending.result(timeout=1)) == (1, 2)
    with pytest.raises(RuntimeError, match="shutting down"):
        gatherer.submit([3])


def test_work_after_a_round_waits_for_its_callers_and_runs_after_a_failure_too(
    held: Held,
) -> None:
    after: list[list[list[int]]] = []
    callers_answered = threading.Event()

    def then(requests: list[list[int]]) -> None:
        # The round's callers have their answers before this runs, not after it.
        assert callers_answered.wait(timeout=10)
        after.append(requests)
        if [-2] in requests:
            raise RuntimeError("the work after this round fails")

    gatherer: Gatherer[list[int], int] = Gatherer("test-gatherer", held, len, 10, then=then)
    held.release.set()
    try:
        assert gatherer.submit([2, 3]).result(timeout=10) == 5
        callers_answered.set()
        with pytest.raises(ValueError, match="cannot serve"):
            gatherer.submit([-1]).result(timeout=10)
        # Failing work after a round is logged; the rounds after it are served.
        gatherer.submit([-2]).result(timeout=10)
        assert gatherer.submit([4]).result(timeout=10) == 4
        wait_for(lambda: len(after) == 4)
    finally:
        gatherer.close()
    assert after == [[[2, 3]], [[-1]], [[-2]], [[4]]]


def test_with_two_threads_what_gathers_during_a_round_goes_out_at_once(held: Held) -> None:
    gatherer: Gatherer[list[int], int] = Gatherer("test-gatherer", held, len, 10, threads=2)
    try:
        first = gatherer.submit([1])
        wait_for(lambda: len(held.rounds) == 1)
        # The first round is held; the second thread serves what comes meanwhile.
        assert gatherer.submit([2, 3]).result(timeout=10) == 5
        assert not first.done()
        held.release.set()
        assert first.result(timeout=10) == 1
    finally:
        gatherer.close()
    assert held.rounds == [[[1]], [[2, 3]]]


def test_closing_with_two_threads_serves_everything_pending(held: Held) -> None:
    gatherer: Gatherer[list[int], int] = Gatherer("test-gatherer", held, len, 1, threads=2)
    futures = [gatherer.submit([value]) for value in range(1, 6)]
    wait_for(lambda: len(held.rounds) >= 1)
    closing = threading.Thread(target=gatherer.close)
    closing.start()
    held.release.set()
    closing.join(timeout=10)
    assert not closing.is_alive()
    assert [future.result(timeout=1) for future in futures] == [1, 2, 3, 4, 5]
    assert sorted(request for round_ in held.rounds for request in round_) == [
        [1],
        [2],
        [3],
        [4],
        [5],
    ]
