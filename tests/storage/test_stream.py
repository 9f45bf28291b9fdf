"""The process's helper thread (``_stream.shared_helper``): split work never waits for itself."""

from __future__ import annotations

import threading

from ckptlab.storage import _stream


def test_work_split_from_a_helper_job_runs_inline():
    """A job on the helper that splits work of its own (both halves of ``in_two_halves``, or
    checksums offered to the helper) runs it inline, in order, instead of deadlocking."""
    ran: list[tuple[str, str]] = []

    def note(what: str) -> None:
        ran.append((what, threading.current_thread().name))

    def job() -> bool:
        _stream.in_two_halves(lambda: note("here"), lambda: note("there"))
        checksums = _stream.Checksums(2**40, threshold=0)
        checksums.run(lambda: note("checksum"))
        checksums.wait()
        return _stream.on_helper()

    assert _stream.shared_helper().submit(job).result(timeout=60) is True
    helper = ran[0][1]
    assert ran == [("here", helper), ("there", helper), ("checksum", helper)]
    assert helper != threading.current_thread().name and not _stream.on_helper()

    ran.clear()  # from any other thread, the second half and the checksums go to the helper
    _stream.in_two_halves(lambda: note("here"), lambda: note("there"))
    checksums = _stream.Checksums(2**40, threshold=0)
    checksums.run(lambda: note("checksum"))
    checksums.wait()
    assert sorted(ran) == sorted(
        [("here", threading.current_thread().name), ("there", helper), ("checksum", helper)]
    )
