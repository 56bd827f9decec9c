"""Segment passes and located harsh events from one vehicle's stream of frames.

This is the batch-processing code that both the streaming worker and the offline scorer
call: ``process_frame(state, frame, net, ...)`` takes one frame of a vehicle's samples and
the vehicle's state, and returns the new state plus the passes and events that are final.
Calling it frame after frame gives the same output however the stream is cut, because
every piece of state is carried explicitly (filter ``zi``, the matcher's window, the open
pass, the harsh-event runs).

Per frame:

1. signals, as they arrive: the vertical acceleration is band-passed (gravity and tilt
   removed, causal Butterworth with carried state) and reduced to the per-sample terms of
   the roughness estimate, which are summed over blocks of ``BLOCK_S`` seconds (so that
   what waits for the map matcher is a few bytes per block, not raw samples); impacts
   (potholes, bumps) and harsh events are detected on the continuous stream; trip distance
   is integrated from the speed;
2. the GPS fixes go to the online HMM map matcher; the fixes it has decided anchor the
   blocks, which are placed along the matched path by their trip distance; events and
   impacts are placed by their time and trip distance;
3. runs of blocks on one segment make a pass; a pass closes when the vehicle leaves the
   segment (or the route breaks);
4. privacy: passes and events within ``trim_m`` of the trip's start are dropped; closed
   passes wait until the vehicle is ``trim_m`` further, so that the end of a trip (which
   is only known later) is never published either.

The vehicle is known only by its pseudonym here; the raw id never enters this module.
"""

from __future__ import annotations

import itertools
import math
import struct
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

import numpy as np
import orjson

from agents import _arraycodec as _codec
from agents import _placement
from agents import map_matching as mm
from agents.roughness import (
    ENTRY_SKIP_M,
    WINDOW_M,
    RoughnessFeatures,
    RoughnessState,
    estimate_from_features,
    sample_terms,
)
from agents.harsh_events import HarshDetectorState, HarshParams, detect_harsh_events
from agents import harsh_events, potholes
from agents.potholes import Impact, ImpactState, impact_features
from roadnet import RoadNetwork, to_metric
from schemas.frame import FrameArrays
from schemas.trace import snap_rate_hz
from schemas.records import HarshEvent, SegmentPass

__all__ = [
    "PassParams", "VehicleState", "FrameResult", "StateVersionError", "process_frame", "nominal_rate_hz",
    "compile_kernels",
]

STATE_VERSION = 8
BLOCK_S = 0.2
"""Duration of the blocks samples are summed into before placement, s (0.2 s = 2.2 m at 40 km/h)."""
_TAIL = ("t", "d", "v", "m", "q", "iv", "y2", "yn2", "ay")
_BLK = ("t0", "dt", "d0", "dd", "n", "nm", "sq", "siv", "sv", "sy2", "syn2", "my")
"""Block columns: start time and trip distance, the span to the last sample (float32), sums."""
_BLK_ROUNDED = ("sq", "siv", "sy2", "syn2", "my")
"""Block sums kept to 16 significant bits (``_round_mantissa``): their stored low byte is
then zero and costs nothing once shuffled and compressed (docs/decisions.md, "Compact state")."""


@dataclass(frozen=True, kw_only=True)
class PassParams:
    """Options of the per-vehicle processing (distances m, times s)."""

    trim_m: float = 300.0
    """Privacy: passes and events closer than this to a trip's start or end are dropped."""
    trip_gap_s: float = 300.0
    """A silence longer than this starts a new trip."""
    event_history_s: float = 15.0
    """How far back placed positions are kept to locate harsh events that end late."""
    match_interval_s: float = 2.0
    """The map matcher gets one fix per this many seconds (the first of each stretch, and
    a trip's last fix); 0 gives it every fix. Matching and placement cost per fix is most
    of a worker's time; with the odometer, every other 1 Hz fix loses 0.3 points of
    correctly placed distance at 5 m GPS noise and none at 15 m (docs/decisions.md)."""
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
    """Sample rate from timestamps, snapped to a nominal rate when within 5 % (NaN for
    fewer than two samples). Unlike ``infer_rate_hz`` for files, it never raises: the
    stream has already validated the frame."""
    dt = np.diff(np.asarray(t_s, float))
    if dt.size == 0:
        return float("nan")
    return snap_rate_hz(1.0 / float(np.median(dt)))


