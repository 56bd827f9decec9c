"""A roadsense worker that pauses after every seek of its streams to the committed offsets.

``python tests/integration/seek_pause_worker.py SECONDS`` with the worker's ``ROADSENSE_*``
environment. The pause widens the window between Faust's seek after a rebalance and its
resume of the streams, in which a fetched record used to be dropped
(``pipeline.app._resume_keeps_queued_records``); everything else is the worker of
``roadsense worker``. The stream partitions are resumed when the seek is done
(``pipeline.app._seek_before_resuming_streams``), so the pause comes after that: the
fetcher runs during it.
"""

import asyncio
import sys

from faust.transport.consumer import Consumer

from pipeline.app import _seek_before_resuming_streams
from pipeline.cli import main


def pause_after_seek(seconds: float) -> None:
    _seek_before_resuming_streams()  # installed first: the pause wraps the seek and the resume
    seek = Consumer.perform_seek

    async def perform_seek(self) -> None:
        await seek(self)
        await asyncio.sleep(seconds)

    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


if __name__ == "__main__":
    pause_after_seek(float(sys.argv[1]))
    sys.exit(main(["worker"]))
