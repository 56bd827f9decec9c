"""A bundle: several vehicles' frames in one message of ``vehicle.frames``.

A Faust worker pays a fixed cost per Kafka message (shared/notes/faust-streaming.md); an
ingestion gateway that packs N frames into one message pays it once for N. Each frame
inside stays one frame's bytes, JSON or CBOR (``schemas.frame``, same validation), so a
bad frame is dead-lettered alone, with its own bytes, and the others are processed.

Layout (little-endian)::

    b"RSB1"  then, per frame:  uint32 length  |  that many bytes of one frame (JSON or CBOR)

A frame starts with ``{`` (or whitespace) or CBOR's ``D9 D9 F7``, never with the magic: one
topic carries plain frames and bundles side by side.

**Routing.** A vehicle's state lives in the partition its frames arrive on, so every frame
of a vehicle must arrive on the same partition whether it travels alone or bundled. A
plain frame is keyed by the vehicle id and partitioned by Kafka's default partitioner
(murmur2 of the key, the Java client's and kafka-python's); a bundle holds only vehicles of
one partition by that same rule (:func:`partition_of`), is sent to that partition
explicitly, and carries no key. The worker dead-letters a bundled frame that arrived on
another partition rather than split a vehicle's state.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from kafka.partitioner.default import murmur2

from schemas._errors import SchemaError

__all__ = ["BUNDLE_MAGIC", "DEFAULT_BUNDLE_FRAMES", "MAX_BUNDLE_BYTES", "encode_bundle", "is_bundle", "partition_of",
           "split_bundle"]

BUNDLE_MAGIC = b"RSB1"
DEFAULT_BUNDLE_FRAMES = 10
"""Frames per bundle of ``roadsense replay`` and the demo unless told: chosen by
``bench/throughput.py --bundle-sweep`` (docs/decisions.md, "Bundles")."""
MAX_BUNDLE_BYTES = 900_000
"""Largest bundle a producer should build, bytes: under the broker's default
``message.max.bytes`` (1 MiB) with room for the record's overhead."""
_LEN = struct.Struct("<I")


def is_bundle(raw: bytes) -> bool:
    """Whether a message value is a bundle (else it should be one frame, JSON or CBOR)."""
    return raw[:4] == BUNDLE_MAGIC


def encode_bundle(frames: Sequence[bytes]) -> bytes:
    """One bundle of encoded frames (``schemas.frame.encode_frame`` bytes), in order."""
    if not frames:
        raise ValueError("a bundle holds at least one frame")
    parts = [BUNDLE_MAGIC]
    for f in frames:
        parts += (_LEN.pack(len(f)), f)
    return b"".join(parts)


def split_bundle(raw: bytes) -> list[bytes]:
    """The frames of a bundle, each as its own bytes (not yet validated).

    Raises
    ------
    SchemaError
        Not a bundle, no frame, an empty frame, or a length that runs past the end.
    """
    if not is_bundle(raw):
        raise SchemaError("not a frame bundle (no RSB1 magic)")
    view = memoryview(raw)
    out, pos, end = [], 4, len(raw)
    while pos < end:
        if pos + 4 > end:
            raise SchemaError(f"bundle truncated: {end - pos} bytes where frame {len(out)}'s length should be")
        (n,) = _LEN.unpack_from(view, pos)
        if n == 0:
            raise SchemaError(f"bundle frame {len(out)} is empty")
        if pos + 4 + n > end:
            raise SchemaError(f"bundle truncated: frame {len(out)} says {n} bytes, {end - pos - 4} remain")
        out.append(bytes(view[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    if not out:
        raise SchemaError("bundle holds no frame")
    return out


def partition_of(vehicle_id: str, n_partitions: int) -> int:
    """The partition of ``vehicle.frames`` a vehicle's frames go to: Kafka's default
    partitioner on the UTF-8 vehicle id (murmur2, as the Java client and kafka-python)."""
    return (murmur2(vehicle_id.encode()) & 0x7FFFFFFF) % n_partitions
