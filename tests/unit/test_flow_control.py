"""The worker's flow control: resuming a running flow keeps what the agents' queues hold
(``pipeline.app._resume_keeps_queued_records``; the end-to-end check is
``tests/integration/test_pipeline.py::test_records_fetched_while_the_streams_resume_are_all_processed``)."""

import asyncio

import pytest
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from pipeline.app import _resume_keeps_queued_records


@pytest.fixture
def patched(monkeypatch):
    # the patch is process-wide: undo it after the test
    monkeypatch.setattr(FlowControlEvent, "resume", FlowControlEvent.resume)
    _resume_keeps_queued_records()


def _queue_after(*steps: str) -> list[str]:
    """Records left in an agent-like queue (cleared on resume) after ``steps``:
    ``put:x`` queues a record, ``resume`` and ``suspend`` drive the flow."""

    async def run() -> list[str]:
        flow = FlowControlEvent()  # suspended, as an app's flow starts
        q: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        for step in steps:
            if step.startswith("put:"):
                q.put_nowait(step[4:])
            else:
                getattr(flow, step)()
        return [q.get_nowait() for _ in range(q.qsize())]

    return asyncio.run(run())


def test_fausts_resume_of_a_running_flow_drops_what_is_queued():
    # what Faust's recovery does after its seek (the record was lost)
    assert _queue_after("resume", "put:r1", "resume") == []


def test_resuming_a_running_flow_keeps_the_queued_records(patched):
    assert _queue_after("resume", "put:r1", "resume") == ["r1"]


def test_ending_a_suspension_still_empties_the_queues(patched):
    # records queued before a revocation belong to the assignment that was revoked
    assert _queue_after("resume", "put:old", "suspend", "resume") == []
    assert _queue_after("resume", "put:old", "suspend", "resume", "put:new", "resume") == ["new"]


def test_installing_it_twice_does_not_stack_wrappers(patched):
    first = FlowControlEvent.resume
    _resume_keeps_queued_records()
    assert FlowControlEvent.resume is first
