"""Worker counters and end-to-end latencies, written to a JSON file for benches and ops.

Latency of a frame = the time its offset is acknowledged (its results already committed in
the database) minus the Kafka timestamp of the message (CreateTime, set by the producer).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import orjson

__all__ = ["WorkerStats"]


class WorkerStats:
    """Counters plus a bounded reservoir of recent latencies (seconds)."""

    def __init__(self, path: Path | None, *, keep: int = 200_000, every: int = 500, keep_s: int = 7200) -> None:
        self.path = path
        self.keep_s = keep_s
        # samples per wall-clock second (epoch s -> samples): the sustained rate once every
        # worker of a group is running, without the group's start and end
        self.samples_by_s: dict[int, int] = {}
        # process CPU seconds (all threads) at the first frame of each of those seconds:
        # how busy the worker was over any stretch of them
        self.cpu_at_s: dict[int, float] = {}
        # seconds stage 1 spent in its batch commit (database, producer flush, acks), in
        # total and at the first frame of each second: the share of a stretch its agent
        # waited on the commit instead of reading frames
        self.commit_wait_s = 0.0
        self.commit_wait_at_s: dict[int, float] = {}
        self.every = every
        self.keep = keep
        self.latency_s: list[float] = []
        self.frames = 0
        self.samples = 0
        self.dead_letters = 0
        self.offsets_skipped = 0  # records the consumer dropped before the agent (pipeline.offset_holes)
        self.offsets_expired = 0  # records the broker deleted before the group read them
        self.passes = 0
        self.first_t = None
        self.last_t = None
        self.vehicles: set[str] = set()

    def record(self, *, kafka_ts_ms: float | None, samples: int, passes: int, vehicle: str | None, dead: bool) -> None:
        now = time.time()
        if self.first_t is None:
            self.first_t = now
        self.last_t = now
        self.frames += 1
        self.samples += samples
        sec = int(now)
        if sec not in self.samples_by_s:
            self.cpu_at_s[sec] = time.process_time()
            self.commit_wait_at_s[sec] = self.commit_wait_s
        self.samples_by_s[sec] = self.samples_by_s.get(sec, 0) + samples
        if len(self.samples_by_s) > self.keep_s:  # seconds arrive in order: the first key is the oldest
            oldest = next(iter(self.samples_by_s))
            del self.samples_by_s[oldest]
            self.cpu_at_s.pop(oldest, None)
            self.commit_wait_at_s.pop(oldest, None)
        self.passes += passes
        self.dead_letters += int(dead)
        if vehicle is not None:
            self.vehicles.add(vehicle)
        if kafka_ts_ms:
            self.latency_s.append(now - kafka_ts_ms / 1000.0)
            if len(self.latency_s) > self.keep:
                del self.latency_s[: len(self.latency_s) - self.keep]
        if self.path is not None and self.frames % self.every == 0:
            self.dump()

    def dump(self) -> None:
        if self.path is None:
            return
        lat = np.asarray(self.latency_s, float)
        doc = {
            "pid": os.getpid(),
            "frames": self.frames,
            "samples": self.samples,
            "passes": self.passes,
            "dead_letters": self.dead_letters,
            "offsets_skipped": self.offsets_skipped,
            "offsets_expired": self.offsets_expired,
            "vehicles": len(self.vehicles),
            "first_t": self.first_t,
            "last_t": self.last_t,  # time of the last recorded frame
            "latency_p50_s": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_p99_s": float(np.percentile(lat, 99)) if lat.size else None,
            "latency_s": lat[-20000:].round(4).tolist(),
            "samples_by_s": sorted(self.samples_by_s.items()),
            "cpu_at_s": sorted(self.cpu_at_s.items()),
            "commit_wait_s": self.commit_wait_s,
            "commit_wait_at_s": sorted(self.commit_wait_at_s.items()),
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(doc))
        tmp.replace(self.path)
