"""Harsh braking, acceleration, cornering and swerves from a vehicle's inertial signals.

Method
------
1. **Low-pass** both horizontal axes (and the speed) with a causal 2nd-order Butterworth at
   ``lowpass_hz`` = 2 Hz: driver manoeuvres (pedal, steering) live below ~1.5 Hz, engine
   and road vibration, pothole and hump impacts above 5 Hz.
2. **Grade and orientation compensation.** A body-fixed sensor reads specific force: on a
   slope θ the longitudinal axis reads ``a + g sin θ``, and a sensor pitched by a few
   degrees adds ``g sin(pitch)`` (3° = 0.5 m/s²); roll and road camber do the same on the
   lateral axis. Longitudinal: with the speed, the offset is the slow part (``bias_hz``
   = 0.2 Hz low-pass) of ``a_x - dv/dt``: whatever the accelerometer reads that the
   speed does not confirm (grade, pitch, bias). Without the speed, and on the lateral
   axis always, the offset is a weighted running mean (time constant ``level_tau_s``)
   over samples where the vehicle stands (weight 1) or drives straight and steady
   (weight 0.1): there the true horizontal acceleration is ~0, so the reading is the leak.
3. **Threshold with hysteresis and minimum duration**, per kind on the compensated
   signals: a *run* is where the signal is beyond the *release* level; it is an event if
   it reaches the *trigger* level and stays beyond it at least ``min_duration_s``. The
   event starts at the first trigger crossing and ends at the release.
4. **Checks.** Braking and acceleration must be confirmed by the speed: the speed change
   over the run must have the event's sign and be at least ``speed_check_ratio`` of the
   integral of the acceleration (a sensor artefact or an impact changes no speed).
   **Shocks.** A pothole's hub shock (10-15 Hz, up to ~10 m/s² fore-aft, twice: front and
   rear axle) leaves a residual of a few tenths of m/s² in the 2 Hz low-passed signal for
   ~0.3 s; on top of a firm ordinary stop (-2.6 m/s²) that is enough to cross the
   trigger, and the speed check passes because the driver *is* braking. No pedal produces
   such a shock: a driver's jerk stays under ~50 m/s³, a hub shock's is hundreds. So a
   braking or acceleration run within ``shock_memory_s`` (0.5 s: the 2 Hz filter's impulse
   response has decayed below 5 % of its peak) after a raw longitudinal jerk beyond
   ``shock_jerk_mps3`` (200 m/s³, 4x the fastest pedal input, ~14 sigma of the noise of
   a 0.05 m/s² sensor at 200 Hz) is judged on the speed alone: the deceleration
   (acceleration) derived from the low-passed speed must itself stay beyond the trigger
   for ``min_duration_s``. Below ~30 Hz sampling the shock is not resolved (and barely
   leaks through the low-pass): the rule then seldom fires. ABS
   engagement during a braking run makes it harsh whatever the peak, and skips the speed
   check (wheel speed is unreliable under ABS). Lateral events need ``min_lat_speed_kmh``
   (a standing car cannot corner).
5. **Swerve vs corner.** A swerve (evasive lane change) is two adjacent lateral runs of
   opposite sign (gap <= ``swerve_max_gap_s``), each beyond ``swerve_trigger_mps2`` for
   ``swerve_min_lobe_s``, each turning the heading by less than ``swerve_max_heading_deg``
   (60°; heading change = integral of a_lat / v), and the two together by at most
   ``swerve_max_net_heading_deg`` (20°): a lane change ends in the direction it started,
   a turn or a roundabout does not. The per-lobe limit alone (35° until the fourth
   session) cut strong swerves at low speed (6.5 m/s² over 2.5 s at 25 km/h turns the car
   by 43° each way) into two corners. Any other triggered lateral run is a corner.
   ``swerve_max_gap_s`` = 0.7 s: a lane change of amplitude ``A`` and period ``P`` stays
   ``(P/π)·asin(2.5/A)`` inside the ±2.5 m/s² release between its lobes, 0.54 s for the
   gentlest evasive one (0.4 g over 2.5 s); the margin covers the 2 Hz low-pass and noise.
   At 0.5 s such swerves were read as two corners (most false corners of the safety bench).

Defaults (m/s², ISO 8855 axes: forward and left positive)
-------------------------------------------------------------------------------------------
===================  =======  =======  ====================================================
kind                 trigger  release  why
===================  =======  =======  ====================================================
harsh_brake          -3.0     -2.5     ~0.3 g, the usual insurer/fleet threshold (e.g.
                                       Geotab, Samsara "harsh braking" presets 0.3 g);
                                       ordinary stops stay at -1.5 to -2.5 m/s²
harsh_accel          +2.5     +2.0     ~0.25 g: cars rarely exceed 2 m/s² in normal
                                       driving (0-50 km/h in 7 s = 2 m/s²)
harsh_corner         ±3.5     ±2.5     ~0.35 g lateral; comfortable cornering stays under
                                       3 m/s² (road design assumes 1.5-2.5)
swerve (each lobe)   ±3.0     ±2.5     an evasive lane change is ~0.3-0.6 g; ordinary lane
                                       changes 0.5-1.5 m/s²
===================  =======  =======  ====================================================

``min_duration_s`` = 0.3 s beyond the trigger ("sustained >= 300 ms"): shorter excursions
are impacts, vibration or sensor artefacts, not manoeuvres. ``shock_jerk_mps3`` = 200 m/s³
and ``shock_memory_s`` = 0.5 s: see *Shocks* in step 4. Release levels 0.5 m/s² inside
the trigger stop a noisy signal from chattering around the threshold.

Everything streams: state in, state out (filter states, open runs, pending lateral runs),
so chunked input gives the same events as one pass. Events are returned when decided: a
brake or acceleration when its run ends; a lateral run once ``swerve_max_gap_s`` has
passed without an opposite lobe (or at ``final``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numba
import numpy as np
from scipy import signal

from agents._harsh_runs import CHANNELS, run_table
from agents._sosfilt import sosfilt_zi

__all__ = ["HarshParams", "HarshDetectorState", "DetectedEvent", "EVENT_TYPES", "detect_harsh_events"]

EVENT_TYPES = ("harsh_brake", "harsh_accel", "harsh_corner", "swerve")
_G = 9.81


@dataclass(frozen=True, kw_only=True)
class HarshParams:
    """Detection options: accelerations in m/s², durations in s, frequencies in Hz.

    See the module docstring for what each default is and why.
    """

    brake_trigger_mps2: float = -3.0
    brake_release_mps2: float = -2.5
    accel_trigger_mps2: float = 2.5
    accel_release_mps2: float = 2.0
    corner_trigger_mps2: float = 3.5
    corner_release_mps2: float = 2.5
    swerve_trigger_mps2: float = 3.0
    swerve_release_mps2: float = 2.5
    min_duration_s: float = 0.3
    swerve_min_lobe_s: float = 0.15
    swerve_max_gap_s: float = 0.7
    swerve_max_heading_deg: float = 60.0
    swerve_max_net_heading_deg: float = 20.0
    lowpass_hz: float = 2.0
    bias_hz: float = 0.2
    level_tau_s: float = 30.0
    straight_lat_mps2: float = 1.2
    steady_long_mps2: float = 0.8
    speed_check_ratio: float = 0.5
    min_lat_speed_kmh: float = 10.0
    shock_jerk_mps3: float = 200.0
    shock_memory_s: float = 0.5

    def __post_init__(self) -> None:
        pairs = (
            ("brake", -self.brake_trigger_mps2, -self.brake_release_mps2),
            ("accel", self.accel_trigger_mps2, self.accel_release_mps2),
            ("corner", self.corner_trigger_mps2, self.corner_release_mps2),
            ("swerve", self.swerve_trigger_mps2, self.swerve_release_mps2),
        )
        for name, trig, rel in pairs:
            if not 0 < rel <= trig:
                raise ValueError(f"{name}: need 0 < |release| <= |trigger|, got trigger={trig}, release={rel}")
        if not self.min_duration_s >= 0:
            raise ValueError(f"min_duration_s={self.min_duration_s} must be >= 0")
        if not (self.shock_jerk_mps3 > 0 and self.shock_memory_s >= 0):
            raise ValueError(f"need shock_jerk_mps3 > 0 and shock_memory_s >= 0, got {self.shock_jerk_mps3}, {self.shock_memory_s}")


@dataclass(frozen=True, slots=True)
class DetectedEvent:
    """One event.

    Attributes
    ----------
    type : 'harsh_brake' | 'harsh_accel' | 'harsh_corner' | 'swerve'
    start_t_s : time of the first trigger crossing, s (same clock as ``t_s``)
    duration_s : from the start to the release (swerve: both lobes), s
    peak_mps2 : signed peak of the compensated, low-passed acceleration, m/s²
        (swerve: of its larger lobe)
    start_index : index of the start sample in the call that returned the event (< 0 when
        it began in an earlier call)
    speed_kmh : low-passed speed at the start, km/h (NaN without a speed signal)
    abs_engaged : ABS was engaged during the event
    """

    type: str
    start_t_s: float
    duration_s: float
    peak_mps2: float
    start_index: int
    speed_kmh: float = float("nan")
    abs_engaged: bool = False


# A run summary (list, JSON-friendly): indices into it.
_R_START_I, _R_START_T, _R_END_T, _R_TRIG_I, _R_TRIG_T, _R_N_TRIG, _R_N_TRIG2 = range(7)
_R_PEAK, _R_SUM_A, _R_V0, _R_V1, _R_N_ABS, _R_SUM_V, _R_N, _R_HEAD, _R_SIGN = range(7, 16)
# samples within shock_memory_s after a shock; samples where the speed alone is beyond the trigger
_R_N_SHOCK, _R_N_TRIG_V = 16, 17
_RUN_LEN = 18


@dataclass
class HarshDetectorState:
    """Carried between calls of one trip: filter states, open and pending runs."""

    zi: np.ndarray | None = None  # low-pass state (n_sections, n_rows, 2)
    bias_zi: np.ndarray | None = None  # longitudinal offset filter (n_sections, 1, 2)
    level_zi: np.ndarray | None = None  # weighted-mean filters (4, 1)
    last_speed_mps: float = float("nan")
    last_ax: float = float("nan")  # last raw longitudinal sample (jerk across chunks)
    last_shock_t: float = float("-inf")  # time of the last longitudinal shock, s
    last_v_lp: float = float("nan")  # last low-passed speed, m/s (its derivative across chunks)
    n_seen: int = 0
    open_runs: dict[str, list] = field(default_factory=dict)  # channel -> run summary
    pending_lat: list[list] = field(default_factory=list)  # closed lateral runs awaiting a decision

    def to_dict(self) -> dict:
        def arr(a: np.ndarray | None) -> list | None:
            return None if a is None else a.tolist()

        return {
            "zi": arr(self.zi),
            "bias_zi": arr(self.bias_zi),
            "level_zi": arr(self.level_zi),
            "last_speed_mps": None if not math.isfinite(self.last_speed_mps) else self.last_speed_mps,
            "last_ax": None if not math.isfinite(self.last_ax) else self.last_ax,
            "last_shock_t": None if not math.isfinite(self.last_shock_t) else self.last_shock_t,
            "last_v_lp": None if not math.isfinite(self.last_v_lp) else self.last_v_lp,
            "n_seen": self.n_seen,
            "open": {k: list(v) for k, v in self.open_runs.items()},
            "pending_lat": [list(r) for r in self.pending_lat],
        }

    @classmethod
    def from_dict(cls, d: dict) -> HarshDetectorState:
        def arr(x: list | None) -> np.ndarray | None:
            return None if x is None else np.asarray(x, float)

        last = d.get("last_speed_mps")
        return cls(
            zi=arr(d.get("zi")),
            bias_zi=arr(d.get("bias_zi")),
            level_zi=arr(d.get("level_zi")),
            last_speed_mps=float("nan") if last is None else float(last),
            # states written before these fields existed: no shock seen, derivative restarts
            last_ax=_float_or(d.get("last_ax"), float("nan")),
            last_shock_t=_float_or(d.get("last_shock_t"), float("-inf")),
            last_v_lp=_float_or(d.get("last_v_lp"), float("nan")),
            n_seen=int(d.get("n_seen", 0)),
            open_runs={k: _run_from_json(v) for k, v in d.get("open", {}).items()},
            pending_lat=[_run_from_json(r) for r in d.get("pending_lat", [])],
        )

    def copy(self) -> HarshDetectorState:
        """``from_dict(to_dict())`` without the lists in between: the same values, the
        same non-finite scalars replaced (``tests/unit/test_harsh_kernels.py``)."""
        nan = float("nan")
        return HarshDetectorState(
            zi=_copy_array(self.zi),
            bias_zi=_copy_array(self.bias_zi),
            level_zi=_copy_array(self.level_zi),
            last_speed_mps=float(self.last_speed_mps) if math.isfinite(self.last_speed_mps) else nan,
            last_ax=float(self.last_ax) if math.isfinite(self.last_ax) else nan,
            last_shock_t=float(self.last_shock_t) if math.isfinite(self.last_shock_t) else float("-inf"),
            last_v_lp=float(self.last_v_lp) if math.isfinite(self.last_v_lp) else nan,
            n_seen=int(self.n_seen),
            open_runs={k: _run_from_json(v) for k, v in self.open_runs.items()},
            pending_lat=[_run_from_json(r) for r in self.pending_lat],
        )


def _copy_array(a: np.ndarray | None) -> np.ndarray | None:
    """``np.asarray(a.tolist(), float)``, as a state's JSON round trip makes it."""
    if a is None:
        return None
    return np.array(a, dtype=float) if a.size else np.asarray(a.tolist(), float)  # empty: as the lists shape it


