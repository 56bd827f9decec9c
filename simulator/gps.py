"""GPS fixes from the true position: rate, noise, dropouts, heading, reported accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadnet import RoadNetwork, to_wgs84
from simulator.geometry import RouteGeometry, locate
from simulator.kinematics import Motion

__all__ = ["Fixes", "gps_fixes"]

#: Heading is reported only above this speed (m/s).
HEADING_MIN_SPEED_MPS = 2.0


@dataclass(frozen=True, eq=False)
class Fixes:
    """Fixes of one trip: sample index, noisy position, heading (NaN when slow), accuracy."""

    index: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    heading_deg: np.ndarray
    accuracy_m: np.ndarray
    true_x_m: np.ndarray
    true_y_m: np.ndarray


def gps_fixes(
    net: RoadNetwork,
    geom: RouteGeometry,
    motion: Motion,
    rng: np.random.Generator,
    *,
    rate_hz: float = 1.0,
    sigma_m: float = 4.0,
    dropouts_per_h: float = 0.0,
    dropout_s: tuple[float, float] = (10.0, 60.0),
    heading_sigma_deg: float = 3.0,
    correlation_s: float = 0.0,
) -> Fixes:
    """GPS fixes on sample rows at ``rate_hz`` (0.2-5 Hz; capped at the sample rate).

    Position: the true point plus Gaussian noise of ``sigma_m`` per axis (m); independent
    between fixes when ``correlation_s`` is 0, else a first-order autoregressive error with
    that time constant (real receivers drift slowly; the marginal σ stays ``sigma_m``).
    Dropouts: Poisson ``dropouts_per_h`` stretches of ``dropout_s`` seconds without fixes.
    Heading: true heading + N(0, ``heading_sigma_deg``), only above 2 m/s.
    Accuracy: about 1.5 σ (a 68 % radius), varying ±20 %.
    """
    if not 0.0 < rate_hz <= 50.0:
        raise ValueError(f"{rate_hz=} must be in (0, 50]")
    if sigma_m < 0:
        raise ValueError(f"{sigma_m=} must be >= 0")
    n = len(motion.t_s)
    fs = motion.fs_hz
    duration = motion.t_s[-1] if n else 0.0
    phase = rng.uniform(0.0, 1.0 / rate_hz)
    times = np.arange(phase, duration + 1e-9, 1.0 / rate_hz)
    idx = np.unique(np.clip(np.rint(times * fs).astype(np.int64), 0, max(n - 1, 0)))
    n_drop = rng.poisson(dropouts_per_h * duration / 3600.0)
    if n_drop:
        t0 = rng.uniform(0.0, duration, n_drop)
        t1 = t0 + rng.uniform(*dropout_s, n_drop)
        t_fix = motion.t_s[idx]
        gone = ((t_fix[:, None] >= t0) & (t_fix[:, None] < t1)).any(axis=1)
        idx = idx[~gone]
    k, off = locate(geom, motion.s_m[idx])
    seg = geom.segments[k]
    x, y = net.point_at(seg, off)
    ex, ey = rng.normal(0.0, sigma_m, (2, len(idx)))
    if correlation_s > 0 and len(idx) > 1:
        dt = np.diff(motion.t_s[idx])
        rho = np.exp(-dt / correlation_s)
        ex, ey = _ar1(ex, rho), _ar1(ey, rho)
    xn, yn = x + ex, y + ey
    lon, lat = to_wgs84(xn, yn)
    heading = (net.heading_at(seg, off) + rng.normal(0.0, heading_sigma_deg, len(idx))) % 360.0
    heading[motion.v_mps[idx] <= HEADING_MIN_SPEED_MPS] = np.nan
    accuracy = 1.5 * max(sigma_m, 0.5) * np.exp(rng.normal(0.0, 0.2, len(idx)))
    return Fixes(idx, lat, lon, heading, accuracy, x, y)


def _ar1(white: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """AR(1) series with marginal σ of ``white``: e[k] = ρ[k] e[k-1] + sqrt(1 - ρ[k]²) w[k].

    Closed form with cumulative products (no loop): e[k] = P[k] Σ_{j≤k} c[j] w[j] / P[j],
    P = cumprod(ρ); computed in log space in blocks where P stays representable.
    """
    out = np.empty_like(white)
    c = np.r_[1.0, np.sqrt(1.0 - rho**2)]
    logp = np.r_[0.0, np.cumsum(np.log(np.maximum(rho, 1e-300)))]
    # Restart the product every ~50 e-folds to keep exp() finite.
    block = np.floor(-logp / 50.0).astype(np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(block)) + 1]
    prev = 0.0
    for lo, hi in zip(starts, np.r_[starts[1:], len(white)]):
        lp = logp[lo:hi] - logp[lo]
        terms = c[lo:hi] * white[lo:hi] * np.exp(-lp)
        terms[0] += prev * (rho[lo - 1] if lo > 0 else 0.0)
        out[lo:hi] = np.exp(lp) * np.cumsum(terms)
        prev = out[hi - 1]
    return out
