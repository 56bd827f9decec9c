"""Harsh braking, acceleration and cornering from longitudinal and lateral acceleration.

Detection is a threshold with hysteresis and a minimum duration on a low-passed signal:
an event is a run of samples beyond the *release* threshold that reaches the *trigger*
threshold and lasts at least ``min_duration_s``. The low-pass (causal Butterworth, state
carried in ``zi``) removes engine and road vibration, which telematics thresholds are not
meant for. Everything streams: state in, state out, so that chunked input gives the same
events as one pass.

Defaults (m/s², ISO 8855 axes, forward and left positive):

=============  =======  =======  ======================================================
kind           trigger  release  why
=============  =======  =======  ======================================================
harsh_brake    -3.0     -2.0     common insurer/telematics threshold (~0.3 g); ordinary
                                 stops stay within -1.5 to -2.5 m/s²
harsh_accel    +2.5     +1.5     passenger cars rarely exceed 2 m/s² in normal driving
harsh_corner   ±3.5     ±2.5     ~0.35 g lateral; comfortable cornering stays under 3
=============  =======  =======  ======================================================

Minimum duration 0.3 s: shorter spikes are impacts or sensor artefacts, not manoeuvres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import signal

__all__ = ["HarshParams", "HarshDetectorState", "DetectedEvent", "detect_harsh_events"]


@dataclass(frozen=True, kw_only=True)
class HarshParams:
    """Thresholds in m/s², durations in s, low-pass cutoff in Hz."""

    brake_trigger_mps2: float = -3.0
    brake_release_mps2: float = -2.0
    accel_trigger_mps2: float = 2.5
    accel_release_mps2: float = 1.5
    corner_trigger_mps2: float = 3.5
    corner_release_mps2: float = 2.5
    min_duration_s: float = 0.3
    lowpass_hz: float = 2.0


@dataclass(frozen=True, slots=True)
class DetectedEvent:
    """One event; ``start_index`` indexes the samples of the call that closed it (may be < 0
    when the event began in an earlier call; ``start_t_s`` is always exact)."""

    type: str
    start_t_s: float
    duration_s: float
    peak_mps2: float
    start_index: int


@dataclass
class HarshDetectorState:
    """Carried between calls: filter state and the runs still open at the chunk's end."""

    zi: np.ndarray | None = None  # (n_sections, 2, 2): one sosfilt state per axis
    open_runs: dict[str, tuple[float, float, bool]] = field(default_factory=dict)
    # kind -> (start_t_s, peak_mps2, triggered)

    def to_dict(self) -> dict:
        return {
            "zi": None if self.zi is None else self.zi.tolist(),
            "open": {k: list(v) for k, v in self.open_runs.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> HarshDetectorState:
        zi = None if d.get("zi") is None else np.asarray(d["zi"], float)
        return cls(zi=zi, open_runs={k: (float(a), float(b), bool(c)) for k, (a, b, c) in d.get("open", {}).items()})


@lru_cache(maxsize=32)
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
) -> tuple[list[DetectedEvent], HarshDetectorState]:
    """Detect harsh events in one chunk of a vehicle's samples.

    Parameters
    ----------
    accel_long_mps2, accel_lat_mps2 : (n,) array
        Longitudinal (forward +) and lateral (left +) acceleration, m/s².
    t_s : (n,) array
        Sample times, s (strictly increasing).
    fs : float
        Sample rate, Hz.
    state : HarshDetectorState, optional
        From the previous chunk of the same trip; ``None`` starts a trip.
    final : bool
        Close runs still open at the end (end of trip).

    Returns
    -------
    events : list of DetectedEvent
        Events that ended in this chunk (or at its end when ``final``).
    state : HarshDetectorState
    """
    ax = np.asarray(accel_long_mps2, float)
    ay = np.asarray(accel_lat_mps2, float)
    t = np.asarray(t_s, float)
    if not (ax.shape == ay.shape == t.shape) or ax.ndim != 1:
        raise ValueError(f"accel_long_mps2, accel_lat_mps2 and t_s must be equal 1-D; got {ax.shape}, {ay.shape}, {t.shape}")
    if not fs > 0:
        raise ValueError(f"{fs=} must be positive")
    state = HarshDetectorState() if state is None else HarshDetectorState(state.zi, dict(state.open_runs))
    if ax.size == 0:
        return ([], state) if not final else _close_all(state, t, [])

    sos = _lowpass_sos(fs, params.lowpass_hz)
    x = np.vstack([ax, ay])
    if state.zi is None:
        # Start at rest on the first value, not from zero (no step artefact).
        zi = signal.sosfilt_zi(sos)[:, None, :] * x[:, 0][None, :, None]
    else:
        zi = state.zi
    y, zf = signal.sosfilt(sos, x, axis=-1, zi=zi)
    state.zi = zf

    events: list[DetectedEvent] = []
    kinds = (
        ("harsh_brake", -y[0], -params.brake_trigger_mps2, -params.brake_release_mps2, -1.0),
        ("harsh_accel", y[0], params.accel_trigger_mps2, params.accel_release_mps2, 1.0),
        ("harsh_corner", np.abs(y[1]), params.corner_trigger_mps2, params.corner_release_mps2, 0.0),
    )
    for kind, mag, trigger, release, sign in kinds:
        signed = y[1] if sign == 0.0 else sign * mag
        above = mag > release
        # Run boundaries, vectorised: +1 where a run starts, -1 where it ends.
        edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)  # exclusive
        carry = state.open_runs.pop(kind, None)
        for k, (s, e) in enumerate(zip(starts, ends)):
            seg = mag[s:e]
            j = int(np.argmax(seg))
            peak = float(signed[s + j])
            triggered = bool(seg[j] >= trigger)
            start_t, start_i = float(t[s]), int(s)
            if k == 0 and s == 0 and carry is not None:
                start_t = carry[0]
                start_i = -1
                if abs(carry[1]) > abs(peak):
                    peak = carry[1]
                triggered = triggered or carry[2]
            if e == len(mag) and not final:
                state.open_runs[kind] = (start_t, peak, triggered)
                continue
            end_t = float(t[e - 1]) + 1.0 / fs
            if triggered and end_t - start_t >= params.min_duration_s - 1e-9:
                events.append(DetectedEvent(kind, start_t, end_t - start_t, peak, start_i))
        if carry is not None and (len(starts) == 0 or starts[0] != 0):
            # The open run ended exactly at the previous chunk's edge.
            end_t = float(t[0])
            if carry[2] and end_t - carry[0] >= params.min_duration_s - 1e-9:
                events.append(DetectedEvent(kind, carry[0], end_t - carry[0], carry[1], -1))
    if final:
        state.open_runs.clear()
    events.sort(key=lambda ev: ev.start_t_s)
    return events, state


def _close_all(state: HarshDetectorState, t: np.ndarray, events: list) -> tuple[list, HarshDetectorState]:
    state.open_runs.clear()
    return events, state
