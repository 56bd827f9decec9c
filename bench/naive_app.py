"""The naive per-event Faust agent of bench/throughput.py (mode 2).

Written the way introductory Faust examples are: one message at a time, the value
deserialised by Faust, the state table assigned per event, one database transaction per
message. It does the same work as the roadsense stage 1 (decode + validate, pseudonymise,
``process_frame``, state, database) so that the comparison is about the plumbing.

Run: ``python bench/naive_app.py`` with the ``ROADSENSE_*`` variables of the pipeline.
"""

from __future__ import annotations

import atexit
import time

import faust

from agents.passes import VehicleState, process_frame
from pipeline import db, sink
from pipeline.pseudonym import Pseudonymiser
from pipeline.settings import load_settings
from pipeline.stats import WorkerStats
from roadnet import load_network
from schemas.bundle import is_bundle, split_bundle
from schemas.frame import decode_frame

settings = load_settings()
net = load_network(settings.network_path)
pseudo = Pseudonymiser(settings.pseudonym_key.get_secret_value())
stats = WorkerStats(settings.stats_file, every=200)
atexit.register(stats.dump)
app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    store="memory://",
    datadir=str(settings.data_dir),  # not ``{app_id}-data`` in the working directory
    topic_partitions=settings.partitions,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
)
frames = app.topic(settings.frames_topic, value_type=bytes, value_serializer="raw", key_serializer="raw")
state_table = app.Table("naive_state", default=None, value_type=bytes, partitions=settings.partitions)
conn = db.connect(settings.pg_dsn.get_secret_value())


@app.agent(frames)
async def naive(stream):
    async for value in stream:
        # a bundle (bench/throughput.py --bundle) is taken apart and its frames handled
        # one after the other, each as a message would be
        for raw in (split_bundle(value) if is_bundle(value) else (value,)):
            try:
                frame = decode_frame(raw)
            except Exception:
                stats.record(kafka_ts_ms=None, samples=0, passes=0, vehicle=None, dead=True)
                continue
            key = pseudo(frame.vehicle_id)
            raw_state = state_table.get(key)
            st = None if raw_state is None else VehicleState.from_bytes(raw_state)
            res = process_frame(st, frame, net, vehicle=key)
            t0 = time.monotonic()
            sink.write_results(conn, res.passes, res.events)  # a transaction per frame, waited for
            stats.commit_wait_s += time.monotonic() - t0
            state_table[key] = res.state.to_bytes()
            stats.record(kafka_ts_ms=None, samples=int(frame.t_s.size), passes=len(res.passes), vehicle=key,
                         dead=False)


if __name__ == "__main__":
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
