"""Vertical acceleration response to road roughness (placeholder model).

For now: band-limited white noise whose RMS grows with the segment's true roughness (IRI)
and with speed. Issue 4 replaces it with ISO 8608 road profiles in space and a quarter-car
model; the signature already takes what that needs (distance, speed, segment per sample).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

__all__ = ["vertical_response", "RMS_PER_IRI_MPS2", "REFERENCE_SPEED_MPS"]

#: Body vertical acceleration RMS per unit IRI at the reference speed, m/s² per (m/km).
RMS_PER_IRI_MPS2 = 0.1
REFERENCE_SPEED_MPS = 50.0 / 3.6
_BAND_HZ = (1.0, 15.0)


def vertical_response(
    s_m: np.ndarray,
    speed_mps: np.ndarray,
    segment: np.ndarray,
    iri_m_per_km: np.ndarray,
    *,
    fs_hz: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Dynamic vertical acceleration (m/s², zero mean, gravity excluded) of one trip.

    Parameters
    ----------
    s_m : (n,) distance along the route of each sample, m (unused by this model)
    speed_mps : (n,) speed of each sample, m/s
    segment : (n,) network segment index of each sample
    iri_m_per_km : (n_segments,) true roughness of every network segment, m/km
    fs_hz : sample rate, Hz
    rng : random generator (the model is stochastic in time)

    Returns
    -------
    (n,) float64: noise band-passed 1-15 Hz (capped below Nyquist), scaled to RMS
    ``RMS_PER_IRI_MPS2 * IRI * sqrt(v / 13.9 m/s)``; 0 when standing.
    """
    n = len(speed_mps)
    if n == 0:
        return np.zeros(0)
    hi = min(_BAND_HZ[1], 0.45 * fs_hz)
    lo = min(_BAND_HZ[0], 0.5 * hi)
    sos = butter(2, [lo, hi], btype="bandpass", fs=fs_hz, output="sos")
    noise = sosfilt(sos, rng.standard_normal(n + int(2 * fs_hz)))[int(2 * fs_hz) :]
    noise /= max(float(np.std(noise)), 1e-12)
    rms = RMS_PER_IRI_MPS2 * iri_m_per_km[segment] * np.sqrt(np.maximum(speed_mps, 0.0) / REFERENCE_SPEED_MPS)
    return noise * rms
