"""Reference International Roughness Index of a longitudinal profile (ASTM E1926).

The IRI is the accumulated suspension stroke of a reference quarter-car (the "Golden
Car") driven at 80 km/h over the profile, divided by the distance travelled:

    IRI = (1 / L) * integral |dz_s/dt - dz_u/dt| dt        (m/m, reported in m/km)

Golden Car parameters (per unit sprung mass): tyre ``k1 = 653 s^-2``, suspension
``k2 = 63.3 s^-2``, damping ``c = 6.0 s^-1``, unsprung/sprung mass ratio ``mu = 0.15``.

Algorithm (ASTM E1926-08, section 8), reproduced exactly but vectorised:

1. the profile is smoothed by a 250 mm moving average, applied as the slope
   ``(y[i+k] - y[i]) / (k dx)`` with ``k = max(1, round(0.25 / dx))``;
2. the quarter-car is driven by that slope, discretised exactly (zero-order hold on the
   slope) for the time step ``dx / v``;
3. the state is initialised with the mean slope over the first 11 m (both masses moving
   with the road, no relative velocity);
4. IRI = 1000 * mean |Z1 - Z3| over the ``n - k`` slopes (states in slope units, m/m).

The recursion is evaluated with ``scipy.signal.sosfilt`` (forced response) plus the
analytic free response of the initial state (eigen-decomposition), so there is no
per-sample Python loop and any number of profiles can be scored in one call.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import linalg, signal

__all__ = [
    "iri",
    "golden_car_response",
    "GOLDEN_CAR",
    "IRI_SPEED_MPS",
    "IRI_BASE_LENGTH_M",
    "INIT_LENGTH_M",
    "SHORT_SECTION_LOSS_M",
    "short_section_factor",
]

#: Golden Car parameters, per unit sprung mass (ASTM E1926 table 1).
GOLDEN_CAR = {"k1": 653.0, "k2": 63.3, "c": 6.0, "mu": 0.15}
#: Simulation speed of the Golden Car, m/s (80 km/h).
IRI_SPEED_MPS = 80.0 / 3.6
#: Base length of the moving average applied to the profile, m.
IRI_BASE_LENGTH_M = 0.25
#: Length of profile used to initialise the state, m.
INIT_LENGTH_M = 11.0
#: What the initialisation costs a section's IRI, as a length (m): on a random road with a
#: white slope spectrum (ISO 8608 shape), the expected IRI of a section of length ``L`` is
#: ``(1 - SHORT_SECTION_LOSS_M / L)`` times that of a long road. Monte Carlo with
#: :func:`iri` (150 ISO profiles of 2.4 km, disjoint sections; see
#: ``tests/unit/test_iri.py::test_short_section_factor``): 0.945 at 15 m, 0.959 at 20 m,
#: 0.973 at 30 m, 0.987 at 60 m, 0.9925 at 100 m, i.e. 0.82 m at every length within the
#: Monte Carlo error. The state starts with both masses moving with the road, so the
#: stroke velocity needs ~1 m of travel to reach its random steady state.
SHORT_SECTION_LOSS_M = 0.82


def short_section_factor(length_m: float | np.ndarray) -> float | np.ndarray:
    """Expected IRI of a section of ``length_m`` over the IRI of the same road at length,
    ``1 - SHORT_SECTION_LOSS_M / length_m`` (lengths below 11.25 m, the shortest profile
    :func:`iri` accepts, are taken as 11.25 m).

    An estimate of a road's roughness from a vehicle's response (steady state) is an
    estimate of the long-road IRI; multiplied by this it estimates the ASTM IRI of the
    section itself, which is what a profilometer reports for a short segment.

    >>> round(float(short_section_factor(20.0)), 3)
    0.959
    """
    return 1.0 - SHORT_SECTION_LOSS_M / np.maximum(length_m, INIT_LENGTH_M + IRI_BASE_LENGTH_M)


def _golden_car_matrices(speed_mps: float = IRI_SPEED_MPS) -> tuple[np.ndarray, ...]:
    """Continuous state-space (A, B) of the Golden Car in the distance domain.

    States are ``[z_s, z_s', z_u, z_u']`` with time derivatives; the input is the road
    elevation (or, by linearity, its slope, giving states in slope units).
    """
    k1, k2, c, mu = (GOLDEN_CAR[k] for k in ("k1", "k2", "c", "mu"))
    a = np.array(
        [
            [0.0, 1.0, 0.0, 0.0],
            [-k2, -c, k2, c],
            [0.0, 0.0, 0.0, 1.0],
            [k2 / mu, c / mu, -(k1 + k2) / mu, -c / mu],
        ]
    )
    b = np.array([[0.0], [0.0], [0.0], [k1 / mu]])
    return a, b


@lru_cache(maxsize=32)
def _discrete(dx_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact ZOH discretisation for one profile step; returns (sos, eigvals, w, v_inv).

    The filter maps the slope ``u[i]`` to ``Z1 - Z3`` *after* the update of step ``i``
    (output = C Ad x[i] + C Bd u[i]), as in the standard's recursion.
    """
    a, b = _golden_car_matrices()
    dt = dx_m / IRI_SPEED_MPS
    ad = linalg.expm(a * dt)
    bd = np.linalg.solve(a, (ad - np.eye(4)) @ b)
    c = np.array([[1.0, 0.0, -1.0, 0.0]])
    z, p, k = signal.ss2zpk(ad, bd, c @ ad, c @ bd)
    sos = signal.zpk2sos(z, p, k)
    # free response of the initial state x0 = s * [1, 0, 1, 0]: y[i] = C Ad^(i+1) x0
    lam, vec = np.linalg.eig(ad)
    x0 = np.array([1.0, 0.0, 1.0, 0.0])
    w = (c @ vec).ravel() * np.linalg.solve(vec, x0)  # modal weights
    return sos, lam, w, ad


