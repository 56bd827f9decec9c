"""Replay trace files into Kafka as frames (topic ``vehicle.frames``, key = vehicle id).

Each vehicle's trace is cut by ``schemas.tracefile.iter_frames`` (the cut the offline scorer
uses too); frames of all vehicles are sent in order of their last sample time, so the topic
looks like a live fleet. Per vehicle the order is kept (one key, one partition).

With ``bundle=N`` the replay plays an ingestion gateway: frames are packed per partition
into bundles of up to N (``schemas.bundle``), each sent to its partition once full, once
``MAX_BUNDLE_BYTES`` would be passed, or (paced replays) once its first frame has waited
``bundle_wait_s``.
"""

from __future__ import annotations

import heapq
import importlib.util
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from schemas.bundle import MAX_BUNDLE_BYTES, encode_bundle, partition_of
from schemas.frame import DEFAULT_FRAME_ENCODING, FRAME_ENCODINGS, FrameEncoding, encode_frame
from schemas.tracefile import frame_windows, iter_frames, read_traces
from simulator._errors import ReplayError

__all__ = ["Bundler", "ReplayResult", "replay", "DEFAULT_TOPIC", "producer_config"]

DEFAULT_TOPIC = "vehicle.frames"


class ReplayResult(NamedTuple):
    frames: int
    samples: int
    messages: int
    """Kafka messages sent: ``frames`` unless frames were bundled."""


def producer_config(bootstrap: str, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """kafka-python producer settings of the replay (timeouts on every I/O)."""
    ms = int(timeout_s * 1000)
    return {
        "bootstrap_servers": bootstrap,
        "client_id": "roadsense-replay",
        "acks": "all",
        "linger_ms": 10,
        "batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "compression_type": "lz4" if importlib.util.find_spec("lz4") else None,
        "bootstrap_timeout_ms": ms,
        "max_block_ms": ms,
        "request_timeout_ms": ms,
        "delivery_timeout_ms": max(3 * ms, 30_000),
        "retries": 5,
    }


def replay(
    paths: str | Path | Iterable[str | Path],
    bootstrap: str,
    topic: str = DEFAULT_TOPIC,
    *,
    frame_s: float = 2.0,
    speedup: float = 0.0,
    progress: bool = True,
    timeout_s: float = 10.0,
    bundle: int = 0,
    bundle_wait_s: float = 1.0,
    encoding: FrameEncoding = DEFAULT_FRAME_ENCODING,
) -> ReplayResult:
    """Send trace files to Kafka as frames; returns the numbers of frames and samples sent.

    Parameters
    ----------
    paths : trace files or directories (``schemas.tracefile.read_traces``)
    bootstrap : Kafka bootstrap servers, ``HOST:PORT[,HOST:PORT]``
    topic : destination topic
    frame_s : seconds of samples per frame
    speedup : 0 sends as fast as possible; otherwise frame end times (relative to the first)
        divided by ``speedup`` pace the sending (1 = real time)
    progress : show a tqdm bar (stderr)
    timeout_s : timeout of connecting, of each blocked send and of the final flush, s
    bundle : frames per bundle message (``schemas.bundle``); 0 or 1 sends plain frames
    bundle_wait_s : with ``speedup`` > 0, longest wall-clock wait of a frame in an
        unfilled bundle, s
    encoding : ``"cbor"`` or ``"json"`` frames (``schemas.frame.encode_frame``; the worker
        reads both)

    Raises
    ------
    SchemaError
        A trace file breaks the contract (nothing is sent).
    ReplayError
        The broker is unreachable, or refused or timed out on a frame.
    """
    if speedup < 0:
        raise ValueError(f"{speedup=} must be >= 0")
    if bundle < 0 or bundle_wait_s <= 0:
        raise ValueError(f"{bundle=} must be >= 0 and {bundle_wait_s=} > 0")
    if encoding not in FRAME_ENCODINGS:
        raise ValueError(f"frame encoding is 'cbor' or 'json', not {encoding!r}")
    traces = read_traces(paths)  # validates everything before the first send
    n_frames = sum(len(frame_windows(tr, frame_s=frame_s)[0]) for tr in traces.values())
    producer = _connect(bootstrap, timeout_s)
    failures: list[BaseException] = []
    sent = ReplayResult(0, 0, 0)
    bar = None
    try:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_frames, unit="frame", desc=f"replay -> {topic}")
        streams = [iter_frames(tr, vid, frame_s=frame_s) for vid, tr in traces.items()]
        merged = heapq.merge(*streams, key=lambda f: (f.t_s[-1], f.vehicle_id))
        bundler = None
        if bundle > 1:
            from kafka.errors import KafkaError

            try:
                n_partitions = len(producer.partitions_for(topic) or ())
            except KafkaError as exc:
                raise ReplayError(f"cannot read the partitions of topic {topic!r}: {exc!r}") from exc
            if not n_partitions:
                raise ReplayError(f"topic {topic!r} has no partitions (does it exist?)")
            bundler = Bundler(n_partitions, bundle, wait_s=bundle_wait_s)
        first_end: float | None = None
        wall0, wall_t0 = time.monotonic(), time.time()
        frames = samples = messages = 0
        for frame in merged:
            if failures:
                break
            if speedup > 0:
                first_end = frame.t_s[-1] if first_end is None else first_end
                due = wall0 + (frame.t_s[-1] - first_end) / speedup
                while time.monotonic() < due:
                    if bundler is not None:
                        messages += _send_bundles(producer, topic, bundler.due(time.time()), failures)
                        wake = wall0 + (bundler.next_due() - wall_t0)
                    else:
                        wake = due
                    time.sleep(max(0.0, min(due, wake) - time.monotonic()))
            if bundler is None:
                messages += _send(producer, topic, frame.vehicle_id.encode(), encode_frame(frame, encoding), failures)
            else:
                messages += _send_bundles(producer, topic, bundler.add(frame.vehicle_id, encode_frame(frame, encoding),
                                                                      time.time()), failures)
            frames += 1
            samples += len(frame.t_s)
            if bar is not None:
                bar.update(1)
        if bundler is not None and not failures:
            messages += _send_bundles(producer, topic, bundler.drain(), failures)
        try:
            producer.flush(timeout=timeout_s * 3)
        except Exception as exc:  # kafka-python raises KafkaTimeoutError
            raise ReplayError(f"Kafka at {bootstrap}: flush did not complete: {exc}") from exc
        if failures:
            raise ReplayError(f"Kafka at {bootstrap} refused a frame: {failures[0]!r}")
        sent = ReplayResult(frames, samples, messages)
    finally:
        if bar is not None:
            bar.close()
        producer.close(timeout=timeout_s)
    return sent


