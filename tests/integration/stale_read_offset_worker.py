"""A roadsense worker that keeps a stale read offset across a rebalance and pauses before
each seek of its streams.

``python tests/integration/stale_read_offset_worker.py SECONDS FRAME_DELAY [START_FILE]``
with the worker's ``ROADSENSE_*`` environment: FRAME_DELAY seconds are added to the
handling of every frame, so that a small fleet keeps the worker busy (fetching far ahead of
its commits) while a second one starts; with START_FILE, the worker starts once that file
exists.

When its partitions are assigned again, each frames partition this worker fetched in an
earlier generation gets, as its read offset, the highest offset fetched then. That is what
Faust's drain loop leaves behind when a revocation cuts short the delivery of a record: it
marks the record read after the revocation has forgotten the partition's offsets. The pause
before the seek (SECONDS) lets the fetcher run if the partitions are resumed before the
seek (``pipeline.app._seek_before_resuming_streams`` resumes them after it). After each
seek the worker logs "stale read offset H above the committed C of topic[p]" for every
partition whose injected offset was above the committed one: the records in between are
the ones the stale offset would have dropped. Everything else is ``roadsense worker``.
"""

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from faust.transport.consumer import Consumer

import pipeline.stage1
from pipeline.cli import main

log = logging.getLogger("stale_read_offset_worker")


def stale_read_offsets(seconds: float) -> None:
    frames = os.environ["ROADSENSE_FRAMES_TOPIC"]
    fetched: dict = {}
    injected: dict = {}
    getmany, assigned, seek = Consumer.getmany, Consumer.on_partitions_assigned, Consumer.perform_seek

    async def getmany_recording(self, timeout: float):
        async for tp, message in getmany(self, timeout):
            if tp.topic == frames:
                fetched[tp] = max(fetched.get(tp, -1), message.offset)
            yield tp, message

    async def on_partitions_assigned(self, tps, generation_id: int = 0) -> None:
        injected.clear()
        for tp in tps:
            if tp in fetched:
                self._read_offset[tp] = injected[tp] = fetched[tp]
        await assigned(self, tps, generation_id)

    async def perform_seek(self) -> None:
        await asyncio.sleep(seconds)
        await seek(self)
        for tp, stale in injected.items():
            # set by the seek (the read offset may have moved on since, if the fetcher runs)
            committed = self._committed_offset.get(tp)
            if committed is not None and stale > committed:
                log.warning("stale read offset %d above the committed %d of %s[%d]", stale, committed, tp.topic,
                            tp.partition)
        injected.clear()

    Consumer.getmany = getmany_recording  # type: ignore[method-assign]
    Consumer.on_partitions_assigned = on_partitions_assigned  # type: ignore[method-assign]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


def slow_frames(delay_s: float) -> None:
    handle = pipeline.stage1.FrameHandler.handle

    def slow_handle(self, *args, **kwargs):
        time.sleep(delay_s)
        return handle(self, *args, **kwargs)

    pipeline.stage1.FrameHandler.handle = slow_handle  # type: ignore[method-assign]


if __name__ == "__main__":
    stale_read_offsets(float(sys.argv[1]))
    slow_frames(float(sys.argv[2]))
    if len(sys.argv) > 3:
        while not Path(sys.argv[3]).exists():
            time.sleep(0.05)
    sys.exit(main(["worker"]))
