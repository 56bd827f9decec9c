"""Replay trace files into Kafka as frames (topic ``vehicle.frames``, key = vehicle id).

Each vehicle's trace is cut by ``schemas.tracefile.iter_frames`` (the cut the offline scorer
uses too); frames of all vehicles are sent in order of their last sample time, so the topic
looks like a live fleet. Per vehicle the order is kept (one key, one partition).
"""

from __future__ import annotations

import heapq
import importlib.util
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from schemas.frame import Frame, encode_frame
from schemas.tracefile import frame_windows, iter_frames, read_traces
from simulator._errors import ReplayError

__all__ = ["ReplayResult", "replay", "DEFAULT_TOPIC", "producer_config"]

DEFAULT_TOPIC = "vehicle.frames"


class ReplayResult(NamedTuple):
    frames: int
    samples: int


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

    Raises
    ------
    SchemaError
        A trace file breaks the contract (nothing is sent).
    ReplayError
        The broker is unreachable, or refused or timed out on a frame.
    """
    if speedup < 0:
        raise ValueError(f"{speedup=} must be >= 0")
    traces = read_traces(paths)  # validates everything before the first send
    n_frames = sum(len(frame_windows(tr, frame_s=frame_s)[0]) for tr in traces.values())
    producer = _connect(bootstrap, timeout_s)
    failures: list[BaseException] = []
    sent = ReplayResult(0, 0)
    bar = None
    try:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_frames, unit="frame", desc=f"replay -> {topic}")
        streams = [iter_frames(tr, vid, frame_s=frame_s) for vid, tr in traces.items()]
        merged = heapq.merge(*streams, key=lambda f: (f.t_s[-1], f.vehicle_id))
        first_end: float | None = None
        wall0 = time.monotonic()
        frames = samples = 0
        for frame in merged:
            if failures:
                break
            if speedup > 0:
                first_end = frame.t_s[-1] if first_end is None else first_end
                wait = wall0 + (frame.t_s[-1] - first_end) / speedup - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            _send(producer, topic, frame, failures)
            frames += 1
            samples += len(frame.t_s)
            if bar is not None:
                bar.update(1)
        try:
            producer.flush(timeout=timeout_s * 3)
        except Exception as exc:  # kafka-python raises KafkaTimeoutError
            raise ReplayError(f"Kafka at {bootstrap}: flush did not complete: {exc}") from exc
        if failures:
            raise ReplayError(f"Kafka at {bootstrap} refused a frame: {failures[0]!r}")
        sent = ReplayResult(frames, samples)
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


def _send(producer: Any, topic: str, frame: Frame, failures: list[BaseException]) -> None:
    from kafka.errors import KafkaError

    try:
        fut = producer.send(topic, key=frame.vehicle_id.encode(), value=encode_frame(frame))
    except KafkaError as exc:
        raise ReplayError(f"cannot send to topic {topic!r}: {exc!r}") from exc
    fut.add_errback(failures.append)