def _run_from_json(run: list) -> list:
    # JSON has no NaN: serialisers (orjson) write null for a missing speed or trigger time;
    # a run saved before the shock fields existed gets zeros (no shock: the old behaviour)
    return [float("nan") if x is None else x for x in run] + [0] * (_RUN_LEN - len(run))


def _float_or(x: object, default: float) -> float:
    return default if x is None else float(x)  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _level_alpha(tau_s: float, fs: float) -> float:
    """The running means' one-pole coefficient for a time constant ``tau_s`` (s) at ``fs`` (Hz)."""
    return float(1.0 - np.exp(-1.0 / (tau_s * fs)))


@lru_cache(maxsize=64)
def _lowpass_sos(fs: float, cutoff_hz: float) -> np.ndarray:
    # At very low sample rates the cutoff would sit above Nyquist: clamp it below.
    wn = min(cutoff_hz, 0.45 * fs)
    return signal.butter(2, wn, btype="low", fs=fs, output="sos")


def detect_harsh_events(
    accel_long_mps2: np.ndarray,
    accel_lat_mps2: np.ndarray,
    t_s: np.ndarray,
    fs: float,
    *,
    state: HarshDetectorState | None = None,
    params: HarshParams = HarshParams(),
    final: bool = False,
    speed_kmh: np.ndarray | None = None,
    abs_engaged: np.ndarray | None = None,
) -> tuple[list[DetectedEvent], HarshDetectorState]:
    """Detect harsh events in one chunk of a vehicle's samples.

    Parameters
    ----------
    accel_long_mps2, accel_lat_mps2 : (n,) array_like
        Longitudinal (forward +) and lateral (left +) acceleration as the sensor reads it
        (specific force, gravity leaks included), m/s².
    t_s : (n,) array_like
        Sample times, s (increasing).
    fs : float
        Sample rate, Hz (> 0).
    state : HarshDetectorState, optional
        From the previous chunk of the same trip; ``None`` starts a trip. Not modified.
    params : HarshParams
    final : bool
        End of the trip: close open runs and decide pending ones.
    speed_kmh : (n,) array_like, optional
        Vehicle speed, km/h. Enables grade compensation from ``a_x - dv/dt``, the speed
        check of braking/acceleration and the speed gate of lateral events; give it on
        every chunk of a trip or on none. NaN samples are not allowed.
    abs_engaged : (n,) array_like of bool, optional
        ABS active flag per sample.

    Returns
    -------
    events : list of DetectedEvent
        Events decided in this chunk, by start time.
    state : HarshDetectorState
        A new state to pass with the next chunk.

    Raises
    ------
    ValueError
        On arrays of different lengths or not 1-D, or ``fs <= 0``.
    TypeError
        On non-numeric input.

    Warnings
    --------
    NaN accelerations propagate through the filters and suppress detection until the
    trip ends; drop such samples before calling.

    Examples
    --------
    >>> import numpy as np
    >>> fs = 50.0
    >>> t = np.arange(0, 20, 1 / fs)
    >>> a = np.where((t > 8) & (t < 9.5), -5.0, 0.0)            # 1.5 s at -5 m/s²
    >>> v = 60.0 + 3.6 * np.cumsum(a) / fs                        # km/h, consistent
    >>> ev, st = detect_harsh_events(a, np.zeros_like(t), t, fs, speed_kmh=v, final=True)
    >>> [(e.type, round(e.start_t_s, 1), round(e.peak_mps2, 1)) for e in ev]
    [('harsh_brake', 8.2, -5.2)]
    """
    ax = _as_1d(accel_long_mps2, "accel_long_mps2")
    ay = _as_1d(accel_lat_mps2, "accel_lat_mps2")
    t = _as_1d(t_s, "t_s")
    if not (ax.shape == ay.shape == t.shape):
        raise ValueError(f"accel_long_mps2, accel_lat_mps2 and t_s must have equal length; got {ax.shape}, {ay.shape}, {t.shape}")
    if not fs > 0:
        raise ValueError(f"{fs=} must be positive")
    v = None
    if speed_kmh is not None:
        v = _as_1d(speed_kmh, "speed_kmh") / 3.6
        if v.shape != t.shape:
            raise ValueError(f"speed_kmh must have the length of t_s; got {v.shape}, expected {t.shape}")
    ab = None
    if abs_engaged is not None:
        ab = np.asarray(abs_engaged, bool).ravel()
        if ab.shape != t.shape:
            raise ValueError(f"abs_engaged must have the length of t_s; got {ab.shape}, expected {t.shape}")
    st = HarshDetectorState() if state is None else state.copy()
    p = params
    events: list[DetectedEvent] = []
    offset = st.n_seen
    if ax.size:
        a_long, a_lat, v_lp = _compensate(ax, ay, v, fs, st, p)
        for ch, run in _chunk_runs(ax, a_long, a_lat, v_lp, ab, t, fs, st, p, offset, final):
            if ch in ("brake", "accel"):
                ev = _long_event(ch, run, p, fs, v is not None, offset)
                if ev is not None:
                    events.append(ev)
            else:
                st.pending_lat.append(run)
        st.n_seen += ax.size
        t_now = float(t[-1])
    else:
        t_now = -np.inf
        if final:
            for ch in list(st.open_runs):
                run = st.open_runs.pop(ch)
                if ch in ("brake", "accel"):
                    ev = _long_event(ch, run, p, fs, v is not None or np.isfinite(st.last_speed_mps), offset)
                    if ev is not None:
                        events.append(ev)
                else:
                    st.pending_lat.append(run)
    events.extend(_resolve_lateral(st, p, fs, t_now, final, offset, has_speed=v is not None or np.isfinite(st.last_speed_mps)))
    if final:
        st.open_runs.clear()
    events.sort(key=lambda e: (e.start_t_s, e.type))
    return events, st


