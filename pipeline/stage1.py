"""Stage 1, keyed by vehicle: one frame message in, passes/events/state out.

The transport-free core of the stage-1 agent: decode and validate the raw bytes,
pseudonymise, run ``agents.passes.process_frame`` on the vehicle's state. The Faust agent
(``pipeline.app``) and ``roadsense score`` call the same ``handle``.

The table value of a vehicle is an envelope: its ``VehicleState`` plus an *outbox*, the
results of its recent frames that are not yet known to be committed in the database.
Writing state and results in one record is what lets the worker batch database commits:
whatever order the changelog and the database reach disk in, a crash loses nothing,
because a restarted worker re-writes every outbox (idempotent inserts) before it goes on,
and a replayed frame older than the state is skipped. Outbox entries are dropped once
``confirm`` says their frame's results are committed.
"""

from __future__ import annotations

import base64
import logging
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import zstandard

from agents.passes import STATE_VERSION, PassParams, StateVersionError, VehicleState, process_frame
from roadnet import RoadNetwork
from schemas._errors import SchemaError
from schemas.bundle import partition_of
from schemas.frame import decode_frame
from schemas.records import DeadLetter, HarshEvent, PassImpact, SegmentPass

from pipeline.pseudonym import Pseudonymiser
from pipeline.stage2 import impact_record

__all__ = ["Outcome", "FrameHandler", "dead_letter", "pack_envelope", "unpack_envelope", "outbox_results",
           "state_dict_path"]

_MAGIC = b"RSE3"
"""Envelope whose state is zstd-compressed with the state dictionary."""
_MAGIC_PLAIN = b"RSE2"
"""Envelope whose state is plain zstd (no dictionary shipped for this state version; or
written by the previous release)."""
STATE_DICT_LEVEL = 1
STATE_DICT_ID = 0x52530000 + STATE_VERSION
"""zstd dictionary id of the state dictionary: "RS" and the state version it was trained for."""

log = logging.getLogger(__name__)


def state_dict_path(version: int = STATE_VERSION) -> Path:
    """Where the zstd dictionary trained on vehicle states of ``version`` is shipped
    (``bench/train_state_dict.py`` writes it)."""
    return Path(__file__).with_name("data") / f"vehicle_state_v{version}.zdict"


def _state_dict() -> zstandard.ZstdCompressionDict | None:
    path = state_dict_path()
    if not path.exists():
        log.warning("no zstd dictionary for vehicle state version %s (%s): states are stored larger; "
                    "run bench/train_state_dict.py", STATE_VERSION, path)
        return None
    d = zstandard.ZstdCompressionDict(path.read_bytes())
    d.precompute_compress(level=STATE_DICT_LEVEL)
    return d


# zstd level 1 with a dictionary trained on states (16 KB): the state is written to
# RocksDB and the changelog with every frame, alone, and small, so zstd gains most from
# the context the dictionary gives it (JSON keys, record layout: 9.3 -> 8.5 KB mean on
# held-out states, no slower); level 3 gained ~2 % for twice the time. A checksum (4
# bytes) makes a state compressed with another dictionary of the same id fail loudly
# rather than decode to garbage. One compressor per process: the handler runs on the
# event loop's thread only.
_DICT = _state_dict()
_ZC = (zstandard.ZstdCompressor(level=STATE_DICT_LEVEL, dict_data=_DICT, write_checksum=True) if _DICT is not None
       else zstandard.ZstdCompressor(level=1))
_ZD = zstandard.ZstdDecompressor(dict_data=_DICT) if _DICT is not None else None
_ZD_PLAIN = zstandard.ZstdDecompressor()


def pack_envelope(state: bytes, outbox: list) -> bytes:
    """Table value: magic, outbox length, outbox (JSON), zstd-compressed state bytes
    (with the state dictionary when one is shipped for this state version)."""
    box = orjson.dumps(outbox) if outbox else b""
    return (_MAGIC if _DICT is not None else _MAGIC_PLAIN) + struct.pack("<I", len(box)) + box + _ZC.compress(state)


