"""The trace-file contract: one row per inertial sample, COVESA VSS 6.0 column names.

This is an external contract (ARCHITECTURE.md, "The trace-file format"): keep it stable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TraceRow",
    "COL",
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "PowertrainType",
    "NOMINAL_RATES_HZ",
    "snap_rate_hz",
]

#: Sample rates a trace is snapped to when within 5 % (the contract accepts 5-200 Hz).
NOMINAL_RATES_HZ = (5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0)
_RATE_TOLERANCE = 0.05


def snap_rate_hz(rate_hz: float) -> float:
    """The nearest of ``NOMINAL_RATES_HZ`` when within 5 % of it, else ``rate_hz`` itself."""
    nominal = np.asarray(NOMINAL_RATES_HZ)
    k = int(np.argmin(np.abs(nominal - rate_hz) / nominal))
    return float(nominal[k]) if abs(nominal[k] - rate_hz) <= _RATE_TOLERANCE * nominal[k] else rate_hz


PowertrainType = Literal["COMBUSTION", "HYBRID", "ELECTRIC"]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class COL:
    """Column names of a trace file."""

    vehicle_id = "vehicle_id"
    timestamp = "timestamp"
    speed = "Vehicle.Speed"
    accel_long = "Vehicle.Acceleration.Longitudinal"
    accel_lat = "Vehicle.Acceleration.Lateral"
    accel_vert = "Vehicle.Acceleration.Vertical"
    lat = "Vehicle.CurrentLocation.Latitude"
    lon = "Vehicle.CurrentLocation.Longitude"
    heading = "Vehicle.CurrentLocation.Heading"
    accuracy = "Vehicle.CurrentLocation.HorizontalAccuracy"
    brake_pedal = "Vehicle.Chassis.Brake.PedalPosition"
    abs_engaged = "Vehicle.ADAS.ABS.IsEngaged"
    powertrain = "Vehicle.Powertrain.Type"
    soc = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
    model_year = "Vehicle.VehicleIdentification.Year"


REQUIRED_COLUMNS = (
    COL.vehicle_id,
    COL.timestamp,
    COL.speed,
    COL.accel_long,
    COL.accel_lat,
    COL.accel_vert,
    COL.lat,
    COL.lon,
)
OPTIONAL_COLUMNS = (
    COL.heading,
    COL.accuracy,
    COL.brake_pedal,
    COL.abs_engaged,
    COL.powertrain,
    COL.soc,
    COL.model_year,
)


class TraceRow(BaseModel):
    """One sample of a trace file (documentation and JSON Schema of the contract).

    Files are read column-wise and validated with the same rules, vectorised
    (``schemas.tracefile.read_traces``); this model is the written form of those rules.
    """

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    vehicle_id: str = Field(min_length=1, max_length=128, description="VIN or any stable id; pseudonymised on ingest")
    timestamp: datetime | Finite = Field(description="ISO 8601 UTC, or seconds since the epoch")
    speed_kmh: Finite = Field(alias=COL.speed, ge=0, le=400, description="km/h")
    accel_long_mps2: Finite = Field(alias=COL.accel_long, description="m/s², ISO 8855, forward +")
    accel_lat_mps2: Finite = Field(alias=COL.accel_lat, description="m/s², left +")
    accel_vert_mps2: Finite = Field(alias=COL.accel_vert, description="m/s², up +, may include gravity")
    lat_deg: Finite | None = Field(default=None, alias=COL.lat, ge=-90, le=90, description="WGS84; empty on rows without a new fix")
    lon_deg: Finite | None = Field(default=None, alias=COL.lon, ge=-180, le=180, description="WGS84; empty on rows without a new fix")
    heading_deg: Finite | None = Field(default=None, alias=COL.heading, ge=0, le=360)
    accuracy_m: Finite | None = Field(default=None, alias=COL.accuracy, ge=0)
    brake_pedal_pct: Finite | None = Field(default=None, alias=COL.brake_pedal, ge=0, le=100)
    abs_engaged: bool | None = Field(default=None, alias=COL.abs_engaged)
    powertrain: PowertrainType | None = Field(default=None, alias=COL.powertrain)
    soc_pct: Finite | None = Field(default=None, alias=COL.soc, ge=0, le=100)
    model_year: int | None = Field(default=None, alias=COL.model_year, ge=1950, le=2100)
