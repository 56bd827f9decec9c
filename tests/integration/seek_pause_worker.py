"""A roadsense worker that pauses after every seek of its streams to the committed offsets.

``python tests/integration/seek_pause_worker.py SECONDS`` with the worker's ``ROADSENSE_*``
environment. The pause widens the window between Faust's seek after a rebalance and its
resume of the streams, in which a fetched record used to be dropped
(``pipeline.app._resume_keeps_queued_records``); everything else is the worker of
``roadsense worker``.
"""

import asyncio
import sys

from faust.transport.consumer import Consumer

from pipeline.cli import main


def pause_after_seek(seconds: float) -> None:
    seek = Consumer.perform_seek

    async def perform_seek(self) -> None:
        await seek(self)
        await asyncio.sleep(seconds)

    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


if __name__ == "__main__":
    pause_after_seek(float(sys.argv[1]))
    sys.exit(main(["worker"]))
