"""Records the pipeline writes: Kafka messages downstream of stage 1 and database rows.

No record carries the raw vehicle id: ``vehicle`` is a keyed-HMAC pseudonym.
Times are UTC-aware datetimes; distances in metres; speeds in km/h.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "SegmentPass",
    "HarshEvent",
    "DeadLetter",
    "PassImpact",
    "RoadAlert",
    "HarshEventType",
    "AlertKind",
    "RECORD_SCHEMA_VERSION",
]

RECORD_SCHEMA_VERSION = 1
Finite = Annotated[float, Field(allow_inf_nan=False)]
HarshEventType = Literal["harsh_brake", "harsh_accel", "harsh_corner", "swerve"]
AlertKind = Literal["pothole"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SegmentPass(_Record):
    """One vehicle's traversal of one road segment (topic ``segment.passes``, key = segment).

    Natural key: (``vehicle``, ``segment_id``, ``entry_time``): a replay writes the same key.
    """

    schema_version: Literal[1] = RECORD_SCHEMA_VERSION
    vehicle: str = Field(min_length=8, max_length=64, description="keyed-HMAC pseudonym")
    segment_id: str
    entry_time: AwareDatetime
    exit_time: AwareDatetime
    entry_offset_m: Finite = Field(ge=0, description="distance along the segment at entry, m")
    exit_offset_m: Finite = Field(ge=0, description="distance along the segment at exit, m")
    covered_m: Finite = Field(ge=0, description="distance driven on the segment in this pass, m")
    mean_speed_kmh: Finite = Field(ge=0)
    n_samples: int = Field(ge=0)
    fs_hz: Finite = Field(gt=0, description="inferred inertial sample rate")
    iri_m_per_km: Finite | None = Field(default=None, ge=0, description="IRI estimate of this pass, m/km; None when the pass is too short or too slow")
    roughness_rms_mps2: Finite | None = Field(default=None, ge=0, description="RMS of band-passed vertical acceleration")
    max_vertical_mps2: Finite = Field(ge=0, description="largest |band-passed vertical acceleration|")
    n_harsh_events: int = Field(ge=0)
    confidence: Finite = Field(ge=0, le=1, description="0..1, lowered at low sample rates and short coverage")
    powertrain: str | None = None
    model_year: int | None = None


class HarshEvent(_Record):
    """A harsh braking, acceleration or cornering event placed on a segment.

    Natural key: (``vehicle``, ``start_time``, ``type``).
    """

    schema_version: Literal[1] = RECORD_SCHEMA_VERSION
    vehicle: str = Field(min_length=8, max_length=64)
    type: HarshEventType
    start_time: AwareDatetime
    duration_s: Finite = Field(gt=0)
    peak_mps2: Finite = Field(description="signed peak acceleration, m/s² (braking negative)")
    speed_kmh: Finite = Field(ge=0, description="speed at the start of the event")
    segment_id: str
    offset_m: Finite = Field(ge=0, description="distance along the segment, m")
    lat_deg: Finite
    lon_deg: Finite


class DeadLetter(_Record):
    """Envelope written to ``vehicle.frames.dlq`` for a message the worker could not use."""

    reason: str
    error_type: str
    source_topic: str
    partition: int
    offset: int
    key_b64: str | None = None
    original_b64: str = Field(description="the message value, base64, byte for byte (in a bundle: that frame's bytes)")
    bundle_index: int | None = Field(
        default=None, ge=0, description="index of the frame in its bundle (schemas.bundle)")
    failed_at: datetime
    worker: str | None = None


class PassImpact(_Record):
    """One impact (a short sharp vertical shock) felt by one vehicle on one segment.

    Emitted by stage 1 with the pass it belongs to (topic ``segment.passes`` or
    ``segment.impacts``, key = segment), consumed by stage 2 (pothole confirmation across
    vehicles). Natural key: (``vehicle``, ``segment_id``, ``time``).
    """

    schema_version: Literal[1] = RECORD_SCHEMA_VERSION
    vehicle: str = Field(min_length=8, max_length=64, description="keyed-HMAC pseudonym")
    segment_id: str
    time: AwareDatetime = Field(description="time of the impact's first lobe")
    offset_m: Finite = Field(ge=0, description="distance along the segment of the impact's onset, m")
    peak_mps2: Finite = Field(ge=0, description="largest |band-passed vertical acceleration|, m/s²")
    polarity: Literal[-1, 1] = Field(description="-1 down-first (pothole-like), +1 up-first (bump-like)")
    slowdown: Finite = Field(ge=0, le=1, description="speed at the impact / highest speed over the 60 m before")
    n_lobes: int = Field(ge=0)
    n_peaks: int = Field(ge=1)
    speed_kmh: Finite = Field(ge=0)
    severity: Finite = Field(ge=0, description="peak / causal robust scale of the signal")
    duration_s: Finite = Field(ge=0)
    double_hit_m: Finite | None = Field(default=None, ge=0, description="spacing of the two strongest hits >= 1 m apart, m")
    kind_score: Finite = Field(ge=0, le=1, description="0..1, how pothole-like the signature is")
    fs_hz: Finite = Field(gt=0, description="inertial sample rate of the pass")
    speed_dip: Finite | None = Field(
        default=None, ge=0,
        description="lower of the speeds 1.5 s before and 1.5 s after the impact over the speed at it (> 1: slowed for "
                    "the spot, as at humps and rails); None: unknown",
    )  # fmt: skip
    rise_mps2: Finite | None = Field(
        default=None,
        description="largest vertical acceleration (up positive) of the body's own motion (0.5-4 Hz) in the 0.25 s "
                    "before the impact, m/s² (a hump or cushion lifts the body before its drop); None: unknown",
    )  # fmt: skip


class RoadAlert(_Record):
    """A confirmed road defect (stage 2; topic ``road.alerts``, key = segment; table ``road_alerts``).

    ``alert_id`` is deterministic (segment + position of the cluster when first confirmed),
    so a replay produces the same ids; later evidence updates the same alert (``revision``).
    No pseudonyms: ``n_vehicles`` is a count.
    """

    schema_version: Literal[1] = RECORD_SCHEMA_VERSION
    alert_id: str = Field(min_length=8, max_length=64)
    segment_id: str
    kind: AlertKind = "pothole"
    position_m: Finite = Field(ge=0, description="distance along the segment, m")
    lat_deg: Finite | None = None
    lon_deg: Finite | None = None
    confidence: Finite = Field(ge=0, le=1, description="probability that it is a real pothole (below 50 Hz x 0.6)")
    n_vehicles: int = Field(ge=0, description="distinct vehicles whose impacts confirm it")
    n_impacts: int = Field(ge=0)
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    revision: int = Field(default=0, ge=0, description="0 when first confirmed, +1 per update")
