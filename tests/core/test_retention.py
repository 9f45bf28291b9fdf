"""Retention and interval rules as tables of cases (docs/semantics.md S82-S88)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptlab.core._retention import (
    HOUR,
    RetentionPolicy,
    RetentionState,
    interval_allows,
    record_save,
    recover,
    sweep,
    validate_policy,
)
from ckptlab.core._statefile import CheckpointState


def state(*entries, last_preserved=0.0):
    return RetentionState(active=tuple(entries), last_preserved=last_preserved)


@pytest.mark.parametrize(
    ("max_to_keep", "hours", "message"),
    [
        (0, None, "Expected a positive integer or `None` for `max_to_keep`, got 0."),
        (-3, None, "Expected a positive integer or `None` for `max_to_keep`, got -3."),
        (True, None, "Expected a positive integer or `None` for `max_to_keep`, got True."),
        (2, -1.0, "non-negative number of hours"),
    ],
)
def test_constructor_errors_use_tf_wording(max_to_keep, hours, message):
    """S82."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_policy(max_to_keep, hours)


@pytest.mark.parametrize(
    ("max_to_keep", "hours", "expected"),
    [
        (None, None, RetentionPolicy(max_to_keep=None)),
        (3, None, RetentionPolicy(max_to_keep=3)),
        (3, 0, RetentionPolicy(max_to_keep=3)),  # 0 hours disables preservation, as in TF
        (1, 0.5, RetentionPolicy(max_to_keep=1, keep_every_n_hours=0.5)),
    ],
)
def test_valid_policies(max_to_keep, hours, expected):
    assert validate_policy(max_to_keep, hours) == expected


@pytest.mark.parametrize(
    ("before", "policy", "paths", "delete", "preserve", "last_preserved"),
    [
        # max_to_keep=None keeps everything (S85)
        (state(("a", 1), ("b", 2), ("c", 3)), RetentionPolicy(max_to_keep=None), "abc", "", "", 0),
        # the oldest beyond max_to_keep go, oldest first
        (state(("a", 1), ("b", 2), ("c", 3)), RetentionPolicy(max_to_keep=1), "c", "ab", "", 0),
        (state(("a", 1), ("b", 2)), RetentionPolicy(max_to_keep=2), "ab", "", "", 0),
        # keep_every_n_hours: evicted entry preserved iff stamp >= last_preserved + N (S87)
        (
            state(("a", 1 * HOUR), ("b", 2 * HOUR), last_preserved=0.0),
            RetentionPolicy(max_to_keep=1, keep_every_n_hours=1.0),
            "b",
            "",
            "a",
            1 * HOUR,
        ),
        (
            state(("a", 0.5 * HOUR), ("b", 2 * HOUR), last_preserved=0.0),
            RetentionPolicy(max_to_keep=1, keep_every_n_hours=1.0),
            "b",
            "a",
            "",
            0,
        ),
        # the last-preserved time moves during one sweep: the second eviction compares to the first
        (
            state(("a", 1.0 * HOUR), ("b", 1.5 * HOUR), ("c", 2.0 * HOUR), ("d", 3.0 * HOUR)),
            RetentionPolicy(max_to_keep=1, keep_every_n_hours=1.0),
            "d",
            "b",
            "ac",
            2.0 * HOUR,
        ),
    ],
)
def test_sweep(before, policy, paths, delete, preserve, last_preserved):
    """S85, S87."""
    result = sweep(before, policy)
    assert result.state.paths == tuple(paths)
    assert result.delete == tuple(delete)
    assert result.preserve == tuple(preserve)
    assert result.state.last_preserved == last_preserved


def test_keep_every_n_hours_scenario():
    """S87: saves every 0.4 h, N=1 h, max_to_keep=2."""
    policy = RetentionPolicy(max_to_keep=2, keep_every_n_hours=1.0)
    current = recover(None, now=0.0).state
    preserved: list[str] = []
    for number in range(1, 9):
        current = record_save(current, f"ckpt-{number}", number * 0.4 * HOUR)
        result = sweep(current, policy)
        current = result.state
        preserved += result.preserve
    assert preserved == ["ckpt-3", "ckpt-6"]
    assert current.paths == ("ckpt-7", "ckpt-8")
    assert current.last_preserved == pytest.approx(2.4 * HOUR)


@pytest.mark.parametrize(
    ("active", "path", "expected"),
    [
        ((), "a", "a"),
        ((("a", 1),), "b", "ab"),
        ((("a", 1), ("b", 2), ("c", 3)), "a", "bca"),  # re-saving moves to the newest end
        ((("a", 1), ("b", 2)), "b", "ab"),
    ],
)
def test_record_save(active, path, expected):
    """S86."""
    after = record_save(state(*active), path, 9.0)
    assert after.paths == tuple(expected)
    assert after.active[-1] == (path, 9.0)


