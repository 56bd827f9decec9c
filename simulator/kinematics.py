"""Speed along a route and the accelerations it implies, sampled in time.

The profile is built on a distance grid: a target speed (limit, curvature, turns at
junctions, stops), then the driver's braking and acceleration limits as two envelope passes
computed with running minima (``v² ≤ v(s')² + 2a|s - s'|``: no loop over grid points).
Time follows from the speed; the inertial rate ``fs_hz`` only sets the sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from roadnet import RoadNetwork
from simulator.drivers import Driver
from simulator.geometry import RouteGeometry, locate

__all__ = [
    "Motion",
    "Stops",
    "target_speed_sq",
    "plan_stops",
    "accel_envelope",
    "brake_envelope",
    "sample_motion",
]

#: Smoothing of the sampled motion (s): gives the speed a finite jerk.
MOTION_SMOOTHING_S = 0.25
#: Room a car has to cut a corner at a junction (m); sets the turn radius.
JUNCTION_ROOM_M = 6.0


@dataclass(frozen=True, eq=False)
class Stops:
    """Where the vehicle stops (index into the distance grid) and for how long (s)."""

    grid_index: np.ndarray
    dwell_s: np.ndarray


@dataclass(frozen=True, eq=False)
class Motion:
    """True motion sampled at ``fs_hz``: times from the trip start, distance, speed, accelerations."""

    fs_hz: float
    t_s: np.ndarray
    s_m: np.ndarray
    v_mps: np.ndarray
    accel_long_mps2: np.ndarray
    accel_lat_mps2: np.ndarray


def target_speed_sq(
    net: RoadNetwork, geom: RouteGeometry, driver: Driver, rng: np.random.Generator
) -> np.ndarray:
    """Squared target speed (m²/s²) on the distance grid, before acceleration limits.

    min(speed limit × driver factor × slow variation, curvature limit, junction turn limit),
    0 at the start and the end.
    """
    s = geom.s_m
    ds = float(s[1] - s[0])
    k, _ = locate(geom, s)
    limit = net.maxspeed_kmh[geom.segments[k]] / 3.6 * driver.speed_factor
    sigma = 150.0 / ds  # slow variation of the driver's pace, ~150 m correlation
    wobble = gaussian_filter1d(rng.standard_normal(len(s)), sigma, mode="nearest")
    wobble *= np.sqrt(2.0 * np.sqrt(np.pi) * sigma)  # unit standard deviation
    v = limit * np.clip(1.0 + 0.04 * wobble, 0.9, 1.04)
    u = np.minimum(v**2, driver.lat_mps2 / np.maximum(np.abs(geom.curvature_per_m), 1e-9))
    # Junction turns: radius from the deflection angle and the room to cut the corner.
    half = np.radians(np.abs(geom.turn_deg)) / 2.0
    radius = JUNCTION_ROOM_M / np.maximum(1.0 - np.cos(half), 1e-9)
    idx = np.clip(np.rint(geom.junction_m / ds).astype(np.int64), 0, len(s) - 1)
    np.minimum.at(u, idx, driver.lat_mps2 * radius)
    u[0] = u[-1] = 0.0
    return u


def plan_stops(
    geom: RouteGeometry, rng: np.random.Generator, *, stop_prob: float = 0.25,
    dwell_s: tuple[float, float] = (3.0, 30.0),
) -> Stops:  # fmt: skip
    """Random stops at intersections (lights, give-way): probability and dwell range."""
    s = geom.s_m
    ds = float(s[1] - s[0])
    pick = geom.is_intersection & (rng.random(len(geom.junction_m)) < stop_prob)
    idx = np.rint(geom.junction_m[pick] / ds).astype(np.int64)
    keep = (idx * ds > 5.0) & (idx * ds < geom.length_m - 5.0)
    idx = np.unique(idx[keep])
    dwell = rng.uniform(*dwell_s, size=len(idx))
    return Stops(grid_index=idx, dwell_s=dwell)


def brake_envelope(u: np.ndarray, s: np.ndarray, decel_mps2: float) -> np.ndarray:
    """Largest u ≤ given u reachable by braking at ``decel_mps2``: min over s' ≥ s of u(s') + 2b(s' - s)."""
    c = u + 2.0 * decel_mps2 * s
    return np.minimum.accumulate(c[::-1])[::-1] - 2.0 * decel_mps2 * s


def accel_envelope(u: np.ndarray, s: np.ndarray, accel_mps2: float) -> np.ndarray:
    """Largest u ≤ given u reachable accelerating at ``accel_mps2``: min over s' ≤ s of u(s') + 2a(s - s')."""
    c = u - 2.0 * accel_mps2 * s
    return np.minimum.accumulate(c) + 2.0 * accel_mps2 * s


def sample_motion(
    geom: RouteGeometry, u: np.ndarray, stops: Stops, *, fs_hz: float
) -> Motion:
    """Sample a feasible squared-speed profile ``u`` (on ``geom.s_m``) in time at ``fs_hz``.

    Time between grid points assumes constant acceleration (exact for the envelopes); the
    vehicle waits ``stops.dwell_s`` at each stop. Position and speed are then smoothed over
    ``MOTION_SMOOTHING_S`` (the same linear filter on both, so speed stays the derivative of
    position); longitudinal acceleration is the derivative of speed, lateral is v²κ.
    """
    s = geom.s_m
    v = np.sqrt(np.maximum(u, 0.0))
    dt = 2.0 * np.diff(s) / np.maximum(v[1:] + v[:-1], 1e-6)
    t = np.r_[0.0, np.cumsum(dt)]
    # Insert a second knot after each stop: same place, later time.
    wait = np.zeros(len(s))
    wait[stops.grid_index] = stops.dwell_s
    t = t + np.cumsum(wait) - wait  # the departure knot gets its own wait below
    at = stops.grid_index + 1
    s_k = np.insert(s, at, s[stops.grid_index])
    t_k = np.insert(t, at, t[stops.grid_index] + stops.dwell_s)
    v_k = np.insert(v, at, 0.0)

    n = int(np.floor(t_k[-1] * fs_hz)) + 1
    ts = np.arange(n) / fs_hz
    sigma = MOTION_SMOOTHING_S * fs_hz
    s_t = gaussian_filter1d(np.interp(ts, t_k, s_k), sigma, mode="nearest")
    v_t = gaussian_filter1d(np.interp(ts, t_k, v_k), sigma, mode="nearest")
    s_t = np.maximum.accumulate(np.clip(s_t, 0.0, geom.length_m))
    v_t = np.maximum(v_t, 0.0)
    ax = np.gradient(v_t, 1.0 / fs_hz) if n > 1 else np.zeros(n)
    kappa = np.interp(s_t, s, geom.curvature_per_m)
    return Motion(
        fs_hz=float(fs_hz), t_s=ts, s_m=s_t, v_mps=v_t,
        accel_long_mps2=ax, accel_lat_mps2=v_t**2 * kappa,
    )  # fmt: skip
