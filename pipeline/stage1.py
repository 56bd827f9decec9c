"""Stage 1, keyed by vehicle: one frame message in, passes/events/state out.

The transport-free core of the stage-1 agent: decode and validate the raw bytes,
pseudonymise, run ``agents.passes.process_frame`` on the vehicle's state. The Faust agent
(``pipeline.app``) and the tests call the same ``handle``; the agent only adds Kafka and
the database around it, in the order that loses nothing (results committed, then state,
then the offset).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agents.passes import PassParams, VehicleState, process_frame
from roadnet import RoadNetwork
from schemas._errors import SchemaError
from schemas.frame import decode_frame
from schemas.records import DeadLetter, HarshEvent, SegmentPass

from pipeline.pseudonym import Pseudonymiser

__all__ = ["Outcome", "FrameHandler", "dead_letter"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """What one frame produced. ``dead_letter`` is set (and nothing else) for bad input."""

    state_key: str | None = None
    state: bytes | None = None
    passes: list[SegmentPass] = field(default_factory=list)
    events: list[HarshEvent] = field(default_factory=list)
    duplicate: bool = False
    n_samples: int = 0
    dead_letter: tuple[str, str] | None = None  # (error type, reason)


@dataclass
class FrameHandler:
    """Decode, pseudonymise and process one frame; holds no state of its own."""

    net: RoadNetwork
    pseudonymise: Pseudonymiser
    params: PassParams = field(default_factory=PassParams)
    stats: dict[str, int] = field(default_factory=lambda: {"frames": 0, "dead_letters": 0, "duplicates": 0})

    def handle(self, raw: bytes, get_state) -> Outcome:
        """Process one message value; ``get_state(key) -> bytes | None`` reads the table.

        Never raises for bad input: a frame that fails validation, or whose processing
        fails, comes back as a dead letter with its reason.
        """
        self.stats["frames"] += 1
        try:
            frame = decode_frame(raw)
        except SchemaError as exc:
            self.stats["dead_letters"] += 1
            return Outcome(dead_letter=("SchemaError", str(exc)))
        key = self.pseudonymise(frame.vehicle_id)
        try:
            raw_state = get_state(key)
            state = None if raw_state is None else VehicleState.from_bytes(raw_state)
            res = process_frame(state, frame, self.net, vehicle=key, params=self.params)
        except Exception as exc:  # a bug or a pathological frame: never stall the partition
            log.exception("processing failed for a frame of vehicle %s seq %s", key, frame.seq)
            self.stats["dead_letters"] += 1
            return Outcome(dead_letter=(type(exc).__name__, f"processing failed: {exc}"))
        if res.duplicate:
            self.stats["duplicates"] += 1
            return Outcome(state_key=key, duplicate=True)
        return Outcome(state_key=key, state=res.state.to_bytes(), passes=res.passes, events=res.events,
                       n_samples=int(frame.t_s.size))


def dead_letter(
    raw: bytes, key: bytes | None, error_type: str, reason: str, *, topic: str, partition: int, offset: int,
    worker: str | None = None,
) -> bytes:
    """The JSON envelope sent to the dead-letter topic (original bytes kept verbatim)."""
    env = DeadLetter(
        reason=reason,
        error_type=error_type,
        source_topic=topic,
        partition=partition,
        offset=offset,
        key_b64=None if key is None else base64.b64encode(key).decode(),
        original_b64=base64.b64encode(raw).decode(),
        failed_at=datetime.now(UTC),
        worker=worker,
    )
    return env.model_dump_json().encode()