def _connect(bootstrap: str, timeout_s: float) -> Any:
    try:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ReplayError("kafka-python is not installed") from exc
    try:
        return KafkaProducer(**producer_config(bootstrap, timeout_s=timeout_s))
    except (KafkaError, OSError, ValueError) as exc:
        raise ReplayError(
            f"cannot connect to Kafka at {bootstrap} within {timeout_s:g} s: {exc!r}"
        ) from exc


def _send(producer: Any, topic: str, key: bytes | None, value: bytes, failures: list[BaseException], *,
          partition: int | None = None, timestamp_ms: int | None = None) -> int:
    from kafka.errors import KafkaError

    try:
        fut = producer.send(topic, key=key, value=value, partition=partition, timestamp_ms=timestamp_ms)
    except KafkaError as exc:
        raise ReplayError(f"cannot send to topic {topic!r}: {exc!r}") from exc
    fut.add_errback(failures.append)
    return 1


def _send_bundles(producer: Any, topic: str, bundles: list[tuple[int, bytes, float]],
                  failures: list[BaseException]) -> int:
    # The record's timestamp is when the bundle's first frame reached the bundler, so that
    # a latency measured from it includes the frame's wait in the gateway.
    return sum(_send(producer, topic, None, value, failures, partition=p, timestamp_ms=int(t0 * 1000))
               for p, value, t0 in bundles)


class Bundler:
    """Packs encoded frames into bundles per partition (``schemas.bundle``).

    ``add``, ``due`` and ``drain`` return the bundles ready to send, as (partition, bytes,
    time its first frame was added, in the clock of ``now``). A vehicle's frames keep their
    order: they all go to one partition, which has one open bundle at a time, each with its
    frames in the order they came.
    """

    def __init__(self, n_partitions: int, size: int, *, wait_s: float = 1.0,
                 max_bytes: int = MAX_BUNDLE_BYTES) -> None:
        if n_partitions < 1 or size < 1:
            raise ValueError(f"{n_partitions=} and {size=} must be >= 1")
        self.n_partitions, self.size, self.wait_s, self.max_bytes = n_partitions, size, wait_s, max_bytes
        self._open: dict[int, tuple[float, list[bytes], int]] = {}  # partition -> (started, frames, bytes)

    def add(self, vehicle_id: str, frame: bytes, now: float) -> list[tuple[int, bytes, float]]:
        p = partition_of(vehicle_id, self.n_partitions)
        out = []
        started, frames, nbytes = self._open.get(p, (now, [], 4))
        if frames and nbytes + 4 + len(frame) > self.max_bytes:
            out.append((p, encode_bundle(frames), started))
            started, frames, nbytes = now, [], 4
        frames.append(frame)
        nbytes += 4 + len(frame)
        if len(frames) >= self.size:
            out.append((p, encode_bundle(frames), started))
            self._open.pop(p, None)
        else:
            self._open[p] = (started, frames, nbytes)
        return out

    def due(self, now: float) -> list[tuple[int, bytes, float]]:
        """Bundles whose first frame has waited ``wait_s`` or more."""
        late = [(p, t0) for p, (t0, _, _) in self._open.items() if now - t0 >= self.wait_s]
        return [(p, encode_bundle(self._open.pop(p)[1]), t0) for p, t0 in late]

    def next_due(self) -> float:
        """When the oldest open bundle is due (inf if none is open)."""
        return min((t0 + self.wait_s for t0, _, _ in self._open.values()), default=float("inf"))

    def drain(self) -> list[tuple[int, bytes, float]]:
        out = [(p, encode_bundle(frames), t0) for p, (t0, frames, _) in self._open.items()]
        self._open.clear()
        return out
