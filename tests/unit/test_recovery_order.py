"""Faust's recovery seeks the stream partitions before it resumes them
(``pipeline.app._seek_before_resuming_streams``; the end-to-end check is
``tests/integration/test_pipeline.py::test_a_stale_read_offset_kept_across_a_rebalance_drops_nothing``)."""

import asyncio
from types import SimpleNamespace

import pytest
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.types import TP

from pipeline.app import _hold_resumes, _seek_before_resuming_streams

A, B = TP("vehicle.frames", 0), TP("vehicle.frames", 1)


@pytest.fixture
def patched(monkeypatch):
    # the patch is process-wide: undo it after the test
    for cls, name in ((Consumer, "resume_partitions"), (Consumer, "perform_seek"),
                      (Recovery, "on_recovery_completed"), (Recovery, "_resume_streams")):
        monkeypatch.setattr(cls, name, getattr(cls, name))
    _seek_before_resuming_streams()


class _Consumer:
    """What Faust's own ``resume_partitions`` and ``perform_seek`` use of a consumer."""

    def __init__(self) -> None:
        self.active: set = set()
        self._paused_partitions = {A, B}
        self._read_offset: dict = {}
        self._committed_offset: dict = {}
        self.fetching_at_seek: list = []

    def _get_active_partitions(self) -> set:
        return self.active

    async def seek_to_committed(self) -> dict:
        self.fetching_at_seek.append(set(self.active))
        return {A: 5, B: 7}


def _run_step(step) -> _Consumer:
    consumer = _Consumer()
    asyncio.run(_hold_resumes(step)(SimpleNamespace(app=SimpleNamespace(consumer=consumer))))
    return consumer


def test_outside_recovery_a_resume_is_immediate(patched):
    c = _Consumer()
    Consumer.resume_partitions(c, {A})
    assert c.active == {A} and c._paused_partitions == {B}


def test_in_a_recovery_step_the_partitions_resume_once_the_seek_is_done(patched):
    seen = []

    async def step(recovery):  # the order of Faust's on_recovery_completed
        c = recovery.app.consumer
        Consumer.resume_partitions(c, {A, B})
        seen.append(set(c.active))
        await Consumer.perform_seek(c)
        seen.append(set(c.active))

    c = _run_step(step)
    assert seen == [set(), {A, B}]
    assert c.fetching_at_seek == [set()]  # nothing fetched the partitions before the seek
    assert c._read_offset == {A: 5, B: 7}  # the seek set where their first fetch starts


def test_a_resume_after_the_seek_waits_for_the_next_seek_or_the_end_of_the_step(patched):
    seen = []

    async def step(recovery):
        c = recovery.app.consumer
        await Consumer.perform_seek(c)  # a seek from elsewhere (getmany's idle path)
        Consumer.resume_partitions(c, {A})
        seen.append(set(c.active))

    c = _run_step(step)
    assert seen == [set()]  # held after that seek
    assert c.active == {A}  # released when the step ended


def test_a_step_that_ends_without_a_seek_releases_what_it_held(patched):
    async def step(recovery):
        Consumer.resume_partitions(recovery.app.consumer, {B})
        raise asyncio.TimeoutError  # e.g. the seek's request timed out

    consumer = _Consumer()
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(_hold_resumes(step)(SimpleNamespace(app=SimpleNamespace(consumer=consumer))))
    assert consumer.active == {B}
    Consumer.resume_partitions(consumer, {A})  # and holds nothing after it
    assert consumer.active == {A, B}


def test_installed_once(patched):
    step = Recovery.on_recovery_completed
    _seek_before_resuming_streams()
    assert Recovery.on_recovery_completed is step