# --------------------------------------------------------------------------- state
@dataclass
class VehicleState:
    """Everything carried between two frames of one vehicle (serialised to bytes)."""

    last_seq: int = -1
    trip_start_t_s: float = math.nan
    last_t_s: float = math.nan
    last_speed_mps: float = 0.0
    trip_dist_um: int = 0  # odometer in integer micrometres: exact, so any framing agrees
    fs_hz: float = math.nan
    powertrain: str | None = None
    model_year: int | None = None
    band_zi: np.ndarray | None = None  # roughness band-pass filter state
    noise_zi: np.ndarray | None = None  # noise-band filter state (fs >= 60 Hz)
    impact: ImpactState | None = None  # pothole/impact detector state (agents.potholes)
    tail: dict = field(default_factory=dict)  # per-sample terms of the unfinished block
    blk: dict = field(default_factory=dict)  # blocks awaiting placement (columns of _BLK)
    unplaced_impacts: list[dict] = field(default_factory=list)
    harsh: HarshDetectorState = field(default_factory=HarshDetectorState)
    match: bytes | None = None
    match_live: mm.MatchState | None = field(default=None, repr=False, compare=False)
    """The decoded ``match`` when this object continues from the previous frame (not
    serialised: a state read from bytes decodes ``match``)."""
    fix_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fix_dist_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_match_t_s: float = -math.inf  # time of the last fix given to the matcher
    anchor: tuple[float, float, int, float] | None = None  # t, trip distance, segment, offset
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
        """Binary record: magic, version, header length, JSON header, array records.

        Scalars and the small nested records go in the JSON header; the arrays follow it
        in a fixed order (impact detector, filter states, unfinished block, blocks, the
        matcher's bytes, ``_ARRAY_CODEC``), each an ``agents._arraycodec`` record:
        lossless, and laid out for the table's zstd (times as decimal integers, odometer
        distances as micrometres, indices differenced, float32 sums byte-shuffled). No
        base64: the state is written with every frame.
        """
        out: list[bytes] = []
        imp = None
        if self.impact is not None:
            scalars, arrays = self.impact.parts()
            imp = {"s": scalars, "a": list(arrays)}
            for k, v in arrays.items():
                _put(out, v, *_IMPACT_CODEC.get(k, ("<f8", "raw")))
        _put(out, self.band_zi, "<f8")
        _put(out, self.noise_zi, "<f8")
        if self.tail:
            _put_columns(out, self.tail, _TAIL_CODEC)
        if self.blk:
            _put_columns(out, self.blk, _BLK_CODEC)
        _put(out, None if self.match is None else np.frombuffer(self.match, np.uint8), "|u1")
        for k, (dtype, hint) in _ARRAY_CODEC.items():
            _put(out, getattr(self, k), dtype, hint)
        d = {
            "last_seq": self.last_seq,
            "trip_start_t_s": _f(self.trip_start_t_s),
            "last_t_s": _f(self.last_t_s),
            "last_speed_mps": self.last_speed_mps,
            "trip_dist_um": self.trip_dist_um,
            "fs_hz": _f(self.fs_hz),
            "powertrain": self.powertrain,
            "model_year": self.model_year,
            "impact": imp,
            "tail": bool(self.tail),
            "blk": bool(self.blk),
            "unplaced_impacts": self.unplaced_impacts,
            "harsh": self.harsh.to_dict(),
            "last_match_t_s": _f(self.last_match_t_s),
            "anchor": self.anchor,
            "frontier_t_s": _f(self.frontier_t_s),
            "frontier_d_m": _f(self.frontier_d_m),
            "open_pass": self.open_pass,
            "pending_passes": self.pending_passes,
            "unplaced_events": self.unplaced_events,
            "pending_events": self.pending_events,
        }
        head = orjson.dumps(d)
        return b"".join([_STATE_MAGIC, struct.pack("<HI", STATE_VERSION, len(head)), head, *out])

    @classmethod
    def from_bytes(cls, raw: bytes) -> VehicleState:
        """Decode :meth:`to_bytes`: ``StateVersionError`` for a state of another version
        (or bytes without the magic), ``ValueError`` for a corrupt one."""
        if raw[:4] != _STATE_MAGIC or len(raw) < 10:
            raise StateVersionError("not a vehicle state of this release (bad magic)")
        version, n_head = struct.unpack_from("<HI", raw, 4)
        if version != STATE_VERSION:
            raise StateVersionError(f"vehicle state version {version}, expected {STATE_VERSION}")
        d = orjson.loads(raw[10 : 10 + n_head])
        body = memoryview(raw)
        pos = 10 + n_head

        def get():
            nonlocal pos
            a, pos = _codec.get(body, pos)
            return a

        impact = None
        if d["impact"] is not None:
            arrays = {k: get() for k in d["impact"]["a"]}
            impact = ImpactState.from_parts(d["impact"]["s"], arrays)
        band_zi, noise_zi = get(), get()
        tail = _get_columns(get, _TAIL_CODEC) if d["tail"] else {}
        blk = _get_columns(get, _BLK_CODEC) if d["blk"] else {}
        match = get()
        arrays = {k: get() for k in _ARRAY_CODEC}
        if pos != len(raw):
            raise ValueError("vehicle state has trailing bytes")
        return cls(
            last_seq=d["last_seq"],
            trip_start_t_s=_unf(d["trip_start_t_s"]),
            last_t_s=_unf(d["last_t_s"]),
            last_speed_mps=d["last_speed_mps"],
            trip_dist_um=d["trip_dist_um"],
            fs_hz=_unf(d["fs_hz"]),
            powertrain=d["powertrain"],
            model_year=d["model_year"],
            band_zi=band_zi,
            noise_zi=noise_zi,
            impact=impact,
            tail=tail,
            blk=blk,
            unplaced_impacts=d["unplaced_impacts"],
            harsh=HarshDetectorState.from_dict(d["harsh"]),
            match=None if match is None else match.tobytes(),
            last_match_t_s=_unf(d["last_match_t_s"]),
            anchor=None if d["anchor"] is None else tuple(d["anchor"]),  # type: ignore[arg-type]
            frontier_t_s=_unf(d["frontier_t_s"]),
            frontier_d_m=_unf(d["frontier_d_m"]),
            open_pass=d["open_pass"],
            pending_passes=d["pending_passes"],
            unplaced_events=d["unplaced_events"],
            pending_events=d["pending_events"],
            **arrays,
        )


