"""Hidden-Markov-model map matching of GPS fixes to directed road segments.

After Newson & Krumm (2009), "Hidden Markov map matching through noise and sparseness":

- **states** of fix *k* are its candidates: the (at most ``max_candidates``) nearest
  directed segments within the search radius, each with the projection of the fix on it
  (one bulk ``STRtree`` query per call, distances and projections vectorised);
- **emission**: Gaussian in the fix-to-segment distance (``sigma_m``, or the fix's own
  horizontal accuracy), times a von Mises term in the heading difference when the fix
  has a heading (the two directions of a two-way street are separate segments);
- **transition**: exponential in ``|route distance - straight-line distance|`` (scale
  ``max(beta_m, sigma)``), the straight line joining the two *candidates' points* rather
  than the two noisy fixes (Newson & Krumm use the fixes): with the fixes, a loop or a
  U-turn costs no more than a forward move whenever the noise inflates the straight line,
  and at sigma = 15 m the matched path came out 1.5-2x longer than the driven one; with
  the candidates' points it is within a few percent. U-turns onto the opposite
  direction pay ``uturn_penalty_m`` more. Routes longer than the vehicle could have
  driven (``max_speed_mps``) are impossible;
- **decoding**: Viterbi in log space, one vectorised (K, K) step per fix.

Odometer. When the trip distance at each fix is known (``odometer_m``, integrated from the
speed signal), it replaces the straight line: the transition is exponential in
``|route - odometer distance|`` (scale ``max(odo_beta_m, sigma)``); a stop then pins no
detour into a side street, and a parallel road of another length loses. Fixes less than
``stop_odo_m`` of odometer from the newest step are merged into it (a stop adds evidence,
not decision lag). Decided fixes are then placed where the odometer says along the
decided path: per chain, with ``s`` the path position of a fix's projection (metres from
the chain's first segment start), the offset ``c = s - odometer`` is a robust mean over
the fix, its ``smooth_back_fixes`` predecessors and ``smooth_ahead_fixes`` successors, and
the fix is emitted at ``odometer + c`` (moved at most ``smooth_max_shift_m``, never before
the previous emitted fix): possibly onto the previous or next segment of the path, with
``segment``/``offset_m``/``via`` changed to match. The path itself does not change. The
along-road GPS noise at segment boundaries averages out (bench: share of driven distance
on the true segment 0.937 -> 0.981 at sigma 5 m, 0.876 -> 0.931 at 15 m).

Chains and breaks. A fix with no candidate, or that no candidate path can reach, is held
back as a possible outlier; if a later fix connects to the chain it is dropped
(``segment == -1``) and the chain goes on. After more than ``max_outlier_fixes`` such fixes
in a row, or a time gap over ``max_gap_s``, the chain ends and a new one starts at the next
fix with candidates (``break_before=True``): no path is ever invented across a break.

Streaming. :func:`match_online` decides a fix as soon as every surviving Viterbi path
agrees on it, or when it is more than ``max_lag_fixes`` fixes behind the newest fix (then
the best path's choice is pinned; fixes merged into a stop do not count). With an
odometer, a decided fix is emitted once ``smooth_ahead_fixes`` later fixes of its chain
are decided. All decisions depend on the fix sequence only, never on how it was cut into
calls, so :func:`match` (one call with ``final=True``) equals any chunked online run.
The carried :class:`MatchState` holds only the undecided window and serialises to bytes
(``to_bytes`` / ``from_bytes``) for a Faust table.

Inputs are metric: ``x_m``, ``y_m`` in EPSG:2154 metres (``roadnet.to_metric``).
"""

from __future__ import annotations

import array
import bisect
import math
import struct
import sys
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property

import numba
import numpy as np
import shapely

from agents._order_stats import median
from agents._routes import Router, _table_distances
from roadnet import RoadNetwork

__all__ = [
    "MatchParams",
    "MatchResult",
    "MatchState",
    "match",
    "match_online",
    "path_length_m",
]


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True, kw_only=True)
class MatchParams:
    """Parameters of the HMM matcher (metres, seconds, degrees).

    Defaults were chosen with ``bench/map_matching.py`` (synthetic drives on the Plaisir
    network, 1 Hz and 0.2 Hz, sigma 3 to 15 m), see the notes per field.

    Parameters
    ----------
    sigma_m : float
        GPS position noise, metres (standard deviation per axis), used when a fix has no
        horizontal accuracy of its own. 5 m is typical of phone/telematics GNSS in town.
    search_radius_m : float
        Candidate search radius, metres; the radius used for a fix is
        ``max(search_radius_m, 4 * sigma)`` with its own sigma.
    max_candidates : int
        At most this many nearest segments per fix (K). A junction of four two-way
        streets already puts 8 directed segments at the same distance; at sigma 15 m
        16 finds the true road more often than 12 (share 0.920 vs 0.904 with odometer).
    beta_m : float
        Scale (metres) of the exponential transition model in
        ``|route - straight-line distance|``; the scale used is ``max(beta_m, sigma)`` of
        the two fixes. 10 m: at sigma 5 m, 5 to 10 m are equal (share 0.947 vs 0.948);
        at sigma 15 m, 10 to 20 m beat 5 m (0.80 vs 0.77), 2 m is worse everywhere.
    uturn_penalty_m : float
        Extra route length (metres) charged to a U-turn from a segment onto its
        opposite-direction twin: noise alone then rarely flips the direction.
    heading_sigma_deg : float
        Spread of the heading term, degrees (von Mises with kappa = 1/sigma²); only for
        fixes with a finite heading.
    max_speed_mps : float
        A transition whose route is longer than ``max_speed_mps * dt`` plus the
        positional slack (3 sigma of each fix) is impossible. 60 m/s = 216 km/h.
    max_detour_m : float
        A route may also not exceed ``2 * straight + max_detour_m`` (metres); bounds the
        route searches across long gaps.
    max_gap_s : float
        A time gap (seconds) above which the chain is broken without trying to connect.
        Tunnels of tens of seconds stay below it and connect when a route exists.
    max_lag_fixes : int
        Online decision lag: a fix is decided at the latest when it is more than this
        many fixes behind the newest fix.
    max_outlier_fixes : int
        At most this many consecutive fixes can be dropped as outliers inside a chain;
        one more and the chain breaks.
    odo_beta_m : float
        With an odometer: scale (metres) of the exponential transition model in
        ``|route - odometer distance|``; the scale used is ``max(odo_beta_m, sigma)`` of
        the two fixes. 5-10 m equal, 20 m worse at sigma 5 m (0.954 vs 0.968).
    smooth_back_fixes, smooth_ahead_fixes : int
        With an odometer: the along-path offset ``c`` (path position minus odometer) of a
        decided fix is estimated over its own residual, those of up to
        ``smooth_back_fixes`` earlier and ``smooth_ahead_fixes`` later decided fixes of
        the chain. A fix is emitted once ``smooth_ahead_fixes`` later fixes of its chain
        are decided (or the chain ends): the online lag grows by that many fixes.
        20/10: 10/5 loses 0.2 points at sigma 5 m and 0.5 at 15 m, 30/15 gains nothing
        (the path length drifts from the odometer: scale error, corners).
    smooth_max_shift_m : float
        With an odometer: a fix is moved at most this far (metres) along the path from
        its projection, whatever the estimate says.
    stop_odo_m : float
        With an odometer: a fix less than this far (metres of odometer) from the newest
        chain step is at the same place: its emission is added to that step's instead of
        opening a new one, and it is decided with it. Stops at junctions then neither
        count towards the decision lag nor pin the path before the vehicle moves on.
    max_stop_fixes : int
        At most this many fixes are merged into one step (bounds the state during long
        stops); the next one opens a new step.
    """

    sigma_m: float = 5.0
    search_radius_m: float = 50.0
    max_candidates: int = 16
    beta_m: float = 10.0
    uturn_penalty_m: float = 20.0
    heading_sigma_deg: float = 30.0
    max_speed_mps: float = 60.0
    max_detour_m: float = 200.0
    max_gap_s: float = 60.0
    max_lag_fixes: int = 5
    max_outlier_fixes: int = 3
    odo_beta_m: float = 10.0
    smooth_back_fixes: int = 20
    smooth_ahead_fixes: int = 10
    smooth_max_shift_m: float = 50.0
    stop_odo_m: float = 1.0
    max_stop_fixes: int = 120

    def __post_init__(self) -> None:
        for name in (
            "sigma_m",
            "search_radius_m",
            "beta_m",
            "uturn_penalty_m",
            "heading_sigma_deg",
            "max_speed_mps",
            "max_detour_m",
            "max_gap_s",
            "odo_beta_m",
            "smooth_max_shift_m",
            "stop_odo_m",
        ):
            v = getattr(self, name)
            if not (np.isfinite(v) and (v > 0 or (v == 0 and name == "uturn_penalty_m"))):
                raise ValueError(f"{name}={v!r} must be a positive finite number")
        for name in ("max_candidates", "max_lag_fixes", "max_outlier_fixes",
                     "smooth_back_fixes", "smooth_ahead_fixes", "max_stop_fixes"):
            v = getattr(self, name)
            if int(v) != v or v < (1 if name == "max_candidates" else 0):
                raise ValueError(f"{name}={v!r} must be a non-negative integer (>= 1 for K)")


