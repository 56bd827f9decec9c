"""Segment passes and located harsh events from one vehicle's stream of frames.

This is the batch-processing code that both the streaming worker and the offline scorer
call: ``process_frame(state, frame, net, ...)`` takes one frame of a vehicle's samples and
the vehicle's state, and returns the new state plus the passes and events that are final.
Calling it frame after frame gives the same output however the stream is cut, because
every piece of state is carried explicitly (filter ``zi``, the matcher's window, the open
pass, the harsh-event runs).

Per frame:

1. signals: the vertical acceleration is band-passed (gravity and tilt removed, causal
   Butterworth with carried state); harsh events are detected on the horizontal axes;
   trip distance is integrated from the speed;
2. the GPS fixes go to the online HMM map matcher; the fixes it has decided anchor the
   samples, which are placed along the matched path by their trip distance;
3. runs of samples on one segment make a pass; a pass closes when the vehicle leaves the
   segment (or the route breaks);
4. privacy: passes and events within ``trim_m`` of the trip's start are dropped; closed
   passes wait until the vehicle is ``trim_m`` further, so that the end of a trip (which
   is only known later) is never published either.

The vehicle is known only by its pseudonym here; the raw id never enters this module.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import orjson

from agents import map_matching as mm
from agents.roughness import RoughnessFeatures, RoughnessState, estimate_from_features, roughness_features
from agents.harsh_events import HarshDetectorState, HarshParams, detect_harsh_events
from agents.potholes import Impact, ImpactState, impact_features
from roadnet import RoadNetwork, to_metric
from schemas.frame import FrameArrays
from schemas.records import HarshEvent, SegmentPass

__all__ = ["PassParams", "VehicleState", "FrameResult", "StateVersionError", "process_frame", "nominal_rate_hz"]

NOMINAL_RATES_HZ = np.array([5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0])
STATE_VERSION = 2


@dataclass(frozen=True, kw_only=True)
class PassParams:
    """Options of the per-vehicle processing (distances m, times s)."""

    trim_m: float = 300.0
    """Privacy: passes and events closer than this to a trip's start or end are dropped."""
    trip_gap_s: float = 300.0
    """A silence longer than this starts a new trip."""
    event_history_s: float = 15.0
    """How far back placed positions are kept to locate harsh events that end late."""
    match: mm.MatchParams = field(default_factory=mm.MatchParams)
    harsh: HarshParams = field(default_factory=HarshParams)


@dataclass(frozen=True, slots=True)
class FrameResult:
    """New state and the final records of a frame. ``impacts`` are (segment id,
    ``agents.potholes.Impact``) of the released passes, for stage 2."""

    state: VehicleState
    passes: list[SegmentPass]
    events: list[HarshEvent]
    duplicate: bool = False
    impacts: list[tuple[str, Impact]] = field(default_factory=list)


def nominal_rate_hz(t_s: np.ndarray) -> float:
    """Sample rate from timestamps, snapped to a nominal rate when within 5 %."""
    dt = np.diff(np.asarray(t_s, float))
    if dt.size == 0:
        return float("nan")
    fs = 1.0 / float(np.median(dt))
    k = int(np.argmin(np.abs(NOMINAL_RATES_HZ - fs)))
    return float(NOMINAL_RATES_HZ[k]) if abs(NOMINAL_RATES_HZ[k] - fs) <= 0.05 * fs else fs


