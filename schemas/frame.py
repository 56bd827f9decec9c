"""The Kafka frame message: a stretch of one vehicle's samples (topic ``vehicle.frames``).

A frame carries ``frame_s`` seconds of samples column-wise (arrays, not rows), so that the
per-message cost of the stream is paid once per stretch rather than once per sample
(shared/notes/faust-streaming.md). GPS fixes travel in their own arrays, at their own rate.
The key of the message is the raw vehicle id; it is pseudonymised by the first stage. A
gateway may instead pack several frames into one message (``schemas.bundle``). A frame is
a JSON document, or the same document in CBOR with its arrays in binary
(``schemas.frame_cbor``); the worker reads both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import json

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas._errors import SchemaError
from schemas.trace import PowertrainType

__all__ = ["CBOR_MAGIC", "Frame", "FrameArrays", "FrameEncoding", "FRAME_SCHEMA_VERSION", "DEFAULT_FRAME_ENCODING", "DEFAULT_FRAME_S",
           "FRAME_ENCODINGS", "decode_frame", "encode_frame", "readable_error"]

FRAME_SCHEMA_VERSION = 1
CBOR_MAGIC = b"\xd9\xd9\xf7"
"""The self-described CBOR tag 55799 as the first bytes of a CBOR frame
(``schemas.frame_cbor``): what :func:`decode_frame` dispatches on."""
FrameEncoding = Literal["cbor", "json"]
FRAME_ENCODINGS: tuple[FrameEncoding, ...] = get_args(FrameEncoding)
"""The encodings a producer may write (``--encoding`` choices)."""
DEFAULT_FRAME_ENCODING: FrameEncoding = "cbor"
"""What this project's producers write (the replay, the offline scorer); the worker reads
both. CBOR because a worker reads it in a tenth of the time (``schemas.frame_cbor``,
docs/decisions.md "CBOR frames"); JSON stays for producers that prefer text."""
DEFAULT_FRAME_S = 60.0
"""Seconds of samples per frame message unless configured (``ROADSENSE_FRAME_S``): chosen
by ``bench/throughput.py --frame-sweep`` (docs/decisions.md, "Frames, not samples": 60 s
frames cost about a quarter less CPU per sample than 30 s ones, 30 s ones ~40 % less than
10 s ones; results do not depend on framing)."""
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Frame(BaseModel):
    """Samples of one vehicle over a few seconds, plus the GPS fixes in that stretch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = Field(description="bumped on any incompatible change")
    vehicle_id: str = Field(min_length=1, max_length=128, description="raw id; never stored")
    seq: int = Field(ge=0, description="frame number in this vehicle's stream, +1 per frame")
    trip_end: bool = Field(default=False, description="last frame of the trip")
    t_s: list[Finite] = Field(min_length=1, description="sample times, s since the epoch (UTC)")
    speed_kmh: list[Annotated[float, Field(allow_inf_nan=False, ge=0, le=400)]]
    accel_long_mps2: list[Finite]
    accel_lat_mps2: list[Finite]
    accel_vert_mps2: list[Finite]
    brake_pedal_pct: list[Annotated[float, Field(allow_inf_nan=False, ge=0, le=100)] | None] | None = Field(
        default=None, description="%, null where a sample has none")
    abs_engaged: list[bool] | None = None
    fix_t_s: list[Finite] = Field(default_factory=list, description="GPS fix times, s since the epoch")
    fix_lat_deg: list[Annotated[float, Field(allow_inf_nan=False, ge=-90, le=90)]] = Field(default_factory=list)
    fix_lon_deg: list[Annotated[float, Field(allow_inf_nan=False, ge=-180, le=180)]] = Field(default_factory=list)
    fix_heading_deg: list[Annotated[float, Field(allow_inf_nan=False, ge=0, le=360)] | None] | None = Field(
        default=None, description="degrees, null where a fix has none (e.g. standing still)")
    fix_accuracy_m: list[Annotated[float, Field(allow_inf_nan=False, ge=0)] | None] | None = Field(
        default=None, description="m, null where a fix has none")
    powertrain: PowertrainType | None = None
    soc_pct: Annotated[float, Field(allow_inf_nan=False, ge=0, le=100)] | None = None
    model_year: int | None = Field(default=None, ge=1950, le=2100)

    @model_validator(mode="after")
    def _check_lengths(self) -> Frame:
        n = len(self.t_s)
        for name in ("speed_kmh", "accel_long_mps2", "accel_lat_mps2", "accel_vert_mps2", "brake_pedal_pct", "abs_engaged"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"{name} has {len(v)} values, t_s has {n}")
        k = len(self.fix_t_s)
        for name in ("fix_lat_deg", "fix_lon_deg", "fix_heading_deg", "fix_accuracy_m"):
            v = getattr(self, name)
            if v is not None and len(v) != k:
                raise ValueError(f"{name} has {len(v)} values, fix_t_s has {k}")
        t = np.asarray(self.t_s)
        if n > 1 and not (np.diff(t) > 0).all():
            raise ValueError("t_s is not strictly increasing")
        if k > 1 and not (np.diff(np.asarray(self.fix_t_s)) > 0).all():
            raise ValueError("fix_t_s is not strictly increasing")
        return self