_STATE_MAGIC = b"RSV8"
_put = _codec.put
# (stored dtype, agents._arraycodec hint) per array, chosen on measured stored sizes of
# development states (docs/decisions.md, "Compact state"). Every hint is checked when
# written (values off its grid are stored raw), so none can change a value. Times come
# from the frames' decimal timestamps ("dec"); distances from the odometer in integer
# micrometres ("um"; "um2": second differences, for a steady step such as block starts);
# smooth float sequences as differenced bit patterns ("bits"); float32 sums and small
# integers in wide types byte-shuffled. A tuple of columns is one 2-D record (one call).
_TAIL_CODEC = {"t": ("<f8", "dec"), "d": ("<f8", "um"), "m": ("<f8", "int1"),
               ("v", "q", "iv", "y2", "yn2", "ay"): ("<f8", "shuffle")}
# Blocks: start time and trip distance in float64 (placement), spans and sums in float32
# (rounded when the block is made, so a restored state and a running one hold the same
# values), sample counts (float32 of integers <= 0.2 s x fs) as small integers.
_BLK_CODEC = {"t0": ("<f8", "dec"), "d0": ("<f8", "um2"), ("n", "nm"): ("<f4", "int1"),
              ("dt", "dd", "sv"): ("<f4", "bits"), ("sq", "siv", "sy2", "syn2", "my"): ("<f4", "shuffle")}
_ARRAY_CODEC = {"fix_index": ("<i8", "shuffle"), "fix_dist_m": ("<f8", "raw"), "recent_t": ("<f8", "dec"),
                "recent_seg": ("<i4", "raw"), "recent_off": ("<f4", "shuffle"), "recent_d": ("<f8", "um2"),
                "recent_v": ("<f4", "shuffle")}
"""Top-level arrays of the state, in the order they are stored."""
# The impact detector's arrays (ImpactState.parts; a name not listed is stored raw in
# float64, which from_parts casts back): sample indices differenced, times and speeds
# decimal (the frames'), the odometer it is given in micrometres, its own integrated
# distance and the decimated distance history as bit patterns.
_IMPACT_CODEC = {"tail.idx": ("<i8", "int1"), "hist_idx": ("<i8", "int1"), "tail.seg": ("<i8", "shuffle"),
                 "tail.t": ("<f8", "dec"), "tail.off": ("<f8", "um2"), "tail.d": ("<f8", "bits2"),
                 "hist_d": ("<f8", "bits2"), "tail.y": ("<f8", "shuffle"), "tail.v": ("<f8", "dec"),
                 "hist_v": ("<f8", "dec"), "tail.rise": ("<f8", "dec"), "rise_last": ("<f8", "dec")}