# --------------------------------------------------------------------------- state
@dataclass
class VehicleState:
    """Everything carried between two frames of one vehicle (serialised to bytes)."""

    last_seq: int = -1
    trip_start_t_s: float = math.nan
    last_t_s: float = math.nan
    last_speed_mps: float = 0.0
    trip_dist_m: float = 0.0
    fs_hz: float = math.nan
    powertrain: str | None = None
    model_year: int | None = None
    rough_zi: dict | None = None  # band-pass filter state carried from pass to pass
    impact_zi: dict | None = None  # pothole/impact detector state (agents.potholes)
    harsh: HarshDetectorState = field(default_factory=HarshDetectorState)
    match: bytes | None = None
    fix_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fix_dist_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    anchor: tuple[float, float, int, float] | None = None  # t, trip distance, segment, offset
    # samples received but not yet placed (t, trip distance, speed, vertical acceleration)
    buf_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    buf_d: np.ndarray = field(default_factory=lambda: np.zeros(0))
    buf_v: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    buf_az: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    frontier_t_s: float = -math.inf
    frontier_d_m: float = -math.inf
    open_pass: dict | None = None
    pending_passes: list[dict] = field(default_factory=list)
    unplaced_events: list[list] = field(default_factory=list)  # [type, t, duration, peak]
    pending_events: list[dict] = field(default_factory=list)
    recent_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recent_seg: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    recent_off: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    recent_d: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recent_v: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def to_bytes(self) -> bytes:
        d = {
            "v": STATE_VERSION,
            "last_seq": self.last_seq,
            "trip_start_t_s": _f(self.trip_start_t_s),
            "last_t_s": _f(self.last_t_s),
            "last_speed_mps": self.last_speed_mps,
            "trip_dist_m": self.trip_dist_m,
            "fs_hz": _f(self.fs_hz),
            "powertrain": self.powertrain,
            "model_year": self.model_year,
            "rough_zi": self.rough_zi,
            "impact_zi": self.impact_zi,
            "harsh": self.harsh.to_dict(),
            "match": None if self.match is None else base64.b64encode(self.match).decode(),
            "fix_index": _pack(self.fix_index, np.int64),
            "fix_dist_m": _pack(self.fix_dist_m, np.float64),
            "anchor": self.anchor,
            "buf_t": _pack(self.buf_t, np.float64),
            "buf_d": _pack(self.buf_d, np.float64),
            "buf_v": _pack(self.buf_v, np.float32),
            "buf_az": _pack(self.buf_az, np.float32),
            "frontier_t_s": _f(self.frontier_t_s),
            "frontier_d_m": _f(self.frontier_d_m),
            "open_pass": self.open_pass,
            "pending_passes": self.pending_passes,
            "unplaced_events": self.unplaced_events,
            "pending_events": self.pending_events,
            "recent_t": _pack(self.recent_t, np.float64),
            "recent_seg": _pack(self.recent_seg, np.int32),
            "recent_off": _pack(self.recent_off, np.float32),
            "recent_d": _pack(self.recent_d, np.float64),
            "recent_v": _pack(self.recent_v, np.float32),
        }
        return orjson.dumps(d)

    @classmethod
    def from_bytes(cls, raw: bytes) -> VehicleState:
        d = orjson.loads(raw)
        if d.get("v") != STATE_VERSION:
            raise StateVersionError(f"vehicle state version {d.get('v')!r}, expected {STATE_VERSION}")
        return cls(
            last_seq=d["last_seq"],
            trip_start_t_s=_unf(d["trip_start_t_s"]),
            last_t_s=_unf(d["last_t_s"]),
            last_speed_mps=d["last_speed_mps"],
            trip_dist_m=d["trip_dist_m"],
            fs_hz=_unf(d["fs_hz"]),
            powertrain=d["powertrain"],
            model_year=d["model_year"],
            rough_zi=d["rough_zi"],
            impact_zi=d["impact_zi"],
            harsh=HarshDetectorState.from_dict(d["harsh"]),
            match=None if d["match"] is None else base64.b64decode(d["match"]),
            fix_index=_unpack(d["fix_index"], np.int64),
            fix_dist_m=_unpack(d["fix_dist_m"], np.float64),
            anchor=None if d["anchor"] is None else tuple(d["anchor"]),  # type: ignore[arg-type]
            buf_t=_unpack(d["buf_t"], np.float64),
            buf_d=_unpack(d["buf_d"], np.float64),
            buf_v=_unpack(d["buf_v"], np.float32),
            buf_az=_unpack(d["buf_az"], np.float32),
            frontier_t_s=_unf(d["frontier_t_s"]),
            frontier_d_m=_unf(d["frontier_d_m"]),
            open_pass=d["open_pass"],
            pending_passes=d["pending_passes"],
            unplaced_events=d["unplaced_events"],
            pending_events=d["pending_events"],
            recent_t=_unpack(d["recent_t"], np.float64),
            recent_seg=_unpack(d["recent_seg"], np.int32),
            recent_off=_unpack(d["recent_off"], np.float32),
            recent_d=_unpack(d["recent_d"], np.float64),
            recent_v=_unpack(d["recent_v"], np.float32),
        )


def _pack(a: np.ndarray, dtype: type) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