class EnvelopeError(ValueError):
    """A table value that is not a state envelope of this release."""


def unpack_envelope(value: bytes) -> tuple[bytes, list]:
    """(state bytes, outbox) of a table value. A state that cannot be decompressed (a
    dictionary this release does not have) is an ``EnvelopeError``."""
    magic = value[:4]
    if magic == _MAGIC:
        if _ZD is None:
            raise EnvelopeError("vehicle-state envelope needs a state dictionary this release does not ship")
        zd = _ZD
    elif magic == _MAGIC_PLAIN:
        zd = _ZD_PLAIN
    else:
        raise EnvelopeError("not a roadsense vehicle-state envelope (written by an older release?)")
    (n,) = struct.unpack_from("<I", value, 4)
    box = orjson.loads(value[8 : 8 + n]) if n else []
    try:
        state = zd.decompress(value[8 + n :])
    except zstandard.ZstdError as exc:
        raise EnvelopeError(f"vehicle state not readable: {exc}") from exc
    return state, box


def outbox_results(outbox: list) -> tuple[list[SegmentPass], list[HarshEvent], list[PassImpact]]:
    """The records of an outbox, validated again."""
    passes = [SegmentPass.model_validate(p) for e in outbox for p in e["passes"]]
    events = [HarshEvent.model_validate(v) for e in outbox for v in e["events"]]
    impacts = [PassImpact.model_validate(v) for e in outbox for v in e.get("impacts", ())]
    return passes, events, impacts


@dataclass(slots=True)
class Outcome:
    """What one frame produced. ``dead_letter`` is set (and nothing else) for bad input."""

    state_key: str | None = None
    state: bytes | None = None
    passes: list[SegmentPass] = field(default_factory=list)
    events: list[HarshEvent] = field(default_factory=list)
    impacts: list[PassImpact] = field(default_factory=list)
    duplicate: bool = False
    n_samples: int = 0
    seq: int = -1
    dead_letter: tuple[str, str] | None = None  # (error type, reason)


