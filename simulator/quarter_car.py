"""Vehicle vertical dynamics: a population of two-axle quarter-car models and an IMU.

Model
-----
Each vehicle is a half-car whose pitch and heave decouple (dynamic index 1, true of most
passenger cars to within ~10 %): front and rear axles are then two independent quarter cars
(sprung mass ``ms``, unsprung ``mu``, suspension ``ks``/``cs``, tyre ``kt``), the rear one
driven by the road ``wheelbase`` metres behind the front one. The IMU sits at mid-wheelbase,
so it measures the mean of the two body accelerations (a double hit on short features).

Road input: what the tyre follows is the profile *enveloped* by the tyre: a rigid circle of
radius ``tyre_radius_m`` rolling on the profile (grey dilation with the circle's drop;
it bridges holes shorter than a tyre footprint) and averaged over ``contact_m``.

Integration: exact zero-order-hold discretisation (``scipy.signal.cont2discrete``) at
``SIM_FS_HZ`` = 1 kHz (> 40x the wheel-hop frequency), one ``sosfilt`` call for both
axles; no per-sample loop. The IMU applies a 4th-order causal Butterworth anti-alias filter
at 0.4 fs, keeps every ``SIM_FS_HZ / fs``-th sample, adds gravity, a mounting gain error
and white noise.

Families (:data:`FAMILIES`): ``small_car``, ``suv``, ``van`` are the fleet used for
development; ``sports`` and ``minibus`` are hold-out families, never used for tuning.
Parameters are per corner; each vehicle draws its own values (log-normal spread).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import ndimage, signal

__all__ = [
    "VehicleModel",
    "FAMILIES",
    "TRAIN_FAMILIES",
    "HOLDOUT_FAMILIES",
    "SIM_FS_HZ",
    "GRAVITY_MPS2",
    "draw_vehicle",
    "envelope_profile",
    "body_acceleration",
    "imu_sample",
    "drive",
]

SIM_FS_HZ = 1000.0
GRAVITY_MPS2 = 9.81


@dataclass(frozen=True, kw_only=True)
class VehicleModel:
    """One vehicle's vertical dynamics and IMU (SI units, per corner)."""

    family: str
    ms_kg: float
    mu_kg: float
    ks_n_per_m: float
    cs_ns_per_m: float
    kt_n_per_m: float
    wheelbase_m: float
    tyre_radius_m: float
    contact_m: float
    gain_error: float = 0.0  # mounting/scale error: measured = (1 + e) * true
    noise_mps2: float = 0.03  # white noise standard deviation at the IMU rate

    @property
    def body_hz(self) -> float:
        return float(np.sqrt(self.ks_n_per_m / self.ms_kg) / (2 * np.pi))

    @property
    def wheel_hop_hz(self) -> float:
        return float(np.sqrt((self.ks_n_per_m + self.kt_n_per_m) / self.mu_kg) / (2 * np.pi))


#: Family nominal parameters and relative spread (log-normal sigma) of each.
FAMILIES: dict[str, dict[str, tuple[float, float]]] = {
    "small_car": {
        "ms_kg": (260.0, 0.10), "mu_kg": (32.0, 0.10), "ks_n_per_m": (20e3, 0.12),
        "cs_ns_per_m": (1400.0, 0.15), "kt_n_per_m": (180e3, 0.08),
        "wheelbase_m": (2.55, 0.04), "tyre_radius_m": (0.30, 0.04), "contact_m": (0.16, 0.10),
    },
    "suv": {
        "ms_kg": (430.0, 0.10), "mu_kg": (50.0, 0.10), "ks_n_per_m": (32e3, 0.12),
        "cs_ns_per_m": (2600.0, 0.15), "kt_n_per_m": (240e3, 0.08),
        "wheelbase_m": (2.80, 0.04), "tyre_radius_m": (0.36, 0.04), "contact_m": (0.20, 0.10),
    },
    "van": {
        "ms_kg": (520.0, 0.15), "mu_kg": (60.0, 0.10), "ks_n_per_m": (48e3, 0.12),
        "cs_ns_per_m": (3000.0, 0.15), "kt_n_per_m": (300e3, 0.08),
        "wheelbase_m": (3.30, 0.05), "tyre_radius_m": (0.33, 0.04), "contact_m": (0.20, 0.10),
    },
    # hold-out families: stiff and light / heavy and long
    "sports": {
        "ms_kg": (300.0, 0.08), "mu_kg": (36.0, 0.10), "ks_n_per_m": (38e3, 0.12),
        "cs_ns_per_m": (2900.0, 0.15), "kt_n_per_m": (230e3, 0.08),
        "wheelbase_m": (2.60, 0.03), "tyre_radius_m": (0.33, 0.03), "contact_m": (0.22, 0.10),
    },
    "minibus": {
        "ms_kg": (720.0, 0.12), "mu_kg": (80.0, 0.10), "ks_n_per_m": (60e3, 0.12),
        "cs_ns_per_m": (3800.0, 0.15), "kt_n_per_m": (360e3, 0.08),
        "wheelbase_m": (3.70, 0.05), "tyre_radius_m": (0.35, 0.04), "contact_m": (0.22, 0.10),
    },
}  # fmt: skip
TRAIN_FAMILIES = ("small_car", "suv", "van")
HOLDOUT_FAMILIES = ("sports", "minibus")