# --------------------------------------------------------------------------- result
_EMPTY_I = np.empty(0, np.int64)


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Decided fixes, in time order (all arrays aligned).

    Attributes
    ----------
    t_s : (n,) float, the fixes' times, seconds
    fix_index : (n,) int64, index of each fix in the whole input sequence (across calls)
    segment : (n,) int64, index into the network arrays; -1 = unmatched (outlier or off
        the network)
    offset_m : (n,) float, metres along ``segment`` from its start (NaN when unmatched);
        non-decreasing between consecutive matched fixes on the same segment
    break_before : (n,) bool, True on the first fix of a new chain: do not connect it to
        the previous matched fix
    via : tuple of n int64 arrays, the segments driven strictly between the previous
        matched fix of the same chain and this one (empty on the same segment, on the
        first fix of a chain and on unmatched fixes)

    The driven path between consecutive matched fixes ``p`` and ``k`` is: ``segment[p]``
    from ``offset_m[p]`` to its end, every segment of ``via[k]``, then ``segment[k]`` from
    its start to ``offset_m[k]`` (or just ``offset_m[p]..offset_m[k]`` when both are on the
    same segment and ``via[k]`` is empty); see :func:`path_length_m`.
    """

    t_s: np.ndarray
    fix_index: np.ndarray
    segment: np.ndarray
    offset_m: np.ndarray
    break_before: np.ndarray
    via: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.t_s)

    @classmethod
    def empty(cls) -> MatchResult:
        """A result with no fixes."""
        return cls(
            np.empty(0), _EMPTY_I.copy(), _EMPTY_I.copy(), np.empty(0), np.empty(0, bool), ()
        )

    @classmethod
    def concat(cls, parts: list[MatchResult] | tuple[MatchResult, ...]) -> MatchResult:
        """Join the results of consecutive online calls."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.t_s for p in parts]),
            np.concatenate([p.fix_index for p in parts]),
            np.concatenate([p.segment for p in parts]),
            np.concatenate([p.offset_m for p in parts]),
            np.concatenate([p.break_before for p in parts]),
            tuple(v for p in parts for v in p.via),
        )

    def equals(self, other: MatchResult) -> bool:
        """True when both results hold exactly the same decisions."""
        return (
            len(self) == len(other)
            and np.array_equal(self.t_s, other.t_s)
            and np.array_equal(self.fix_index, other.fix_index)
            and np.array_equal(self.segment, other.segment)
            and np.array_equal(self.offset_m, other.offset_m, equal_nan=True)
            and np.array_equal(self.break_before, other.break_before)
            and all(np.array_equal(a, b) for a, b in zip(self.via, other.via))
        )


def path_length_m(
    net: RoadNetwork, seg_a: int, off_a: float, via: np.ndarray, seg_b: int, off_b: float
) -> float:
    """Length (m) of the driven path between two consecutive matched fixes.

    Parameters
    ----------
    net : RoadNetwork
    seg_a, off_a : segment index and offset (m) of the earlier fix
    via : int array, the segments driven in between (``MatchResult.via`` of the later fix)
    seg_b, off_b : segment index and offset (m) of the later fix

    Returns
    -------
    float, metres: ``off_b - off_a`` on the same segment with no ``via``, else the rest of
    ``seg_a`` + the ``via`` segments + ``off_b``.

    Examples
    --------
    >>> from roadnet import load_network
    >>> net = load_network()
    >>> path_length_m(net, 0, 2.0, [], 0, 7.5)
    5.5
    """
    via = np.asarray(via, np.int64)
    if seg_a == seg_b and len(via) == 0:
        return float(max(off_b - off_a, 0.0))
    return float(net.length_m[seg_a] - off_a + net.length_m[via].sum() + off_b)


# --------------------------------------------------------------------------- state
_MAGIC = b"RSMM"
_VERSION = 3
# Field name, dtype; the order is the wire order.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("meta", "<i8"),  # version, n_segments, n_seen, had_chain, chain_active, has_anchor,
    #                   odometer mode (-1 unknown, 0 without, 1 with), smoothed chain has
    #                   an emitted fix, absolute index of the first path piece
    ("last_t", "<f8"),  # (2,) time and odometer of the newest fix seen (-inf before any)
    ("anchor_i", "<i8"),  # (2,) fix index, segment   (zeros without anchor)
    ("anchor_f", "<f8"),  # (7,) t, x, y, sigma, projected offset, emitted offset, odometer
    ("step_i", "<i8"),  # (S*6,) fix index, break, n_cand, n_prev, n_outliers, n_followers
    ("step_f", "<f8"),  # (S*5,) t, x, y, sigma, odometer
    ("cand_i", "<i4"),  # (2*C,) segments then back-pointers, step after step
    ("cand_f", "<f8"),  # (3*C,) offsets, emission, score
    ("trans", "<f4"),  # sum over steps of n_prev*n_cand, row-major (float32 from the start)
    ("out_i", "<i8"),  # fix indices of the dropped outliers held by the steps
    ("out_f", "<f8"),  # their times
    ("fol_i", "<i8"),  # fix indices of the fixes merged into the steps (stops)
    ("fol_f", "<f8"),  # (F*2,) their times and odometers
    ("pend_i", "<i8"),  # (P,) fix indices of the held-back fixes
    ("pend_f", "<f8"),  # (P*6,) t, x, y, heading, accuracy (NaN = none), odometer
    # With an odometer: decided fixes waiting for their smoothing window, the path pieces
    # from the last emitted fix on, the residuals of the last emitted fixes.
    ("held_i", "<i8"),  # (H*4,) fix index, absolute path piece (-1 = unmatched), break,
    #                       own projection
    ("held_f", "<f8"),  # (H*4,) t, path position, odometer, sigma
    ("piece_i", "<i8"),  # (Q,) segments of the path pieces
    ("piece_f", "<f8"),  # (Q,) path position of each piece's start
    ("hist_f", "<f8"),  # (R*2,) residual (path position - odometer), sigma
    ("smooth_f", "<f8"),  # (1,) emitted path position of the last emitted fix
)
# Python's array typecodes of the fields' dtypes (native order, swapped on a big-endian host)
_CODES = {"<i8": "q", "<f8": "d", "<i4": "i", "<f4": "f"}
assert all(array.array(c).itemsize == int(dt[2]) for dt, c in _CODES.items())
_N_SEEN_POS = len(_MAGIC) + 2 + 4 + 2 * 8  # magic, version, meta's size, meta[:2]