def _validate_dx(dx_m: float) -> float:
    dx = float(dx_m)
    if not np.isfinite(dx) or dx <= 0:
        raise ValueError(f"dx_m must be a positive finite spacing in metres, got {dx_m=}")
    if dx > 1.0:
        raise ValueError(f"dx_m must be <= 1.0 m for a meaningful IRI, got {dx_m=}")
    return dx


def iri(profile_m: np.ndarray, dx_m: float, *, axis: int = -1) -> np.ndarray:
    """International Roughness Index of longitudinal profiles (ASTM E1926).

    Parameters
    ----------
    profile_m : array_like
        Elevation of the wheel path, metres, sampled every ``dx_m`` along ``axis``.
        Any number of profiles of equal length can be scored at once.
    dx_m : float
        Sample spacing, metres (0 < dx_m <= 1; the standard recommends <= 0.25).
    axis : int, optional
        Axis along the road. Default -1.

    Returns
    -------
    iri_m_per_km : ndarray or float
        IRI in m/km (equivalently mm/m), shape of ``profile_m`` without ``axis``.

    Raises
    ------
    ValueError
        If ``dx_m`` is not a positive spacing, or the profile is shorter than the
        11 m initialisation length plus the moving-average base.
    TypeError
        If ``profile_m`` is not real numeric.

    Warnings
    --------
    NaN anywhere in a profile gives NaN for that profile.

    Notes
    -----
    The result is linear in the profile amplitude and invariant to adding a constant or a
    straight grade (a linear ramp gives exactly 0 with the 11 m slope initialisation).

    Examples
    --------
    >>> import numpy as np
    >>> from agents.iri import iri
    >>> x = np.arange(0, 200, 0.05)
    >>> float(iri(np.zeros_like(x), 0.05))
    0.0
    >>> round(float(iri(0.002 * np.sin(2 * np.pi * x / 10.0), 0.05)), 2)
    1.0
    """
    dx = _validate_dx(dx_m)
    y = np.asarray(profile_m)
    if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)):
        raise TypeError(f"profile_m must be real numeric, got dtype {y.dtype}")
    y = np.moveaxis(y.astype(float, copy=False), axis, -1)
    n = y.shape[-1]
    k = max(1, int(round(IRI_BASE_LENGTH_M / dx)))
    n_init = int(round(INIT_LENGTH_M / dx))
    if n < max(n_init + 1, k + 1):
        raise ValueError(
            f"profile_m too short: {n} samples at {dx_m=} m, need at least "
            f"{max(n_init + 1, k + 1)} (the {INIT_LENGTH_M} m initialisation length)"
        )
    sos, lam, w, _ = _discrete(dx)
    slope = (y[..., k:] - y[..., :-k]) / (k * dx)
    s0 = (y[..., n_init] - y[..., 0]) / INIT_LENGTH_M
    forced = signal.sosfilt(sos, slope, axis=-1)
    i = np.arange(1, slope.shape[-1] + 1)
    free = np.real((w[:, None] * lam[:, None] ** i[None, :]).sum(axis=0))
    rect = np.abs(forced + s0[..., None] * free)
    out = 1000.0 * rect.mean(axis=-1)
    return out if out.ndim else float(out)


def golden_car_response(
    freq_cycles_per_m: np.ndarray, *, moving_average: bool = False
) -> np.ndarray:
    """Gain of the Golden Car from profile slope to the IRI variable ``Z1 - Z3``.

    Parameters
    ----------
    freq_cycles_per_m : array_like
        Spatial frequency of a sinusoidal profile, cycle/m (>= 0).
    moving_average : bool, optional
        Include the 250 mm moving average (a ``sinc`` in spatial frequency). Default False.

    Returns
    -------
    gain : ndarray
        Dimensionless amplitude ratio ``|Z1 - Z3| / |slope|`` at 80 km/h. For a profile
        ``A sin(2 pi n x)`` (metres), the IRI is ``1000 * (2 / pi) * 2 pi n A * gain(n)``
        m/km once the initial transient has decayed.

    Examples
    --------
    >>> from agents.iri import golden_car_response
    >>> round(float(golden_car_response(0.0)), 6)
    0.0
    >>> bool(golden_car_response(0.066) > 1.5)   # sprung-mass resonance near 15 m
    True
    """
    n = np.asarray(freq_cycles_per_m, dtype=float)
    if np.any(n < 0):
        raise ValueError("freq_cycles_per_m must be >= 0")
    a, b = _golden_car_matrices()
    c = np.array([1.0, 0.0, -1.0, 0.0])
    s = 2j * np.pi * n * IRI_SPEED_MPS
    # one batched solve of (sI - A) x = b for every frequency
    m = s.reshape(-1, 1, 1) * np.eye(4) - a
    x = np.linalg.solve(m, np.broadcast_to(b.reshape(4, 1), (m.shape[0], 4, 1)))
    gain = np.abs(x[..., 0] @ c).reshape(n.shape)
    if moving_average:
        gain = gain * np.abs(np.sinc(n * IRI_BASE_LENGTH_M))
    return gain