def _unpack(text: str, dtype: type) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def _f(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


def _unf(x: float | str) -> float:
    return float(x)


class StateVersionError(ValueError):
    """A stored state written by another version of this module."""


# ------------------------------------------------------------------------ processing
def process_frame(
    state: VehicleState | None,
    frame: FrameArrays,
    net: RoadNetwork,
    *,
    vehicle: str,
    params: PassParams = PassParams(),
) -> FrameResult:
    """Advance one vehicle by one frame.

    Parameters
    ----------
    state : VehicleState or None
        The vehicle's state after its previous frame (``None`` for a new vehicle).
    frame : FrameArrays
        A validated frame (``schemas.frame.decode_frame``).
    net : RoadNetwork
    vehicle : str
        The vehicle's pseudonym, written into the records.

    Returns
    -------
    FrameResult
        New state, final passes and events (possibly none). A frame whose ``seq`` is not
        newer than the last one processed is a replay: nothing changes, ``duplicate``.
    """
    st = VehicleState() if state is None else state
    if frame.seq <= st.last_seq:
        return FrameResult(st, [], [], duplicate=True)

    passes: list[SegmentPass] = []
    events: list[HarshEvent] = []
    impacts: list[tuple[str, Impact]] = []
    t = frame.t_s
    if math.isfinite(st.last_t_s) and t[0] - st.last_t_s > params.trip_gap_s:
        _end_trip(st, net, vehicle, params, passes, events)
        st = VehicleState()
    if not math.isfinite(st.trip_start_t_s):
        st.trip_start_t_s = float(t[0])
        st.fs_hz = nominal_rate_hz(t) if t.size > 1 else math.nan
    if not math.isfinite(st.fs_hz) and t.size > 1:
        st.fs_hz = nominal_rate_hz(t)
    fs = st.fs_hz if math.isfinite(st.fs_hz) else 1.0
    st.last_seq = frame.seq
    st.powertrain = frame.powertrain or st.powertrain
    st.model_year = frame.model_year or st.model_year

    # 1. signals ---------------------------------------------------------------
    v = frame.speed_kmh / 3.6
    t_prev = st.last_t_s if math.isfinite(st.last_t_s) else t[0]
    v_prev = st.last_speed_mps if math.isfinite(st.last_t_s) else v[0]
    dt = np.diff(np.concatenate([[t_prev], t]))
    v_ext = np.concatenate([[v_prev], v])
    d = st.trip_dist_m + np.cumsum(0.5 * (v_ext[1:] + v_ext[:-1]) * dt)
    # Speed lets the detector compensate grade and reject artefacts (the speed must change
    # with a real manoeuvre); ABS engagement marks a braking run as harsh.
    detected, st.harsh = detect_harsh_events(
        frame.accel_long_mps2, frame.accel_lat_mps2, t, fs, state=st.harsh, params=params.harsh,
        final=frame.trip_end, speed_kmh=frame.speed_kmh, abs_engaged=frame.abs_engaged,
    )
    for ev in detected:
        st.unplaced_events.append([ev.type, ev.start_t_s, ev.duration_s, ev.peak_mps2])

    # trip distance at each fix, interpolated over the samples (with the previous one)
    fix_d = np.interp(frame.fix_t_s, np.concatenate([[t_prev], t]), np.concatenate([[st.trip_dist_m], d]))
    st.last_t_s, st.last_speed_mps, st.trip_dist_m = float(t[-1]), float(v[-1]), float(d[-1])
    st.buf_t = np.concatenate([st.buf_t, t])
    st.buf_d = np.concatenate([st.buf_d, d])
    st.buf_v = np.concatenate([st.buf_v, frame.speed_kmh.astype(np.float32)])
    st.buf_az = np.concatenate([st.buf_az, frame.accel_vert_mps2.astype(np.float32)])

    # 2. map matching ------------------------------------------------------------
    x, y = to_metric(frame.fix_lon_deg, frame.fix_lat_deg)
    mstate = None if st.match is None else mm.MatchState.from_bytes(st.match)
    n_before = mstate.n_seen if mstate is not None else 0
    # The odometer (trip distance from the speed signal) lets the matcher smooth the fixes'
    # along-road noise: segment boundaries land where the wheels were, not where GPS was.
    result, mstate = mm.match_online(
        net, frame.fix_t_s, x, y, frame.fix_heading_deg, frame.fix_accuracy_m,
        state=mstate, params=params.match, final=frame.trip_end, odometer_m=fix_d,
    )
    st.match = mstate.to_bytes()
    st.fix_index = np.concatenate([st.fix_index, np.arange(n_before, n_before + len(fix_d))])
    st.fix_dist_m = np.concatenate([st.fix_dist_m, fix_d])
    _place(st, result, net, vehicle, params, passes)

    # 3. events, privacy release -----------------------------------------------------
    _place_events(st, net, vehicle, params)
    _release(st, params, passes, events, net, vehicle, impacts)
    if frame.trip_end:
        _end_trip(st, net, vehicle, params, passes, events)
        st = VehicleState(last_seq=frame.seq, last_t_s=st.last_t_s)
        st.trip_start_t_s = math.nan
    return FrameResult(st, passes, events, impacts=impacts)


def _place(st: VehicleState, res: mm.MatchResult, net: RoadNetwork, vehicle: str, params: PassParams, passes: list) -> None:
    """Place buffered samples along the path between consecutive decided fixes."""
    if len(res.t_s) == 0:
        return
    k = np.searchsorted(st.fix_index, res.fix_index)
    res_d = st.fix_dist_m[np.clip(k, 0, len(st.fix_dist_m) - 1)]
    last_decided = int(res.fix_index[-1])
    keep = st.fix_index > last_decided
    st.fix_index, st.fix_dist_m = st.fix_index[keep], st.fix_dist_m[keep]

    for j in range(len(res.t_s)):
        seg = int(res.segment[j])
        if seg < 0:
            continue
        fix = (float(res.t_s[j]), float(res_d[j]), seg, float(res.offset_m[j]))
        if st.anchor is None or bool(res.break_before[j]):
            # Samples before the first fix of a chain cannot be placed: drop them.
            _drop_until(st, fix[0])
            _close_open(st)
            st.anchor = fix
            continue
        _place_between(st, st.anchor, fix, np.asarray(res.via[j], np.int64), net, params)
        st.anchor = fix


def _drop_until(st: VehicleState, t_s: float) -> None:
    n = int(np.searchsorted(st.buf_t, t_s, side="left"))
    st.buf_t, st.buf_d, st.buf_v, st.buf_az = st.buf_t[n:], st.buf_d[n:], st.buf_v[n:], st.buf_az[n:]


def _place_between(st: VehicleState, a: tuple, b: tuple, via: np.ndarray, net: RoadNetwork, params: PassParams) -> None:
    ta, da, sa, oa = a
    tb, db, sb, ob = b
    n = int(np.searchsorted(st.buf_t, tb, side="left"))
    if n == 0:
        return
    t, d, v, az = st.buf_t[:n], st.buf_d[:n], st.buf_v[:n], st.buf_az[:n]
    st.buf_t, st.buf_d, st.buf_v, st.buf_az = st.buf_t[n:], st.buf_d[n:], st.buf_v[n:], st.buf_az[n:]

    # the path as pieces: (segment, start offset, end offset)
    if sa == sb and via.size == 0:
        segs = np.array([sa])
        starts = np.array([oa])
        ends = np.array([max(ob, oa)])
    else:
        segs = np.concatenate([[sa], via, [sb]]).astype(np.int64)
        starts = np.concatenate([[oa], np.zeros(via.size), [0.0]])
        ends = np.concatenate([[net.length_m[sa]], net.length_m[via], [ob]])
        ends[0] = max(ends[0], oa)
    piece = ends - starts
    cum = np.concatenate([[0.0], np.cumsum(piece)])
    total = cum[-1]
    # Position along the path: proportional to distance driven (speed integral) when the
    # vehicle moved, else to time.
    if db - da > 0.5:
        p = (d - da) / (db - da) * total
    else:
        p = (t - ta) / max(tb - ta, 1e-9) * total
    p = np.clip(p, 0.0, total)
    idx = np.clip(np.searchsorted(cum, p, side="right") - 1, 0, len(segs) - 1)
    seg = segs[idx]
    off = starts[idx] + (p - cum[idx])
    _accumulate(st, t, d, v, az, seg, off, net, params)


def _accumulate(st, t, d, v, az, seg, off, net, params) -> None:
    """Fold placed samples into passes; runs of one segment are one pass."""
    if t.size == 0:
        return
    change = np.flatnonzero(np.diff(seg)) + 1
    bounds = np.concatenate([[0], change, [t.size]])
    sum_v = np.add.reduceat(v.astype(float), bounds[:-1])
    fs = st.fs_hz if math.isfinite(st.fs_hz) else 1.0
    for r in range(len(bounds) - 1):
        s, e = int(bounds[r]), int(bounds[r + 1])
        sg = int(seg[s])
        op = st.open_pass
        if op is None or op["seg"] != sg:
            _close_open(st)
            st.open_pass = op = {
                "seg": sg, "entry_t": float(t[s]), "entry_off": float(off[s]), "entry_d": float(d[s]),
                "n": 0, "sum_v": 0.0, "n_events": 0, "rough": None,
            }
        if op["rough"] is not None:
            rz = RoughnessState.from_dict(op["rough"])
        elif st.rough_zi is not None:
            # A new pass: fresh features, but the filters run on from the previous pass.
            carry = RoughnessState.from_dict(st.rough_zi)
            rz = RoughnessState(features=RoughnessFeatures(fs=fs), band_zi=carry.band_zi, noise_zi=carry.noise_zi)
        else:
            rz = None
        _, zf = roughness_features(az[s:e], v[s:e], fs, zi=rz)
        op["rough"] = zf.to_dict()
        st.rough_zi = op["rough"]
        op["n"] += e - s
        op["sum_v"] += float(sum_v[r])
        op["exit_t"], op["exit_off"], op["exit_d"] = float(t[e - 1]), float(off[e - 1]), float(d[e - 1])
    _detect_impacts(st, t, v, az, seg, off)
    st.frontier_t_s, st.frontier_d_m = float(t[-1]), float(d[-1])
    # recent positions for locating harsh events, decimated to ~10 Hz
    step = max(1, int(round((st.fs_hz if math.isfinite(st.fs_hz) else 10.0) / 10.0)))
    sel = slice(None, None, step)
    st.recent_t = np.concatenate([st.recent_t, t[sel]])
    st.recent_seg = np.concatenate([st.recent_seg, seg[sel].astype(np.int32)])
    st.recent_off = np.concatenate([st.recent_off, off[sel].astype(np.float32)])
    st.recent_d = np.concatenate([st.recent_d, d[sel]])
    st.recent_v = np.concatenate([st.recent_v, v[sel].astype(np.float32)])
    keep = st.recent_t >= st.frontier_t_s - params.event_history_s
    st.recent_t, st.recent_seg, st.recent_off = st.recent_t[keep], st.recent_seg[keep], st.recent_off[keep]
    st.recent_d, st.recent_v = st.recent_d[keep], st.recent_v[keep]


def _detect_impacts(st: VehicleState, t, v, az, seg, off) -> None:
    """Impacts (potholes, bumps) in placed samples, attached to the pass they fall in."""
    if not math.isfinite(st.fs_hz):
        return
    zi = None if st.impact_zi is None else ImpactState.from_dict(st.impact_zi)
    found, zf = impact_features(az.astype(float), v.astype(float), off, st.fs_hz, segment=seg, t_s=t, zi=zi)
    st.impact_zi = zf.to_dict()
    for imp in found:
        # An impact can end a few metres after its pass closed: search the pending ones too.
        for p in [*([st.open_pass] if st.open_pass else []), *reversed(st.pending_passes)]:
            if p["seg"] == int(imp.segment) and p["entry_t"] - 0.05 <= imp.t_s <= p.get("exit_t", math.inf) + 0.05:
                p.setdefault("impacts", []).append(
                    {k: (x.item() if isinstance(x, np.generic) else x) for k, x in asdict(imp).items()}
                )
                break


def _impact(d: dict) -> Impact:
    """An Impact back from the JSON state (NaN travels as null)."""
    return Impact(**{k: (math.nan if v is None and k != "segment" else v) for k, v in d.items()})


def _close_open(st: VehicleState) -> None:
    """Close the open pass: reduce it to its final figures (small) until its release."""
    p = st.open_pass
    if p is None:
        return
    st.open_pass = None
    n = max(int(p["n"]), 1)
    rz = RoughnessState.from_dict(p["rough"])
    iri, conf = estimate_from_features(rz.features, partial=rz)
    rms = rz.features.rms_band_mps2
    st.pending_passes.append({
        "seg": p["seg"], "entry_t": p["entry_t"], "exit_t": p["exit_t"], "entry_off": p["entry_off"],
        "exit_off": p["exit_off"], "entry_d": p["entry_d"], "exit_d": p["exit_d"], "n": p["n"],
        "mean_speed": p["sum_v"] / n, "n_events": p["n_events"],
        "iri": iri if math.isfinite(iri) else None, "conf": conf,
        "rms": rms if math.isfinite(rms) else None, "max_abs": rz.features.max_abs_band_mps2,
        "impacts": p.get("impacts", []),
    })


def _place_events(st: VehicleState, net: RoadNetwork, vehicle: str, params: PassParams) -> None:
    still: list[list] = []
    for kind, t0, dur, peak in st.unplaced_events:
        if t0 > st.frontier_t_s:
            still.append([kind, t0, dur, peak])
            continue
        if st.recent_t.size == 0 or t0 < st.recent_t[0] - 0.2:
            continue  # fell into a stretch that could not be placed (route break)
        i = int(np.clip(np.searchsorted(st.recent_t, t0, side="right") - 1, 0, st.recent_t.size - 1))
        seg, off = int(st.recent_seg[i]), float(st.recent_off[i])
        ev = {
            "type": kind, "t": t0, "dur": dur, "peak": peak, "seg": seg, "off": off,
            "speed": float(st.recent_v[i]), "d": float(np.interp(t0, st.recent_t, st.recent_d)),
        }
        for p in [*st.pending_passes, *([st.open_pass] if st.open_pass else [])]:
            if p["seg"] == seg and p["entry_t"] - 0.2 <= t0 <= p.get("exit_t", math.inf) + 0.2:
                p["n_events"] += 1
                break
        st.pending_events.append(ev)
    st.unplaced_events = still


def _release(st: VehicleState, params: PassParams, passes: list, events: list, net: RoadNetwork, vehicle: str,
             impacts: list) -> None:
    """Emit closed passes (with their impacts) and events once the vehicle is ``trim_m`` beyond them."""
    keep: list[dict] = []
    for p in st.pending_passes:
        if p["entry_d"] < params.trim_m:
            continue  # too close to the trip start
        if st.frontier_d_m >= p["exit_d"] + params.trim_m:
            passes.append(_pass_record(p, st, net, vehicle, params))
            sid = str(net.segment_id[int(p["seg"])])
            impacts.extend((sid, _impact(x)) for x in p.get("impacts", ()))
        else:
            keep.append(p)
    st.pending_passes = keep
    keep_e: list[dict] = []
    for e in st.pending_events:
        if e["d"] < params.trim_m:
            continue
        if st.frontier_d_m >= e["d"] + params.trim_m:
            events.append(_event_record(e, net, vehicle))
        else:
            keep_e.append(e)
    st.pending_events = keep_e


def _end_trip(st: VehicleState, net, vehicle, params, passes, events) -> None:
    """At a trip's end everything still pending lies within ``trim_m`` of it: drop."""
    st.open_pass = None
    st.pending_passes = []
    st.pending_events = []
    st.unplaced_events = []


def _utc(t_s: float) -> datetime:
    return datetime.fromtimestamp(round(t_s, 6), tz=UTC)


def _pass_record(p: dict, st: VehicleState, net: RoadNetwork, vehicle: str, params: PassParams) -> SegmentPass:
    return SegmentPass(
        vehicle=vehicle,
        segment_id=str(net.segment_id[int(p["seg"])]),
        entry_time=_utc(p["entry_t"]),
        exit_time=_utc(p["exit_t"]),
        entry_offset_m=round(p["entry_off"], 2),
        exit_offset_m=round(p["exit_off"], 2),
        covered_m=round(max(0.0, p["exit_off"] - p["entry_off"]), 2),
        mean_speed_kmh=round(p["mean_speed"], 3),
        n_samples=int(p["n"]),
        fs_hz=st.fs_hz if math.isfinite(st.fs_hz) else 1.0,
        iri_m_per_km=None if p["iri"] is None else round(p["iri"], 4),
        roughness_rms_mps2=None if p["rms"] is None else round(p["rms"], 5),
        max_vertical_mps2=round(p["max_abs"], 4),
        n_harsh_events=int(p["n_events"]),
        confidence=round(p["conf"], 3),
        powertrain=st.powertrain,
        model_year=st.model_year,
    )


def _event_record(e: dict, net: RoadNetwork, vehicle: str) -> HarshEvent:
    seg = int(e["seg"])
    lon, lat = net.point_at_wgs84(np.array([seg]), np.array([e["off"]]))
    speed = e["speed"]
    return HarshEvent(
        vehicle=vehicle,
        type=e["type"],
        start_time=_utc(e["t"]),
        duration_s=round(e["dur"], 3),
        peak_mps2=round(e["peak"], 3),
        speed_kmh=round(speed, 2),
        segment_id=str(net.segment_id[seg]),
        offset_m=round(max(0.0, e["off"]), 2),
        lat_deg=round(float(lat[0]), 6),
        lon_deg=round(float(lon[0]), 6),
    )