@dataclass(frozen=True, slots=True)
class FrameArrays:
    """A validated frame as NumPy arrays (float64 unless stated; NaN where a value is null)."""

    vehicle_id: str
    seq: int
    trip_end: bool
    t_s: np.ndarray
    speed_kmh: np.ndarray
    accel_long_mps2: np.ndarray
    accel_lat_mps2: np.ndarray
    accel_vert_mps2: np.ndarray
    brake_pedal_pct: np.ndarray | None
    abs_engaged: np.ndarray | None
    fix_t_s: np.ndarray
    fix_lat_deg: np.ndarray
    fix_lon_deg: np.ndarray
    fix_heading_deg: np.ndarray | None
    fix_accuracy_m: np.ndarray | None
    powertrain: str | None
    soc_pct: float | None
    model_year: int | None

    @classmethod
    def from_model(cls, f: Frame) -> FrameArrays:
        def arr(v: list | None, dtype: type = np.float64) -> np.ndarray | None:
            return None if v is None else np.asarray(v, dtype=dtype)

        return cls(
            vehicle_id=f.vehicle_id,
            seq=f.seq,
            trip_end=f.trip_end,
            t_s=np.asarray(f.t_s, np.float64),
            speed_kmh=np.asarray(f.speed_kmh, np.float64),
            accel_long_mps2=np.asarray(f.accel_long_mps2, np.float64),
            accel_lat_mps2=np.asarray(f.accel_lat_mps2, np.float64),
            accel_vert_mps2=np.asarray(f.accel_vert_mps2, np.float64),
            brake_pedal_pct=arr(f.brake_pedal_pct),
            abs_engaged=arr(f.abs_engaged, bool),
            fix_t_s=np.asarray(f.fix_t_s, np.float64),
            fix_lat_deg=np.asarray(f.fix_lat_deg, np.float64),
            fix_lon_deg=np.asarray(f.fix_lon_deg, np.float64),
            fix_heading_deg=arr(f.fix_heading_deg),
            fix_accuracy_m=arr(f.fix_accuracy_m),
            powertrain=f.powertrain,
            soc_pct=f.soc_pct,
            model_year=f.model_year,
        )


def decode_frame(raw: bytes) -> FrameArrays:
    """Validate one frame, JSON or CBOR (``schemas.frame_cbor``), and return it as arrays.

    Raises
    ------
    SchemaError
        With a readable reason: not JSON (or CBOR), unknown schema version, missing field,
        wrong type, NaN or infinite value, arrays of different lengths, time going backwards.
    """
    if raw[:3] == CBOR_MAGIC:
        from schemas.frame_cbor import decode_frame_cbor  # imports this module

        return decode_frame_cbor(raw)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses NaN/Infinity tokens; the stdlib parser takes them, so that the
        # reason names the field holding the non-finite value instead of a byte offset.
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise SchemaError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SchemaError(f"not a JSON object but {type(doc).__name__}")
    version = doc.get("schema_version")
    if version != FRAME_SCHEMA_VERSION:
        raise SchemaError(f"unknown schema_version {version!r} (this worker reads {FRAME_SCHEMA_VERSION})")
    try:
        return FrameArrays.from_model(Frame.model_validate(doc))
    except ValidationError as exc:
        raise SchemaError(readable_error(exc)) from None


def readable_error(exc: ValidationError) -> str:
    """A validation error as one line: up to five ``field.index: message`` parts."""
    parts = []
    for e in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "frame"
        parts.append(f"{loc}: {e['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def encode_frame(frame: Frame, encoding: FrameEncoding = DEFAULT_FRAME_ENCODING) -> bytes:
    """Bytes of a frame: CBOR (``schemas.frame_cbor``) or JSON (orjson); the inverse of
    ``decode_frame``, which reads both."""
    if encoding == "cbor":
        from schemas.frame_cbor import encode_frame_cbor

        return encode_frame_cbor(frame)
    if encoding not in FRAME_ENCODINGS:
        raise ValueError(f"frame encoding is 'cbor' or 'json', not {encoding!r}")
    return orjson.dumps(frame.model_dump(exclude_none=True))