def _put_columns(out: list[bytes], cols: dict, codec: dict) -> None:
    for k, (dtype, hint) in codec.items():
        _put(out, np.array([cols[c] for c in k], dtype) if isinstance(k, tuple) else cols[k], dtype, hint)


def _get_columns(get, codec: dict) -> dict:
    cols = {}
    for k in codec:
        a = get()
        if isinstance(k, tuple):
            cols.update(zip(k, a))
        else:
            cols[k] = a
    return cols


def _f(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


def _unf(x: float | str) -> float:
    return float(x)


class StateVersionError(ValueError):
    """A stored state written by another version of this module."""


# ------------------------------------------------------------------------ processing
def compile_kernels(net: RoadNetwork) -> None:
    """Compile stage 1's numba kernels (the pothole detector's, the matcher's, the harsh-event
    filters', the state records', the placement's) now, or load them from numba's cache, so
    that no frame waits for them.

    A cold compile takes about 5 s, a cache load about 0.2 s; a stream worker calls this
    before its first frame. Any later call returns at once.
    """
    potholes.compile_kernels()
    mm.compile_kernels(net)
    harsh_events.compile_kernels()
    _codec.compile_kernels()
    _placement.compile_kernels()


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
        _end_trip(st)
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
    # Integrated in integer micrometres: float sums would depend on where frames are cut,
    # and distances decide which 10 m window or segment a block falls in.
    d_um = st.trip_dist_um + np.cumsum(np.round(0.5 * (v_ext[1:] + v_ext[:-1]) * dt * 1e6).astype(np.int64))
    d = d_um * 1e-6
    # Speed lets the detector compensate grade and reject artefacts (the speed must change
    # with a real manoeuvre); ABS engagement marks a braking run as harsh.
    detected, st.harsh = detect_harsh_events(
        frame.accel_long_mps2, frame.accel_lat_mps2, t, fs, state=st.harsh, params=params.harsh,
        final=frame.trip_end, speed_kmh=frame.speed_kmh, abs_engaged=frame.abs_engaged,
    )
    for ev in detected:
        st.unplaced_events.append([ev.type, ev.start_t_s, ev.duration_s, ev.peak_mps2])
    if fs >= 4.0:  # below, no roughness band exists: the frame still feeds the matcher
        terms, st.band_zi, st.noise_zi = sample_terms(
            frame.accel_vert_mps2, frame.speed_kmh, fs, band_zi=st.band_zi, noise_zi=st.noise_zi
        )
        _add_blocks(st, t, d, terms, fs, final=frame.trip_end)
        # impacts on the continuous stream, positioned by trip distance until placed
        found, st.impact = impact_features(frame.accel_vert_mps2, frame.speed_kmh, d, fs, t_s=t, zi=st.impact,
                                           final=frame.trip_end)
        for imp in found:
            st.unplaced_impacts.append(_impact_dict(imp))

    # trip distance at each fix, interpolated over the samples (with the previous one)
    fix_d = np.interp(frame.fix_t_s, np.concatenate([[t_prev], t]), np.concatenate([[st.trip_dist_um * 1e-6], d]))
    st.last_t_s, st.last_speed_mps, st.trip_dist_um = float(t[-1]), float(v[-1]), int(d_um[-1])

    # 2. map matching ------------------------------------------------------------
    use = _thin(frame.fix_t_s, st.last_match_t_s, params.match_interval_s, last=frame.trip_end)
    if use.size:
        st.last_match_t_s = float(frame.fix_t_s[use[-1]])
    fix_d = fix_d[use]
    x, y = to_metric(frame.fix_lon_deg[use], frame.fix_lat_deg[use])
    mstate = st.match_live
    if mstate is None and st.match is not None:
        mstate = mm.MatchState.from_bytes(st.match)
    st.match_live = None
    n_before = mstate.n_seen if mstate is not None else 0
    # The odometer (trip distance from the speed signal) lets the matcher smooth the fixes'
    # along-road noise: segment boundaries land where the wheels were, not where GPS was.
    result, mstate = mm.match_online(
        net, frame.fix_t_s[use], x, y, _sel(frame.fix_heading_deg, use), _sel(frame.fix_accuracy_m, use),
        state=mstate, params=params.match, final=frame.trip_end, odometer_m=fix_d,
    )
    st.match = mstate.to_bytes()
    st.match_live = mstate
    st.fix_index = np.concatenate([st.fix_index, np.arange(n_before, n_before + len(fix_d))])
    st.fix_dist_m = np.concatenate([st.fix_dist_m, fix_d])
    _place(st, result, net)

    # 3. events, privacy release -----------------------------------------------------
    _place_events(st, net, vehicle, params)
    _place_impacts(st, net)
    # once this frame's events and impacts have their places: trimmed while they still
    # waited, the state kept up to a frame's length of positions
    _trim_recent(st, params)
    _release(st, params, passes, events, net, vehicle, impacts)
    if frame.trip_end:
        _end_trip(st)
        st = VehicleState(last_seq=frame.seq, last_t_s=st.last_t_s)
        st.trip_start_t_s = math.nan
    return FrameResult(st, passes, events, impacts=impacts)


def _thin(t_s: np.ndarray, last_t_s: float, interval_s: float, *, last: bool) -> np.ndarray:
    """Indices of the fixes the matcher gets: each at least ``interval_s`` after the
    previous one given (``last_t_s``, from the state, so any framing picks the same fixes),
    plus the final fix when ``last``."""
    if interval_s <= 0:
        return np.arange(t_s.size)
    out = []
    for i, t in enumerate(t_s.tolist()):
        if t - last_t_s >= interval_s - 1e-6:
            out.append(i)
            last_t_s = t
    if last and t_s.size and (not out or out[-1] != t_s.size - 1):
        out.append(t_s.size - 1)
    return np.asarray(out, np.int64)


def _sel(a: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if a is None else a[idx]


def _place(st: VehicleState, res: mm.MatchResult, net: RoadNetwork) -> None:
    """Place buffered samples along the path between consecutive decided fixes (each
    unbroken chain of this frame at once)."""
    if len(res.t_s) == 0:
        return
    k = np.searchsorted(st.fix_index, res.fix_index)
    res_d = st.fix_dist_m[np.clip(k, 0, len(st.fix_dist_m) - 1)]
    last_decided = int(res.fix_index[-1])
    keep = st.fix_index > last_decided
    st.fix_index, st.fix_dist_m = st.fix_index[keep], st.fix_dist_m[keep]

    recent: list[tuple] = []
    chain: list[tuple] = []  # the fixes of the current unbroken chain, its anchor first
    vias: list[np.ndarray] = []  # via of each fix after the anchor
    for j in range(len(res.t_s)):
        seg = int(res.segment[j])
        if seg < 0:
            continue
        fix = (float(res.t_s[j]), float(res_d[j]), seg, float(res.offset_m[j]))
        if st.anchor is None or bool(res.break_before[j]):
            _place_chain(st, chain, vias, net, recent)
            # Samples before the first fix of a chain cannot be placed: drop them.
            _drop_until(st, fix[0])
            _close_open(st)
            st.anchor = fix
            chain, vias = [fix], []
            continue
        if not chain:
            chain = [st.anchor]  # the chain continues from the previous frame's last fix
        chain.append(fix)
        vias.append(np.asarray(res.via[j], np.int64))
        st.anchor = fix
    _place_chain(st, chain, vias, net, recent)
    if recent:
        # recent placed positions, to place harsh events (by time) and impacts (by distance)
        t0, seg0, off0, d0, v0 = zip(*recent)
        st.recent_t = np.concatenate([st.recent_t, *t0])
        st.recent_seg = np.concatenate([st.recent_seg, *seg0])
        st.recent_off = np.concatenate([st.recent_off, *off0])
        st.recent_d = np.concatenate([st.recent_d, *d0])
        st.recent_v = np.concatenate([st.recent_v, *v0])


def _trim_recent(st: VehicleState, params: PassParams) -> None:
    """Forget placed positions older than ``event_history_s`` before the frontier, but
    never those an event or impact still waiting for its place needs: when the decided
    fixes jump far ahead in one frame (after a stop, a slow decision), the positions of an
    event detected earlier must still be there when it is placed."""
    cut = st.frontier_t_s - params.event_history_s
    waiting = [e[1] for e in st.unplaced_events] + [imp["t_s"] for imp in st.unplaced_impacts]
    if waiting:
        cut = min(cut, min(waiting) - 2 * BLOCK_S)
    keep = st.recent_t >= cut
    st.recent_t, st.recent_seg, st.recent_off = st.recent_t[keep], st.recent_seg[keep], st.recent_off[keep]
    st.recent_d, st.recent_v = st.recent_d[keep], st.recent_v[keep]


def _round_mantissa(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to nearest (ties to even) with the mantissa's low 8 bits
    cleared: 16 significant bits, relative error <= 2**-16 (a value within that of
    float32's largest becomes infinite). Non-finite values are kept."""
    u = x.view(np.uint32)
    r = ((u + np.uint32(0x7F) + ((u >> np.uint32(8)) & np.uint32(1))) & np.uint32(0xFFFFFF00)).view(np.float32)
    return np.where(np.isfinite(x), r, x)


def _add_blocks(st: VehicleState, t, d, terms, fs: float, *, final: bool) -> None:
    """Sum per-sample terms into blocks of ``BLOCK_S`` seconds, aligned on the trip's sample
    count (the unfinished block's samples are carried), so any framing gives the same blocks."""
    cols = {"t": t, "d": d, "v": terms.v, "m": terms.moving.astype(float), "q": terms.q, "iv": terms.inv_vk,
            "y2": terms.y**2, "yn2": terms.yn2, "ay": np.abs(terms.y)}
    if st.tail:
        cols = {k: np.concatenate([st.tail[k], cols[k]]) for k in _TAIL}
    n = cols["t"].size
    size = max(1, int(round(BLOCK_S * fs)))
    full = n if final else (n // size) * size
    st.tail = {k: cols[k][full:].copy() for k in _TAIL} if full < n else {}  # not views of the frame
    if full == 0:
        return
    starts = np.arange(0, full, size)
    ends = np.minimum(starts + size, full)
    add = lambda k: np.add.reduceat(cols[k][:full], starts)  # noqa: E731
    new = {
        "t0": cols["t"][starts], "dt": cols["t"][ends - 1] - cols["t"][starts], "d0": cols["d"][starts],
        "dd": cols["d"][ends - 1] - cols["d"][starts],
        "n": (ends - starts).astype(float), "nm": add("m"), "sq": add("q"), "siv": add("iv"), "sv": add("v"),
        "sy2": add("y2"), "syn2": add("yn2"), "my": np.maximum.reduceat(cols["ay"][:full], starts),
    }
    # float32 (rounded when made, so a restored state holds the same values), counts too
    new = {k: v.astype(np.float64 if k in ("t0", "d0") else np.float32, copy=False) for k, v in new.items()}
    new.update(zip(_BLK_ROUNDED, _round_mantissa(np.array([new[k] for k in _BLK_ROUNDED]))))  # one call, rows
    st.blk = {k: np.concatenate([st.blk[k], new[k]]) for k in _BLK} if st.blk else new


def _take_blocks(st: VehicleState, n: int) -> dict:
    out = {k: v[:n] for k, v in st.blk.items()}
    st.blk = {k: v[n:].copy() for k, v in st.blk.items()}  # a view would keep the taken blocks alive too
    return out


def _drop_until(st: VehicleState, t_s: float) -> None:
    if st.blk:
        _take_blocks(st, int(np.searchsorted(st.blk["t0"], t_s, side="left")))


_SUMS = ("n", "nm", "sq", "siv", "sv", "sy2", "syn2")
_WIN = (2, 1, 3, 4, 0)  # rows of _SUMS summed per 10 m window: sq, nm, siv, sv, n
_WIN_ROWS = np.array(_WIN, np.int64)
_NO_WIN = np.zeros((5, 0))


def _new_pass(seg: int, entry_t: float, entry_off: float, entry_d: float) -> dict:
    """An open pass entering segment ``seg`` at time ``entry_t`` s, offset ``entry_off`` m
    and trip distance ``entry_d`` m, with nothing summed yet (``_SUMS``, the largest
    block peak ``my``, events, and the five rows of its 10 m windows)."""
    return {"seg": seg, "entry_t": entry_t, "entry_off": entry_off, "entry_d": entry_d, **dict.fromkeys(_SUMS, 0.0),
            "my": 0.0, "n_events": 0, "win": [[], [], [], [], []]}  # fmt: skip


def _place_chain(st: VehicleState, fixes: list, vias: list, net: RoadNetwork, recent: list) -> None:
    """Place the buffered blocks along an unbroken chain of decided fixes (t s, trip
    distance m, segment, offset m; the anchor first) and fold them into passes.

    Interval k (fixes k..k+1) takes the blocks starting before fix k+1 that earlier
    intervals did not take, and locates them along its path (segment, start offset, end
    offset) in proportion to the distance driven, or to time when the vehicle moved
    <= 0.5 m. All intervals are done at once (``agents._placement``), but every float sum
    is grouped as one interval at a time would group it, so the result does not depend on
    how fixes fall into frames.
    """
    if len(fixes) < 2 or not st.blk:
        return
    fix_t, fix_d, fix_seg, fix_off = zip(*fixes)
    n_k = np.maximum.accumulate(np.searchsorted(st.blk["t0"], fix_t[1:], side="left"))
    if n_k[-1] == 0:
        return
    blk = _take_blocks(st, int(n_k[-1]))
    sums = np.array([blk[k] for k in _SUMS], dtype=np.float64)
    op = st.open_pass
    seg0, off0, seg1, off1, starts, run_pass, edges, win, win_base, win_size = _placement.place_blocks(
        n_k, np.array(fix_t), np.array(fix_d), np.array(fix_seg, np.int64), np.array(fix_off),
        np.concatenate(vias) if len(vias) > 1 else vias[0], np.array([0, *itertools.accumulate(v.size for v in vias)]),
        net.length_m, blk["t0"], blk["dt"], blk["d0"], blk["dd"], sums, _WIN_ROWS,
        -1 if op is None else op["seg"], math.nan if op is None else op["entry_d"],
        np.array(op["win"], np.float64).reshape(5, -1) if op is not None else _NO_WIN, ENTRY_SKIP_M, WINDOW_M,
    )
    # Runs: blocks of one segment within one interval. Each run's sums (reduceat:
    # pairwise for long runs) cover exactly the blocks they cover per interval, and are
    # added to the pass in the same order.
    run_sums = np.add.reduceat(sums, starts, axis=1).T.tolist()
    run_max = np.maximum.reduceat(blk["my"], starts).tolist()
    win = win.tolist()
    wins = [[win[b + r * s : b + (r + 1) * s] for r in range(5)] for b, s in zip(win_base.tolist(), win_size.tolist())]
    run_seg = seg0[starts].tolist()
    for r, (sg, p, (entry_t, entry_off, entry_d, exit_t, exit_d, exit_off)) in enumerate(
        zip(run_seg, run_pass.tolist(), edges.T.tolist())
    ):
        op = st.open_pass
        if op is None or op["seg"] != sg:
            _close_open(st)
            st.open_pass = op = _new_pass(sg, entry_t, entry_off, entry_d)
        for k, x in zip(_SUMS, run_sums[r]):
            op[k] += x
        op["my"] = max(op["my"], run_max[r])
        op["win"] = wins[p]
        op["exit_t"], op["exit_d"], op["exit_off"] = exit_t, exit_d, exit_off
    st.frontier_t_s, st.frontier_d_m = exit_t, exit_d
    recent.append((blk["t0"], seg0.astype(np.int32), off0.astype(np.float32), blk["d0"],
                   (3.6 * blk["sv"] / np.maximum(blk["n"], 1)).astype(np.float32)))


_IMPACT_FIELDS = tuple(f.name for f in fields(Impact))


def _impact_dict(imp: Impact) -> dict:
    """An impact's fields as JSON-able values (NumPy scalars to Python); not
    ``dataclasses.asdict``, whose recursive deep copy an Impact's scalars do not need."""
    out = {}
    for k in _IMPACT_FIELDS:
        x = getattr(imp, k)
        out[k] = x.item() if isinstance(x, np.generic) else x
    return out


def _place_impacts(st: VehicleState, net: RoadNetwork) -> None:
    """Impacts at their trip distance -> segment and offset, attached to their pass."""
    still: list[dict] = []
    for imp in st.unplaced_impacts:
        d_imp, t_imp = imp["offset_m"], imp["t_s"]
        if d_imp > st.frontier_d_m or t_imp > st.frontier_t_s:
            still.append(imp)
            continue
        if st.recent_d.size == 0 or d_imp < st.recent_d[0]:
            continue  # in a stretch that could not be placed
        i = int(np.searchsorted(st.recent_d, d_imp, side="right") - 1)
        seg = int(st.recent_seg[i])
        off = min(float(st.recent_off[i]) + (d_imp - float(st.recent_d[i])), float(net.length_m[seg]))
        for p in [*([st.open_pass] if st.open_pass else []), *reversed(st.pending_passes)]:
            if p["seg"] == seg and p["entry_t"] - BLOCK_S <= t_imp <= p.get("exit_t", math.inf) + BLOCK_S:
                p.setdefault("impacts", []).append({**imp, "offset_m": off, "segment": seg})
                break
    st.unplaced_impacts = still


def _impact(d: dict) -> Impact:
    """An Impact back from the JSON state (NaN travels as null)."""
    return Impact(**{k: (math.nan if v is None and k != "segment" else v) for k, v in d.items()})


def _close_open(st: VehicleState) -> None:
    """Close the open pass: reduce it to its final figures (small) until its release."""
    p = st.open_pass
    if p is None:
        return
    st.open_pass = None
    n = max(p["n"], 1.0)
    fs = st.fs_hz
    # A pass has a few to a few dozen windows: plain Python floats (the same IEEE
    # divisions NumPy did; max(x, 1.0) is np.maximum(x, 1) for counts).
    wsq, wnm, wsiv, wsv, wn = p["win"]
    last = len(wsq) - 1
    keep = [i for i in range(last) if wnm[i] > 0]  # the completed windows with moving samples
    features = RoughnessFeatures(
        fs=fs, n_samples=int(p["n"]), distance_m=p["sv"] / fs, sum_q=p["sq"], n_q=int(p["nm"]),
        sum_inv_vk=p["siv"], sum_sq_band=p["sy2"], sum_sq_noise=p["syn2"], max_abs_band_mps2=p["my"],
        window_q=np.array([wsq[i] / max(wnm[i], 1.0) for i in keep], float),
        window_inv_vk=np.array([wsiv[i] / max(wnm[i], 1.0) for i in keep], float),
        window_speed_mps=np.array([wsv[i] / max(wn[i], 1.0) for i in keep], float),
    )
    partial = RoughnessState(
        features=features, band_zi=np.zeros((1, 2)), noise_zi=None,
        window_pos_m=ENTRY_SKIP_M + max(last, 0) * WINDOW_M,
        partial_sum_q=float(wsq[last]) if last >= 0 else 0.0, partial_n=int(wnm[last]) if last >= 0 else 0,
        partial_inv_vk=float(wsiv[last]) if last >= 0 else 0.0, partial_sum_v=float(wsv[last]) if last >= 0 else 0.0,
        partial_n_all=int(wn[last]) if last >= 0 else 0,
    )
    iri, conf = estimate_from_features(features, partial=partial)
    rms = math.sqrt(p["sy2"] / n)
    st.pending_passes.append({
        "seg": p["seg"], "entry_t": p["entry_t"], "exit_t": p["exit_t"], "entry_off": p["entry_off"],
        "exit_off": p["exit_off"], "entry_d": p["entry_d"], "exit_d": p["exit_d"], "n": int(p["n"]),
        "mean_speed": 3.6 * p["sv"] / n, "n_events": p["n_events"],
        "iri": iri if math.isfinite(iri) else None, "conf": conf,
        "rms": rms if math.isfinite(rms) else None, "max_abs": p["my"],
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
            if p["seg"] == seg and p["entry_t"] - BLOCK_S <= t0 <= p.get("exit_t", math.inf) + BLOCK_S:
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
            passes.append(_pass_record(p, st, net, vehicle))
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


def _end_trip(st: VehicleState) -> None:
    """At a trip's end everything still pending lies within ``trim_m`` of it: drop."""
    st.open_pass = None
    st.pending_passes = []
    st.pending_events = []
    st.unplaced_events = []
    st.unplaced_impacts = []


def _utc(t_s: float) -> datetime:
    return datetime.fromtimestamp(round(t_s, 6), tz=UTC)


def _pass_record(p: dict, st: VehicleState, net: RoadNetwork, vehicle: str) -> SegmentPass:
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