def _as_1d(x: object, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(float, copy=False)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _compensate(
    ax: np.ndarray, ay: np.ndarray, v: np.ndarray | None, fs: float, st: HarshDetectorState, p: HarshParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Low-pass, remove grade/orientation offsets; update the filter states in ``st``.

    The filters start, at a trip's first chunk, at rest on the first values. The work is
    one compiled kernel, :func:`_compensate_kernel`, the same to the bit as the NumPy and
    scipy calls it replaced (``tests/unit/test_harsh_kernel.py`` keeps them as its oracle).
    """
    sos = _lowpass_sos(float(fs), p.lowpass_hz)
    ax, ay = np.ascontiguousarray(ax), np.ascontiguousarray(ay)
    m = 2 if v is None else 3
    if st.zi is None or st.zi.shape[1] != m:
        first = np.array([ax[0], ay[0]] if v is None else [ax[0], ay[0], v[0]])
        zi = sosfilt_zi(sos)[:, None, :] * first[None, :, None]  # at rest on the first value
    else:
        zi = st.zi
    vv = _NO_SPEED if v is None else np.ascontiguousarray(v)
    bsos = _lowpass_sos(float(fs), p.bias_hz)
    # the offset filter's start needs the first dv/dt, known inside the kernel
    bias_zi0 = sosfilt_zi(bsos) if v is not None and st.bias_zi is None else _NO_ZI
    bias_zi = _NO_ZI3 if st.bias_zi is None else st.bias_zi
    level_zi = _NO_LEVEL if st.level_zi is None else st.level_zi
    v_prev = float(vv[0]) if v is not None and not math.isfinite(st.last_speed_mps) else float(st.last_speed_mps)
    alpha = _level_alpha(p.level_tau_s, float(fs))
    a_long, a_lat, v_lp, st.zi, new_bias_zi, st.level_zi = _compensate_kernel(
        ax, ay, vv, float(fs), sos, np.ascontiguousarray(zi, dtype=np.float64), bsos, bias_zi0,
        np.ascontiguousarray(bias_zi, dtype=np.float64), v_prev, alpha, float(p.straight_lat_mps2),
        float(p.steady_long_mps2), np.ascontiguousarray(level_zi, dtype=np.float64),
    )
    if v is not None:
        st.bias_zi = new_bias_zi
        st.last_speed_mps = float(v[-1])
    return a_long, a_lat, None if v is None else v_lp


_NO_SPEED = np.zeros(0)
_NO_ZI = np.zeros((0, 2))
_NO_ZI3 = np.zeros((0, 1, 2))
_NO_LEVEL = np.zeros((0, 1))


@numba.njit(cache=True, error_model="numpy")
def _np_max(a: float, b: float) -> float:
    """``np.maximum`` of two floats: NaN if ``a`` is NaN."""
    return a if not a < b else b


@numba.njit(inline="always")
def _section_step(x, z0, z1, b0, b1, b2, a1, a2):  # noqa: ANN001, ANN202
    """One sample through one second-order section, as scipy's ``sosfilt`` steps it
    (transposed direct form II): the output and the section's next two states."""
    y = b0 * x + z0
    return y, b1 * x - a1 * y + z1, b2 * x - a2 * y


@numba.njit(cache=True, error_model="numpy")
def _compensate_kernel(ax, ay, v, fs, sos, zi, bsos, bias_zi0, bias_zi, v_prev, alpha, straight_lat, steady_long,
                       level_zi):  # fmt: skip
    """The body of :func:`_compensate`. ``v`` empty means no speed; ``bias_zi0`` (1, 2),
    when not empty, starts the offset filter at rest on its first input; ``level_zi`` empty
    starts the running means. Returns a_long, a_lat, the low-passed speed (empty without
    speed) and the three filter states.

    ``sos`` and ``bsos`` are one section each (order-2 designs). The eight one-section
    filters (ax, ay, v; the offset; the four running means) step together, sample by
    sample, with their states in locals: each is the recurrence of scipy's
    ``_sosfilt_float`` (:func:`_section_step`), the same operations in the same order, so
    the same bits; interleaved, their dependency chains overlap in the CPU
    instead of following one another.
    """
    if sos.shape[0] != 1 or bsos.shape[0] != 1:
        raise ValueError("_compensate_kernel: one-section filters only")
    n = ax.size
    has_v = v.size > 0
    m = 3 if has_v else 2
    b0, b1, b2, a1, a2 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    # low-pass states of the rows ax, ay, v (scipy's (sections, rows, 2) layout in zi)
    zx0, zx1, zy0, zy1 = zi[0, 0, 0], zi[0, 0, 1], zi[0, 1, 0], zi[0, 1, 1]
    zv0 = zi[0, 2, 0] if has_v else 0.0
    zv1 = zi[0, 2, 1] if has_v else 0.0
    c0, c1, c2, d1, d2 = bsos[0, 0], bsos[0, 1], bsos[0, 2], bsos[0, 4], bsos[0, 5]
    zb0 = zb1 = 0.0
    # the longitudinal offset: the slow part of a_x - dv/dt, dv/dt clipped to what a car
    # can do (a glitch in the speed must not drag the offset)
    prev = v_prev
    if has_v:
        if bias_zi0.shape[0]:
            d = (v[0] - prev) * fs
            if d < -12.0:
                d = -12.0
            elif d > 12.0:
                d = 12.0
            r0 = ax[0] - d
            zb0, zb1 = bias_zi0[0, 0] * r0, bias_zi0[0, 1] * r0
        else:
            zb0, zb1 = bias_zi[0, 0, 0], bias_zi[0, 0, 1]
    # running means over standing (weight 1) or straight, steady driving (weight 0.1):
    # the one-pole mean y = alpha x + (1 - alpha) y[-1] as one second-order section
    # (the section [alpha, 0, 0, 1, -(1 - alpha), 0]; its second state stays 0)
    e0, e1, e2, f1, f2 = alpha, 0.0, 0.0, -(1.0 - alpha), 0.0
    zl00 = zl10 = zl20 = zl30 = 0.0
    if level_zi.shape[0]:
        zl00, zl10, zl20, zl30 = level_zi[0, 0], level_zi[1, 0], level_zi[2, 0], level_zi[3, 0]
    zl01 = zl11 = zl21 = zl31 = 0.0
    a_long = np.empty(n)
    a_lat = np.empty(n)
    v_lp = np.empty(n if has_v else 0)
    for k in range(n):
        y0, zx0, zx1 = _section_step(ax[k], zx0, zx1, b0, b1, b2, a1, a2)
        y1, zy0, zy1 = _section_step(ay[k], zy0, zy1, b0, b1, b2, a1, a2)
        al = 0.0
        if has_v:
            y2, zv0, zv1 = _section_step(v[k], zv0, zv1, b0, b1, b2, a1, a2)
            v_lp[k] = y2
            d = (v[k] - prev) * fs
            if d < -12.0:
                d = -12.0
            elif d > 12.0:
                d = 12.0
            bk, zb0, zb1 = _section_step(ax[k] - d, zb0, zb1, c0, c1, c2, d1, d2)
            prev = v[k]
            al = y0 - bk
        if k == 0 and not level_zi.shape[0]:
            prior = 1.0  # as if the trip began with the vehicle at rest on its first reading
            c = 1.0 - alpha
            zl00 = c * (prior * y1)
            zl10 = c * prior
            zl20 = c * (prior * y0)
            zl30 = c * prior
        straight = abs(y1) < straight_lat
        if has_v:
            if v[k] < 1.0 / 3.6:
                w_lat = 1.0
            elif straight and abs(al) < 0.3:
                w_lat = 0.1
            else:
                w_lat = 0.0
            w_long = 0.0  # unused: the speed gives the longitudinal offset
        else:
            w_lat = 0.1 if straight and abs(y0) < steady_long else 0.0
            w_long = w_lat
        l0, zl00, zl01 = _section_step(w_lat * y1, zl00, zl01, e0, e1, e2, f1, f2)
        l1, zl10, zl11 = _section_step(w_lat, zl10, zl11, e0, e1, e2, f1, f2)
        l2, zl20, zl21 = _section_step(w_long * y0, zl20, zl21, e0, e1, e2, f1, f2)
        l3, zl30, zl31 = _section_step(w_long, zl30, zl31, e0, e1, e2, f1, f2)
        a_lat[k] = y1 - l0 / _np_max(l1, 1e-9)
        a_long[k] = al if has_v else y0 - l2 / _np_max(l3, 1e-9)
    zf = np.empty((1, m, 2))
    zf[0, 0, 0], zf[0, 0, 1], zf[0, 1, 0], zf[0, 1, 1] = zx0, zx1, zy0, zy1
    if has_v:
        zf[0, 2, 0], zf[0, 2, 1] = zv0, zv1
    bz = np.empty((1, 1, 2))
    bz[0, 0, 0], bz[0, 0, 1] = zb0, zb1
    new_level = np.empty((4, 1))
    new_level[0, 0], new_level[1, 0], new_level[2, 0], new_level[3, 0] = zl00, zl10, zl20, zl30
    return a_long, a_lat, v_lp, zf, bz, new_level


def compile_kernels() -> None:
    """Compile the harsh-event kernel now, or load it from numba's cache: see
    :func:`agents.passes.compile_kernels`."""
    t = np.arange(300) / 100.0
    a = np.sin(t)
    for speed in (None, 30.0 + a):
        detect_harsh_events(a, a, t, 100.0, speed_kmh=speed, final=True)


def _chunk_runs(
    ax: np.ndarray, a_long: np.ndarray, a_lat: np.ndarray, v_lp: np.ndarray | None, ab: np.ndarray | None,
    t: np.ndarray, fs: float, st: HarshDetectorState, p: HarshParams, offset: int, final: bool,
) -> list[tuple[str, list]]:  # fmt: skip
    """Closed runs of each channel (merged with the run carried from the previous chunk),
    by channel then time; a run still open at the chunk's end goes back into
    ``st.open_runs``. Updates the carried shock and speed values in ``st``.

    The work is one compiled kernel, :func:`agents._harsh_runs.run_table`."""
    trig, rel, trig2 = _levels(p)
    counts, ints, flts, last_shock_t = run_table(
        np.ascontiguousarray(ax), a_long, a_lat, _NO_SPEED if v_lp is None else v_lp,
        _NO_ABS if ab is None else np.ascontiguousarray(ab), np.ascontiguousarray(t), float(fs),
        float(st.last_ax), float(st.last_shock_t), float(st.last_v_lp), float(p.shock_jerk_mps3),
        float(p.shock_memory_s), trig, rel, trig2,
    )  # fmt: skip
    st.last_ax = float(ax[-1])
    st.last_shock_t = float(last_shock_t)
    if v_lp is not None:
        st.last_v_lp = float(v_lp[-1])
    n = ax.size
    rows_i, rows_f = ints.tolist(), flts.tolist()
    out: list[tuple[str, list]] = []
    r = 0
    for ch, n_runs in zip(CHANNELS, counts.tolist()):
        carry = st.open_runs.pop(ch, None)
        if carry is not None and (n_runs == 0 or rows_i[r][0] != 0):
            out.append((ch, carry))  # the carried run ended exactly at the chunk edge
            carry = None
        sign = 1.0 if ch in ("accel", "latp") else -1.0
        for k in range(r, r + n_runs):
            s, e, ft, n_trig, n_trig2, n_abs, n_shock, n_trig_v = rows_i[k]
            start_t, end_t, trig_t, peak, sum_a, v0, v1, sum_v, head = rows_f[k]
            run = [
                offset + s, start_t, end_t, offset + ft if ft >= 0 else -1, trig_t, n_trig, n_trig2, peak,
                sum_a, v0, v1, n_abs, sum_v, e - s, head, sign, n_shock, n_trig_v,
            ]  # fmt: skip
            if k == r and s == 0 and carry is not None:
                run = _merge(carry, run)
            if e == n and not final:
                st.open_runs[ch] = run
            else:
                out.append((ch, run))
        r += n_runs
    return out


_NO_ABS = np.zeros(0, np.bool_)


def _levels(p: HarshParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trigger, release and second (swerve) trigger magnitudes per channel of
    :data:`agents._harsh_runs.CHANNELS`, m/s²: shared between calls, not to be written.

    Kept per params object (by identity: hashing the 22 fields costs more than the arrays)."""
    hit = _LEVELS.get(id(p))
    if hit is not None and hit[0] is p:
        return hit[1]
    trig = (-p.brake_trigger_mps2, p.accel_trigger_mps2, p.corner_trigger_mps2, p.corner_trigger_mps2)
    rel_lat = min(p.corner_release_mps2, p.swerve_release_mps2)
    rel = (-p.brake_release_mps2, p.accel_release_mps2, rel_lat, rel_lat)
    trig2 = (*trig[:2], p.swerve_trigger_mps2, p.swerve_trigger_mps2)
    # not flagged read-only: numba types a read-only array on its slow path (~1 µs a call)
    out = tuple(np.array(x, np.float64) for x in (trig, rel, trig2))
    if len(_LEVELS) >= 16:
        _LEVELS.clear()
    _LEVELS[id(p)] = (p, out)  # the entry holds p: its id cannot be reused while cached
    return out  # type: ignore[return-value]


_LEVELS: dict[int, tuple[HarshParams, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}


def _merge(a: list, b: list) -> list:
    """Join a run carried from the previous chunk (``a``) with its continuation ``b``."""
    m = list(a)
    m[_R_END_T] = b[_R_END_T]
    if m[_R_TRIG_I] < 0 and b[_R_TRIG_I] >= 0:
        m[_R_TRIG_I], m[_R_TRIG_T] = b[_R_TRIG_I], b[_R_TRIG_T]
    for k in (_R_N_TRIG, _R_N_TRIG2, _R_SUM_A, _R_N_ABS, _R_SUM_V, _R_N, _R_HEAD, _R_N_SHOCK, _R_N_TRIG_V):
        m[k] = a[k] + b[k]
    if abs(b[_R_PEAK]) > abs(a[_R_PEAK]):
        m[_R_PEAK] = b[_R_PEAK]
    m[_R_V1] = b[_R_V1]
    return m


def _long_event(ch: str, run: list, p: HarshParams, fs: float, has_speed: bool, offset: int) -> DetectedEvent | None:
    kind = "harsh_brake" if ch == "brake" else "harsh_accel"
    abs_on = ch == "brake" and run[_R_N_ABS] > 0
    sustained = run[_R_N_TRIG] / fs >= p.min_duration_s - 1e-9
    if not (sustained or abs_on):
        return None
    if has_speed and not abs_on and np.isfinite(run[_R_V0]):
        dv = (run[_R_V1] - run[_R_V0]) * run[_R_SIGN]  # speed change in the event's direction
        if not dv >= p.speed_check_ratio * run[_R_SUM_A]:
            return None  # the speed does not confirm it: grade, impact or sensor artefact
        if run[_R_N_SHOCK] > 0 and run[_R_N_TRIG_V] / fs < p.min_duration_s - 1e-9:
            return None  # a shock leaked into the low-passed signal: the speed alone is not harsh
    start_i, start_t = (run[_R_TRIG_I], run[_R_TRIG_T]) if run[_R_TRIG_I] >= 0 else (run[_R_START_I], run[_R_START_T])
    return DetectedEvent(
        kind, start_t, run[_R_END_T] - start_t, run[_R_PEAK], start_i - offset,
        _kmh_at_start(run), bool(abs_on),
    )  # fmt: skip


def _kmh_at_start(run: list) -> float:
    return float(run[_R_V0] * 3.6) if np.isfinite(run[_R_V0]) else float("nan")


def _resolve_lateral(
    st: HarshDetectorState, p: HarshParams, fs: float, t_now: float, final: bool, offset: int, *, has_speed: bool
) -> list[DetectedEvent]:
    """Decide closed lateral runs, in time order: swerve pairs, corners, or nothing.

    A run waits until ``swerve_max_gap_s`` after its end has been seen (an opposite lobe
    could still start) unless ``final``."""
    pend = sorted(st.pending_lat, key=lambda r: r[_R_START_T])
    out: list[DetectedEvent] = []
    keep: list[list] = []
    open_lat = [r for ch, r in st.open_runs.items() if ch in ("latp", "latn")]
    i = 0
    while i < len(pend):
        r = pend[i]
        nxt = pend[i + 1] if i + 1 < len(pend) else None
        if nxt is None and open_lat and open_lat[0][_R_START_T] - r[_R_END_T] <= p.swerve_max_gap_s + 1e-9:
            keep.extend(pend[i:])  # an adjacent lobe is still open: wait for it
            break
        if nxt is None and not final and t_now < r[_R_END_T] + p.swerve_max_gap_s:
            keep.extend(pend[i:])  # an opposite lobe could still start
            break
        if (
            nxt is not None and nxt[_R_SIGN] != r[_R_SIGN]
            and nxt[_R_START_T] - r[_R_END_T] <= p.swerve_max_gap_s + 1e-9
            and _lobe_ok(r, p, fs, has_speed) and _lobe_ok(nxt, p, fs, has_speed)
            and (not has_speed or np.degrees(abs(r[_R_HEAD] - nxt[_R_HEAD])) <= p.swerve_max_net_heading_deg)
        ):  # fmt: skip
            peak = r[_R_PEAK] if abs(r[_R_PEAK]) >= abs(nxt[_R_PEAK]) else nxt[_R_PEAK]
            ti, tt = (r[_R_TRIG_I], r[_R_TRIG_T]) if r[_R_TRIG_I] >= 0 else (r[_R_START_I], r[_R_START_T])
            out.append(DetectedEvent("swerve", tt, nxt[_R_END_T] - tt, peak, ti - offset, _kmh_at_start(r)))
            i += 2
            continue
        ev = _corner(r, p, fs, has_speed, offset)
        if ev is not None:
            out.append(ev)
        i += 1
    st.pending_lat = keep
    return out


def _lobe_ok(r: list, p: HarshParams, fs: float, has_speed: bool) -> bool:
    if r[_R_N_TRIG2] / fs < p.swerve_min_lobe_s - 1e-9:
        return False
    if has_speed:
        if r[_R_SUM_V] / max(r[_R_N], 1) * 3.6 < p.min_lat_speed_kmh:
            return False
        return bool(np.degrees(r[_R_HEAD]) < p.swerve_max_heading_deg)
    return (r[_R_END_T] - r[_R_START_T]) <= 1.5  # no speed: a lobe of a lane change is short


def _corner(r: list, p: HarshParams, fs: float, has_speed: bool, offset: int) -> DetectedEvent | None:
    if r[_R_TRIG_I] < 0 or r[_R_N_TRIG] / fs < p.min_duration_s - 1e-9:
        return None
    if has_speed and r[_R_SUM_V] / max(r[_R_N], 1) * 3.6 < p.min_lat_speed_kmh:
        return None
    # lateral runs are cut at the lower of the corner and swerve releases
    return DetectedEvent(
        "harsh_corner", r[_R_TRIG_T], r[_R_END_T] - r[_R_TRIG_T], r[_R_PEAK], r[_R_TRIG_I] - offset, _kmh_at_start(r)
    )
