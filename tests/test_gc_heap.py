"""The startup heap frozen out of the collector's walks, and every collection's pause counted."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from vqueue.gc_heap import GcPauses, freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the rest of the suite its heap back as it was."""
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_pauses_are_counted_by_generation_and_stop_when_uninstalled() -> None:
    pauses = GcPauses().install()
    try:
        gc.collect(2)
        gc.collect(0)
        taken = pauses.snapshot()
    finally:
        pauses.uninstall()
    assert taken["collections"][2] >= 1
    assert taken["collections"][0] >= 1
    assert taken["pause_ms"][2] > 0
    assert 0 < taken["longest_ms"][2] <= taken["pause_ms"][2]
    gc.collect(2)
    assert pauses.snapshot()["collections"][2] == taken["collections"][2]


def test_only_notable_pauses_are_kept_with_their_time() -> None:
    pauses = GcPauses()
    pauses._observe("start", {"generation": 0})
    pauses._observe("stop", {"generation": 0})  # microseconds: counted, not kept
    pauses._started = -1.0  # a collection that began long ago
    pauses._observe("stop", {"generation": 2})
    taken = pauses.snapshot()
    assert taken["collections"] == [1, 0, 1]
    ((_, generation, ms),) = taken["recent"]
    assert generation == 2
    assert ms > 1


def test_a_stop_without_its_start_is_ignored() -> None:
    pauses = GcPauses()
    pauses._observe("stop", {"generation": 1})  # installed during a collection
    assert pauses.snapshot()["collections"] == [0, 0, 0]


def test_freezing_takes_the_live_heap_out_of_full_collections(unfrozen: None) -> None:
    kept = [Node() for _ in range(20_000)]
    tracked_before = len(gc.get_objects())
    frozen = freeze_startup_heap()
    assert frozen >= len(kept)
    assert len(gc.get_objects()) < tracked_before - len(kept)
    # What is made afterwards is still collected, cycles included.
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None


def test_the_snapshot_reports_the_frozen_count_without_walking_the_heap(
    unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = freeze_startup_heap()

    def walk() -> int:
        raise AssertionError("gc.get_freeze_count() walks every frozen object, GIL held")

    # Heartbeats take a snapshot every few seconds; a walk there stalled the whole worker.
    monkeypatch.setattr(gc, "get_freeze_count", walk)
    assert GcPauses().snapshot()["frozen_objects"] == frozen
