"""Road roughness (IRI, m/km) from a vehicle's vertical acceleration, and its fleet aggregate.

Physics of the estimate
-----------------------
A road with the ISO 8608 spectrum ``Gd(n) = Gd(n0) (n / n0)^-2`` has a *white* slope
spectrum ``Gs = (2 pi n0)^2 Gd(n0)`` (m/m)^2/(cycle/m). For such a road:

* the IRI (Golden Car, :mod:`agents.iri`) is Gaussian-rectified stroke velocity, so
  ``IRI = 1000 sqrt(2/pi) sqrt(Gs J_G)`` with ``J_G = int |H_G(n) MA(n)|^2 dn``;
* a vehicle at speed ``v`` sees the temporal elevation spectrum ``Gs v / (2 pi f)^2`` and
  its body acceleration, after our band-pass, has mean square ``a2 = Gs v K(v)`` with
  ``K(v) = int |H_acc(f)|^2 / (2 pi f)^2 |W(f / v)|^2 |F(f)|^2 df`` (``W``: tyre contact and
  two-axle wheelbase filters in space, ``F``: band-pass and sensor anti-alias in time).

Hence ``IRI_hat = 1000 sqrt(2/pi) sqrt(J_G) sqrt(mean(a^2 / (v K(v))))``: the ratio of the
body response to the Golden Car's response, at the speed of each sample. ``K`` is computed
for a *nominal* passenger car (:data:`NOMINAL_VEHICLE`), the prior; the actual vehicle's
parameters are never used. What the prior gets wrong is mostly a per-vehicle gain, learned
by :func:`fleet_calibrate` from segments that several vehicles drive.

Robustness: the normalised power ``q = a^2 / (v K(v))`` is averaged in 10 m windows (from
``ENTRY_SKIP_M`` = 3 m after the pass's entry, once the rear axle is on the segment too) and
windows driven slower than ``SLOW_FRACTION`` of the pass's cruise speed (the driver braked
for a speed bump, a rail crossing, a junction) are left out, and windows above
``WINSOR_FACTOR`` times the pass median are clipped there, so that an impact (handled by
:mod:`agents.potholes`) does not dominate the roughness of the pass. Both constants were
set on the development bench (seed 1, families small_car/suv/van) only. The sensor noise floor is measured in the band above
the body's response (when ``fs >= 60`` Hz) and subtracted.

Levels (:data:`IRI_LEVEL_THRESHOLDS_M_PER_KM`): good < 2.5 <= fair < 4.0 <= poor, the
values of the SQL function ``iri_level``. Justification: the World Bank IRI scale puts new
and well-kept asphalt at 1.5-2.5 m/km and "damaged/maintenance needed" paved roads above
about 4 m/km at urban speeds; the FHWA "good" limit is 1.5 m/km (95 in/mi) for highways and
"poor" > 2.7 m/km (170 in/mi), which is too strict for 30-50 km/h urban streets where
users first notice roughness around 3-4 m/km. ISO 8608 class centres map to A ~ 2.2,
B ~ 4.3, C ~ 8.7, D ~ 17, E ~ 35 m/km (``_iri_scale() * sqrt((2 pi n0)^2 Gd(n0))``, the
Golden Car on the ISO shape; the simulator's ASTM truth agrees: class medians 1.7, 4.2,
8.7 m/km in the network benchmark, each class spanning a factor 2): "good" = A and the
smoothest B, "fair" = low B, "poor" = upper B and worse. The 4.0 threshold thus
falls near the centre of class B, where many urban segments lie: their level is decided
by a few per cent of error (most level errors of the benchmark are within 15 % of a
threshold, see ``bench/accuracy_roughness.py``).

Streaming: :func:`roughness_features` takes one chunk of a pass and the state of the
previous chunk (``zi``) and returns the cumulative features of the pass so far with the new
state (``zf``); feeding a pass in chunks gives the same features as one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, Literal, Sequence

import numpy as np
from scipy import integrate, signal
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import lsqr

from agents._order_stats import median, percentile
from agents._sosfilt import sosfilt, sosfilt_zi
from agents.iri import golden_car_response, short_section_factor

__all__ = [
    "RoughnessFeatures",
    "RoughnessState",
    "SampleTerms",
    "sample_terms",
    "SegmentScore",
    "roughness_features",
    "estimate_from_features",
    "estimate_iri",
    "fleet_calibrate",
    "segment_scores",
    "iri_level",
    "confidence",
    "NOMINAL_VEHICLE",
    "IRI_LEVEL_THRESHOLDS_M_PER_KM",
]

Level = Literal["good", "fair", "poor"]

#: Level thresholds, m/km: good < 2.5 <= fair < 4.0 <= poor (same as SQL ``iri_level``).
IRI_LEVEL_THRESHOLDS_M_PER_KM = (2.5, 4.0)

#: The physics prior: a nominal passenger car (quarter of it), SI units. Not any vehicle of
#: the fleet; mid-range literature values (body ~1.3 Hz, wheel hop ~11 Hz, damping ~0.3).
NOMINAL_VEHICLE = {
    "ms_kg": 320.0,  # sprung mass per corner
    "mu_kg": 40.0,  # unsprung mass per corner
    "ks_n_per_m": 25e3,  # suspension stiffness
    "cs_ns_per_m": 1700.0,  # suspension damping
    "kt_n_per_m": 200e3,  # tyre radial stiffness
    "wheelbase_m": 2.7,
    "contact_m": 0.2,  # tyre contact length (spatial moving average)
}

HIGHPASS_HZ = 0.5  #: removes gravity, attitude and drift (sample rates below 60 Hz)
#: lower edge of the roughness band at >= 60 Hz, above the body's heave mode (see
#: :func:`_bands`: the wheelbase filter's first null crosses the body mode at urban speeds)
HIGHPASS_HIGH_RATE_HZ = 2.0
BAND_TOP_HZ = 20.0  #: upper edge of the roughness band (capped at 0.35 fs)
NOISE_BAND = (0.6, 0.9)  #: band for the noise floor, fractions of Nyquist (fs >= 60 Hz)
WINDOW_M = 10.0  #: window length for the robust average, m
#: the windows of a pass start this far after its entry, m: until the rear axle is on the
#: segment (a passenger car's wheelbase is 2.5-3.3 m), half of what the IMU at mid-wheelbase
#: responds to is the previous segment's road (see docs/decisions.md, "Roughness level
#: accuracy: the previous segment under the rear axle")
ENTRY_SKIP_M = 3.0
WINSOR_FACTOR = 6.0  #: windows above this multiple of the pass median are clipped
SLOW_FRACTION = 0.75  #: windows slower than this x the pass's cruise speed are left out
MODEL_REL_ERROR = 0.12  #: segment-level model error (1 sigma, relative), from the dev bench
MIN_DISTANCE_M = 20.0  #: shorter passes get no IRI
MIN_SPEED_KMH = 10.0  #: slower passes (mean) get no IRI
_MIN_SAMPLE_SPEED_MPS = 1.0  #: samples slower than this are ignored (stopped vehicle)


# ----------------------------------------------------------------------------------------
# physics prior
# ----------------------------------------------------------------------------------------
def _body_accel_response(f_hz: np.ndarray, v: dict[str, float]) -> np.ndarray:
    """|H| from road elevation (m) to body acceleration (m/s^2) of a quarter car."""
    s = 2j * np.pi * f_hz
    ms, mu, ks, cs, kt = (v[k] for k in ("ms_kg", "mu_kg", "ks_n_per_m", "cs_ns_per_m", "kt_n_per_m"))
    n = cs * s + ks
    d = (mu * s**2 + n + kt) * (ms * s**2 + n) - n**2
    return np.abs(s**2 * n * kt / d)


@lru_cache(maxsize=16)
def _bands(fs: float) -> tuple[np.ndarray, np.ndarray | None]:
    """The roughness band (and the noise band at >= 60 Hz) at sample rate ``fs``.

    At >= 60 Hz the band starts at :data:`HIGHPASS_HIGH_RATE_HZ` (2 Hz), above the body's
    heave mode (~1-1.5 Hz). The IMU at mid-wheelbase averages the two axles' responses, a
    spatial filter ``cos^2(pi n wheelbase)`` whose first null, at ``f = v / (2 wheelbase)``,
    crosses the body mode at 20-35 km/h: there the response depends steeply on the
    vehicle's wheelbase, which the nominal prior does not know. A van (3.3 m) then read
    +9 % at 20 km/h and -8 % at 50 km/h against its own mean (K(v) of the development
    families' mean parameters), a speed dependence no per-vehicle gain can remove; from
    2 Hz the band sees the wheel-hop response, where the filter oscillates fast and
    averages out (spread over 20-60 km/h: small car 1.8 -> 3.3 %, SUV 4.2 -> 1.8 %, van
    18.5 -> 4.9 %). Below 60 Hz the band stops at 0.35 fs (3.5 Hz at 10 Hz) and keeps its
    0.5 Hz edge: there is no wheel-hop band to use.
    """
    top = min(BAND_TOP_HZ, 0.35 * fs)
    lo = HIGHPASS_HIGH_RATE_HZ if fs >= 60.0 else HIGHPASS_HZ
    band = signal.butter(2, [lo, top], btype="bandpass", fs=fs, output="sos")
    hf = None
    if fs >= 60.0:
        lo, hi = NOISE_BAND[0] * fs / 2, NOISE_BAND[1] * fs / 2
        hf = signal.butter(4, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return band, hf


@lru_cache(maxsize=16)
def _golden_white_integral() -> float:
    """J_G = int_0^inf |H_G(n) MA(n)|^2 dn, cycle/m."""
    n = np.linspace(0.0, 20.0, 40001)
    g = golden_car_response(n, moving_average=True) ** 2
    return float(integrate.trapezoid(g, n))


@lru_cache(maxsize=16)
def _k_table(fs: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """log-speed grid and log K(v) for the nominal vehicle at sample rate fs.

    Also returns the noise calibration: the fraction of white noise power passed by the
    roughness band and by the noise band (both relative to the full 0..fs/2 band).
    """
    band, hf = _bands(fs)
    f = np.linspace(1e-3, fs / 2, 20001)
    _, hb = signal.sosfreqz(band, worN=f, fs=fs)
    # nominal IMU anti-alias: 4th-order Butterworth at 0.4 fs
    _, haa = signal.sosfreqz(signal.butter(4, 0.4 * fs, fs=fs * 4, output="sos"), worN=f, fs=fs * 4)
    base = _body_accel_response(f, NOMINAL_VEHICLE) ** 2
    base = base * np.abs(hb) ** 2 * np.abs(haa) ** 2
    speeds = np.geomspace(0.5, 50.0, 120)
    logk = np.empty_like(speeds)
    for i, sp in enumerate(speeds):
        n = f / sp
        w = np.cos(np.pi * n * NOMINAL_VEHICLE["wheelbase_m"]) ** 2
        w *= np.sinc(n * NOMINAL_VEHICLE["contact_m"]) ** 2
        # a white slope spectrum Gs gives elevation Gs v/(2 pi f)^2 in time: K = a2/(Gs v)
        integrand = base * w / (2 * np.pi * f) ** 2
        logk[i] = np.log(integrate.trapezoid(integrand, f))
    white_band = float(integrate.trapezoid(np.abs(hb) ** 2, f)) / (fs / 2)
    white_hf = 0.0
    if hf is not None:
        _, hh = signal.sosfreqz(hf, worN=f, fs=fs)
        white_hf = float(integrate.trapezoid(np.abs(hh) ** 2, f)) / (fs / 2)
    return np.log(speeds), logk, white_band, white_hf


def _k_of_speed(speed_mps: np.ndarray, fs: float) -> np.ndarray:
    logv, logk, _, _ = _k_table(float(fs))
    v = np.clip(speed_mps, np.exp(logv[0]), np.exp(logv[-1]))
    return np.exp(np.interp(np.log(v), logv, logk))


def _iri_scale() -> float:
    """IRI (m/km) of a road with unit white slope spectrum: 1000 sqrt(2/pi) sqrt(J_G)."""
    return 1000.0 * np.sqrt(2.0 / np.pi) * np.sqrt(_golden_white_integral())


# ----------------------------------------------------------------------------------------
# streaming features
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RoughnessFeatures:
    """Cumulative features of one pass (all chunks so far).

    Attributes
    ----------
    fs : float
        Sample rate, Hz.
    n_samples : int
        Samples seen.
    distance_m : float
        Distance driven (integral of speed), m.
    duration_s : float
        n_samples / fs, s.
    sum_q : float
        Sum over moving samples of ``a_band^2 / (v K(v))``, (m/m)^2/(cycle/m) per sample
        (``q``, the white slope spectrum each sample implies).
    n_q : int
        Samples counted in ``sum_q`` (speed >= 1 m/s).
    sum_noise_q : float
        Sum of ``noise_density * white_band / (v K(v))``-weights: ``sum 1 / (v K(v))``, used
        to subtract the noise floor, (m/s^2)^-2 units of ``q``.
    sum_sq_band : float
        Sum of squared band-passed acceleration, (m/s^2)^2.
    sum_sq_noise : float
        Sum of squared acceleration in the noise band, (m/s^2)^2 (0 when fs < 60 Hz).
    max_abs_band_mps2 : float
        Largest |band-passed acceleration|, m/s^2.
    window_q : ndarray
        Mean ``q`` of each completed 10 m window.
    window_inv_vk : ndarray
        Mean ``1 / (v K(v))`` of each window (for the noise-floor correction).
    window_speed_mps : ndarray
        Mean speed of each window, m/s (windows where the driver slowed down are left out
        of the estimate: speed bumps, rail crossings, junctions).
    """

    fs: float
    n_samples: int = 0
    distance_m: float = 0.0
    sum_q: float = 0.0
    n_q: int = 0
    sum_inv_vk: float = 0.0
    sum_sq_band: float = 0.0
    sum_sq_noise: float = 0.0
    max_abs_band_mps2: float = 0.0
    window_q: np.ndarray = field(default_factory=lambda: np.zeros(0))
    window_inv_vk: np.ndarray = field(default_factory=lambda: np.zeros(0))
    window_speed_mps: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    @property
    def mean_speed_kmh(self) -> float:
        return 3.6 * self.distance_m / self.duration_s if self.n_samples else float("nan")

    @property
    def rms_band_mps2(self) -> float:
        """RMS of the band-passed vertical acceleration, m/s^2 (``roughness_rms_mps2``)."""
        return float(np.sqrt(self.sum_sq_band / self.n_samples)) if self.n_samples else float("nan")

    @property
    def noise_density(self) -> float:
        """Estimated white-noise variance of the sensor over 0..fs/2, (m/s^2)^2 (NaN if
        the sample rate is too low to measure it)."""
        _, _, _, white_hf = _k_table(float(self.fs))
        if white_hf == 0.0 or self.n_samples == 0:
            return float("nan")
        return self.sum_sq_noise / self.n_samples / white_hf


@dataclass(frozen=True, kw_only=True)
class RoughnessState:
    """Carried between chunks of one pass (``zi`` in, ``zf`` out). No hidden state.

    ``band_zi`` / ``noise_zi`` are ``sosfilt`` states (n_sections, 2); the partial window
    accumulates the 10 m window that is still open.
    """

    features: RoughnessFeatures
    band_zi: np.ndarray
    noise_zi: np.ndarray | None
    window_pos_m: float = 0.0  # distance at the start of the open window, m
    partial_sum_q: float = 0.0
    partial_n: int = 0
    partial_inv_vk: float = 0.0
    partial_sum_v: float = 0.0
    partial_n_all: int = 0

    def to_dict(self) -> dict[str, Any]:
        feat = {f.name: getattr(self.features, f.name) for f in fields(self.features)}
        feat["window_q"] = self.features.window_q.tolist()
        feat["window_inv_vk"] = self.features.window_inv_vk.tolist()
        feat["window_speed_mps"] = self.features.window_speed_mps.tolist()
        return {
            "features": feat,
            "band_zi": self.band_zi.tolist(),
            "noise_zi": None if self.noise_zi is None else self.noise_zi.tolist(),
            "window_pos_m": self.window_pos_m,
            "partial_sum_q": self.partial_sum_q,
            "partial_n": self.partial_n,
            "partial_inv_vk": self.partial_inv_vk,
            "partial_sum_v": self.partial_sum_v,
            "partial_n_all": self.partial_n_all,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoughnessState:
        feat = dict(d["features"])
        feat["window_q"] = np.asarray(feat["window_q"], float)
        feat["window_inv_vk"] = np.asarray(feat["window_inv_vk"], float)
        feat["window_speed_mps"] = np.asarray(feat["window_speed_mps"], float)
        return cls(
            features=RoughnessFeatures(**feat),
            band_zi=np.asarray(d["band_zi"], float),
            noise_zi=None if d["noise_zi"] is None else np.asarray(d["noise_zi"], float),
            window_pos_m=float(d["window_pos_m"]),
            partial_sum_q=float(d["partial_sum_q"]),
            partial_n=int(d["partial_n"]),
            partial_inv_vk=float(d["partial_inv_vk"]),
            partial_sum_v=float(d.get("partial_sum_v", 0.0)),
            partial_n_all=int(d.get("partial_n_all", 0)),
        )


def _validate_fs(fs: float) -> float:
    fs = float(fs)
    if not np.isfinite(fs) or fs < 4.0:
        raise ValueError(f"fs must be a finite sample rate >= 4 Hz, got {fs=}")
    return fs


def _as_float(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be real numeric, got dtype {a.dtype}")
    return a.astype(float, copy=False)


@dataclass(frozen=True, slots=True)
class SampleTerms:
    """Per-sample terms of the estimate (all (n,) arrays).

    y : band-passed acceleration, m/s^2; yn2 : squared noise-band acceleration (zeros when
    fs < 60 Hz); v : speed, m/s; moving : v >= 1 m/s; inv_vk : 1 / (v K(v)) where moving
    (else 0); q : y^2 inv_vk, the white slope spectrum each sample implies.
    """

    y: np.ndarray
    yn2: np.ndarray
    v: np.ndarray
    moving: np.ndarray
    inv_vk: np.ndarray
    q: np.ndarray


def sample_terms(
    accel_vert_mps2: np.ndarray,
    speed_kmh: np.ndarray,
    fs: float,
    *,
    band_zi: np.ndarray | None = None,
    noise_zi: np.ndarray | None = None,
) -> tuple[SampleTerms, np.ndarray, np.ndarray | None]:
    """The per-sample part of :func:`roughness_features`, for a continuous stream.

    The filters carry their state (``band_zi``/``noise_zi`` in, the returned states out;
    ``None`` starts in steady state on the first sample), so a vehicle's stream can be
    filtered as it arrives and aggregated later, once the samples are placed on segments.

    Returns
    -------
    terms : SampleTerms
    band_zf, noise_zf : filter states for the next chunk (``noise_zf`` None below 60 Hz)
    """
    fs = _validate_fs(fs)
    a = _as_float(accel_vert_mps2, "accel_vert_mps2")
    v_kmh = _as_float(speed_kmh, "speed_kmh")
    band, hf = _bands(fs)
    if band_zi is None:
        band_zi = sosfilt_zi(band) * (a[0] if a.size else 0.0)
    if hf is not None and noise_zi is None:
        noise_zi = sosfilt_zi(hf) * (a[0] if a.size else 0.0)
    y, band_zf = sosfilt(band, a, band_zi)
    noise_zf = None
    yn2 = np.zeros_like(y)
    if hf is not None:
        yn, noise_zf = sosfilt(hf, a, noise_zi)
        yn2 = yn**2
    v = v_kmh / 3.6
    moving = v >= _MIN_SAMPLE_SPEED_MPS
    inv_vk = np.where(moving, 1.0 / (np.maximum(v, 1e-3) * _k_of_speed(v, fs)), 0.0)
    return SampleTerms(y=y, yn2=yn2, v=v, moving=moving, inv_vk=inv_vk, q=y**2 * inv_vk), band_zf, noise_zf


def roughness_features(
    accel_vert_mps2: np.ndarray,
    speed_kmh: np.ndarray | float,
    fs: float,
    *,
    zi: RoughnessState | None = None,
) -> tuple[RoughnessFeatures, RoughnessState]:
    """Roughness features of one chunk of a pass, accumulated onto the previous chunks.

    Parameters
    ----------
    accel_vert_mps2 : (n,) array_like
        Vertical acceleration of the body, m/s^2, gravity included or not (the constant
        part is removed by a causal 0.5 Hz high-pass).
    speed_kmh : (n,) array_like or float
        Vehicle speed at each sample, km/h.
    fs : float
        Sample rate, Hz (>= 4).
    zi : RoughnessState, optional
        State returned by the previous chunk of the same pass; ``None`` starts a pass (the
        filters start in steady state on the first sample, so gravity gives no transient).

    Returns
    -------
    features : RoughnessFeatures
        Cumulative features of the pass so far; feed them to :func:`estimate_from_features`.
    zf : RoughnessState
        State to pass as ``zi`` with the next chunk.

    Raises
    ------
    ValueError
        If shapes disagree, ``fs`` is invalid or ``zi`` belongs to another ``fs``.
    TypeError
        If the inputs are not real numeric.

    Warnings
    --------
    NaN samples are not allowed (they would poison the filter state); drop them upstream.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = 9.81 + 0.3 * rng.standard_normal(3000)
    >>> f1, z = roughness_features(a[:1000], 50.0, 100.0)
    >>> f2, z = roughness_features(a[1000:], 50.0, 100.0, zi=z)
    >>> f, _ = roughness_features(a, 50.0, 100.0)
    >>> bool(np.isclose(f.sum_q, f2.sum_q)), f2.n_samples
    (True, 3000)
    """
    fs = _validate_fs(fs)
    a = _as_float(accel_vert_mps2, "accel_vert_mps2")
    if a.ndim != 1:
        raise ValueError(f"accel_vert_mps2 must be 1-D (one pass), got shape {a.shape}")
    v_kmh = _as_float(speed_kmh, "speed_kmh")
    if v_kmh.ndim == 0:
        v_kmh = np.full(a.shape, float(v_kmh))
    if v_kmh.shape != a.shape:
        raise ValueError(f"speed_kmh shape {v_kmh.shape} must match accel_vert_mps2 {a.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(v_kmh))):
        raise ValueError("accel_vert_mps2 and speed_kmh must be finite (drop NaN upstream)")
    band, hf = _bands(fs)
    if zi is None:
        if a.size == 0:
            state = RoughnessState(
                features=RoughnessFeatures(fs=fs),
                band_zi=np.zeros((band.shape[0], 2)),
                noise_zi=None if hf is None else np.zeros((hf.shape[0], 2)),
                window_pos_m=ENTRY_SKIP_M,
            )
            return state.features, state
        band_zi = sosfilt_zi(band) * a[0]
        noise_zi = None if hf is None else sosfilt_zi(hf) * a[0]
        zi = RoughnessState(
            features=RoughnessFeatures(fs=fs),
            band_zi=band_zi,
            noise_zi=noise_zi,
            window_pos_m=ENTRY_SKIP_M,
        )
    else:
        if zi.features.fs != fs:
            raise ValueError(f"zi was built for fs={zi.features.fs}, got {fs=}")
        if zi.band_zi.shape != (band.shape[0], 2):
            raise ValueError(
                f"zi.band_zi has shape {zi.band_zi.shape}, expected {(band.shape[0], 2)}"
            )
    if a.size == 0:
        return zi.features, zi

    terms, band_zf, noise_zf = sample_terms(a, v_kmh, fs, band_zi=zi.band_zi, noise_zi=zi.noise_zi)
    y = terms.y
    sum_sq_noise = float(np.sum(terms.yn2))
    v, moving, inv_vk, q = terms.v, terms.moving, terms.inv_vk, terms.q
    f0 = zi.features
    # distance at the start of each sample, and its 10 m window index (negative: the
    # samples of the first ENTRY_SKIP_M, in no window)
    d_start = f0.distance_m + np.concatenate([[0.0], np.cumsum(v[:-1] / fs)])
    d_end = f0.distance_m + float(np.sum(v) / fs)
    w_idx = np.floor((d_start - zi.window_pos_m) / WINDOW_M).astype(np.int64)
    last = max(int(w_idx[-1]), 0)
    inside = (w_idx >= 0).astype(float)
    w_idx = np.maximum(w_idx, 0)
    sums = np.bincount(w_idx, weights=q * inside, minlength=last + 1)
    counts = np.bincount(w_idx, weights=moving * inside, minlength=last + 1)
    invs = np.bincount(w_idx, weights=inv_vk * inside, minlength=last + 1)
    n_all = np.bincount(w_idx, weights=inside, minlength=last + 1)
    vsum = np.bincount(w_idx, weights=v * inside, minlength=last + 1)
    sums[0] += zi.partial_sum_q
    counts[0] += zi.partial_n
    invs[0] += zi.partial_inv_vk
    vsum[0] += zi.partial_sum_v
    n_all[0] += zi.partial_n_all
    done_q = sums[:last] / np.maximum(counts[:last], 1)
    done_inv = invs[:last] / np.maximum(counts[:last], 1)
    keep = counts[:last] > 0
    features = replace(
        f0,
        n_samples=f0.n_samples + a.size,
        distance_m=d_end,
        sum_q=f0.sum_q + float(np.sum(q)),
        n_q=f0.n_q + int(np.sum(moving)),
        sum_inv_vk=f0.sum_inv_vk + float(np.sum(inv_vk)),
        sum_sq_band=f0.sum_sq_band + float(np.sum(y**2)),
        sum_sq_noise=f0.sum_sq_noise + sum_sq_noise,
        max_abs_band_mps2=max(f0.max_abs_band_mps2, float(np.max(np.abs(y)))),
        window_q=np.concatenate([f0.window_q, done_q[keep]]),
        window_inv_vk=np.concatenate([f0.window_inv_vk, done_inv[keep]]),
        window_speed_mps=np.concatenate(
            [f0.window_speed_mps, (vsum[:last] / np.maximum(n_all[:last], 1))[keep]]
        ),
    )
    zf = RoughnessState(
        features=features,
        band_zi=band_zf,
        noise_zi=noise_zf,
        window_pos_m=zi.window_pos_m + last * WINDOW_M,
        partial_sum_q=float(sums[last]),
        partial_n=int(counts[last]),
        partial_inv_vk=float(invs[last]),
        partial_sum_v=float(vsum[last]),
        partial_n_all=int(n_all[last]),
    )
    return features, zf


def confidence(fs: float, distance_m: float, mean_speed_kmh: float) -> float:
    """Confidence 0..1 of one pass's IRI: lower at low sample rate, short or slow passes.

    * sample rate: 1 at >= 50 Hz, 0.85 at 25 Hz, 0.6 at 10 Hz (no wheel-hop band, no
      noise-floor measurement; linear in log fs between), 0.4 below 5 Hz;
    * coverage: ``min(1, distance / 100 m) ** 0.5`` (0 below 20 m);
    * speed: 1 within 20-110 km/h, falling linearly to 0 at 10 km/h and to 0.7 at 150.
    """
    c_fs = _confidence_of_rate(float(fs))
    if not distance_m >= MIN_DISTANCE_M or not mean_speed_kmh >= MIN_SPEED_KMH:
        return 0.0
    c_len = min(1.0, distance_m / 100.0) ** 0.5
    # np.interp's flat stretch gives exactly 1 there: most passes skip the call
    c_v = 1.0 if 20.0 <= mean_speed_kmh <= 110.0 else float(
        np.interp(mean_speed_kmh, [10.0, 20.0, 110.0, 150.0], [0.0, 1.0, 1.0, 0.7]))
    return round(c_fs * c_len * c_v, 3)


@lru_cache(maxsize=16)
def _confidence_of_rate(fs: float) -> float:
    """:func:`confidence`'s sample-rate factor (a vehicle's rate is the same every pass)."""
    return float(np.interp(np.log(fs), np.log([5.0, 10.0, 25.0, 50.0]), [0.4, 0.6, 0.85, 1.0]))


def estimate_from_features(
    features: RoughnessFeatures, *, gain: float = 1.0, partial: RoughnessState | None = None
) -> tuple[float, float]:
    """IRI estimate (m/km) and confidence (0..1) of a pass from its features.

    Parameters
    ----------
    features : RoughnessFeatures
        From :func:`roughness_features` (cumulative over the pass).
    gain : float, optional
        Per-vehicle calibration factor from :func:`fleet_calibrate` (the estimate is
        divided by it). Default 1 (the physics prior).
    partial : RoughnessState, optional
        The final state; its open window (if >= 5 m) is included.

    Returns
    -------
    iri_m_per_km : float
        The ASTM IRI expected over the pass's distance (the steady-state estimate times
        :func:`agents.iri.short_section_factor`). NaN when the pass is shorter than 20 m
        or slower than 10 km/h on average.
    confidence : float
        See :func:`confidence`.
    """
    f = features
    conf = confidence(f.fs, f.distance_m, f.mean_speed_kmh)
    if conf == 0.0 or f.n_q == 0:
        return float("nan"), 0.0
    wq, winv, wv = f.window_q, f.window_inv_vk, f.window_speed_mps
    if partial is not None and partial.partial_n > 0:
        open_m = f.distance_m - partial.window_pos_m
        if open_m >= WINDOW_M / 2:
            wq = np.concatenate((wq, [partial.partial_sum_q / partial.partial_n]))
            winv = np.concatenate((winv, [partial.partial_inv_vk / partial.partial_n]))
            wv = np.concatenate((wv, [partial.partial_sum_v / max(partial.partial_n_all, 1)]))
    if wv.size >= 3:
        # leave out windows driven much slower than the pass (the driver braked: speed
        # bump, rail crossing, junction): their response is not road roughness
        cruise = percentile(wv.tolist(), 75.0)
        keep = wv >= SLOW_FRACTION * cruise
        wq, winv = wq[keep], winv[keep]
    if wq.size == 0:
        wq = np.array([f.sum_q / f.n_q])
        winv = np.array([f.sum_inv_vk / f.n_q])
    # noise floor: white variance sigma^2 over 0..fs/2, a fraction white_band in our band
    nd = f.noise_density
    if np.isfinite(nd):
        _, _, white_band, _ = _k_table(float(f.fs))
        wq = np.maximum(wq - nd * white_band * winv, 0.1 * wq)
    med = median(wq.tolist())
    q = float(np.mean(np.minimum(wq, WINSOR_FACTOR * med))) if med > 0 else float(np.mean(wq))
    # the vehicle's response gives the road's steady-state IRI; a short pass's ASTM IRI is
    # lower by the Golden Car's run-in (agents.iri.short_section_factor: -4 % at 20 m)
    est = _iri_scale() * np.sqrt(q) * short_section_factor(f.distance_m) / gain
    return float(est), conf


def estimate_iri(
    accel_vert_mps2: np.ndarray,
    speed_kmh: np.ndarray | float,
    fs: float,
    *,
    axis: int = -1,
    gain: float | np.ndarray = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """IRI of whole passes from vertical acceleration, without the vehicle's parameters.

    Parameters
    ----------
    accel_vert_mps2 : array_like
        Vertical body acceleration, m/s^2 (gravity included or not), along ``axis``; other
        axes index passes of equal length.
    speed_kmh : array_like or float
        Speed, km/h, broadcastable to ``accel_vert_mps2`` (scalar for constant speed).
    fs : float
        Sample rate, Hz (100, 50 or 10 in the fleet).
    axis : int, optional
        Time axis. Default -1.
    gain : float or array_like, optional
        Per-vehicle calibration factor(s) (:func:`fleet_calibrate`), broadcast to the
        passes. Default 1.

    Returns
    -------
    iri_m_per_km : ndarray or float
        Estimated IRI, m/km; NaN for passes < 20 m or < 10 km/h.
    confidence : ndarray or float
        0..1, lower at 10 Hz, short coverage or low speed.

    Examples
    --------
    >>> import numpy as np
    >>> est, conf = estimate_iri(np.full(1000, 9.81), 50.0, 100.0)
    >>> round(float(est), 3), float(conf)
    (0.0, 1.0)
    """
    fs = _validate_fs(fs)
    a = _as_float(accel_vert_mps2, "accel_vert_mps2")
    if a.ndim == 0:
        raise ValueError("accel_vert_mps2 must have at least one dimension")
    v = np.broadcast_to(_as_float(speed_kmh, "speed_kmh"), a.shape)
    a = np.moveaxis(a, axis, -1)
    v = np.moveaxis(v, axis, -1)
    lead = a.shape[:-1]
    g = np.broadcast_to(np.asarray(gain, float), lead)
    out = np.full(lead, np.nan)
    conf = np.zeros(lead)
    for idx in np.ndindex(*lead):
        feats, zf = roughness_features(a[idx], v[idx], fs)
        out[idx], conf[idx] = estimate_from_features(feats, gain=float(g[idx]), partial=zf)
    if not lead:
        return float(out), float(conf)
    return out, conf


# ----------------------------------------------------------------------------------------
# fleet self-calibration and segment scores
# ----------------------------------------------------------------------------------------
def fleet_calibrate(
    iri_per_pass: np.ndarray,
    vehicle_ids: Sequence[Any] | np.ndarray,
    segment_ids: Sequence[Any] | np.ndarray,
    *,
    reference_iri: dict[Any, float] | None = None,
    prior_gains: dict[Any, float] | None = None,
    n_iter: int = 30,
    min_shared: int = 2,
) -> dict[Any, float]:
    """Per-vehicle gain factors learned from segments that several vehicles drive.

    Model: ``log e_p = log g_v(p) + log r_s(p) + noise`` for pass ``p`` (estimate ``e``,
    vehicle gain ``g``, segment roughness ``r``). Solved by alternating medians of log
    ratios (robust to bad passes): ``r_s = median(e / g)`` over the segment's passes, then
    ``g_v = median(e / r)`` over the vehicle's passes, until stable, started from
    ``prior_gains`` or, without them, from a Huber least-squares fit of the same model (the
    medians alone, started from 1, stall when the fleet mixes vehicle families of
    different gains). A vehicle new to the fleet thus gets its bias from the segments the
    others have already scored.

    Anchoring (the absolute level needs a reference, the fleet only fixes ratios):

    * with ``reference_iri`` (segment -> IRI, m/km, e.g. a few streets measured by the
      city's laser profilometer), the scale makes the fleet's scores of those segments
      match them in median;
    * without it, the median gain over vehicles is 1: the physics prior
      (:data:`NOMINAL_VEHICLE`) is trusted on average over the fleet, its residual bias
      is the fleet's mean deviation from the nominal car (+10-25 % in the simulator).

    Parameters
    ----------
    iri_per_pass : (p,) array_like
        Uncalibrated IRI per pass (``gain=1``), m/km; NaN passes are ignored.
    vehicle_ids, segment_ids : (p,) sequences
        Vehicle (pseudonym) and segment of each pass.
    reference_iri : dict, optional
        Known IRI of some segments, m/km.
    prior_gains : dict, optional
        Starting gains (e.g. the previous calibration); default: the Huber fit (1 for the
        vehicles without ``min_shared`` shared segments).
    n_iter : int
        Alternations. Default 30.
    min_shared : int
        A vehicle needs passes on at least this many segments driven by other vehicles to
        get its own gain; otherwise it keeps its prior (1). Default 2.

    Returns
    -------
    gains : dict
        vehicle id -> gain (divide the vehicle's estimates by it).

    Examples
    --------
    >>> g = fleet_calibrate([2.0, 4.0, 2.2, 4.4, 3.0, 6.0], ["a", "a", "b", "b", "c", "c"],
    ...                     ["s1", "s2", "s1", "s2", "s1", "s2"])
    >>> {k: round(v, 2) for k, v in g.items()}
    {'a': 0.91, 'b': 1.0, 'c': 1.36}
    """
    e = np.asarray(iri_per_pass, float)
    veh = np.asarray(vehicle_ids, dtype=object)
    seg = np.asarray(segment_ids, dtype=object)
    if not (e.shape == veh.shape == seg.shape) or e.ndim != 1:
        raise ValueError(
            f"iri_per_pass, vehicle_ids, segment_ids must be 1-D of equal length; got "
            f"{e.shape}, {veh.shape}, {seg.shape}"
        )
    ok = np.isfinite(e) & (e > 0)
    vu, vi = np.unique(veh.astype(str), return_inverse=True)
    vkeys = {str(k): k for k in veh}
    if not np.any(ok):
        return {vkeys[k]: float((prior_gains or {}).get(vkeys[k], 1.0)) for k in vu}
    su, si = np.unique(seg.astype(str), return_inverse=True)
    le, vi_ok, si_ok = np.log(e[ok]), vi[ok], si[ok]
    lg = np.array([np.log((prior_gains or {}).get(vkeys[k], 1.0)) for k in vu])
    # which vehicles share segments with others
    n_veh_on_seg = np.array([np.unique(vi_ok[si_ok == s]).size for s in range(su.size)])
    shared = np.array(
        [np.unique(si_ok[(vi_ok == v) & (n_veh_on_seg[si_ok] >= 2)]).size for v in range(vu.size)]
    )
    free = shared >= min_shared
    if prior_gains is None and np.any(free):
        # Alternating medians from gain 1 stall short of the fit when the fleet mixes
        # vehicle families of different gains (coordinate descent on an L1 objective: the
        # minority family's gains stay pulled toward the majority's, -11 % on a hold-out
        # seed, docs/decisions.md): start them from a robust least-squares fit instead.
        start = _huber_log_gains(le, vi_ok, si_ok, vu.size, su.size)
        lg = np.where(free, start - np.median(start[free]), lg)
    lr = np.zeros(su.size)
    for _ in range(n_iter):
        lr = _group_median(le - lg[vi_ok], si_ok, su.size)
        new = _group_median(le - lr[si_ok], vi_ok, vu.size)
        new = np.where(free & np.isfinite(new), new, lg)
        if reference_iri is None:
            new = new - np.median(new[free]) if np.any(free) else new
        done = np.max(np.abs(new - lg)) < 1e-6
        lg = new
        if done:
            break
    if reference_iri:
        lr = _group_median(le - lg[vi_ok], si_ok, su.size)
        ref = {str(k): float(v) for k, v in reference_iri.items()}
        d = [lr[i] - np.log(ref[s]) for i, s in enumerate(su) if s in ref and ref[s] > 0]
        if d:
            lg = lg + np.median(d)
    return {vkeys[k]: float(np.exp(lg[i])) for i, k in enumerate(vu)}


def _huber_log_gains(
    le: np.ndarray, vi: np.ndarray, si: np.ndarray, n_veh: int, n_seg: int, *, c: float = 1.345, n_irls: int = 20
) -> np.ndarray:
    """Log gains of ``log e = log g[vi] + log r[si]`` fitted with Huber's loss (``c`` times
    the residuals' MAD scale), by iteratively reweighted sparse least squares.

    The level of ``g`` against ``r`` is not identified; the caller fixes it.
    """
    n = le.size
    rows = np.arange(n)
    a = csr_matrix((np.ones(2 * n), (np.r_[rows, rows], np.r_[vi, n_veh + si])), shape=(n, n_veh + n_seg))
    w = np.ones(n)
    x = np.zeros(n_veh + n_seg)
    for _ in range(n_irls):
        sw = np.sqrt(w)
        x = lsqr(a.multiply(sw[:, None]).tocsr(), sw * le, damp=1e-6, atol=1e-10, btol=1e-10, iter_lim=20_000, x0=x)[0]
        res = np.abs(le - a @ x)
        k = c * 1.4826 * np.median(res)
        if not k > 0:  # an exact fit: nothing to down-weight
            break
        w = np.where(res <= k, 1.0, k / np.maximum(res, k))
    return x[:n_veh]


def _group_median(x: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of ``x`` per integer group (NaN for empty groups), vectorised by sorting."""
    out = np.full(n_groups, np.nan)
    order = np.lexsort((x, group))
    g, xs = group[order], x[order]
    starts = np.searchsorted(g, np.arange(n_groups), side="left")
    ends = np.searchsorted(g, np.arange(n_groups), side="right")
    n = ends - starts
    has = n > 0
    lo = starts + (n - 1) // 2
    hi = starts + n // 2
    out[has] = 0.5 * (xs[lo[has]] + xs[hi[has]])
    return out


def iri_level(iri_m_per_km: np.ndarray | float) -> Any:
    """Level of an IRI value (m/km): 'good' < 2.5 <= 'fair' < 4.0 <= 'poor'; '' for NaN.

    Same thresholds as the SQL function ``iri_level`` (:data:`IRI_LEVEL_THRESHOLDS_M_PER_KM`).

    >>> iri_level([1.0, 3.0, 6.0]).tolist()
    ['good', 'fair', 'poor']
    """
    x = np.asarray(iri_m_per_km, float)
    lo, hi = IRI_LEVEL_THRESHOLDS_M_PER_KM
    out = np.where(x < lo, "good", np.where(x < hi, "fair", "poor")).astype(object)
    out[np.isnan(x)] = ""
    return out if out.ndim else out.item()


@dataclass(frozen=True)
class SegmentScore:
    """Fleet score of one segment.

    Attributes
    ----------
    segment_id : the segment
    iri_m_per_km : robust aggregate (Hodges-Lehmann estimate over per-vehicle means), m/km
    ci_low_m_per_km, ci_high_m_per_km : ~90 % interval: the distribution-free interval
        of the centre (order statistics of the per-vehicle means; their range when < 5
        vehicles, at least +-20 % with 1-2 vehicles) combined in quadrature with the
        model error ``1.645 * model_rel_error * centre``
    n_passes, n_vehicles : passes and distinct vehicles used
    level : 'good' | 'fair' | 'poor'
    confidence : 0..1, mean pass confidence x vehicle coverage ``1 - exp(-n_vehicles / 2)``
    """

    segment_id: Any
    iri_m_per_km: float
    ci_low_m_per_km: float
    ci_high_m_per_km: float
    n_passes: int
    n_vehicles: int
    level: str
    confidence: float


def _order_stat_ci(x: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    from scipy import stats

    xs = np.sort(x)
    n = xs.size
    if n < 5:
        return float(xs[0]), float(xs[-1])
    # largest k with P(Binom(n, 1/2) < k) <= (1 - level) / 2
    k = int(stats.binom.ppf((1 - level) / 2, n, 0.5))
    k = max(k, 1)
    return float(xs[k - 1]), float(xs[n - k])


def segment_scores(
    iri_per_pass: np.ndarray,
    segment_ids: Sequence[Any] | np.ndarray,
    vehicle_ids: Sequence[Any] | np.ndarray,
    *,
    gains: dict[Any, float] | None = None,
    confidence: np.ndarray | None = None,
    min_confidence: float = 0.2,
    model_rel_error: float = MODEL_REL_ERROR,
) -> dict[Any, SegmentScore]:
    """Robust per-segment IRI from many passes, with an interval and a level.

    Parameters
    ----------
    iri_per_pass : (p,) array_like
        Per-pass IRI (uncalibrated, ``gain=1``), m/km; NaN passes are dropped.
    segment_ids, vehicle_ids : (p,) sequences
    gains : dict, optional
        vehicle -> gain from :func:`fleet_calibrate` (missing vehicles: 1).
    confidence : (p,) array_like, optional
        Per-pass confidence; passes below ``min_confidence`` are dropped; the mean of the
        rest enters the segment's confidence. Default: all 1.
    model_rel_error : float
        Relative error shared by all passes of a segment (the estimator's model error:
        spectrum of the particular road vs the ISO shape, prior vs real fleet), combined
        in quadrature with the spread between vehicles. Default 0.12 (development bench).

    Returns
    -------
    scores : dict
        segment id -> :class:`SegmentScore`.

    Notes
    -----
    Each vehicle first gets the mean of its calibrated passes on the segment (so a
    commuter driving it daily counts once), then the Hodges-Lehmann estimator (median of
    pairwise means) combines vehicles: robust to one bad vehicle, efficient otherwise.

    Examples
    --------
    >>> s = segment_scores([2.0, 2.2, 3.0, 2.4], ["s", "s", "s", "s"], ["a", "b", "c", "a"])
    >>> r = s["s"]; (round(r.iri_m_per_km, 2), r.n_passes, r.n_vehicles, r.level)
    (2.4, 4, 3, 'good')
    """
    e = np.asarray(iri_per_pass, float)
    seg = np.asarray(segment_ids, dtype=object)
    veh = np.asarray(vehicle_ids, dtype=object)
    if not (e.shape == seg.shape == veh.shape) or e.ndim != 1:
        raise ValueError(
            f"iri_per_pass, segment_ids, vehicle_ids must be 1-D of equal length; got "
            f"{e.shape}, {seg.shape}, {veh.shape}"
        )
    conf = np.ones_like(e) if confidence is None else np.asarray(confidence, float)
    if conf.shape != e.shape:
        raise ValueError(f"confidence shape {conf.shape} must match iri_per_pass {e.shape}")
    g = np.array([float((gains or {}).get(v, 1.0)) for v in veh]) if e.size else np.zeros(0)
    ok = np.isfinite(e) & (conf >= min_confidence)
    cal = e / np.where(g > 0, g, 1.0)
    out: dict[Any, SegmentScore] = {}
    seg_str = seg.astype(str)
    keys = {str(s): s for s in seg}
    for s_str in np.unique(seg_str[ok]) if e.size else []:
        m = ok & (seg_str == s_str)
        vs = veh[m].astype(str)
        uv = np.unique(vs)
        means = np.array([cal[m][vs == u].mean() for u in uv])
        i, j = np.triu_indices(means.size)
        centre = float(np.median(0.5 * (means[i] + means[j])))
        lo, hi = _order_stat_ci(means)
        if uv.size <= 2:
            lo, hi = min(lo, 0.8 * centre), max(hi, 1.2 * centre)
        sys_err = 1.645 * model_rel_error * centre
        lo = centre - float(np.hypot(centre - lo, sys_err))
        hi = centre + float(np.hypot(hi - centre, sys_err))
        c = float(np.mean(conf[m])) * (1.0 - np.exp(-uv.size / 2.0))
        out[keys[s_str]] = SegmentScore(
            segment_id=keys[s_str],
            iri_m_per_km=centre,
            ci_low_m_per_km=lo,
            ci_high_m_per_km=hi,
            n_passes=int(m.sum()),
            n_vehicles=int(uv.size),
            level=str(iri_level(centre)),
            confidence=round(c, 3),
        )
    return out
