"""Simulated vehicles: VIN-like ids, powertrain, model year, which optional signals they send,
and the battery state of charge of electric ones."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["VehicleSpec", "draw_vehicle", "make_vin", "soc_along"]

_VIN_CHARS = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789"))  # no I, O, Q
POWERTRAIN_SHARE = {"COMBUSTION": 0.55, "HYBRID": 0.25, "ELECTRIC": 0.20}
#: Electric consumption, % of battery per km (about 0.15 kWh/km on 52 kWh).
SOC_PCT_PER_KM = 0.29


@dataclass(frozen=True)
class VehicleSpec:
    """What a vehicle is and what it reports (None: the signal is not sent)."""

    vin: str
    powertrain: str | None  # true type is always drawn; None when not reported
    true_powertrain: str
    model_year: int | None
    sends_brake: bool
    soc_start_pct: float | None


def make_vin(rng: np.random.Generator) -> str:
    """A 17-character VIN-like id: 'VF1' (Renault's world manufacturer code) + 14 random."""
    return "VF1" + "".join(rng.choice(_VIN_CHARS, size=14))


def draw_vehicle(rng: np.random.Generator, vin: str) -> VehicleSpec:
    kinds = list(POWERTRAIN_SHARE)
    true_pt = str(rng.choice(kinds, p=list(POWERTRAIN_SHARE.values())))
    reported = None if rng.random() < 0.1 else true_pt
    year = None if rng.random() < 0.15 else int(rng.integers(2010, 2026))
    sends_brake = bool(rng.random() < 0.8)
    soc = float(rng.uniform(25.0, 95.0)) if true_pt == "ELECTRIC" and reported else None
    return VehicleSpec(vin, reported, true_pt, year, sends_brake, soc)


def soc_along(soc_start_pct: float, s_m: np.ndarray) -> np.ndarray:
    """State of charge (%) along a trip: a linear drain with distance, floored at 1 %."""
    return np.maximum(soc_start_pct - SOC_PCT_PER_KM * np.asarray(s_m) / 1000.0, 1.0)