@dataclass
class FrameHandler:
    """Decode, pseudonymise and process one frame; holds no state of its own."""

    net: RoadNetwork
    pseudonymise: Pseudonymiser
    params: PassParams = field(default_factory=PassParams)
    stats: dict[str, int] = field(default_factory=lambda: {"frames": 0, "dead_letters": 0, "duplicates": 0})
    confirmed: dict[str, int] = field(default_factory=dict)
    """Per vehicle, the last frame seq whose results are committed in the database."""
    live_max: int = 20_000
    """Vehicles whose decoded state is kept between frames (least recently seen out)."""
    _live: dict[str, tuple[bytes, VehicleState, list]] = field(default_factory=dict, repr=False)
    """Per vehicle: the table value written last, and the objects it encodes. When the
    table still holds exactly that value, the next frame continues those objects instead
    of decoding the bytes (decoding the state and rebuilding the matcher was a third of
    the fixed cost per frame); any other value (another worker wrote it, a restore) is
    decoded."""

    def confirm(self, key: str, seq: int) -> None:
        """Results of ``key``'s frames up to ``seq`` are committed: drop them from its outbox."""
        if seq > self.confirmed.get(key, -1):
            self.confirmed[key] = seq

    def handle(self, raw: bytes, get_state, *, route: tuple[int, int] | None = None) -> Outcome:
        """Process one frame's bytes; ``get_state(key) -> bytes | None`` reads the table.

        ``route``: (partition the frame arrived on, partitions of the topic), for a frame of
        a bundle; one whose vehicle belongs to another partition (``schemas.bundle``) is
        dead-lettered, since its state would be split between two partitions.

        Never raises for bad input: a frame that fails validation, or whose processing
        fails, comes back as a dead letter with its reason.
        """
        self.stats["frames"] += 1
        try:
            frame = decode_frame(raw)
        except SchemaError as exc:
            self.stats["dead_letters"] += 1
            return Outcome(dead_letter=("SchemaError", str(exc)))
        if route is not None and (want := partition_of(frame.vehicle_id, route[1])) != route[0]:
            self.stats["dead_letters"] += 1
            return Outcome(dead_letter=("RoutingError", f"bundled frame of a vehicle of partition {want} arrived "
                                                        f"on partition {route[0]} (of {route[1]})"))
        key = self.pseudonymise(frame.vehicle_id)
        try:
            value = get_state(key)
            live = self._live.pop(key, None)  # taken: a failure below leaves no stale entry
            try:
                if live is not None and value is not None and live[0] == value:
                    state, outbox = live[1], live[2]
                else:
                    raw_state, outbox = (None, []) if value is None else unpack_envelope(value)
                    state = None if raw_state is None else VehicleState.from_bytes(raw_state)
            except (StateVersionError, EnvelopeError) as exc:
                # State written by an older release: start the vehicle afresh (its open
                # trip's passes are lost, nothing else) rather than dead-letter its frames.
                log.warning("vehicle %s: %s; starting a new trip", key, exc)
                self.stats["state_resets"] = self.stats.get("state_resets", 0) + 1
                state, outbox = None, []
            res = process_frame(state, frame, self.net, vehicle=key, params=self.params)
            impacts = [impact_record(imp, vehicle=key, segment_id=sid) for sid, imp in res.impacts]
        except Exception as exc:  # a bug or a pathological frame: never stall the partition
            log.exception("processing failed for a frame of vehicle %s seq %s", key, frame.seq)
            self.stats["dead_letters"] += 1
            return Outcome(dead_letter=(type(exc).__name__, f"processing failed: {exc}"))
        done = self.confirmed.get(key, -1)
        if res.duplicate:
            self.stats["duplicates"] += 1
            if live is not None and value is not None and live[0] == value:
                self._keep(key, live)
            # Its state was stored but its results may not be (a batch not committed
            # before a rebalance): if they are still in the outbox, hand them over again
            # (the writes are idempotent). Otherwise the next frame's confirmation would
            # drop them from the outbox unwritten.
            again = [e for e in outbox if e["seq"] == frame.seq and e["seq"] > done]
            if not again:
                return Outcome(state_key=key, duplicate=True)
            p, e, i = outbox_results(again)
            return Outcome(state_key=key, duplicate=True, passes=p, events=e, impacts=i, seq=frame.seq)
        outbox = [e for e in outbox if e["seq"] > done]
        if res.passes or res.events or impacts:
            outbox.append({
                "seq": frame.seq,
                "passes": [p.model_dump(mode="json") for p in res.passes],
                "events": [e.model_dump(mode="json") for e in res.events],
                "impacts": [i.model_dump(mode="json") for i in impacts],
            })
        env = pack_envelope(res.state.to_bytes(), outbox)
        self._keep(key, (env, res.state, outbox))
        return Outcome(state_key=key, state=env, passes=res.passes,
                       events=res.events, impacts=impacts, n_samples=int(frame.t_s.size), seq=frame.seq)

    def _keep(self, key: str, live: tuple[bytes, VehicleState, list]) -> None:
        self._live[key] = live
        if len(self._live) > self.live_max:
            del self._live[next(iter(self._live))]


def dead_letter(
    raw: bytes, key: bytes | None, error_type: str, reason: str, *, topic: str, partition: int, offset: int,
    worker: str | None = None, bundle_index: int | None = None,
) -> bytes:
    """The JSON envelope sent to the dead-letter topic (original bytes kept verbatim: the
    message's, or for a frame of a bundle that frame's, with its index)."""
    env = DeadLetter(
        reason=reason,
        error_type=error_type,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key_b64=None if key is None else base64.b64encode(key).decode(),
        original_b64=base64.b64encode(raw).decode(),
        bundle_index=bundle_index,
        failed_at=datetime.now(UTC),
        worker=worker,
    )
    return env.model_dump_json().encode()