def _encode(fields: dict[str, list | np.ndarray]) -> bytes:
    """The state encoding of ``fields`` (each a list of numbers or an array, by name).

    A short list goes through :mod:`array` rather than NumPy: a state has twenty-odd
    fields of a few values each, and NumPy's per-array cost was most of the encoding's."""
    parts = [_MAGIC, struct.pack("<H", _VERSION)]
    for name, dt in _FIELDS:
        v = fields[name]
        if isinstance(v, np.ndarray):
            b = np.ascontiguousarray(v, dtype=dt)
        else:
            b = array.array(_CODES[dt], v)
            if sys.byteorder == "big":
                b.byteswap()
        parts.append(len(b).to_bytes(4, "little"))
        parts.append(b.tobytes())
    return b"".join(parts)


def _decode(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a state encoding, by field name; ``ValueError`` if it is not one."""
    mv = memoryview(data)
    if bytes(mv[:4]) != _MAGIC or len(mv) < 6:
        raise ValueError("data is not a MatchState encoding (bad magic)")
    (version,) = struct.unpack_from("<H", mv, 4)
    if version != _VERSION:
        raise ValueError(f"MatchState encoding version={version}, expected {_VERSION}")
    pos = 6
    arrays: dict[str, np.ndarray] = {}
    for name, dt in _FIELDS:
        if pos + 4 > len(mv):
            raise ValueError(f"MatchState encoding truncated at field {name!r}")
        (n,) = struct.unpack_from("<I", mv, pos)
        pos += 4
        nbytes = n * np.dtype(dt).itemsize
        if pos + nbytes > len(mv):
            raise ValueError(f"MatchState encoding truncated in field {name!r}")
        arrays[name] = np.frombuffer(mv[pos : pos + nbytes], dtype=dt).astype(dt[1:])
        pos += nbytes
    if pos != len(mv):
        raise ValueError("MatchState encoding has trailing bytes")
    return arrays


@dataclass(frozen=True, eq=False)
class MatchState:
    """The undecided window of an online match, carried between calls (``zi``/``zf`` style).

    Holds at most ``max_lag_fixes + 1`` undecided chain steps (candidates, scores,
    back-pointers, transition matrices), the last decided matched fix (the anchor), up
    to ``max_outlier_fixes`` held-back fixes and, with an odometer, the decided fixes
    waiting for ``smooth_ahead_fixes`` successors with the path pieces they span and the
    last ``smooth_back_fixes`` residuals: a few kilobytes. Build it only through
    :func:`match_online` or :meth:`from_bytes`.
    """

    data: bytes = field(repr=False)
    """The encoding (:meth:`to_bytes`)."""
    _live: _Matcher | None = field(default=None, repr=False, compare=False)
    """The running matcher this encoding is a snapshot of: the next call continues it
    instead of rebuilding it from the arrays (same result, see ``match_online``). Taken
    (set to None) by that call, so a state can only be continued once that way."""

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """The state's arrays by field name (``_FIELDS``), decoded on first use: a
        worker only needs the bytes of the states it continues live."""
        return _decode(self.data)

    @property
    def n_seen(self) -> int:
        """Number of fixes consumed so far (the next fix gets this ``fix_index``)."""
        return struct.unpack_from("<q", self.data, _N_SEEN_POS)[0]

    @property
    def n_undecided(self) -> int:
        """Fixes consumed but not yet emitted."""
        a = self.arrays
        return int(len(a["step_i"]) // 6 + len(a["out_i"]) + len(a["fol_i"])
                   + len(a["pend_i"]) + len(a["held_i"]) // 4)

    def to_bytes(self) -> bytes:
        """Compact binary encoding (little-endian arrays, no pickle)."""
        return self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> MatchState:
        """Decode :meth:`to_bytes` output; ``ValueError`` if it is not one."""
        state = cls(bytes(data))
        state.arrays  # noqa: B018 (decoded now: bad data fails here, not in a later call)
        return state


# --------------------------------------------------------------------------- internals
@dataclass
class _Fix:
    """One input fix with its candidates."""

    idx: int
    t: float
    x: float
    y: float
    heading: float
    acc: float
    sigma: float
    seg: np.ndarray  # (K,) candidate segments
    off: np.ndarray  # (K,) projection offsets, m
    emis: np.ndarray  # (K,) emission log-likelihoods
    odo: float = np.nan  # odometer, m (NaN without)


@dataclass
class _Step:
    """One fix inside the chain's undecided window (a Viterbi column)."""

    idx: int
    t: float
    x: float
    y: float
    sigma: float
    brk: bool
    seg: np.ndarray
    off: np.ndarray
    emis: np.ndarray
    trans: np.ndarray  # (n_prev, K) log transition from the previous column (0 x K at start)
    score: np.ndarray  # (K,) best log score of a path ending here (normalised, max 0)
    back: list[int]  # (K,) best previous candidate (a list: walked in Python, see _decide)
    outliers: list[tuple[int, float]] = field(default_factory=list)
    odo: float = np.nan  # odometer, m (NaN without)
    followers: list[tuple[int, float, float]] = field(default_factory=list)  # idx, t, odo

    @property
    def t_last(self) -> float:
        """Time of the newest fix of this step (a merged one, else its own)."""
        return self.followers[-1][1] if self.followers else self.t


@dataclass
class _Held:
    """A decided fix waiting for its smoothing window (odometer mode)."""

    idx: int
    t: float
    piece: int  # absolute index of its path piece; -1 = unmatched
    brk: bool
    s: float = np.nan  # path position of its projection, m
    odo: float = np.nan
    sigma: float = np.nan
    own: bool = False  # s is its own projection (else a stop's, not used to smooth)


def _validate(
    t_s: object, x_m: object, y_m: object, heading_deg: object, accuracy_m: object,
    odometer_m: object = None,
) -> tuple[np.ndarray, ...]:
    """Arrays of equal length, numeric, strictly increasing finite t, finite x/y,
    finite non-decreasing odometer (NaN array when none)."""
    out = []
    for name, v in (("t_s", t_s), ("x_m", x_m), ("y_m", y_m)):
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        out.append(a.astype(float))
    t, x, y = out
    n = len(t)
    opt = []
    for name, v in (("heading_deg", heading_deg), ("accuracy_m", accuracy_m),
                    ("odometer_m", odometer_m)):
        if v is None:
            opt.append(np.full(n, np.nan))
            continue
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        opt.append(a.astype(float))
    for name, a in (("x_m", x), ("y_m", y), ("heading_deg", opt[0]), ("accuracy_m", opt[1]),
                    ("odometer_m", opt[2])):
        if len(a) != n:
            raise ValueError(f"{name} has length {len(a)}, expected len(t_s)={n}")
    if not np.isfinite(t).all():
        raise ValueError("t_s must be finite")
    if n > 1 and not (np.diff(t) > 0).all():
        k = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise ValueError(f"t_s must be strictly increasing: t_s[{k + 1}]={t[k + 1]!r} <= {t[k]!r}")
    for name, a in (("x_m", x), ("y_m", y)):
        if not np.isfinite(a).all():
            k = int(np.flatnonzero(~np.isfinite(a))[0])
            raise ValueError(f"{name} must be finite: {name}[{k}]={a[k]!r}")
    acc = opt[1]
    bad = np.isfinite(acc) & ~(acc > 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"accuracy_m must be > 0 (or NaN for none): accuracy_m[{k}]={acc[k]!r}")
    odo = opt[2]
    if odometer_m is not None:
        if not np.isfinite(odo).all():
            k = int(np.flatnonzero(~np.isfinite(odo))[0])
            raise ValueError(f"odometer_m must be finite: odometer_m[{k}]={odo[k]!r}")
        if n > 1 and not (np.diff(odo) >= 0).all():
            k = int(np.flatnonzero(np.diff(odo) < 0)[0])
            raise ValueError(f"odometer_m must be non-decreasing: odometer_m[{k + 1}]="
                             f"{odo[k + 1]!r} < {odo[k]!r}")
    return t, x, y, opt[0], acc, odo


def _candidates(
    net: RoadNetwork,
    x: np.ndarray,
    y: np.ndarray,
    heading: np.ndarray,
    sigma: np.ndarray,
    params: MatchParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of many fixes with one bulk STRtree query.

    Returns
    -------
    ptr : (n+1,) int, candidates of fix i are ``[ptr[i], ptr[i+1])`` in the arrays below
    seg, off, emis : candidate segment, projection offset (m), emission log-likelihood;
        per fix sorted by distance (then segment index), at most ``max_candidates``.
    """
    n = len(x)
    pts = shapely.points(x, y)
    radius = np.maximum(params.search_radius_m, 4.0 * sigma)
    fi, seg = net.tree.query(pts, predicate="dwithin", distance=radius)
    geoms = net.geom_m[seg]
    d = shapely.distance(geoms, pts[fi])
    order = np.lexsort((seg, d, fi))
    fi, seg, d = fi[order], seg[order], d[order]
    first = np.searchsorted(fi, np.arange(n))
    rank = np.arange(len(fi)) - first[fi]
    keep = rank < params.max_candidates
    fi, seg, d = fi[keep], seg[keep].astype(np.int64), d[keep]
    off = np.asarray(shapely.line_locate_point(net.geom_m[seg], pts[fi]), float)
    s = sigma[fi]
    emis = -0.5 * (d / s) ** 2
    hd = heading[fi]
    has = np.isfinite(hd)
    if has.any():
        seg_h = net.heading_at(seg[has], off[has])
        delta = np.radians(hd[has] - seg_h)
        kappa = 1.0 / np.radians(params.heading_sigma_deg) ** 2
        emis[has] += kappa * (np.cos(delta) - 1.0)
    ptr = np.searchsorted(fi, np.arange(n + 1))
    return ptr, seg, off, emis


def _follower_emission(seg: np.ndarray, f_seg: np.ndarray, f_emis: np.ndarray,
                       floor: float) -> np.ndarray:
    """Emission (log-likelihood) of a merged fix for each segment of ``seg``: that of its
    first candidate on the segment (``f_seg``, ``f_emis``), else ``floor``."""
    # A few candidates: a dict beats the (len(seg), len(f_seg)) comparison matrix in NumPy.
    own: dict[int, float] = {}
    for g, e in zip(f_seg.tolist(), f_emis.tolist()):
        own.setdefault(g, e)
    return np.array([own.get(g, floor) for g in seg.tolist()], float)


def _robust_offset(res: list[float], sigma: list[float]) -> float:
    """Robust mean (m) of along-path residuals: the mean of those within 2 sigma of the
    median (the median alone when none is)."""
    # A few values per call: Python's sort beats numpy's per-call overhead.
    med = median(res)
    tol = 2.0 * median(sigma)
    kept = [r for r in res if abs(r - med) <= tol]
    return math.fsum(kept) / len(kept) if kept else med


class _Matcher:
    """The online machinery: consumes fixes one at a time, emits decided fixes."""

    def __init__(self, net: RoadNetwork, params: MatchParams, state: MatchState | None):
        self.net = net
        self.p = params
        self.router = Router.of(net)
        self.out: list[tuple[int, float, int, float, bool, np.ndarray]] = []
        self.n_seen = 0
        self.last_t = -np.inf
        self.last_odo = -np.inf
        self.odo_mode = -1  # -1 not known yet, 0 without odometer, 1 with
        self.had_chain = False
        self.active = False
        self.anchor: _Step | None = None  # last decided matched fix (projected offset)
        self.anchor_off_out = np.nan  # its emitted offset (clamped non-decreasing)
        self.window: list[_Step] = []
        self.pending: list[_Fix] = []
        # Odometer mode: decided fixes waiting for their smoothing window, the path pieces
        # (segment, path position of its start) from the last emitted fix's piece on
        # (``piece0`` is the absolute index of the first), the residuals of the last
        # emitted fixes of the chain and the last emitted path position.
        self.held: list[_Held] = []
        self.n_own = 0  # held fixes with their own projection (used to smooth)
        self.piece_seg: list[int] = []
        self.piece_start: list[float] = []
        self.piece0 = 0
        self.hist_res: list[float] = []
        self.hist_sig: list[float] = []
        self.emitted = False
        self.s_out = np.nan
        if state is not None:
            self._load(state)

    # ----------------------------------------------------------------- state I/O
    def _load(self, state: MatchState) -> None:
        a = state.arrays
        meta = a["meta"]
        if int(meta[0]) != _VERSION:
            raise ValueError(f"state has version {int(meta[0])}, expected {_VERSION}")
        if int(meta[1]) != len(self.net):
            raise ValueError(
                f"state was built on a network of {int(meta[1])} segments, not {len(self.net)}"
            )
        self.n_seen = int(meta[2])
        self.had_chain = bool(meta[3])
        self.active = bool(meta[4])
        self.odo_mode, self.emitted, self.piece0 = int(meta[6]), bool(meta[7]), int(meta[8])
        self.last_t, self.last_odo = (float(v) for v in a["last_t"])
        if meta[5]:
            (fix, seg), (t, x, y, sig, off, off_out, odo) = a["anchor_i"], a["anchor_f"]
            self.anchor = self._single(int(fix), t, x, y, sig, int(seg), off, odo)
            self.anchor_off_out = float(off_out)
        si = a["step_i"].reshape(-1, 6)
        sf = a["step_f"].reshape(-1, 5)
        n_c = int(si[:, 2].sum()) if len(si) else 0
        ci, cf = a["cand_i"], a["cand_f"]
        fol_f = a["fol_f"].reshape(-1, 2)
        c = t_pos = o_pos = f_pos = 0
        for (fix, brk, k, kp, no, nf), (t, x, y, sig, odo) in zip(si, sf):
            k, kp, no, nf = int(k), int(kp), int(no), int(nf)
            sl = slice(c, c + k)
            self.window.append(
                _Step(
                    int(fix), float(t), float(x), float(y), float(sig), bool(brk),
                    ci[sl].astype(np.int64), cf[sl].copy(), cf[n_c + c : n_c + c + k].copy(),
                    a["trans"][t_pos : t_pos + kp * k].reshape(kp, k).copy(),
                    cf[2 * n_c + c : 2 * n_c + c + k].copy(),
                    ci[n_c + c : n_c + c + k].tolist(),
                    [(int(i), float(tt)) for i, tt in zip(a["out_i"][o_pos : o_pos + no],
                                                          a["out_f"][o_pos : o_pos + no])],
                    float(odo),
                    [(int(i), float(tt), float(oo)) for i, (tt, oo) in
                     zip(a["fol_i"][f_pos : f_pos + nf], fol_f[f_pos : f_pos + nf])],
                )
            )
            c += k
            t_pos += kp * k
            o_pos += no
            f_pos += nf
        pf = a["pend_f"].reshape(-1, 6)
        for i, (t, x, y, h, acc, odo) in zip(a["pend_i"], pf):
            self.pending.append(self._raw_fix(int(i), t, x, y, h, acc, odo))
        for (i, piece, brk, own), (t, sp, odo, sig) in zip(a["held_i"].reshape(-1, 4),
                                                           a["held_f"].reshape(-1, 4)):
            self._hold(_Held(int(i), float(t), int(piece), bool(brk), float(sp),
                             float(odo), float(sig), bool(own)))
        self.piece_seg = [int(v) for v in a["piece_i"]]
        self.piece_start = [float(v) for v in a["piece_f"]]
        self.hist_res = a["hist_f"][0::2].tolist()
        self.hist_sig = a["hist_f"][1::2].tolist()
        self.s_out = float(a["smooth_f"][0])

    def _dump(self) -> bytes:
        """The state encoding of this matcher (see ``_FIELDS``)."""
        W = self.window
        anc = self.anchor
        cat = lambda xs: np.concatenate(xs) if xs else np.empty(0)  # noqa: E731
        return _encode({
            "meta": [_VERSION, len(self.net), self.n_seen, self.had_chain, self.active,
                     anc is not None, self.odo_mode, self.emitted, self.piece0],
            "last_t": [self.last_t, self.last_odo],
            "anchor_i": [anc.idx, int(anc.seg[0])] if anc else [0, 0],
            "anchor_f": ([anc.t, anc.x, anc.y, anc.sigma, float(anc.off[0]), self.anchor_off_out,
                          anc.odo] if anc else [0.0] * 7),
            "step_i": [v for s in W for v in (s.idx, s.brk, len(s.seg), s.trans.shape[0],
                                              len(s.outliers), len(s.followers))],
            "step_f": [v for s in W for v in (s.t, s.x, s.y, s.sigma, s.odo)],
            "cand_i": [v for s in W for v in s.seg.tolist()] + [v for s in W for v in s.back],
            "cand_f": cat([s.off for s in W] + [s.emis for s in W] + [s.score for s in W]),
            "trans": cat([s.trans.reshape(-1) for s in W]),
            "out_i": [i for s in W for i, _ in s.outliers],
            "out_f": [t for s in W for _, t in s.outliers],
            "fol_i": [i for s in W for i, _, _ in s.followers],
            "fol_f": [v for s in W for _, t, o in s.followers for v in (t, o)],
            "pend_i": [f.idx for f in self.pending],
            "pend_f": [v for f in self.pending for v in (f.t, f.x, f.y, f.heading, f.acc, f.odo)],
            "held_i": [v for h in self.held for v in (h.idx, h.piece, h.brk, h.own)],
            "held_f": [v for h in self.held for v in (h.t, h.s, h.odo, h.sigma)],
            "piece_i": self.piece_seg,
            "piece_f": self.piece_start,
            "hist_f": [v for rs in zip(self.hist_res, self.hist_sig) for v in rs],
            "smooth_f": [self.s_out],
        })

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _single(idx: int, t: float, x: float, y: float, sig: float, seg: int, off: float,
                odo: float) -> _Step:
        return _Step(
            idx, float(t), float(x), float(y), float(sig), False,
            np.array([seg], np.int64), np.array([float(off)]), np.zeros(1),
            np.zeros((0, 1)), np.zeros(1), [0], odo=float(odo),
        )

    def _raw_fix(self, idx: int, t: float, x: float, y: float, h: float, acc: float,
                 odo: float) -> _Fix:
        sig = float(acc) if np.isfinite(acc) else self.p.sigma_m
        return _Fix(idx, float(t), float(x), float(y), float(h), float(acc), sig,
                    _EMPTY_I, np.empty(0), np.empty(0), float(odo))

    def _tol(self, sig_a: float, sig_b: float) -> float:
        """Backward jitter (m) accepted on one segment before it counts as a loop."""
        return 2.0 * max(sig_a, sig_b)

    def _limit(self, a: _Step, f: _Fix | _Step, straight: float) -> float:
        """Longest plausible route (m) between the fixes ``a`` and ``f``."""
        dt = f.t - a.t
        slack = 3.0 * (a.sigma + f.sigma)
        detour = 2.0 * straight + self.p.max_detour_m
        return min(self.p.max_speed_mps * dt, detour) + slack

    def _transition(self, a: _Step, f: _Fix) -> np.ndarray:
        """(len(a.seg), len(f.seg)) log transition probabilities; -inf = impossible.

        The route between two candidates is the rest of ``a``'s segment, the network
        distance between their nodes and ``f``'s offset, or the move along one segment.
        With the odometer the route should be as long as the distance driven (on one
        segment the signed move is compared: jitter backwards while stopped costs its
        length, not zero); without it, as the straight line between the candidates'
        points (not the noisy fixes: a detour, loop or U-turn then costs its extra length,
        whatever the GPS noise). A U-turn costs ``uturn_penalty_m`` more. Computed by
        :func:`_log_transitions`.
        """
        net = self.net
        straight = float(np.hypot(f.x - a.x, f.y - a.y))
        limit = self._limit(a, f, straight)
        sa, sb = np.asarray(a.seg, np.int64), np.asarray(f.seg, np.int64)
        if math.isfinite(a.odo) and math.isfinite(f.odo):
            move, beta, gc = f.odo - a.odo, max(self.p.odo_beta_m, a.sigma, f.sigma), _NO_GC
        else:
            xa, ya = net.point_at(sa, a.off)
            xb, yb = net.point_at(sb, f.off)
            move, beta = np.nan, max(self.p.beta_m, a.sigma, f.sigma)
            gc = np.hypot(xb[None, :] - xa[:, None], yb[None, :] - ya[:, None])
        # float32: a log-probability needs no more, and the matcher's state (which holds
        # these matrices for the undecided window) halves; rounded when computed, so a
        # restored state and a running matcher see the same values
        oa, ob = np.asarray(a.off, float), np.asarray(f.off, float)
        args = (float(limit), self._tol(a.sigma, f.sigma), float(move), float(self.p.uturn_penalty_m),
                float(beta), gc)
        table = self.router.table(float(limit))
        if table is not None:
            # the usual case, fixes a second or two apart: the route table's lookup and
            # the matrix in one compiled call
            return _log_transitions_table(sa, oa, sb, ob, net.to_node, net.from_node, *table, net.length_m,
                                          net.reverse, *args)
        d = self.router.distances(net.to_node[sa], net.from_node[sb], limit)
        return _log_transitions(sa, oa, sb, ob, net.length_m, net.reverse, d, *args)

    def _emit(self, f: _Fix | _Step, seg: int = -1, off: float = np.nan,
              brk: bool = False, via: np.ndarray = _EMPTY_I) -> None:
        if self.odo_mode == 1 and seg < 0:
            self._hold(_Held(f.idx, f.t, -1, False))
            return
        self.out.append((f.idx, f.t, seg, off, brk, via))

    # ----------------------------------------------------------------- consumption
    def feed(self, fix: _Fix) -> None:
        """Consume one fix (and whatever it releases)."""
        queue = deque([fix])
        while queue:
            f = queue.popleft()
            again = self._step(f)
            queue.extendleft(reversed(again))
            self._decide()
            self._release(close=False)

    def _step(self, f: _Fix) -> list[_Fix]:
        """Add one fix; returns fixes to re-feed after a break."""
        if not self.active:
            if len(f.seg) == 0:
                self._emit(f)
                return []
            self.active = True
            step = _Step(f.idx, f.t, f.x, f.y, f.sigma, self.had_chain, f.seg, f.off, f.emis,
                         np.zeros((0, len(f.seg))), f.emis - f.emis.max(),
                         [0] * len(f.seg), odo=f.odo)
            self.had_chain = True
            self.window.append(step)
            return []
        front = self.window[-1] if self.window else self.anchor
        assert front is not None
        if f.t - front.t_last > self.p.max_gap_s:
            return self._break([*self.pending, f])
        if (self.odo_mode == 1 and len(f.seg) and not self.pending
                and f.odo - front.odo < self.p.stop_odo_m):
            if not self.window:
                # At the decided anchor's place: decided with it.
                front.t = f.t
                self._hold(_Held(f.idx, f.t, self.piece0 + len(self.piece_seg) - 1, False,
                                 self.piece_start[-1] + float(front.off[0]), f.odo, f.sigma))
                return []
            if len(front.followers) < self.p.max_stop_fixes:
                self._follow(front, f)
                return []
        if len(f.seg):
            trans = self._transition(front, f)
            back, score, reachable = _viterbi_column(front.score, trans, f.emis)
            if reachable:
                self.window.append(
                    _Step(f.idx, f.t, f.x, f.y, f.sigma, False, f.seg, f.off, f.emis, trans,
                          score, back.tolist(), [(p.idx, p.t) for p in self.pending], f.odo)
                )
                self.pending = []
                return []
        self.pending.append(f)
        if len(self.pending) > self.p.max_outlier_fixes:
            return self._break(self.pending)
        return []

    def _follow(self, s: _Step, f: _Fix) -> None:
        """Merge the fix ``f`` (at the same place) into the newest step ``s``."""
        # Emission of f for each of s's candidates: its own where it has the segment as a
        # candidate, else at most that of its farthest candidate (or of the search radius).
        radius = max(self.p.search_radius_m, 4.0 * f.sigma)
        floor = (float(f.emis.min()) if len(f.seg) >= self.p.max_candidates
                 else -0.5 * (radius / f.sigma) ** 2)
        extra = _follower_emission(s.seg, f.seg, f.emis, floor)
        s.emis = s.emis + extra
        s.score = s.score + extra
        s.score -= s.score.max()
        s.followers.append((f.idx, f.t, f.odo))

    def _break(self, refeed: list[_Fix]) -> list[_Fix]:
        """End the chain: decide everything on the best path; re-feed ``refeed``."""
        if self.window:
            self._commit(len(self.window) - 1, int(np.argmax(self.window[-1].score)))
        self.active = False
        self.anchor = None
        self.pending = []
        self._release(close=True)
        return list(refeed)

    def finish(self) -> None:
        """Flush: end the chain, re-feeding held-back fixes until none is left."""
        while self.window or self.pending:
            again = self._break(self.pending)
            for f in again:
                self.feed(f)
        self.active = False
        self.anchor = None
        self._release(close=True)

    # ----------------------------------------------------------------- decisions
    def _decide(self) -> None:
        W = self.window
        if not W:
            return
        # Convergence: all paths alive at the newest column share one candidate. (A few
        # columns of at most max_candidates: plain Python beats numpy's per-call cost.)
        alive = [c for c, v in enumerate(W[-1].score.tolist()) if math.isfinite(v)]
        conv = (len(W) - 1, alive[0]) if len(alive) == 1 else None
        j = len(W) - 1
        while conv is None and j > 0:
            back = W[j].back
            alive = sorted({back[c] for c in alive})
            j -= 1
            if len(alive) == 1:
                conv = (j, alive[0])
        if conv is not None:
            self._commit(*conv)
        # Lag: anything more than max_lag_fixes behind the newest fix is decided now.
        # Fixes merged into a step (stops) do not count.
        W = self.window
        n_old = 0
        merged = 0
        for s in reversed(W):
            merged += len(s.followers)
            if self.n_seen - 1 - s.idx - merged > self.p.max_lag_fixes:
                n_old += 1
        if n_old:
            path = self._backtrack(len(W) - 1, int(np.argmax(W[-1].score)))
            self._commit(n_old - 1, path[n_old - 1])

    def _backtrack(self, j: int, c: int) -> list[int]:
        """Candidate indices of the best path ending at column ``j``, candidate ``c``."""
        path = [c]
        for s in range(j, 0, -1):
            path.append(self.window[s].back[path[-1]])
        path.reverse()
        return path

    def _commit(self, j: int, c: int) -> None:
        """Decide columns ``0..j`` on the path ending at candidate ``c`` of column ``j``."""
        W = self.window
        path = self._backtrack(j, c)
        # the previous decided matched fix (the anchor, then each decided step), its
        # segment and offset: the anchor is built once, from the last one
        a = self.anchor
        a_seg, a_off = (int(a.seg[0]), float(a.off[0])) if a is not None else (-1, np.nan)
        for s, ci in zip(W[: j + 1], path):
            for idx, t in s.outliers:
                if self.odo_mode == 1:
                    self._hold(_Held(idx, t, -1, False))
                else:
                    self.out.append((idx, t, -1, np.nan, False, _EMPTY_I))
            seg, off = int(s.seg[ci]), float(s.off[ci])
            cont = a is not None and not s.brk
            same = cont and seg == a_seg and off >= a_off - self._tol(a.sigma, s.sigma)
            via = _EMPTY_I
            if cont and not same:
                straight = float(np.hypot(s.x - a.x, s.y - a.y))
                via = self.router.path(
                    int(self.net.to_node[a_seg]), int(self.net.from_node[seg]),
                    self._limit(a, s, straight),
                )
            if self.odo_mode == 1:
                self._extend_path(s, seg, off, cont, same, via)
                h = self.held[-1]
                for idx, t, odo in s.followers:
                    self._hold(_Held(idx, t, h.piece, False, h.s, odo, s.sigma))
            else:
                out_off = max(off, self.anchor_off_out) if same else off
                self._emit(s, seg, out_off, s.brk, via)
                self.anchor_off_out = out_off
            a, a_seg, a_off = s, seg, off
        self.anchor = self._single(a.idx, a.t, a.x, a.y, a.sigma, a_seg, a_off, a.odo)
        # Pin: later columns may only continue the decided path.
        rest = W[j + 1 :]
        self.window = rest
        prev = np.empty(len(W[j].seg))
        prev.fill(-np.inf)
        prev[c] = 0.0
        for s in rest:
            back, s.score, _ = _viterbi_column(prev, s.trans, s.emis)
            s.back = back.tolist()
            prev = s.score
        self._release(close=False)

    # ----------------------------------------------------------------- smoothing
    def _hold(self, h: _Held) -> None:
        self.held.append(h)
        self.n_own += h.own

    def _extend_path(self, s: _Step, seg: int, off: float, cont: bool, same: bool,
                     via: np.ndarray) -> None:
        """Append the decided fix ``s`` (on ``seg`` at ``off``) to the chain's path."""
        if not cont:
            # A new chain: the previous one was closed by the break.
            self.piece_seg, self.piece_start, self.piece0 = [seg], [0.0], 0
            self.hist_res, self.hist_sig, self.emitted, self.s_out = [], [], False, np.nan
        elif not same:
            base = self.piece_start[-1] + float(self.net.length_m[self.piece_seg[-1]])
            for v in (*via.tolist(), seg):
                self.piece_seg.append(int(v))
                self.piece_start.append(base)
                base += float(self.net.length_m[v])
        piece = self.piece0 + len(self.piece_seg) - 1
        self._hold(_Held(s.idx, s.t, piece, s.brk, self.piece_start[-1] + off, s.odo, s.sigma,
                         own=True))

    def _release(self, close: bool) -> None:
        """Emit the held fixes whose smoothing window is complete (all when ``close``)."""
        if self.odo_mode != 1:
            return
        ahead = self.p.smooth_ahead_fixes
        held = self.held
        n_own = self.n_own  # own fixes in held[k:]
        k = 0
        while k < len(held):
            h = held[k]
            if h.piece < 0:
                self.out.append((h.idx, h.t, -1, np.nan, False, _EMPTY_I))
                k += 1
                continue
            if n_own - h.own < ahead and not close:
                break
            n_own -= h.own
            later = [g for g in held[k + 1 :] if g.own][:ahead]
            self._emit_smoothed(h, later)
            k += 1
        if k:
            self.held = held[k:]
            self.n_own = n_own

    def _emit_smoothed(self, h: _Held, later: list[_Held]) -> None:
        """Emit the matched fix ``h`` at its odometer-consistent place on the path, given
        the next held fixes with their own projection (``later``, at most
        ``smooth_ahead_fixes``)."""
        p = self.p
        new = [h, *later] if h.own else later  # a stop's merged fixes repeat its place
        res = self.hist_res + [g.s - g.odo for g in new]
        sig = self.hist_sig + [g.sigma for g in new]
        c = _robust_offset(res, sig) if res else h.s - h.odo
        starts = self.piece_start
        end = starts[-1] + float(self.net.length_m[self.piece_seg[-1]])
        pos = min(max(h.odo + c, h.s - p.smooth_max_shift_m), h.s + p.smooth_max_shift_m)
        # The path is known from the last emitted fix (never go back past it) to the end
        # of the newest decided fix's segment.
        pos = min(max(pos, self.s_out if self.emitted else starts[0]), end)
        q = min(max(bisect.bisect_right(starts, pos) - 1, 0), len(starts) - 1)
        via = np.array(self.piece_seg[1:q], np.int64) if self.emitted else _EMPTY_I
        seg = self.piece_seg[q]
        self.out.append((h.idx, h.t, seg, pos - starts[q], h.brk, via))
        self.emitted = True
        self.s_out = pos
        del self.piece_seg[:q]
        del self.piece_start[:q]
        self.piece0 += q
        if h.own:
            self.hist_res.append(h.s - h.odo)
            self.hist_sig.append(h.sigma)
        drop = max(len(self.hist_res) - p.smooth_back_fixes, 0)
        del self.hist_res[:drop], self.hist_sig[:drop]

    def result(self) -> MatchResult:
        out = sorted(self.out, key=lambda r: r[0])
        if not out:
            return MatchResult.empty()
        idx, t, seg, off, brk, via = zip(*out)
        return MatchResult(
            np.array(t, float), np.array(idx, np.int64), np.array(seg, np.int64),
            np.array(off, float), np.array(brk, bool), tuple(via),
        )


# --------------------------------------------------------------------------- public API
def match_online(
    net: RoadNetwork,
    t_s: object,
    x_m: object,
    y_m: object,
    heading_deg: object = None,
    accuracy_m: object = None,
    *,
    state: MatchState | None = None,
    params: MatchParams = MatchParams(),
    final: bool = False,
    odometer_m: object = None,
) -> tuple[MatchResult, MatchState]:
    """Match the next chunk of one vehicle's fixes; decisions come with a bounded lag.

    Parameters
    ----------
    net : RoadNetwork
    t_s : (n,) float array
        Fix times, seconds, strictly increasing (also across calls).
    x_m, y_m : (n,) float arrays
        Fix positions, EPSG:2154 metres (``roadnet.to_metric``).
    heading_deg : (n,) float array, optional
        GPS course over ground, degrees clockwise from north; NaN where unknown.
    accuracy_m : (n,) float array, optional
        Horizontal accuracy (1 sigma), metres; NaN where unknown (then ``params.sigma_m``).
    state : MatchState, optional
        The state returned by the previous call for this vehicle; None to start.
    params : MatchParams
        Must be the same for all calls of one vehicle.
    final : bool
        True at the end of the trace: decide every pending fix.
    odometer_m : (n,) float array, optional
        Trip distance at each fix, metres (the speed signal integrated), non-decreasing
        (also across calls). Given in every call of a vehicle or in none. With it the
        transitions compare routes with the distance driven, and the decided fixes are
        placed along the path consistently with it (see the module notes).

    Returns
    -------
    result : MatchResult
        The fixes decided by this call (possibly from earlier calls), in time order.
    state : MatchState
        To pass to the next call.

    Raises
    ------
    ValueError
        On unequal lengths, non-increasing or non-finite ``t_s`` (also w.r.t. the state),
        non-finite ``x_m``/``y_m``, non-positive ``accuracy_m``, non-finite or decreasing
        ``odometer_m`` (also w.r.t. the state, or given in some calls only), or a state
        built on a different network.
    TypeError
        On non-numeric input.

    Examples
    --------
    >>> from roadnet import load_network
    >>> net = load_network()
    >>> x, y = net.point_at([10, 10, 10], [5.0, 15.0, 25.0])
    >>> r1, st = match_online(net, [0.0, 1.0], x[:2], y[:2])
    >>> r2, st = match_online(net, [2.0], x[2:], y[2:], state=st, final=True)
    >>> MatchResult.concat([r1, r2]).segment.tolist()
    [10, 10, 10]

    With the odometer, the fixes sit where the distance driven puts them:

    >>> r = match(net, [0.0, 1.0, 2.0], x, y, odometer_m=[0.0, 10.0, 20.0])
    >>> r.offset_m.round(1).tolist()
    [5.0, 15.0, 25.0]
    """
    t, x, y, hd, acc, odo = _validate(t_s, x_m, y_m, heading_deg, accuracy_m, odometer_m)
    live = None if state is None else state._live
    if live is not None:
        object.__setattr__(state, "_live", None)  # continued at most once
    if live is not None and live.net is net and live.p == params:
        # Continue the running matcher: its arrays snapshot would rebuild the same object
        # (tests/unit/test_passes.py checks round-tripped and live states agree).
        m = live
        m.out = []
    else:
        m = _Matcher(net, params, state)
    if len(t) and not t[0] > m.last_t:
        raise ValueError(f"t_s must be strictly increasing across calls: t_s[0]={t[0]!r} "
                         f"<= last time in state {m.last_t!r}")
    if len(t):
        mode = int(odometer_m is not None)
        if m.odo_mode >= 0 and mode != m.odo_mode:
            raise ValueError(
                "odometer_m must be given in every call of a vehicle or in none: the state "
                f"was built {'with' if m.odo_mode else 'without'} it"
            )
        if mode and not odo[0] >= m.last_odo:
            raise ValueError(f"odometer_m must be non-decreasing across calls: odometer_m[0]="
                             f"{odo[0]!r} < last odometer in state {m.last_odo!r}")
        m.odo_mode = mode
    # Candidates of the held-back fixes and of the new ones: one bulk query.
    pend = m.pending
    allx = np.concatenate([[f.x for f in pend], x])
    ally = np.concatenate([[f.y for f in pend], y])
    allh = np.concatenate([[f.heading for f in pend], hd])
    sig = np.where(np.isfinite(acc), acc, params.sigma_m)
    alls = np.concatenate([[f.sigma for f in pend], sig])
    ptr, seg, off, emis = _candidates(net, allx, ally, allh, alls, params)
    for k, f in enumerate(pend):
        sl = slice(ptr[k], ptr[k + 1])
        f.seg, f.off, f.emis = seg[sl], off[sl], emis[sl]
    base = len(pend)
    for i in range(len(t)):
        sl = slice(ptr[base + i], ptr[base + i + 1])
        f = _Fix(m.n_seen, float(t[i]), float(x[i]), float(y[i]), float(hd[i]), float(acc[i]),
                 float(alls[base + i]), seg[sl], off[sl], emis[sl], float(odo[i]))
        m.n_seen += 1
        m.last_t = f.t
        if m.odo_mode == 1:
            m.last_odo = f.odo
        m.feed(f)
    if final:
        m.finish()
    res = m.result()
    m.out = []
    return res, MatchState(m._dump(), _live=m)


def match(
    net: RoadNetwork,
    t_s: object,
    x_m: object,
    y_m: object,
    heading_deg: object = None,
    accuracy_m: object = None,
    *,
    params: MatchParams = MatchParams(),
    odometer_m: object = None,
) -> MatchResult:
    """Match a whole trace (offline); equals :func:`match_online` in any chunking.

    Parameters and errors as in :func:`match_online` (without ``state`` and ``final``).

    Returns
    -------
    MatchResult
        One row per input fix, in time order.

    Examples
    --------
    >>> from roadnet import load_network
    >>> net = load_network()
    >>> x, y = net.point_at([10, 10, 10], [5.0, 15.0, 25.0])
    >>> r = match(net, [0.0, 1.0, 2.0], x + 3.0, y)
    >>> r.segment.tolist(), r.break_before.tolist()
    ([10, 10, 10], [False, False, False])
    """
    return match_online(net, t_s, x_m, y_m, heading_deg, accuracy_m, params=params, final=True,
                        odometer_m=odometer_m)[0]


_NO_GC = np.zeros((0, 0))


def compile_kernels(net: RoadNetwork) -> None:
    """Compile the matcher's numba kernels for ``net``'s arrays now, or load them from
    numba's cache (a cold compile takes a few seconds): see
    :func:`agents.passes.compile_kernels`."""
    one_i, one_f = np.zeros(1, np.int64), np.zeros(1)
    # through the router's own path: its route table is built now too, not on a first frame
    router = Router.of(net)
    d = router.distances(one_i, one_i, 1.0)
    trans = _log_transitions(one_i, one_f, one_i, one_f, net.length_m, net.reverse, d, 1.0, 1.0, 0.0, 1.0, 1.0,
                             _NO_GC)
    table = router.table(1.0)
    if table is not None:
        _log_transitions_table(one_i, one_f, one_i, one_f, net.to_node, net.from_node, *table, net.length_m,
                               net.reverse, 1.0, 1.0, 0.0, 1.0, 1.0, _NO_GC)
    _viterbi_column(one_f, trans, one_f)
    net.heading_at(one_i, one_f)  # roadnet's interpolation kernel, for the candidates' headings


@numba.njit(cache=True, error_model="numpy")
def _log_transitions(sa, oa, sb, ob, length_m, reverse, d, limit, tol, move, pen, beta, gc):  # noqa: ANN001
    """float32 (p, q) log transition probabilities between candidates ``(sa, oa)`` and
    ``(sb, ob)`` (segments, offsets in m), given the node distances ``d`` (m): the NumPy
    formulation it replaced (about twenty array calls per pair of fixes) as one loop, the
    same values to the bit (``tests/unit/test_map_matching.py``). ``gc`` (p, q) is the
    straight line between the candidates' points, used when ``gc`` is not empty (no
    odometer); otherwise the route is compared with the odometer's ``move``."""
    p, q = sa.size, sb.size
    odo = gc.shape[0] == 0
    out = np.empty((p, q), np.float32)
    for i in range(p):
        rest = length_m[sa[i]] - oa[i]
        for j in range(q):
            if sa[i] == sb[j] and ob[j] >= oa[i] - tol:  # forward on one segment
                route = ob[j] - oa[i]
                if not odo and route < 0.0:
                    route = 0.0
            else:
                route = rest + d[i, j] + ob[j]
            turn = pen * (1.0 if reverse[sa[i]] == sb[j] else 0.0)
            dev = abs(route - (move if odo else gc[i, j])) + turn
            out[i, j] = -dev / beta if route <= limit else -np.inf
    return out


@numba.njit(cache=True, error_model="numpy")
def _log_transitions_table(sa, oa, sb, ob, to_node, from_node, keys, dist, n_nodes, length_m, reverse, limit, tol,
                           move, pen, beta, gc):  # noqa: ANN001
    """:func:`_log_transitions` with the node distances looked up in the router's pair
    table (``Router.table``: keys ``src * n_nodes + dst``, sorted) in the same call."""
    d = _table_distances(to_node[sa], from_node[sb], keys, dist, n_nodes, limit)
    return _log_transitions(sa, oa, sb, ob, length_m, reverse, d, limit, tol, move, pen, beta, gc)


@numba.njit(cache=True, error_model="numpy")
def _viterbi_column(prev, trans, emis):  # noqa: ANN001
    """One Viterbi step: ``(back, score, reachable)`` of a new column from the previous
    column's scores ``prev`` (p,), the log transitions ``trans`` (p, q) and the new
    candidates' emissions ``emis`` (q,). ``back[j]`` is the best previous candidate of
    candidate ``j``, ``score`` is its path score plus emission, less the column's maximum;
    ``reachable`` is False when no path reaches any candidate. The NumPy formulation it
    replaced (``tot = prev[:, None] + trans``, ``argmax`` over axis 0, the maximum
    subtracted: six array calls per fix) as one loop, the same values to the bit, NaN
    included (``tests/unit/test_map_matching.py``)."""
    p, q = trans.shape
    back = np.zeros(q, np.int64)
    score = np.empty(q)
    reachable = False
    for j in range(q):
        # np.argmax: the first maximum, or the first NaN if there is one
        b, best = 0, prev[0] + np.float64(trans[0, j])
        if not np.isnan(best):
            for i in range(1, p):
                v = prev[i] + np.float64(trans[i, j])
                if np.isnan(v):
                    b, best = i, v
                    break
                if v > best:
                    b, best = i, v
        back[j] = b
        reachable = reachable or np.isfinite(best)
        score[j] = best + emis[j]
    top = score[0]  # np.max: NaN if there is one
    for j in range(1, q):
        if np.isnan(top):
            break
        if np.isnan(score[j]) or score[j] > top:
            top = score[j]
    for j in range(q):
        score[j] -= top
    return back, score, reachable
