"""gc_paused: the cyclic collector is paused inside, restored after, and a user's choice kept."""

from __future__ import annotations

import gc
import threading

import pytest

from ckptlab.core import gc_paused
from ckptlab.core._gc import PROMOTE_ABOVE


@pytest.fixture(autouse=True)
def _collector_enabled():
    gc.enable()
    yield
    gc.enable()


def test_nested_blocks_resume_collection_only_at_the_outermost_end():
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_still_resumes_collection():
    with pytest.raises(KeyError), gc_paused():
        raise KeyError("boom")
    assert gc.isenabled()


def test_a_collector_the_user_disabled_stays_disabled():
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_blocks_in_two_threads_resume_when_the_last_ends():
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    with gc_paused():
        pass
    assert not gc.isenabled()  # the other thread's block is still running
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_many_objects_built_inside_go_to_the_oldest_generation():
    with gc_paused():
        built = [[] for _ in range(PROMOTE_ABOVE + 1_000)]
    # not left young, where the next collections would examine every one of them again
    assert any(o is built for o in gc.get_objects(generation=2))


def test_a_small_block_leaves_the_generations_alone():
    gc.collect()
    with gc_paused():
        built = [[] for _ in range(100)]
    assert not any(o is built for o in gc.get_objects(generation=2))


def test_objects_a_program_froze_stay_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            pass
        # not unfrozen (the count would drop to 0) nor frozen further (it would grow); threads
        # other tests left running may free a few frozen objects meanwhile
        assert frozen - 1000 <= gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