@pytest.mark.parametrize(
    ("saved", "now", "latest", "paths", "last_preserved", "behind"),
    [
        (None, 100.0, None, (), 99.0, 0.0),
        # full manager state file
        (
            CheckpointState(
                latest="c-4", all_paths=("c-3", "c-4"), timestamps=(50.0, 60.0), last_preserved=10.0
            ),
            100.0,
            "c-4",
            ("c-3", "c-4"),
            10.0,
            0.0,
        ),
        # written by Checkpoint.save: no timestamps, no last-preserved -> nothing is managed
        (CheckpointState(latest="c-1", all_paths=("c-1",)), 100.0, "c-1", (), 0.0, 0.0),
        # entries at or before the last preserved time are not managed
        (
            CheckpointState(
                latest="c-2", all_paths=("c-1", "c-2"), timestamps=(10.0, 20.0), last_preserved=10.0
            ),
            100.0,
            "c-2",
            ("c-2",),
            10.0,
            0.0,
        ),
        # the clock went back: last-preserved and timestamps are clamped to now, so nothing
        # recovered is managed (never deleted by mistake)
        (
            CheckpointState(
                latest="c-2", all_paths=("c-1", "c-2"), timestamps=(30.0, 80.0), last_preserved=60.0
            ),
            50.0,
            "c-2",
            (),
            50.0,
            10.0,
        ),
    ],
)
def test_recover(saved, now, latest, paths, last_preserved, behind):
    """S83."""
    recovered = recover(saved, now)
    assert recovered.latest == latest
    assert recovered.state.paths == paths
    assert recovered.state.last_preserved == last_preserved
    assert recovered.clock_went_back == behind


def test_recover_clamps_future_timestamps():
    saved = CheckpointState(
        latest="b", all_paths=("a", "b"), timestamps=(5.0, 500.0), last_preserved=1.0
    )
    assert recover(saved, now=100.0).state.timestamps == (5.0, 100.0)


@pytest.mark.parametrize(
    ("last_step", "step", "interval", "check", "allowed"),
    [
        (None, 0, 5, True, True),  # the first save always happens
        (None, 7, None, True, True),  # no interval: always
        (0, 4, 5, True, False),
        (0, 5, 5, True, True),
        (0, 12, 5, True, True),
        (10, 10, 5, False, False),  # same step: never, even with check_interval=False
        (10, 11, 5, False, True),  # check_interval=False forces
        (10, 11, 5, True, False),
    ],
)
def test_interval_allows(last_step, step, interval, check, allowed):
    """S88."""
    assert interval_allows(last_step, step, interval, check_interval=check) is allowed


def test_interval_scenario():
    """S88: interval 5, steps 0..12 save at 0, 5, 10."""
    last = None
    saved = []
    for step in range(13):
        if interval_allows(last, step, 5, check_interval=True):
            saved.append(step)
            last = step
    assert saved == [0, 5, 10]


@settings(max_examples=200, deadline=None)
@given(
    max_to_keep=st.one_of(st.none(), st.integers(1, 4)),
    hours=st.one_of(st.none(), st.floats(0.1, 3.0)),
    saves=st.lists(st.tuples(st.integers(1, 6), st.floats(0.0, 2.0)), max_size=30),
)
def test_retention_invariants(max_to_keep, hours, saves):
    """Random save sequences (re-saved numbers, random gaps): what every sweep must guarantee."""
    policy = RetentionPolicy(max_to_keep=max_to_keep, keep_every_n_hours=hours)
    now = 0.0
    current = recover(None, now).state
    preserved_at = []
    for number, gap in saves:
        now += gap * HOUR
        before = record_save(current, f"ckpt-{number}", now)
        result = sweep(before, policy)
        current = result.state
        assert current.paths[-1] == f"ckpt-{number}"  # the newest save is never evicted
        assert len(set(current.paths)) == len(current.paths)
        if max_to_keep is not None:
            assert len(current.paths) <= max_to_keep
        # evicted = deleted + preserved, oldest first, and the kept ones are the newest
        assert before.paths == (*sorted_evictions(before, result), *current.paths)
        assert list(current.timestamps) == sorted(current.timestamps)
        preserved_at += [dict(before.active)[p] for p in result.preserve]
    if hours is not None:
        gaps = [b - a for a, b in itertools.pairwise(preserved_at)]
        assert all(g >= hours * HOUR - 1e-6 for g in gaps)


def sorted_evictions(before, result):
    evicted = set(result.delete) | set(result.preserve)
    return tuple(p for p in before.paths if p in evicted)
