"""A roadsense worker whose consumer drops, or hands over late, one fetched record.

``python tests/integration/drop_record_worker.py TOPIC PARTITION OFFSET [drop|late]`` with
the worker's ``ROADSENSE_*`` environment. The first time the record at ``OFFSET`` comes,
Faust counts it as read and:

* ``drop`` (default): it never reaches the agent's queue, as Faust 0.15's resume did to a
  queued record (docs/decisions.md, "A record dropped between the seek and the resume");
* ``late``: it reaches the queue after the next record of its partition, as a record
  fetched before a seek and handed over after it does.

Everything else is the worker of ``roadsense worker``.
"""

import sys

from faust.transport.conductor import Conductor

from pipeline.cli import main


def intercept_once(topic: str, partition: int, offset: int, mode: str = "drop") -> None:
    compile_handler = Conductor._compile_message_handler
    held: list = []
    done: list[bool] = []

    def _compile_message_handler(self):
        on_message = compile_handler(self)

        async def intercept(message) -> None:
            if not done and (message.topic, message.partition, message.offset) == (topic, partition, offset):
                done.append(True)
                print(f"drop_record_worker: {mode} {topic}[{partition}]@{offset}", flush=True)
                if mode == "late":
                    held.append(message)
                return None
            await on_message(message)
            if held and (message.topic, message.partition) == (topic, partition):
                await on_message(held.pop())

        return intercept

    Conductor._compile_message_handler = _compile_message_handler  # type: ignore[method-assign]


if __name__ == "__main__":
    intercept_once(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:5])
    sys.exit(main(["worker"]))
