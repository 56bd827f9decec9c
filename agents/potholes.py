"""Potholes from vertical acceleration: impacts per pass, clusters across vehicles, confirmation.

1. :func:`detect_impacts` (one pass): the vertical acceleration is band-passed (2-40 Hz,
   causal Butterworth; the body's own 1-2 Hz motion and gravity are removed, the wheel-hop
   band kept). Peaks of ``|y|`` above ``max(k * sigma, floor)`` (``sigma`` = robust scale
   of the pass, 1.4826 MAD, so a rough road needs a bigger hit) within ``group_m`` of each
   other form one impact. Each impact is placed at the distance along the segment where it
   starts and described by:

   * ``polarity``: sign of its first lobe above half its peak. A pothole drops the wheel
     first (tyre force falls, the body accelerates *down*, then the far edge kicks it
     up): ``-1``. A speed bump, cushion or rail lifts the wheel first: ``+1``;
   * ``slowdown``: speed at the impact / highest speed in the 60 m before it. Drivers brake
     for speed bumps (and somewhat for rail crossings), not for potholes they did not see;
   * ``peak_mps2`` and ``n_lobes`` (significant lobes; a rail crossing is two hits
     ~1.4 m apart, so more lobes in the group).

2. :func:`cluster_impacts`: 1-D clustering along each segment: impacts sorted by position,
   a new cluster whenever the gap to the previous one exceeds ``gap_m`` (5 m).

3. :func:`confirm`: a cluster is a *pothole* when at least ``min_vehicles`` (3) distinct
   vehicles hit it, most hits have the pothole signature (``pothole_fraction`` >= 0.6,
   down-first and no slowdown) and drivers do not consistently slow down there (median
   slowdown >= 0.8). Its position is the median impact position, its confidence the
   probability that it is a real hole (:func:`pothole_confidence`: from the number of
   vehicles and how far their impacts stand out of the road). Clusters with the
   up-first / slow-down signature are reported as ``bump`` (speed bump or rail crossing)
   so the caller can see them, never as potholes.

:func:`detect_impacts` is a per-pass computation (the whole pass at once).
:func:`impact_features` is its streaming form for the per-vehicle processor: it takes the
placed samples chunk by chunk (with their segment and offset), carries an explicit state
(:class:`ImpactState`: filter ``zi``, a short tail of samples, a decimated speed history)
and gives exactly the same impacts however the stream is cut. Its scale is local: the
robust scale of the previous ``SCALE_WINDOW_S`` seconds (per block of ``BLOCK_S``), raised
to that of the calmest block of the next ``SCALE_AHEAD_S`` (so a rougher stretch is not
measured against the smoother road behind it); a sample is decided once those later blocks
are in, so impacts are reported up to ~1.25 s after they happen. Each impact also carries
shape features (duration, double-hit spacing, number of peaks) and a ``kind_score``.

The streaming form detects on a *whitened* signal: the band-passed acceleration minus its
linear prediction from the previous ``LPC_ORDER`` samples (:func:`_whiten`; coefficients
from the recent road's autocorrelation, per block, forgotten over ``LPC_TAU_S``). A random
road (ISO 8608: slope ~ white noise) driven through the car's suspension gives a signal the
predictor follows; a hole's edges are sudden and stand out in the prediction error. Peaks,
grouping, polarity (first lobe) and severity are read on that error; ``peak_mps2`` stays
the band-passed acceleration's largest value near the impact. An impact whose own group has
no axle pair looks for the other axle's hit, a weaker peak (``PARTNER_K_SIGMA``) one
wheelbase later, and reports it as ``double_hit_m`` (development seeds:
``docs/decisions.md``, "Potholes: a whitened detector"). It also keeps the body's own motion
(0.5-4 Hz) just before each impact, ``rise_mps2``: a hump or a cushion lifts the body before
the drop off its far side, a hole does not, so :func:`confirm` can tell them apart even
where drivers are slow anyway (``docs/decisions.md``, "the body rises before it drops off a
hump").
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Sequence

import numba
import numpy as np
from scipy import signal

from agents import _whitening
from agents._sosfilt import sosfilt, sosfilt_zi

__all__ = [
    "Impact",
    "Cluster",
    "ConfirmedFeature",
    "detect_impacts",
    "compile_kernels",
    "impact_features",
    "ImpactState",
    "cluster_impacts",
    "confirm",
    "pothole_confidence",
    "confidence_features",
    "BAND_HZ",
]

BAND_HZ = (2.0, 40.0)  #: impact band, Hz (top capped at 0.45 fs)
K_SIGMA = 4.0  #: threshold, multiples of the pass's robust scale (:func:`detect_impacts`)
#: threshold of the streaming detector (:func:`impact_features`, the pipeline's), multiples
#: of the local robust scale of its whitened signal (development seeds 1, 3-6: 3.5 / 4.0 /
#: 4.5 compared, see docs/decisions.md)
STREAM_K_SIGMA = 4.0
FLOOR_MPS2 = 1.0  #: absolute threshold floor, m/s^2
GROUP_M = 2.5  #: peaks closer than this (m) belong to one impact
LOOKBACK_M = 60.0  #: distance over which the approach speed is taken, m
LOBE_FRACTION = 0.35  #: a lobe belongs to the impact if its extreme is >= this x peak


def _first_lobe(y: np.ndarray, i0: int, peak: float, max_back: int) -> tuple[int, int]:
    """Index of the extreme of the earliest lobe connected to sample ``i0``, and the number
    of lobes walked (1 = the lobe of ``i0``): lobes are runs of one sign of ``y`` (at most
    ``max_back`` samples back), walked back while their extreme is at least
    ``LOBE_FRACTION`` of ``peak`` (compiled: :func:`_first_lobe_kernel`)."""
    best, n = _first_lobe_kernel(np.asarray(y, np.float64), int(i0), float(peak), int(max_back), LOBE_FRACTION)
    return int(best), int(n)


@numba.njit(cache=True, error_model="numpy")
def _first_lobe_kernel(y, i0, peak, max_back, fraction):  # noqa: ANN001, ANN202
    # the NumPy formulation's steps (tests/unit/test_detector_kernels.py keeps it as the
    # oracle): lobe bounds where np.diff(np.sign(y)) != 0 (so at every NaN), each lobe's
    # extreme its first largest |y| (np.argmax: the first NaN if any)
    lo = max(0, i0 - max_back)
    bounds = np.empty(i0 - lo + 2, np.int64)
    bounds[0] = lo
    nb = 1
    for i in range(lo, i0):
        if np.sign(y[i + 1]) - np.sign(y[i]) != 0:
            bounds[nb] = i + 1
            nb += 1
    bounds[nb] = i0 + 1
    nb += 1
    best, n = i0, 1
    # the lobe of i0 spans bounds[nb - 2]:i0 + 1; walk to earlier lobes
    for k in range(nb - 2, 0, -1):
        j = bounds[k - 1]
        for jj in range(bounds[k - 1] + 1, bounds[k]):
            if np.isnan(abs(y[j])):
                break
            if abs(y[jj]) > abs(y[j]) or np.isnan(y[jj]):
                j = jj
        if abs(y[j]) < fraction * peak:
            break
        best = j
        n += 1
    return best, n


@dataclass(frozen=True)
class Impact:
    """One impact in one pass.

    Attributes
    ----------
    offset_m : distance along the segment, m (start of the impact)
    peak_mps2 : largest |band-passed acceleration|, m/s^2 (streaming form: from the
        impact's first peak to ``PEAK_AFTER_S`` after its last)
    polarity : -1 down-first (pothole-like), +1 up-first (bump-like)
    slowdown : speed at impact / max speed over the previous 60 m (<= 1)
    n_lobes : lobes above half the peak within the impact
    speed_kmh : speed at the impact, km/h
    severity : peak / pass robust scale (dimensionless; streaming form: of the whitened
        signal, peak over its local scale)
    segment : segment (index or id) of the impact's onset, when known (streaming form)
    t_s : time of the impact's first lobe, s (streaming form; NaN otherwise)
    duration_s : first to last sample of the impact above the threshold, s
    double_hit_m : distance between the two strongest hits at least 1 m apart (front and
        rear axle ~ wheelbase; rails ~1.4 m), m; NaN for a single hit
    n_peaks : peaks above the threshold in the impact
    kind_score : 0..1, how pothole-like the signature is (heuristic, see
        :func:`kind_score`); ``pothole_like`` remains the decision used by :func:`confirm`
    fs_hz : sample rate of the pass, Hz (NaN when unknown)
    speed_dip : the lower of the speeds ``DIP_S`` before and ``DIP_S`` after the impact's
        first lobe over the speed at it (streaming form; NaN when unknown). Above 1 the
        vehicle was slower at the impact than both before and after it: drivers slow down
        for a hump or a rail and speed up after it, while braking for a junction or
        accelerating away from one is monotonic across the spot
    rise_mps2 : largest vertical acceleration of the body's own motion (``RISE_BAND_HZ``,
        up positive) in the ``RISE_S`` before the impact's first lobe, m/s^2 (streaming
        form; NaN when unknown). Over a hump or a cushion the body is lifted before it drops off the far
        side, so the drop is preceded by a rise comparable to its own peak; a hole's drop
        comes off a level road (:attr:`Cluster.rise_ratio`)
    """

    offset_m: float
    peak_mps2: float
    polarity: int
    slowdown: float
    n_lobes: int
    speed_kmh: float
    severity: float
    segment: Any = None
    t_s: float = float("nan")
    duration_s: float = float("nan")
    double_hit_m: float = float("nan")
    n_peaks: int = 1
    kind_score: float = float("nan")
    fs_hz: float = float("nan")
    speed_dip: float = float("nan")
    rise_mps2: float = float("nan")

    @property
    def pothole_like(self) -> bool:
        return self.polarity < 0 and self.slowdown >= 0.8


def _validate(accel: Any, speed: Any, fs: float) -> tuple[np.ndarray, np.ndarray, float]:
    fs = float(fs)
    if not np.isfinite(fs) or fs < 4.0:
        raise ValueError(f"fs must be a finite sample rate >= 4 Hz, got {fs=}")
    a = np.asarray(accel)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"accel_vert_mps2 must be real numeric, got dtype {a.dtype}")
    a = a.astype(float, copy=False)
    if a.ndim != 1:
        raise ValueError(f"accel_vert_mps2 must be 1-D (one pass), got shape {a.shape}")
    v = np.asarray(speed, float)
    v = np.full(a.shape, float(v)) if v.ndim == 0 else v
    if v.shape != a.shape:
        raise ValueError(f"speed_kmh shape {v.shape} must match accel_vert_mps2 {a.shape}")
    return a, v, fs


def detect_impacts(
    accel_vert_mps2: np.ndarray,
    speed_kmh: np.ndarray | float,
    fs: float,
    offset_m: np.ndarray | float = 0.0,
    *,
    k_sigma: float = K_SIGMA,
    floor_mps2: float = FLOOR_MPS2,
    group_m: float = GROUP_M,
) -> list[Impact]:
    """Impacts (short sharp events) of one pass, placed along the segment.

    Parameters
    ----------
    accel_vert_mps2 : (n,) array_like
        Vertical acceleration, m/s^2 (gravity included or not).
    speed_kmh : (n,) array_like or float
        Speed, km/h.
    fs : float
        Sample rate, Hz.
    offset_m : (n,) array_like or float, optional
        Distance along the segment of each sample (m, from map matching), or the offset
        of the first sample (the rest is integrated from the speed). Default 0.
    k_sigma, floor_mps2, group_m : float, optional
        Threshold (multiples of the robust scale, absolute floor in m/s^2) and grouping
        distance (m).

    Returns
    -------
    impacts : list of Impact
        In driving order. Empty for passes shorter than 1 s.

    Warnings
    --------
    At 10 Hz the band stops at 4.5 Hz: impacts are smeared, polarity is less reliable and
    short potholes are missed; :func:`confirm` lowers the confidence accordingly (pass
    ``fs`` per impact set to it via ``fs_hz``).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full(500, 9.81); a[250:253] = [5.0, 9.81, 16.0]   # down, then up
    >>> imp = detect_impacts(a, 36.0, 100.0, 0.0)
    >>> [(round(i.offset_m), i.polarity) for i in imp]
    [(25, -1)]
    """
    a, v_kmh, fs = _validate(accel_vert_mps2, speed_kmh, fs)
    if a.size < fs:
        return []
    v = v_kmh / 3.6
    off = np.asarray(offset_m, float)
    if off.ndim == 0:
        off = float(off) + np.concatenate([[0.0], np.cumsum(v[:-1] / fs)])
    elif off.shape != a.shape:
        raise ValueError(f"offset_m shape {off.shape} must match accel_vert_mps2 {a.shape}")
    top = min(BAND_HZ[1], 0.45 * fs)
    lo = min(BAND_HZ[0], 0.3 * top)
    sos = signal.butter(2, [lo, top], btype="bandpass", fs=fs, output="sos")
    y = signal.sosfilt(sos, a, zi=sosfilt_zi(sos) * a[0])[0]
    sigma = 1.4826 * float(np.median(np.abs(y - np.median(y))))
    thr = max(k_sigma * sigma, floor_mps2)
    mag = np.abs(y)
    peaks, _ = signal.find_peaks(mag, height=thr)
    if peaks.size == 0:
        return []
    # group peaks closer than group_m along the road
    pos = off[peaks]
    breaks = np.flatnonzero(np.diff(pos) > group_m) + 1
    impacts: list[Impact] = []
    cummax_speed = v_kmh  # approach speed from a look-back window
    for grp in np.split(peaks, breaks):
        i_peak = int(grp[np.argmax(mag[grp])])
        peak = float(mag[i_peak])
        # earliest lobe of the impact: walk back from the first strong peak over lobes
        # (runs between zero crossings) whose extreme is >= LOBE_FRACTION of the peak
        first, n_lobes = _first_lobe(y, int(grp[0]), peak, int(0.3 * fs))
        polarity = int(np.sign(y[first])) or 1
        n_lobes += int(np.count_nonzero(np.diff(np.sign(y[grp])) != 0))
        back = (off >= off[first] - LOOKBACK_M) & (np.arange(a.size) <= first)
        v_before = float(np.max(cummax_speed[back])) if np.any(back) else float(v_kmh[first])
        slowdown = float(v_kmh[first] / v_before) if v_before > 0 else 1.0
        # place at the onset: a quarter period of the wheel hop (~12 Hz) before the lobe
        onset = float(off[first] - v[first] * 0.02)
        impacts.append(
            Impact(
                offset_m=onset,
                peak_mps2=peak,
                polarity=polarity,
                slowdown=min(slowdown, 1.0),
                n_lobes=n_lobes,
                speed_kmh=float(v_kmh[first]),
                severity=peak / sigma if sigma > 0 else float("inf"),
            )
        )
    return impacts


# ----------------------------------------------------------------------------------------
# streaming form
# ----------------------------------------------------------------------------------------
SCALE_WINDOW_S = 2.0  #: causal robust scale: the previous this many seconds
BLOCK_S = 0.25  #: the scale is updated per block of this length (absolute sample blocks)
MAX_IMPACT_M = 8.0  #: an impact never spans more than this, m (bounds the look-ahead)
MIN_SPEED_KMH = 5.0  #: no impact is detected slower than this
#: look-ahead of the robust scale, s (0: causal only): the scale is raised to the calmest
#: block of the next second, so that the first shocks of a rougher stretch are not
#: measured against the smoother road behind (see :func:`_block_sigma`)
SCALE_AHEAD_S = 1.0
#: onset of a rougher road: when even the calmest later block is this many times the past
#: scale, the later blocks' *second* smallest median is the scale (the road has changed;
#: the smallest of four is a low estimate of it), see :func:`_block_sigma`; 0: off
SCALE_ONSET_RATIO = 1.2
GAP_RESET_S = 0.5  #: a time gap longer than this restarts the detector (route break)
LOBE_BACK_S = 0.3  #: how far back the first lobe of an impact is searched, s
_HIST_DT_S = 0.1  #: decimation of the speed history used for ``slowdown``, s
#: the other axle's hit: a peak of ``|y|`` this many local robust scales (of the impact's
#: strongest peak) high, ``AXLE_SPACING_M`` after that peak, sets the impact's
#: ``double_hit_m`` when the impact itself has no such pair (None: no search)
PARTNER_K_SIGMA: float | None = 2.5
PARTNER_WAIT_S = 1.0  #: the search covers at most this long after the peak, s
#: impacts are detected on the band-passed acceleration *whitened* by a linear predictor
#: of this order (0: on the band-passed acceleration itself), fitted on the recent road
LPC_ORDER = 8
LPC_WHITE = 1e-3  #: white-noise correction of the predictor (share of r[0] added to it)
LPC_TAU_S = 2.0  #: memory of the predictor's autocorrelation (exponential, per block), s
#: absolute floor of the whitened signal's threshold, m/s^2 (``floor_mps2`` applies to the
#: band-passed peak): the prediction error of a smooth road is a few hundredths
E_FLOOR_MPS2 = 0.3
#: the streaming detector's signals are kept on a grid of this step, m/s^2 (2^-12, far
#: below a sensor's resolution): exact, and their stored tail compresses (the vehicle state
#: stays within issue 5's budget)
RESOLUTION_MPS2 = 2.0**-12
PEAK_AFTER_S = 0.05  #: peak_mps2 is the largest |band-passed| up to this after the impact's last peak, s
#: ``speed_dip`` compares the speed this long before and after the impact's first lobe with
#: the speed at it, s (drivers slow down for a hump or a rail and speed up after it)
DIP_S = 1.5
#: an impact is at a speed dip when the vehicle was at least this factor faster both
#: ``DIP_S`` before and after it (:attr:`Cluster.dip_fraction`)
DIP_FACTOR = 1.1
#: band of the body's own motion, Hz, in which :attr:`Impact.rise_mps2` is read: a hump
#: or a cushion lifts the body before it drops off the far side, a hole does not
RISE_BAND_HZ = (0.5, 4.0)
RISE_S = 0.25  #: ``rise_mps2`` is the largest body-band acceleration this long before the first lobe, s


@lru_cache(maxsize=16)
def _impact_sos(fs: float) -> np.ndarray:
    top = min(BAND_HZ[1], 0.45 * fs)
    lo = min(BAND_HZ[0], 0.3 * top)
    return signal.butter(2, [lo, top], btype="bandpass", fs=fs, output="sos")


@lru_cache(maxsize=16)
def _rise_sos(fs: float) -> np.ndarray:
    top = min(RISE_BAND_HZ[1], 0.45 * fs)
    return signal.butter(2, [min(RISE_BAND_HZ[0], 0.3 * top), top], btype="bandpass", fs=fs, output="sos")


def _pack(a: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def _unpack(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


# tail columns: band-passed and whitened acceleration, speed, offset, segment, time,
# distance, absolute sample index, the body band's running maximum (Impact.rise_mps2)
_TAIL = (("y", "f8"), ("v", "f8"), ("off", "f8"), ("seg", "i8"), ("t", "f8"), ("d", "f8"), ("idx", "i8"),
         ("e", "f8"), ("rise", "f8"))


@dataclass
class ImpactState:
    """Carried between chunks (``zi`` in, ``zf`` out) by :func:`impact_features`.

    Small (a fraction of a second of samples plus a few numbers) and serialisable
    (:meth:`to_dict` / :meth:`from_dict`, lossless), so the stream layer can store it.

    Attributes
    ----------
    fs : sample rate, Hz
    band_zi : (n_sections, 2) band-pass ``sosfilt`` state
    n_seen : samples consumed so far (absolute index of the next sample)
    dist_m : distance driven at the last sample (speed integral), m
    last_t_s : time of the last sample, s
    tail : dict of arrays: the last samples (context for the next chunk + undecided ones)
    n_context : leading tail samples already decided (context only)
    block_meds : (K,) median |y| of the last complete blocks; ``last_block`` the number of
        the newest of them (-1: none yet)
    hist_d, hist_v, hist_idx : decimated (distance m, speed km/h, sample index) history
        for the slowdown
    lpc_r : (LPC_ORDER + 1,) autocorrelation of the band-passed signal (m^2/s^4, summed
        over blocks, exponentially forgotten) of the blocks up to ``lpc_last``, the whitening
        predictor's statistics (empty: none yet)
    rise_zi : (n_sections, 2) body-band (``RISE_BAND_HZ``) ``sosfilt`` state (empty: started
        from the next sample)
    rise_last : the last ``RISE_S`` x fs - 1 body-band samples (the window of the next
        sample's ``tail["rise"]``, the running maximum)
    """

    fs: float
    band_zi: np.ndarray
    n_seen: int = 0
    dist_m: float = 0.0
    last_t_s: float = float("nan")
    tail: dict[str, np.ndarray] = field(default_factory=dict)
    n_context: int = 0
    block_meds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_block: int = -1
    hist_d: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hist_v: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hist_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    lpc_r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lpc_last: int = -1
    rise_zi: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    rise_last: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The state as scalars and named arrays (tail arrays as ``tail.<name>``), for a
        caller's own encoding; :meth:`from_parts` inverts it, whatever dtype the arrays
        were stored in (indices fit 32 bits)."""
        scalars = {"fs": self.fs, "n_seen": self.n_seen, "dist_m": self.dist_m,
                   "last_t_s": repr(self.last_t_s) if not np.isfinite(self.last_t_s) else self.last_t_s,
                   "n_context": self.n_context, "last_block": self.last_block, "lpc_last": self.lpc_last}
        arrays = {"band_zi": self.band_zi, "block_meds": self.block_meds, "hist_d": self.hist_d,
                  "hist_v": self.hist_v, "hist_idx": self.hist_idx, "lpc_r": self.lpc_r,
                  "rise_zi": self.rise_zi, "rise_last": self.rise_last,
                  **{f"tail.{k}": self.tail.get(k, np.zeros(0)) for k, _ in _TAIL}}
        return scalars, arrays

    @classmethod
    def from_parts(cls, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> ImpactState:
        a = dict(arrays)
        if "tail.e" not in a:  # a state from before the whitening: no residual for its tail
            a["tail.e"] = np.zeros(np.size(a["tail.y"]))
        if "tail.rise" not in a:  # a state from before the rise: its tail's rise is unknown
            a["tail.rise"] = np.full(np.size(a["tail.y"]), np.nan)
        return cls(
            fs=float(scalars["fs"]),
            band_zi=np.asarray(a["band_zi"], np.float64).reshape(-1, 2),
            n_seen=int(scalars["n_seen"]),
            dist_m=float(scalars["dist_m"]),
            last_t_s=float(scalars["last_t_s"]),
            tail={k: np.asarray(a[f"tail.{k}"]).astype(dt) for k, dt in _TAIL},
            n_context=int(scalars["n_context"]),
            block_meds=np.asarray(a["block_meds"], np.float64),
            last_block=int(scalars["last_block"]),
            hist_d=np.asarray(a["hist_d"], np.float64),
            hist_v=np.asarray(a["hist_v"], np.float64),
            hist_idx=np.asarray(a["hist_idx"]).astype(np.int64),
            lpc_r=np.asarray(a.get("lpc_r", np.zeros(0)), np.float64),
            lpc_last=int(scalars.get("lpc_last", -1)),
            rise_zi=np.asarray(a.get("rise_zi", np.zeros(0)), np.float64).reshape(-1, 2),
            rise_last=np.asarray(a.get("rise_last", np.zeros(0)), np.float64),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (arrays as base64 of little-endian float64/int64)."""
        scalars, arrays = self.parts()
        dt = {f"tail.{k}": d for k, d in _TAIL} | {"hist_idx": "i8"}
        return {**scalars, "arrays": {k: _pack(np.ravel(v), dt.get(k, "f8")) for k, v in arrays.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImpactState:
        dt = {f"tail.{k}": t for k, t in _TAIL} | {"hist_idx": "i8"}
        return cls.from_parts(d, {k: _unpack(v, dt.get(k, "f8")) for k, v in d["arrays"].items()})


def kind_score(polarity: int, slowdown: float, speed_kmh: float, double_hit_m: float) -> float:
    """How pothole-like an impact's signature is, 0..1 (a heuristic summary for display and
    ranking; :func:`confirm` decides on ``pothole_like``).

    Down-first (+0.25) or up-first (-0.25); drivers braked before it (slowdown < 0.8,
    -0.3); crawled over it (< 25 km/h, -0.1); two hits ~1.4 m apart like two rails
    (-0.15), around 0.5.
    """
    score = 0.5 + (0.25 if polarity < 0 else -0.25)
    if slowdown < 0.8:
        score -= 0.3
    if speed_kmh < 25.0:
        score -= 0.1
    if math.isfinite(double_hit_m) and 1.2 <= double_hit_m <= 1.7:
        score -= 0.15
    return min(max(float(score), 0.0), 1.0)


def impact_features(
    accel_vert_mps2: np.ndarray,
    speed_kmh: np.ndarray | float,
    offset_m: np.ndarray | float,
    fs: float,
    *,
    segment: np.ndarray | None = None,
    t_s: np.ndarray | None = None,
    zi: ImpactState | None = None,
    final: bool = False,
    k_sigma: float = STREAM_K_SIGMA,
    floor_mps2: float = FLOOR_MPS2,
    group_m: float = GROUP_M,
) -> tuple[list[Impact], ImpactState]:
    """Impacts of a stream of placed samples, chunk by chunk (streaming :func:`detect_impacts`).

    Parameters
    ----------
    accel_vert_mps2 : (n,) array_like
        Vertical acceleration, m/s^2 (gravity included or not).
    speed_kmh : (n,) array_like or float
        Speed, km/h.
    offset_m : (n,) array_like or float
        Distance along its segment of each sample, m (a float: offset of the first sample,
        the rest integrated from the speed).
    fs : float
        Sample rate, Hz.
    segment : (n,) int array_like, optional
        Segment of each sample (carried into :attr:`Impact.segment`); offsets restart on
        each segment, so distances for grouping come from the speed integral.
    t_s : (n,) array_like, optional
        Sample times, s. A gap longer than ``GAP_RESET_S`` (or time going backwards)
        restarts the detector (the open impact is finished first). Default: sample
        counter / fs.
    zi : ImpactState, optional
        State returned by the previous call for this vehicle (None: start of the stream).
    final : bool
        End of the stream (trip end): finish the open impact and return an empty tail.
    k_sigma, floor_mps2, group_m : float
        Threshold (multiples of the local robust scale, :data:`STREAM_K_SIGMA`; absolute
        floor, m/s^2) and grouping distance (m), as :func:`detect_impacts`.

    Returns
    -------
    impacts : list of Impact
        Impacts that are complete (no later sample can change them), in driving order.
        An impact is reported once, in the call where it completes.
    zf : ImpactState
        To pass as ``zi`` with the next chunk.

    Notes
    -----
    Feeding a stream in any chunks (with ``zf`` -> ``zi``, even through
    :meth:`ImpactState.to_dict`) gives exactly the impacts of one call on the whole stream.
    The first ``SCALE_WINDOW_S`` seconds of a stream (and after a gap) detect nothing: the
    scale needs its history. A sample waits for the ``SCALE_AHEAD_S`` after its block
    (:func:`_block_sigma`) unless ``final``, so ``zf`` holds about 1.25 s of samples more.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.full(800, 9.81); a[500:503] = [5.0, 9.81, 16.0]
    >>> imp, z = impact_features(a[:501], 36.0, 0.0, 100.0)
    >>> imp2, z = impact_features(a[501:], 36.0, 50.1, 100.0, zi=z, final=True)
    >>> [(round(i.offset_m), i.polarity) for i in imp + imp2]
    [(50, -1)]
    """
    a, v_kmh, fs = _validate_stream(accel_vert_mps2, speed_kmh, fs)
    n = a.size
    off = np.asarray(offset_m, float)
    if off.ndim == 0:
        off = float(off) + np.concatenate([[0.0], np.cumsum(v_kmh[:-1] / 3.6 / fs)]) if n else np.zeros(0)
    elif off.shape != a.shape:
        raise ValueError(f"offset_m shape {off.shape} must match accel_vert_mps2 {a.shape}")
    seg = np.full(n, -1, np.int64) if segment is None else np.asarray(segment, np.int64)
    if seg.shape != a.shape:
        raise ValueError(f"segment shape {seg.shape} must match accel_vert_mps2 {a.shape}")
    sos = _impact_sos(fs)
    if zi is None:
        zi = ImpactState(fs=fs, band_zi=sosfilt_zi(sos) * (a[0] if n else 0.0))
        fresh = True
    else:
        if zi.fs != fs:
            raise ValueError(f"zi was built for fs={zi.fs}, got {fs=}")
        if zi.band_zi.shape != (sos.shape[0], 2):
            raise ValueError(f"zi.band_zi has shape {zi.band_zi.shape}, expected {(sos.shape[0], 2)}")
        fresh = False
    if t_s is None:
        t = (zi.n_seen + np.arange(n)) / fs
    else:
        t = np.asarray(t_s, float)
        if t.shape != a.shape:
            raise ValueError(f"t_s shape {t.shape} must match accel_vert_mps2 {a.shape}")
    out: list[Impact] = []
    if not fresh and n and np.isfinite(zi.last_t_s) and not 0.0 < t[0] - zi.last_t_s <= GAP_RESET_S:
        done, zi = _stream_step(zi, sos, np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
                                np.zeros(0), True, k_sigma, floor_mps2, group_m)  # fmt: skip
        out += done
        zi = ImpactState(fs=fs, band_zi=sosfilt_zi(sos) * a[0], n_seen=zi.n_seen, dist_m=zi.dist_m)
    done, zf = _stream_step(zi, sos, a, v_kmh, off, seg, t, final, k_sigma, floor_mps2, group_m)
    return out + done, zf


def compile_kernels() -> None:
    """Compile the detector's numba kernels now, or load them from numba's cache (a cold
    compile takes a few seconds): see :func:`agents.passes.compile_kernels`."""
    a = np.sin(np.arange(400) * 0.7)
    impact_features(a, 50.0, 0.0, 100.0, final=True)
    # the per-impact kernels, whether or not the sine above gives an impact
    _first_lobe(a, 10, 0.5, 5)
    _partner(np.abs(a), np.arange(a.size) * 0.1, 10, 60, 0.5, float("nan"))


def _validate_stream(accel: Any, speed: Any, fs: float) -> tuple[np.ndarray, np.ndarray, float]:
    a, v, fs = _validate(accel, speed, fs)
    return a, v, fs


def _block_sigma(
    b: np.ndarray, meds: np.ndarray, k0: int, k_past: int, k_ahead: int, final: bool,
    onset_ratio: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust scale (m/s^2) of samples in blocks ``b``, and which samples must wait.

    Parameters
    ----------
    b : (m,) int array
        Absolute block number of each sample.
    meds : (K,) array
        Median ``|y|`` (m/s^2) of the complete blocks ``k0, k0 + 1, ..., k0 + K - 1``.
    k0 : int
        Block number of ``meds[0]``.
    k_past, k_ahead : int
        Blocks used before and after a sample's block.
    final : bool
        End of the stream: no later block will come.
    onset_ratio : float, optional
        :data:`SCALE_ONSET_RATIO` by default (read at call time).

    Returns
    -------
    sigma : (m,) float
        ``1.4826 x max(median of the k_past block medians before the block, smallest of
        the k_ahead block medians after it)``, m/s^2. NaN without a full history (start
        of a stream: those samples are never decided).
    waiting : (m,) bool
        The later blocks are not all complete yet: decide these samples in a later call.
        With ``final`` nothing waits and the later blocks that exist are used.

    Notes
    -----
    The look-ahead takes the *smallest* later block median: the sample's own shock and its
    ringing (a few tenths of a second) fill some of the next blocks but rarely all four,
    so an impact does not raise its own threshold, while on a road that turns rougher
    every later block is rougher. Causal only, the first second of a rough stretch after a
    smooth one (often the next segment: classes change at junctions) was measured against
    the smooth road, and its ordinary shocks, repeatable for every vehicle, were
    confirmed as potholes near segment starts (development seeds: 8 of 9 alerts within 5 m
    of a segment end were false).

    The smallest of the later block medians is a *low* estimate of the road's scale (the
    calmest of four blocks of a random road; about 0.75 of their median). On a steady road
    the past median decides and this does not matter; at the onset of a rougher road the
    past median is the smooth road's for ~1.25 s (until half its blocks are rough), so the
    scale was that low estimate, the threshold ~3 instead of 4 scales, and the new road's
    ordinary shocks passed it in the first 5-20 m for most vehicles, front and rear axle:
    clusters of down-first impacts with axle pairs, confirmed as potholes near segment
    starts. So when even the calmest later block is ``onset_ratio`` times the past scale
    (the road has changed, not one impact: its shock and ringing rarely fill all later
    blocks) and at least three later blocks are in, the *second* smallest is used (a shock
    must fill three of four blocks to raise its own threshold).
    """
    if onset_ratio is None:
        onset_ratio = SCALE_ONSET_RATIO
    b = np.ascontiguousarray(b, np.int64)
    return _block_sigma_kernel(b, np.ascontiguousarray(meds, float), int(k0), int(k_past), int(k_ahead),
                               bool(final), float(onset_ratio))  # fmt: skip


@numba.njit(cache=True, error_model="numpy")
def _block_sigma_kernel(b, meds, k0, k_past, k_ahead, final, onset_ratio):  # noqa: ANN001, ANN202
    # one scale per run of equal block numbers (b is in sample order: its runs are its
    # blocks); the arithmetic is the NumPy formulation's (np.median of the past window, the
    # later window padded with +inf), so the scale is the same to the bit
    m, n_meds = b.size, meds.size
    last_b = k0 + n_meds - 1
    sig = np.empty(m)
    waiting = np.zeros(m, np.bool_)
    past = np.empty(max(k_past, 1))
    ahead = np.empty(max(k_ahead, 1))
    i = 0
    while i < m:
        ub = b[i]
        e = i + 1
        while e < m and b[e] == ub:
            e += 1
        has_past = ub - k_past >= k0
        j = ub - k0
        s = np.nan
        if has_past and n_meds >= k_past:
            past[:k_past] = meds[j - k_past : j]
            _sort_small(past, k_past)
            h = k_past // 2
            s = past[h] if k_past % 2 else (past[h - 1] + past[h]) / 2.0
        wait_b = False
        if k_ahead:
            wait_b = has_past and ub + k_ahead > last_b and not final
            jj = min(max(j, -1), n_meds) + 1
            n_in = 0
            for t in range(k_ahead):
                q = min(max(jj + t, 0), n_meds + k_ahead)
                ahead[t] = meds[q] if q < n_meds else np.inf
                n_in += ahead[t] < np.inf
            _sort_small(ahead, k_ahead)
            lo = ahead[0]
            if k_ahead >= 3 and onset_ratio > 0 and n_in >= 3 and lo >= onset_ratio * s:
                lo = ahead[1]
            if n_in > 0:
                s = lo if np.isnan(s) else (s if np.isnan(lo) else max(s, lo))
            if not has_past or wait_b:
                s = np.nan
        for k in range(i, e):
            sig[k] = 1.4826 * s
            waiting[k] = wait_b
        i = e
    return sig, waiting


@numba.njit(cache=True, error_model="numpy")
def _block_medians(x, n_b, blk):  # noqa: ANN001, ANN202
    """Median of each of the ``n_b`` consecutive blocks of ``blk`` values of ``x`` (values
    >= 0 or NaN): ``np.median(x.reshape(n_b, blk), axis=1)``, the same values (the mean of
    the two middle ones for an even ``blk``; NaN for a block holding a NaN)."""
    out = np.empty(n_b)
    buf = np.empty(blk)
    h = blk // 2
    for b in range(n_b):
        buf[:] = x[b * blk : (b + 1) * blk]
        _sort_small(buf, blk)
        if np.isnan(buf[blk - 1]):  # NaN sorts last
            out[b] = np.nan
            continue
        out[b] = buf[h] if blk % 2 else (buf[h - 1] + buf[h]) / 2.0
    return out


@numba.njit(cache=True, error_model="numpy")
def _sort_small(buf, n):  # noqa: ANN001, ANN202
    """Sort ``buf[:n]`` in place, ascending with NaN last as ``np.sort`` (equal values are
    alike: the callers' values are >= +0 or +inf). An insertion sort: on a block's 25
    values or a window's 4-8 it takes a third of the time of numba's quicksort."""
    for i in range(1, n):
        v = buf[i]
        j = i
        while j > 0 and (buf[j - 1] > v or (np.isnan(buf[j - 1]) and not np.isnan(v))):
            buf[j] = buf[j - 1]
            j -= 1
        buf[j] = v


@numba.njit(cache=True, error_model="numpy")
def _trailing_max(x, win, n_out):  # noqa: ANN001, ANN202
    """Largest of the ``win`` values up to each of the last ``n_out`` values of ``x`` (fewer
    at its start): ``ndimage.maximum_filter1d`` with a trailing window, the same values to
    the bit (of equal values, the latest: 0.0 after -0.0 gives 0.0, as scipy does)."""
    # a monotone queue of the window's candidates (indices of strictly decreasing values,
    # the latest of equal ones): O(n) instead of O(n x win). The loop this replaces kept
    # a window's first value when it was NaN and skipped later NaNs; so do the two tests
    # below (NaNs never enter the queue)
    out = np.empty(n_out)
    q = np.empty(x.size, np.int64)
    head, tail = 0, 0
    start = x.size - n_out
    for i in range(max(0, start - win + 1), x.size):
        if not np.isnan(x[i]):
            while tail > head and x[i] >= x[q[tail - 1]]:
                tail -= 1
            q[tail] = i
            tail += 1
        if i < start:
            continue
        j0 = max(0, i - win + 1)
        while head < tail and q[head] < j0:
            head += 1
        out[i - start] = np.nan if np.isnan(x[j0]) else x[q[head]]
    return out


def _whiten(
    y_all: np.ndarray, i0: int, n_new: int, r: np.ndarray, last: int, blk: int, p: int, lam: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """The detection signal's prediction error, with ``LPC_WHITE``:
    :func:`agents._whitening.whiten` (compiled)."""
    return _whitening.whiten(y_all, i0, n_new, r, last, blk, p, lam, LPC_WHITE)


def _partner(mag: np.ndarray, d: np.ndarray, i_peak: int, wait_n: int, thr: float, default: float) -> float:
    """Distance (m) from the peak ``i_peak`` to the strongest later local maximum of ``mag``
    at least ``thr`` high, ``AXLE_SPACING_M`` after it and within ``wait_n`` samples (the
    other axle's hit); ``default`` if there is none. Only samples up to ``i_peak + wait_n``
    and one more are read, so the result does not depend on how the stream was cut."""
    lo, hi = AXLE_SPACING_M
    return float(_partner_kernel(np.asarray(mag, np.float64), np.asarray(d, np.float64), int(i_peak), int(wait_n),
                                 float(thr), float(default), float(lo), float(hi)))  # fmt: skip


@numba.njit(cache=True, error_model="numpy")
def _partner_kernel(mag, d, i_peak, wait_n, thr, default, lo, hi):  # noqa: ANN001, ANN202
    # the first of the largest qualifying maxima, as np.argmax over the NumPy form's
    # selection (tests/unit/test_detector_kernels.py); a NaN never qualifies
    best = -1
    for j in range(i_peak + 1, min(mag.size - 1, i_peak + wait_n + 1)):
        dd = d[j] - d[i_peak]
        if dd >= lo and dd <= hi and mag[j] >= thr and mag[j] >= mag[j - 1] and mag[j] > mag[j + 1]:
            if best < 0 or mag[j] > mag[best]:
                best = j
    return default if best < 0 else d[best] - d[i_peak]


def _stream_step(
    zi: ImpactState, sos: np.ndarray, a: np.ndarray, v_kmh: np.ndarray, off: np.ndarray, seg: np.ndarray,
    t: np.ndarray, final: bool, k_sigma: float, floor_mps2: float, group_m: float,
) -> tuple[list[Impact], ImpactState]:  # fmt: skip
    fs = zi.fs
    n = a.size
    if n:
        y_new, band_zf = sosfilt(sos, a, zi.band_zi)
        y_new = np.round(y_new / RESOLUTION_MPS2) * RESOLUTION_MPS2
    else:
        y_new, band_zf = np.zeros(0), zi.band_zi
    rise_new, rise_zf, rise_last = _rise(zi, a)
    # distance in whole micrometres: integer sums do not depend on where the stream is cut
    # (grouping compares distances, and float sums of a steady speed land on its limits)
    d_new = (round(zi.dist_m * 1e6) + np.cumsum(np.round(v_kmh / 3.6 / fs * 1e6))) * 1e-6
    idx_new = zi.n_seen + np.arange(n, dtype=np.int64)
    blk = max(1, int(round(BLOCK_S * fs)))
    k_blocks = max(1, int(round(SCALE_WINDOW_S / BLOCK_S)))
    hist_step = max(1, int(round(_HIST_DT_S * fs)))
    # the window: the kept tail's samples, then the new ones (one array per column)
    new = {"y": y_new, "v": v_kmh, "off": off, "seg": seg, "t": t, "d": d_new, "idx": idx_new, "rise": rise_new}
    w = {k: _joined(zi.tail, k, dt, new[k]) for k, dt in _TAIL if k != "e"}
    m = w["y"].size
    idx = w["idx"]
    # 0. the detection signal: the band-passed acceleration whitened by a linear predictor
    #    of the recent road (its residual e), or y itself
    p_lpc = LPC_ORDER
    if p_lpc > 0:
        lam = float(np.exp(-BLOCK_S / LPC_TAU_S))
        i0_all = int(idx[0]) if m else zi.n_seen
        e_new, lpc_r, lpc_last = _whiten(w["y"], i0_all, n, zi.lpc_r, zi.lpc_last, blk, p_lpc, lam)
        e_new = np.round(e_new / RESOLUTION_MPS2) * RESOLUTION_MPS2
    else:
        e_new, lpc_r, lpc_last = y_new, zi.lpc_r, zi.lpc_last
    w["e"] = _joined(zi.tail, "e", "f8", e_new)
    x = w["e"] if p_lpc > 0 else w["y"]
    mag = np.abs(x)

    # 1. robust scale: median |y| per complete block (absolute blocks of `blk` samples); a
    #    sample's sigma = 1.4826 x median of the K block medians before its block, all of
    #    which are complete when it arrives (so it is computed once, on arrival)
    # Block medians are consecutive (block numbers k0, k0+1, ...): kept ones, then new ones.
    k0 = zi.last_block - zi.block_meds.size + 1
    meds = zi.block_meds
    if m:
        i0 = int(idx[0])
        first_b = max(zi.last_block + 1, i0 // blk + (1 if i0 % blk else 0))
        n_b = int((idx[-1] + 1) // blk) - first_b
        if n_b > 0:
            if meds.size == 0:
                k0 = first_b
            elif first_b != zi.last_block + 1:  # a gap: the kept medians are too old to use
                k0, meds = first_b, meds[:0]
            p0 = first_b * blk - i0
            new_meds = _block_medians(mag[p0 : p0 + n_b * blk], n_b, blk)
            meds = np.concatenate([meds, new_meds])
    last_b = k0 + meds.size - 1
    c = zi.n_context
    # sigma of every sample still in the window, from the block medians around its block
    # (recomputed each call: a sample's sigma is final once its look-ahead blocks are in)
    sig, waiting = _block_sigma(idx // blk, meds, k0, k_blocks, max(0, int(round(SCALE_AHEAD_S / BLOCK_S))), final)
    floor_x = min(E_FLOOR_MPS2, floor_mps2) if p_lpc > 0 else floor_mps2

    # 2. peaks among decidable samples (a peak needs the next sample and its sigma, unless
    #    final); samples after the first undecided one wait for the next call
    first_wait = int(np.argmax(waiting[c:])) if m > c else 0
    hi = m if final else (min(m - 1, c + first_wait) if m > c and waiting[c + first_wait] else m - 1)
    lo = max(c, 1)
    peaks = _peaks(mag, sig, w["v"], lo, hi, float(k_sigma), float(floor_x), MIN_SPEED_KMH).tolist()

    # 3. group peaks (sequential rule, identical however the stream is cut)
    d = w["d"]
    groups: list[list[int]] = []
    for p in peaks:
        if groups and d[p] - d[groups[-1][-1]] <= group_m and d[p] - d[groups[-1][0]] <= MAX_IMPACT_M:
            groups[-1].append(p)
        else:
            groups.append([p])
    closed, open_from = groups, None
    if groups and not final:
        g = groups[-1]
        d_end = d[hi - 1] if hi > 0 else d[0]  # the last decidable sample
        if not (d_end - d[g[-1]] > group_m or d_end - d[g[0]] > MAX_IMPACT_M):
            closed, open_from = groups[:-1], g[0]
    k_partner = PARTNER_K_SIGMA
    wait_n = max(1, int(round(PARTNER_WAIT_S * fs)))
    after_n = max(0, int(round(PEAK_AFTER_S * fs)))
    ax_lo, ax_hi = AXLE_SPACING_M
    dip_n = max(1, int(round(DIP_S * fs)))
    if closed and not final:
        # an impact waits until the samples after it that its features read are in: the
        # band-passed peak (PEAK_AFTER_S), the speed DIP_S after its first lobe (which is at
        # or before its first peak) and the other axle's hit (all of AXLE_SPACING_M after
        # its peak, or PARTNER_WAIT_S of samples)
        for gi, g in enumerate(closed):
            ip = g[int(np.argmax(mag[g]))]
            if m - 1 - g[-1] <= after_n or m - 1 - g[0] < dip_n or (
                k_partner is not None and not (d[m - 1] - d[ip] > ax_hi or m - 1 - ip > wait_n)
            ):
                closed, open_from = closed[:gi], g[0]
                break

    # 4. speed history (decimated on the absolute index) for the slowdown
    dec = slice(-zi.n_seen % hist_step, None, hist_step)  # the new samples with idx % hist_step == 0
    hd = np.concatenate([zi.hist_d, d_new[dec]])
    hv = np.concatenate([zi.hist_v, v_kmh[dec]])
    hi_idx = np.concatenate([zi.hist_idx, idx_new[dec]])

    impacts: list[Impact] = []
    lobe_back = int(LOBE_BACK_S * fs)
    y = w["y"]
    for grp in closed:
        g = np.asarray(grp)
        i_peak = int(g[np.argmax(mag[g])])
        peak = float(mag[i_peak])
        sg = float(sig[i_peak])
        strong = g[mag[g] >= 0.5 * peak]
        far = strong[np.abs(d[strong] - d[i_peak]) >= 1.0]
        double = float(abs(d[far[np.argmax(mag[far])]] - d[i_peak])) if far.size else float("nan")
        if k_partner is not None and not ax_lo <= double <= ax_hi:
            double = _partner(mag, d, i_peak, wait_n, max(k_partner * sg, floor_x), double)
        y_peak = float(np.max(np.abs(y[g[0] : min(m, g[-1] + after_n + 1)])))
        if y_peak < floor_mps2:
            continue  # a sharp but weak event (smooth road): no impact
        # polarity from the detection signal's first lobe (y's lost recall and confirmed a hump)
        first, n_lobes = _first_lobe(x, int(g[0]), peak, lobe_back)
        polarity = int(np.sign(x[first])) or 1
        n_lobes += int(np.count_nonzero(np.diff(np.sign(x[g])) != 0))
        # history entries up to the first lobe, within LOOKBACK_M before it
        sel = (hi_idx <= idx[first]) & (hd >= d[first] - LOOKBACK_M)
        v_before = max(float(np.max(hv[sel])) if sel.any() else 0.0, float(w["v"][first]))
        slowdown = float(w["v"][first] / v_before) if v_before > 0 else 1.0
        pol_speed = float(w["v"][first])
        # speed DIP_S before (the latest history entry at or before then, within
        # LOOKBACK_M; none at a stream's start: the speed at the impact) and DIP_S after
        # (in the window: the impact waited for it, or the stream ends before)
        sel = (hi_idx <= idx[first] - dip_n) & (hd >= d[first] - LOOKBACK_M)
        v_prior = float(hv[sel][-1]) if sel.any() else pol_speed
        v_after = float(w["v"][min(first + dip_n, m - 1)])
        speed_dip = min(v_prior, v_after) / pol_speed if pol_speed > 0 else 1.0
        impacts.append(
            Impact(
                offset_m=max(0.0, float(w["off"][first] - pol_speed / 3.6 * 0.02)),
                peak_mps2=y_peak,
                polarity=polarity,
                slowdown=min(slowdown, 1.0),
                n_lobes=n_lobes,
                speed_kmh=pol_speed,
                severity=peak / sg if sg > 0 else float("inf"),
                segment=int(w["seg"][first]) if w["seg"][first] >= 0 else None,
                t_s=float(w["t"][first]),
                duration_s=float((g[-1] - first) / fs),
                double_hit_m=round(double, 3),
                n_peaks=int(g.size),
                kind_score=kind_score(polarity, min(slowdown, 1.0), pol_speed, double),
                fs_hz=fs,
                speed_dip=speed_dip,
                rise_mps2=float(w["rise"][first - 1]) if first > 0 else float("nan"),
            )
        )

    # 5. next state: keep the undecided samples, the lobe context and the open block
    c_next = m if final or m == 0 else (open_from if open_from is not None else max(hi, c))
    keep_from = max(0, c_next - lobe_back - 2)
    if m:
        cur_block_start = int(((idx[-1] + 1) // blk) * blk - idx[0])
        keep_from = min(keep_from, max(0, cur_block_start - max(p_lpc, 0)))  # the predictor's lags
    if final:
        keep_from = m
    # copies: views would keep the frame's whole columns alive in a worker's cached state
    tail = {k: w[k][keep_from:].copy() for k, _ in _TAIL}
    # block medians still needed: the history of the oldest kept sample and of the next ones
    need_from = last_b + 1 - k_blocks
    if keep_from < m:
        need_from = min(need_from, int(idx[keep_from] // blk) - k_blocks)
    meds = meds[max(0, need_from - k0):].copy()
    d_keep = d[keep_from] if keep_from < m else (d[-1] if m else zi.dist_m)
    hist_keep = hd >= d_keep - LOOKBACK_M - 1.0
    zf = ImpactState(
        fs=fs,
        band_zi=np.asarray(band_zf, float),
        n_seen=zi.n_seen + n,
        dist_m=float(d_new[-1]) if n else zi.dist_m,
        last_t_s=float(t[-1]) if n else zi.last_t_s,
        tail=tail,
        n_context=c_next - keep_from,
        block_meds=np.asarray(meds, float),
        last_block=last_b if meds.size else -1,
        lpc_r=np.asarray(lpc_r, float),
        lpc_last=int(lpc_last),
        hist_d=hd[hist_keep],
        hist_v=hv[hist_keep],
        hist_idx=hi_idx[hist_keep],
        rise_zi=rise_zf,
        rise_last=rise_last,
    )
    return impacts, zf


def _joined(tail: dict[str, np.ndarray], name: str, dtype: str, new: np.ndarray) -> np.ndarray:
    """The tail's column ``name`` (empty if none) followed by the new samples', as ``dtype``."""
    kept = tail.get(name)
    if kept is None:
        return new.astype(dtype)
    return np.concatenate([kept.astype(dtype, copy=False), new.astype(dtype, copy=False)])


@numba.njit(cache=True, error_model="numpy")
def _peaks(mag, sig, v, lo, hi, k_sigma, floor, min_speed):  # noqa: ANN001, ANN202
    """Indices ``lo <= i < hi`` where ``mag`` (|detection signal|, m/s^2) is a local maximum
    (``>=`` the previous value, ``>`` the next; the last sample has no next) above its
    threshold, ``max(k_sigma x sig, floor)`` (none where the scale ``sig`` is not finite), at
    a speed ``v >= min_speed`` (km/h). The NumPy form is the oracle of
    ``tests/unit/test_detector_kernels.py``."""
    m = mag.size
    out = np.empty(max(hi - lo, 0), np.int64)
    n = 0
    for i in range(lo, hi):
        x = mag[i]
        # not (x > max(t, floor)) whenever t or floor is NaN, as np.maximum's NaN
        if not (np.isfinite(sig[i]) and x > k_sigma * sig[i] and x > floor):
            continue
        if x >= mag[i - 1] and (i + 1 >= m or x > mag[i + 1]) and v[i] >= min_speed:
            out[n] = i
            n += 1
    return out[:n]


def _rise(zi: ImpactState, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Running maximum of the body-band acceleration over the last ``RISE_S`` (each new
    sample's window ends at it), with the next filter state and window samples."""
    if not a.size:
        return np.zeros(0), zi.rise_zi, zi.rise_last
    sos = _rise_sos(zi.fs)
    z0 = zi.rise_zi if zi.rise_zi.size else sosfilt_zi(sos) * a[0]
    lf, zf = sosfilt(sos, a, z0)
    # on a decimal grid (mm/s^2): exact, and the stored running maximum is small integers
    lf = np.rint(lf * 1000.0) / 1000.0
    win = max(1, int(round(RISE_S * zi.fs)))
    ext = np.concatenate([zi.rise_last, lf])
    # a trailing window; at a stream's start, the samples so far
    run = _trailing_max(ext, win, a.size)
    return run, np.asarray(zf, float), ext[ext.size - (win - 1) :].copy() if win > 1 else np.zeros(0)


@dataclass(frozen=True)
class Cluster:
    """Impacts of several passes at one place of one segment.

    Attributes
    ----------
    segment_id, position_m (median offset, m), spread_m (IQR of offsets, m)
    n_impacts, n_vehicles, pothole_fraction (share of pothole-like impacts)
    median_slowdown, median_peak_mps2, vehicles (distinct ids)
    down_fraction : share of down-first impacts (polarity only, whatever the speed)
    median_severity : median of the impacts' ``severity`` (peak over the road's local scale)
    dip_fraction : share of the impacts with a known :attr:`Impact.speed_dip` that are at a
        speed dip (``speed_dip >= DIP_FACTOR``): drivers slowed down for the spot and sped up
        after it, as at humps and rails (NaN when none is known)
    axle_pair_fraction : share of the cluster's vehicles whose front and rear axles both
        hit it on one pass (two hits ``AXLE_SPACING_M`` apart: two impacts of the vehicle
        within ``AXLE_PAIR_S`` of each other, or one impact with such a ``double_hit_m``). A
        hole in the wheel path is hit by both axles; a random shock of a rough road, or an
        impact placed on the wrong segment, rarely is
    drop_pair_vehicles : distinct vehicles whose front and rear wheels each *dropped* into
        the spot on one pass: two down-first impacts of the vehicle within ``AXLE_PAIR_S``,
        one wheelbase (``AXLE_SPACING_M``) apart, each detected on its own. A hole often
        gives that, a random dip of a rough road rarely; a rail crossing sometimes does (a
        flangeway before each rail is a dip under each wheel)
    rise_ratio : median, over the down-first impacts with a known :attr:`Impact.rise_mps2`,
        of their rise over their peak (NaN when none is known). Near 0.1 at holes (the
        drop comes off a level road), about 0.5 at humps and cushions (the body was lifted
        just before it)
    """

    segment_id: Any
    position_m: float
    spread_m: float
    n_impacts: int
    n_vehicles: int
    pothole_fraction: float
    median_slowdown: float
    median_peak_mps2: float
    vehicles: tuple[Any, ...]
    down_fraction: float = float("nan")
    axle_pair_fraction: float = float("nan")
    median_severity: float = float("nan")
    dip_fraction: float = float("nan")
    drop_pair_vehicles: int = 0
    rise_ratio: float = float("nan")


AXLE_SPACING_M = (1.8, 4.5)  #: wheelbases of cars to minibuses, m (physical range, with placement noise)
AXLE_PAIR_S = 3.0  #: two impacts of one vehicle this close in time belong to one pass, s


def _by_vehicle(members: Sequence[Impact], vehicles: Sequence[Any]) -> dict[Any, list[Impact]]:
    """``members`` grouped by their vehicle (in first-seen order)."""
    out: dict[Any, list[Impact]] = {}
    for m, v in zip(members, vehicles):
        out.setdefault(v, []).append(m)
    return out


def _wheelbase_pair(imps: Sequence[Impact]) -> bool:
    """Two of ``imps`` within ``AXLE_PAIR_S`` of each other (one pass) and one wheelbase
    (``AXLE_SPACING_M``) apart along the segment."""
    # a vehicle leaves a few impacts in a cluster: pairs in Python beat numpy's per-call
    # cost (stage 2 reads a busy cluster's 100 impacts with every new one)
    lo, hi = AXLE_SPACING_M
    for i, a in enumerate(imps):
        for b in imps[i + 1 :]:
            # NaN times: assume one pass
            if lo <= abs(a.offset_m - b.offset_m) <= hi and not abs(a.t_s - b.t_s) > AXLE_PAIR_S:
                return True
    return False


def _axle_pair_fraction(members: Sequence[Impact], vehicles: Sequence[Any]) -> float:
    """Share of distinct vehicles with an axle pair in ``members`` (see :class:`Cluster`)."""
    lo, hi = AXLE_SPACING_M
    by_vehicle = _by_vehicle(members, vehicles)
    paired = 0
    for imps in by_vehicle.values():
        hit = any(np.isfinite(m.double_hit_m) and lo <= m.double_hit_m <= hi for m in imps)
        paired += hit or _wheelbase_pair(imps)
    return paired / len(by_vehicle) if by_vehicle else float("nan")


def _drop_pair_vehicles(members: Sequence[Impact], vehicles: Sequence[Any]) -> int:
    """Distinct vehicles of ``members`` with two *down-first* impacts of one pass one
    wheelbase apart (see :attr:`Cluster.drop_pair_vehicles`)."""
    return sum(_wheelbase_pair([m for m in imps if m.polarity < 0]) for imps in _by_vehicle(members, vehicles).values())


def _dip_fraction(members: Sequence[Impact]) -> float:
    """Share of ``members`` with a known ``speed_dip`` that are at a speed dip (NaN: none known)."""
    dips = np.array([m.speed_dip for m in members], float)
    known = dips[np.isfinite(dips)]
    return float(np.mean(known >= DIP_FACTOR)) if known.size else float("nan")


def _rise_ratio(members: Sequence[Impact]) -> float:
    """Median rise over peak of the down-first ``members`` with a known rise (NaN: none)."""
    r = [m.rise_mps2 / m.peak_mps2 for m in members if m.polarity < 0 and np.isfinite(m.rise_mps2) and m.peak_mps2 > 0]
    return float(np.median(r)) if r else float("nan")


def cluster_impacts(
    impacts: Sequence[Impact],
    segment_ids: Sequence[Any],
    vehicle_ids: Sequence[Any],
    *,
    gap_m: float = 5.0,
) -> list[Cluster]:
    """Group impacts of many passes along each segment (1-D, single linkage with ``gap_m``).

    Parameters
    ----------
    impacts : sequence of Impact
    segment_ids, vehicle_ids : sequences, one per impact
    gap_m : float
        A gap larger than this between consecutive impacts starts a new cluster, m.

    Returns
    -------
    clusters : list of Cluster, by segment then position.

    Examples
    --------
    >>> imp = [Impact(10.0, 3, -1, 1.0, 2, 50, 9), Impact(12.0, 3, -1, 1.0, 2, 50, 9),
    ...        Impact(80.0, 3, 1, 0.5, 2, 20, 9)]
    >>> [(c.position_m, c.n_vehicles) for c in cluster_impacts(imp, ["s"] * 3, ["a", "b", "a"])]
    [(11.0, 2), (80.0, 1)]
    """
    if not (len(impacts) == len(segment_ids) == len(vehicle_ids)):
        raise ValueError(
            f"impacts, segment_ids, vehicle_ids must have equal lengths; got "
            f"{len(impacts)}, {len(segment_ids)}, {len(vehicle_ids)}"
        )
    if gap_m <= 0:
        raise ValueError(f"gap_m must be > 0, got {gap_m=}")
    out: list[Cluster] = []
    seg = np.asarray([str(s) for s in segment_ids], dtype=object)
    keys = {str(s): s for s in segment_ids}
    vid = list(vehicle_ids)
    for s in sorted(set(seg)):
        idx = np.flatnonzero(seg == s)
        pos = np.array([impacts[i].offset_m for i in idx])
        order = np.argsort(pos, kind="stable")
        idx, pos = idx[order], pos[order]
        breaks = np.flatnonzero(np.diff(pos) > gap_m) + 1
        for part in np.split(np.arange(idx.size), breaks):
            members = [impacts[i] for i in idx[part]]
            vehs = tuple(dict.fromkeys(vid[i] for i in idx[part]))
            p = pos[part]
            out.append(
                Cluster(
                    segment_id=keys[s],
                    position_m=float(np.median(p)),
                    spread_m=float(np.subtract(*np.percentile(p, [75, 25]))),
                    n_impacts=len(members),
                    n_vehicles=len(vehs),
                    pothole_fraction=float(np.mean([m.pothole_like for m in members])),
                    median_slowdown=float(np.median([m.slowdown for m in members])),
                    median_peak_mps2=float(np.median([m.peak_mps2 for m in members])),
                    vehicles=vehs,
                    down_fraction=float(np.mean([m.polarity < 0 for m in members])),
                    axle_pair_fraction=_axle_pair_fraction(members, [vid[i] for i in idx[part]]),
                    median_severity=float(np.median([m.severity for m in members])),
                    dip_fraction=_dip_fraction(members),
                    drop_pair_vehicles=_drop_pair_vehicles(members, [vid[i] for i in idx[part]]),
                    rise_ratio=_rise_ratio(members),
                )
            )
    return out


@dataclass(frozen=True)
class ConfirmedFeature:
    """A confirmed feature of a segment.

    Attributes
    ----------
    segment_id, position_m (m along the segment)
    kind : 'pothole' or 'bump' (speed bump / rail crossing: reported, never a pothole)
    n_vehicles, n_impacts
    confidence : 0..1; a pothole's is the probability that it is a real hole
        (:func:`pothole_confidence`), a bump's the agreement of its impacts
    """

    segment_id: Any
    position_m: float
    kind: Literal["pothole", "bump"]
    n_vehicles: int
    n_impacts: int
    confidence: float


#: Logistic model of the probability that a confirmed pothole is a real hole: intercept,
#: coefficient of ln(distinct vehicles), coefficient of ln(median severity). Fitted by
#: ``bench/pothole_confidence.py`` on the final alerts of 16 recorded seeds (see there).
CONFIDENCE_LOGIT = (-13.06, 1.63, 7.71)
LOW_RATE_CONFIDENCE = 0.6  #: confidence factor of evidence sampled below 50 Hz (not calibrated)


def confidence_features(n_vehicles: int, median_severity: float) -> tuple[float, float]:
    """The inputs of :data:`CONFIDENCE_LOGIT`: ``ln(n_vehicles)`` and ``ln(median severity)``,
    the severity floored at the detection threshold :data:`K_SIGMA` (an impact's severity is
    at least that; unknown, NaN, counts as that)."""
    sev = median_severity if median_severity > K_SIGMA else K_SIGMA
    return math.log(n_vehicles), math.log(sev)


def pothole_confidence(n_vehicles: int, median_severity: float, fs_hz: float = 100.0) -> float:
    """Probability that a confirmed pothole is a real hole, from its evidence.

    Parameters
    ----------
    n_vehicles : int
        Distinct vehicles whose impacts confirm it (>= 1).
    median_severity : float
        Median of its impacts' :attr:`Impact.severity` (peak over the road's local scale;
        NaN counts as the detection threshold :data:`K_SIGMA`). A hole stands out of its
        road, the road's own repeatable shocks hardly do.
    fs_hz : float
        Lowest sample rate of the evidence, Hz. Below 50 Hz the probability is scaled by
        :data:`LOW_RATE_CONFIDENCE`: the model was fitted on 100 Hz fleets only.

    Returns
    -------
    float in [0, 1].

    Examples
    --------
    >>> round(pothole_confidence(3, 4.5), 3), round(pothole_confidence(3, 8.0), 3)
    (0.581, 0.992)
    """
    if n_vehicles < 1:
        raise ValueError(f"n_vehicles must be >= 1, got {n_vehicles=}")
    b0, b_veh, b_sev = CONFIDENCE_LOGIT
    ln_veh, ln_sev = confidence_features(n_vehicles, median_severity)
    z = b0 + b_veh * ln_veh + b_sev * ln_sev
    p = 0.5 * (1.0 + math.tanh(0.5 * z))  # the logistic, without overflow
    return p * (1.0 if fs_hz >= 50 else LOW_RATE_CONFIDENCE)


def confirm(
    clusters: Sequence[Cluster],
    *,
    min_vehicles: int = 3,
    min_pothole_fraction: float = 0.6,
    max_slowdown_for_bump: float = 0.8,
    fs_hz: float = 100.0,
    signature: Literal["polarity+slowdown", "polarity"] = "polarity+slowdown",
    slowed_pothole_fraction: float = 0.8,
    min_peak_mps2: float = 0.0,
    min_axle_pair_fraction: float = 0.0,
    min_fs_hz: float = 0.0,
    weak_min_severity: float = 0.0,
    weak_min_peak_mps2: float = 1.0,
    dip_slowed_fraction: float = 0.0,
    weak_min_drop_pairs: int = 0,
    max_rise_ratio: float = 0.0,
    slowed_max_rise_ratio: float = 0.0,
    level_rise_ratio: float = 0.0,
) -> list[ConfirmedFeature]:
    """Confirmed potholes (and bumps) from clusters hit by enough distinct vehicles.

    Parameters
    ----------
    clusters : sequence of Cluster
    min_vehicles : int
        Distinct vehicles needed. Default 3.
    min_pothole_fraction : float
        Share of pothole-like impacts needed for a pothole. Default 0.6.
    max_slowdown_for_bump : float
        A median slowdown below this marks a designed feature (drivers brake). Default 0.8.
    fs_hz : float
        Sample rate of the passes; below 50 Hz the confidence is scaled by 0.6.
    signature : {"polarity+slowdown", "polarity"}
        What makes an impact count for a pothole. ``"polarity+slowdown"`` (default):
        :attr:`Impact.pothole_like` (down-first and not slowed for), and a cluster where
        drivers slowed down is a bump. ``"polarity"``: down-first only; where drivers slow
        down (before a junction as much as before a hump) a pothole needs
        ``slowed_pothole_fraction`` of down-first impacts. Humps, cushions and rails are
        up-first for nearly every vehicle, while braking for a junction says nothing
        about the surface: on the real network this finds the potholes near junctions.
    slowed_pothole_fraction : float
        ``"polarity"`` only: down-first share needed where the median slowdown is below
        ``max_slowdown_for_bump``. Default 0.8.
    min_peak_mps2 : float
        A pothole cluster's median peak must reach this, m/s^2 (0: no condition).
    min_axle_pair_fraction : float
        A pothole cluster needs at least this share of vehicles hit by both axles
        (:attr:`Cluster.axle_pair_fraction`; 0: no condition).
    min_fs_hz : float
        Below this sample rate no pothole is confirmed (bumps still are); 0: no condition.
    weak_min_severity, weak_min_peak_mps2 : float
        A cluster below ``min_peak_mps2`` but with a median peak of at least
        ``weak_min_peak_mps2`` still passes the peak condition when its impacts stand far
        above their road: :attr:`Cluster.median_severity` at least ``weak_min_severity``
        (0: no such exception; shallow holes on smooth roads, see
        ``pipeline.stage2.Stage2Params.weak_min_severity``).
    weak_min_drop_pairs : int
        Such a weak cluster also needs this many vehicles whose two axles each dropped into
        it (:attr:`Cluster.drop_pair_vehicles`; 0: no condition).
    dip_slowed_fraction : float
        A cluster whose :attr:`Cluster.dip_fraction` reaches this is slowed for, whatever
        its median slowdown (0: no such rule): drivers slowed down for the spot and sped up
        after it. It then needs ``slowed_pothole_fraction`` (``"polarity"``) and never gets
        the weak-cluster exception (a rail's small shocks at reduced speed look like a
        shallow hole's).
    max_rise_ratio, slowed_max_rise_ratio : float
        A cluster whose :attr:`Cluster.rise_ratio` reaches ``max_rise_ratio`` (or, where
        drivers slowed down for it, ``slowed_max_rise_ratio``) is a bump, never a pothole
        (0: no such rule; ``slowed_max_rise_ratio`` 0: ``max_rise_ratio``): the body rose
        before it dropped, as over a hump or a cushion, however slowly it was driven.
    level_rise_ratio : float
        ``"polarity"`` only: a slowed-for cluster whose :attr:`Cluster.rise_ratio` is below
        this needs ``min_pothole_fraction`` down-first, not ``slowed_pothole_fraction`` (0:
        no such rule): its drops came off a level road, so it is no hump or cushion, and a
        hole near a junction is as mixed in polarity as anywhere on a rough road.

    Returns
    -------
    features : list of ConfirmedFeature

    Notes
    -----
    A pothole's confidence is :func:`pothole_confidence` of its vehicles and
    :attr:`Cluster.median_severity`. A bump's is ``(1 - 0.5 ** (n_vehicles - 1)) * agreement
    * rate``, agreement the share of bump-like impacts and rate 1 (>= 50 Hz) or 0.6.
    """
    if min_vehicles < 1:
        raise ValueError(f"min_vehicles must be >= 1, got {min_vehicles=}")
    rate = 1.0 if fs_hz >= 50 else LOW_RATE_CONFIDENCE
    out: list[ConfirmedFeature] = []
    if signature not in ("polarity+slowdown", "polarity"):
        raise ValueError(f"{signature=} must be 'polarity+slowdown' or 'polarity'")
    for c in clusters:
        if c.n_vehicles < min_vehicles:
            continue
        # a pothole needs both axles of enough vehicles (NaN, e.g. one vehicle: no)
        axles_ok = min_axle_pair_fraction <= 0 or c.axle_pair_fraction >= min_axle_pair_fraction
        # drivers slowed down for the spot and sped up after it (NaN: unknown, no)
        dipped = dip_slowed_fraction > 0 and c.dip_fraction >= dip_slowed_fraction
        peak_ok = c.median_peak_mps2 >= min_peak_mps2 or (
            weak_min_severity > 0 and c.median_peak_mps2 >= weak_min_peak_mps2
            and c.median_severity >= weak_min_severity and not dipped
            and c.drop_pair_vehicles >= weak_min_drop_pairs
        )  # fmt: skip
        strong = peak_ok and axles_ok and fs_hz >= min_fs_hz
        slowed = c.median_slowdown < max_slowdown_for_bump or dipped
        rise_bound = slowed_max_rise_ratio if slowed and slowed_max_rise_ratio > 0 else max_rise_ratio
        kind: Literal["pothole", "bump"]
        if rise_bound > 0 and c.rise_ratio >= rise_bound:  # lifted before the drop: a hump
            kind, agree = "bump", 1.0
        elif signature == "polarity":
            frac = c.down_fraction
            level = c.rise_ratio < level_rise_ratio  # NaN (unknown): not level
            need = slowed_pothole_fraction if slowed and not level else min_pothole_fraction
            if frac >= need and strong:
                kind = "pothole"
            elif frac <= 1 - min_pothole_fraction or (slowed and frac < need):
                kind, agree = "bump", 1 - frac
            else:
                continue  # mixed or weak: not enough evidence either way
        elif c.pothole_fraction >= min_pothole_fraction and not slowed and strong:
            kind = "pothole"
        elif c.pothole_fraction <= 1 - min_pothole_fraction or slowed:
            kind = "bump"
            agree = 1 - c.pothole_fraction
        else:
            continue  # mixed signatures: not enough evidence either way
        if kind == "pothole":
            conf = pothole_confidence(c.n_vehicles, c.median_severity, fs_hz)
        else:  # agree: the share of bump-like impacts
            conf = (1 - 0.5 ** (c.n_vehicles - 1)) * agree * rate
        out.append(ConfirmedFeature(c.segment_id, c.position_m, kind, c.n_vehicles, c.n_impacts, round(conf, 3)))
    return out
