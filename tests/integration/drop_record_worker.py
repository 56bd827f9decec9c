"""A roadsense worker whose consumer drops one fetched record before it reaches the agent.

``python tests/integration/drop_record_worker.py TOPIC PARTITION OFFSET`` with the worker's
``ROADSENSE_*`` environment. The record at ``OFFSET`` is fetched and counted as read by
Faust, then not handed to the agent's queue, the first time it comes: what Faust 0.15's
resume did to a queued record (docs/decisions.md, "A record dropped between the seek and
the resume"). Everything else is the worker of ``roadsense worker``.
"""

import sys

from faust.transport.conductor import Conductor

from pipeline.cli import main


def drop_once(topic: str, partition: int, offset: int) -> None:
    compile_handler = Conductor._compile_message_handler
    dropped: list[int] = []

    def _compile_message_handler(self):
        on_message = compile_handler(self)

        async def drop_or_deliver(message) -> None:
            if not dropped and (message.topic, message.partition, message.offset) == (topic, partition, offset):
                dropped.append(offset)
                print(f"drop_record_worker: dropped {topic}[{partition}]@{offset}", flush=True)
                return None
            return await on_message(message)

        return drop_or_deliver

    Conductor._compile_message_handler = _compile_message_handler  # type: ignore[method-assign]


if __name__ == "__main__":
    drop_once(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    sys.exit(main(["worker"]))