def draw_vehicle(
    family: str,
    rng: np.random.Generator,
    *,
    gain_error_max: float = 0.05,
    noise_range_mps2: tuple[float, float] = (0.02, 0.05),
) -> VehicleModel:
    """A random vehicle of ``family``: each parameter log-normal around the family value,
    gain error uniform in +-``gain_error_max``, noise sigma uniform in ``noise_range_mps2``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {sorted(FAMILIES)}")
    p = {k: float(m * np.exp(s * rng.standard_normal())) for k, (m, s) in FAMILIES[family].items()}
    return VehicleModel(
        family=family,
        gain_error=float(rng.uniform(-gain_error_max, gain_error_max)),
        noise_mps2=float(rng.uniform(*noise_range_mps2)),
        **p,
    )


def envelope_profile(z_m: np.ndarray, dx_m: float, tyre_radius_m: float, contact_m: float) -> np.ndarray:
    """Road elevation as followed by a tyre: rolling-circle envelope, then contact average.

    The circle's centre height at ``x`` is ``max_s z(x + s) + sqrt(R^2 - s^2)``; the
    profile seen by the wheel is that minus ``R`` (grey dilation with a non-flat structure).
    """
    half = int(np.floor(0.95 * tyre_radius_m / dx_m))
    s = np.arange(-half, half + 1) * dx_m
    drop = np.sqrt(tyre_radius_m**2 - s**2) - tyre_radius_m  # <= 0
    env = ndimage.grey_dilation(z_m, structure=drop, mode="nearest", size=drop.size)
    k = max(1, int(round(contact_m / dx_m)))
    if k > 1:
        env = ndimage.uniform_filter1d(env, k, mode="nearest")
    return env


@lru_cache(maxsize=64)
def _discrete_sos(ms: float, mu: float, ks: float, cs: float, kt: float, fs: float) -> np.ndarray:
    """SOS of road elevation -> body acceleration (m/s^2), exact ZOH at fs."""
    a = np.array(
        [
            [0.0, 1.0, 0.0, 0.0],
            [-ks / ms, -cs / ms, ks / ms, cs / ms],
            [0.0, 0.0, 0.0, 1.0],
            [ks / mu, cs / mu, -(ks + kt) / mu, -cs / mu],
        ]
    )
    b = np.array([[0.0], [0.0], [0.0], [kt / mu]])
    c = a[1:2, :]  # body acceleration = row 2 of A @ x (no direct input term)
    d = np.zeros((1, 1))
    ad, bd, cd, dd, _ = signal.cont2discrete((a, b, c, d), 1.0 / fs, method="zoh")
    with warnings.catch_warnings():
        # the double zero at z ~ 1 (acceleration) trips scipy's conditioning check; the
        # response matches the continuous one to < 0.1 % (tests/unit/test_quarter_car.py)
        warnings.simplefilter("ignore", signal.BadCoefficients)
        z, p, k = signal.ss2zpk(ad, bd, cd, dd)
    return signal.zpk2sos(z, p, k)


def body_acceleration(
    vehicle: VehicleModel,
    x_profile_m: np.ndarray,
    z_profile_m: np.ndarray,
    pos_m: np.ndarray,
    fs: float = SIM_FS_HZ,
) -> np.ndarray:
    """Vertical body acceleration at mid-wheelbase (m/s^2, gravity excluded).

    Parameters
    ----------
    vehicle : VehicleModel
    x_profile_m, z_profile_m : (m,) arrays
        Profile grid (uniform step) and elevation, m.
    pos_m : (n,) array
        Front-axle position at each simulation sample (1/fs apart), m. The rear axle is at
        ``pos_m - wheelbase``; positions outside the profile see its end value.
    fs : float
        Simulation rate, Hz (>= 10x the wheel-hop frequency).
    """
    x = np.asarray(x_profile_m, float)
    dx = float(x[1] - x[0])
    zenv = envelope_profile(np.asarray(z_profile_m, float), dx, vehicle.tyre_radius_m, vehicle.contact_m)
    pos = np.asarray(pos_m, float)
    u = np.vstack([np.interp(pos, x, zenv), np.interp(pos - vehicle.wheelbase_m, x, zenv)])
    u -= u[:, :1]  # start at rest (the constant level does not matter to acceleration)
    v = vehicle
    sos = _discrete_sos(v.ms_kg, v.mu_kg, v.ks_n_per_m, v.cs_ns_per_m, v.kt_n_per_m, float(fs))
    acc = signal.sosfilt(sos, u, axis=-1)
    return acc.mean(axis=0)


def imu_sample(
    accel_sim_mps2: np.ndarray,
    fs_sim: float,
    fs_out: float,
    rng: np.random.Generator,
    *,
    gain_error: float = 0.0,
    noise_mps2: float = 0.03,
) -> np.ndarray:
    """What an IMU reports: anti-alias (4th-order Butterworth at 0.4 fs_out, causal), keep
    every ``fs_sim / fs_out``-th sample, add gravity, scale by ``1 + gain_error``, add white
    noise of ``noise_mps2`` (m/s^2)."""
    step = fs_sim / fs_out
    if abs(step - round(step)) > 1e-9 or step < 1:
        raise ValueError(f"fs_out must divide fs_sim; got {fs_sim=}, {fs_out=}")
    sos = signal.butter(4, 0.4 * fs_out, fs=fs_sim, output="sos")
    y = signal.sosfilt(sos, accel_sim_mps2)[:: int(round(step))]
    return (1.0 + gain_error) * (y + GRAVITY_MPS2) + noise_mps2 * rng.standard_normal(y.size)


def drive(
    vehicle: VehicleModel,
    x_profile_m: np.ndarray,
    z_profile_m: np.ndarray,
    x_speed_m: np.ndarray,
    speed_kmh: np.ndarray,
    fs_out: float,
    rng: np.random.Generator,
    *,
    fs_sim: float = SIM_FS_HZ,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Drive a profile with a speed-vs-distance law and record the IMU.

    Parameters
    ----------
    vehicle : VehicleModel
    x_profile_m, z_profile_m : arrays
        Road profile grid and elevation, m.
    x_speed_m, speed_kmh : arrays
        Speed (km/h, > 0) as a function of distance (m, increasing); the vehicle drives
        from ``x_speed_m[0]`` to ``x_speed_m[-1]``.
    fs_out : float
        IMU rate, Hz (must divide ``fs_sim``).
    rng : numpy.random.Generator
        For the sensor noise.

    Returns
    -------
    t_s, pos_m, speed_kmh, accel_vert_mps2 : (n,) arrays at ``fs_out``
        Time from start, front-axle position, speed and measured vertical acceleration
        (gravity included, gain error and noise applied).
    """
    xs = np.asarray(x_speed_m, float)
    vs = np.asarray(speed_kmh, float) / 3.6
    if np.any(vs <= 0):
        raise ValueError("speed_kmh must be > 0")
    # time at each distance node (trapezoid on 1/v), then position at each sim sample
    t_nodes = np.concatenate([[0.0], np.cumsum(np.diff(xs) * 0.5 * (1 / vs[1:] + 1 / vs[:-1]))])
    t_sim = np.arange(0.0, t_nodes[-1], 1.0 / fs_sim)
    pos = np.interp(t_sim, t_nodes, xs)
    acc = body_acceleration(vehicle, x_profile_m, z_profile_m, pos, fs_sim)
    meas = imu_sample(acc, fs_sim, fs_out, rng, gain_error=vehicle.gain_error, noise_mps2=vehicle.noise_mps2)
    step = int(round(fs_sim / fs_out))
    # the IMU sample k reports the anti-aliased signal at sim sample k*step
    t_out = t_sim[::step]
    pos_out = pos[::step]
    v_out = 3.6 * np.interp(pos_out, xs, vs)
    return t_out, pos_out, v_out, meas


def with_params(vehicle: VehicleModel, **changes: float) -> VehicleModel:
    """Copy of a vehicle with some parameters changed (tests, what-ifs)."""
    return replace(vehicle, **changes)
