"""Vertical acceleration of a vehicle driving the true road profile.

The vehicle is a two-axle quarter-car model (:mod:`simulator.quarter_car`), drawn from a
family; the road is the route's true profile (:meth:`simulator.roughness.RoadSurface.route_profile`),
the same for every vehicle on a segment. The body response is simulated at
``SIM_FS_HZ`` (1 kHz) from the vehicle's actual position over time (front axle; the rear
follows one wheelbase behind), then the IMU anti-aliases and keeps every
``SIM_FS_HZ / fs``-th sample (:func:`simulator.quarter_car.imu_sample`), so 100, 50 and
10 Hz traces are the same physics seen by different sensors.

What this returns is the *dynamic* part, scaled by the sensor's gain error; the fleet adds
gravity, bias and white noise (and, with a safety scenario, grade and mounting).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from simulator.quarter_car import SIM_FS_HZ, VehicleModel, body_acceleration

__all__ = ["vertical_response", "sim_rate_hz"]


def sim_rate_hz(fs_hz: float) -> float:
    """Simulation rate for an IMU rate: ``SIM_FS_HZ`` if ``fs_hz`` divides it, else the
    smallest multiple of ``fs_hz`` >= ``SIM_FS_HZ``."""
    step = SIM_FS_HZ / fs_hz
    if abs(step - round(step)) < 1e-9:
        return SIM_FS_HZ
    return float(fs_hz * np.ceil(SIM_FS_HZ / fs_hz))


def vertical_response(
    t_s: np.ndarray,
    s_m: np.ndarray,
    x_profile_m: np.ndarray,
    z_profile_m: np.ndarray,
    vehicle: VehicleModel,
    *,
    fs_hz: float,
) -> np.ndarray:
    """Dynamic vertical body acceleration (m/s², gravity excluded) measured by the IMU.

    Parameters
    ----------
    t_s : (n,) sample times from the trip start, s (uniform, ``1 / fs_hz`` apart)
    s_m : (n,) front-axle distance along the route at each sample, m (non-decreasing)
    x_profile_m, z_profile_m : (k,) the route's profile on a uniform grid, m
    vehicle : VehicleModel (its ``gain_error`` scales the result)
    fs_hz : IMU sample rate, Hz

    Returns
    -------
    (n,) float64: anti-aliased (4th-order Butterworth at 0.4 fs, causal) body acceleration
    at mid-wheelbase, times ``1 + gain_error``.
    """
    n = len(t_s)
    if n == 0:
        return np.zeros(0)
    fs_sim = sim_rate_hz(fs_hz)
    step = int(round(fs_sim / fs_hz))
    t_sim = t_s[0] + np.arange(n * step) / fs_sim
    pos = np.interp(t_sim, t_s, s_m)
    acc = body_acceleration(vehicle, x_profile_m, z_profile_m, pos, fs_sim)
    sos = signal.butter(4, 0.4 * fs_hz, fs=fs_sim, output="sos")
    y = signal.sosfilt(sos, acc)[::step]
    return (1.0 + vehicle.gain_error) * y
