"""Driver styles: how fast and how hard each simulated driver goes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Driver", "draw_driver"]


@dataclass(frozen=True)
class Driver:
    """Parameters of one driver.

    Attributes
    ----------
    speed_factor : target speed as a fraction of the limit (about 0.85-1.08)
    accel_mps2 : comfortable acceleration, m/s² (> 0)
    decel_mps2 : comfortable deceleration, m/s² (> 0; kept below the harsh threshold)
    lat_mps2 : lateral acceleration accepted in curves, m/s²
    """

    speed_factor: float
    accel_mps2: float
    decel_mps2: float
    lat_mps2: float


def draw_driver(rng: np.random.Generator) -> Driver:
    """A random driver: +1.5 / -2.5 m/s² comfortable limits with a spread between drivers."""
    return Driver(
        speed_factor=float(np.clip(rng.normal(0.97, 0.05), 0.85, 1.08)),
        accel_mps2=float(np.clip(rng.normal(1.5, 0.3), 0.9, 2.4)),
        decel_mps2=float(np.clip(rng.normal(2.5, 0.35), 1.6, 3.0)),
        lat_mps2=float(np.clip(rng.normal(2.5, 0.4), 1.6, 3.4)),
    )
