"""agents.passes: per-vehicle processing, chunk invariance, privacy trim, duplicates."""

from __future__ import annotations

import numpy as np
import pytest

import dataclasses
import json
import struct

from agents.passes import PassParams, StateVersionError, VehicleState, nominal_rate_hz, process_frame
from roadnet import load_network, to_wgs84
from schemas.frame import Frame, FrameArrays


@pytest.fixture(scope="module")
def net():
    return load_network()


def _drive(net, *, seed=0, fs=100.0, fix_hz=1.0, sigma_m=3.0, speed_kmh=40.0, min_len_m=2500.0):
    """A constant-speed drive along a real route, with its true segment sequence."""
    rng = np.random.default_rng(seed)
    big = np.flatnonzero(net.length_m > 50)
    while True:
        a, b = rng.choice(big, 2, replace=False)
        route = net.route(int(net.to_node[a]), int(net.from_node[b]))
        segs = [int(a), *route, int(b)]
        if net.length_m[segs].sum() >= min_len_m:
            break
    lengths = net.length_m[segs]
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    v = speed_kmh / 3.6
    t = 1.7e9 + np.arange(0.0, cum[-1] / v, 1.0 / fs)
    s = (t - t[0]) * v
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(segs) - 1)
    x, y = net.point_at(np.asarray(segs)[k], s - cum[k])
    az = 9.81 + 0.3 * rng.standard_normal(t.size)
    ax = 0.05 * rng.standard_normal(t.size)
    ay = 0.05 * rng.standard_normal(t.size)
    step = int(round(fs / fix_hz))
    fi = np.arange(0, t.size, step)
    fx = x[fi] + sigma_m * rng.standard_normal(fi.size)
    fy = y[fi] + sigma_m * rng.standard_normal(fi.size)
    lon, lat = to_wgs84(fx, fy)
    trace = dict(t=t, v=np.full(t.size, speed_kmh), ax=ax, ay=ay, az=az, ft=t[fi], lat=lat, lon=lon)
    return trace, segs


def _frames(tr, frame_s):
    t = tr["t"]
    k = np.floor((t - t[0]) / frame_s).astype(int)
    kf = np.floor((tr["ft"] - t[0]) / frame_s).astype(int)
    out = []
    last = k[-1]
    for seq, j in enumerate(np.unique(k)):
        m = k == j
        mf = kf == j
        out.append(FrameArrays.from_model(Frame(
            schema_version=1, vehicle_id="VF1TEST0000000001", seq=seq, trip_end=bool(j == last),
            t_s=t[m].tolist(), speed_kmh=tr["v"][m].tolist(), accel_long_mps2=tr["ax"][m].tolist(),
            accel_lat_mps2=tr["ay"][m].tolist(), accel_vert_mps2=tr["az"][m].tolist(),
            fix_t_s=tr["ft"][mf].tolist(), fix_lat_deg=tr["lat"][mf].tolist(), fix_lon_deg=tr["lon"][mf].tolist(),
        )))
    return out


def _run(net, frames, params=PassParams(), *, live=False):
    """Process the frames; the state goes through bytes between frames unless ``live``
    (then the objects of one frame continue in the next, as a worker's cache does)."""
    st = None
    passes, events = [], []
    for f in frames:
        if live:
            res = process_frame(st, f, net, vehicle="p" * 32, params=params)
            st = res.state
        else:
            res = process_frame(None if st is None else VehicleState.from_bytes(st), f, net, vehicle="p" * 32,
                                params=params)
            st = res.state.to_bytes()
        passes += res.passes
        events += res.events
    return passes, events


class TestNominalRate:
    @pytest.mark.parametrize("fs", [5, 10, 20, 25, 50, 100, 200])
    def test_snaps(self, fs):
        t = np.arange(0, 2, 1 / fs) + np.random.default_rng(1).normal(0, 1e-4, int(2 * fs))
        assert nominal_rate_hz(np.sort(t)) == fs

    def test_odd_rate_kept(self):
        assert nominal_rate_hz(np.arange(0, 2, 1 / 33.0)) == pytest.approx(33.0)


class TestProcessFrame:
    def test_passes_follow_the_true_route(self, net):
        tr, segs = _drive(net, seed=3)
        passes, _ = _run(net, _frames(tr, 2.0))
        assert passes, "no pass emitted"
        got = [net.index_of(p.segment_id) for p in passes]
        on_route = np.array([g in segs for g in got])
        covered_m = np.array([p.covered_m for p in passes])
        # Nearly all the distance is on the true route (seen: one 4.6 m piece of a U-turn
        # loop the matcher put on a 4.7 m junction segment), and in route order.
        assert covered_m[on_route].sum() / covered_m.sum() > 0.99
        pos = [segs.index(g) for g in got if g in segs]
        assert pos == sorted(pos)
        # the privacy trim removes about 300 m at each end; everything between is there
        covered = sum(p.covered_m for p in passes)
        total = net.length_m[segs].sum()
        assert covered > total - 2 * 300 - 2 * max(net.length_m[segs[0]], net.length_m[segs[-1]]) - 200
        assert all(p.vehicle == "p" * 32 for p in passes)
        assert all(p.iri_m_per_km is None or p.iri_m_per_km >= 0 for p in passes)

    def test_same_output_for_any_framing(self, net):
        tr, _ = _drive(net, seed=5)
        ref = _run(net, _frames(tr, 2.0))
        for fs in (0.5, 1.0, 5.0):
            got = _run(net, _frames(tr, fs))
            assert [p.model_dump() for p in got[0]] == [p.model_dump() for p in ref[0]], f"frame_s={fs}"
            assert got[1] == ref[1]

    @pytest.mark.parametrize("frame_s", [1.0, 5.0])
    def test_live_state_equals_decoded_state(self, net, frame_s):
        # A worker continues its decoded objects (the matcher included) from one frame to
        # the next; decoding the bytes every frame must give exactly the same records.
        tr, _ = _drive(net, seed=7)
        frames = _frames(tr, frame_s)
        live = _run(net, frames, live=True)
        decoded = _run(net, frames)
        assert len(live[0]) > 5
        assert [p.model_dump() for p in live[0]] == [p.model_dump() for p in decoded[0]]
        assert live[1] == decoded[1]

    def test_a_state_object_continued_twice_gives_the_same_result(self, net):
        # The live matcher is taken by the first continuation; a second one from the
        # same (older) state object must rebuild it from the snapshot, not reuse it.
        tr, _ = _drive(net, seed=7)
        frames = _frames(tr, 2.0)
        st = None
        for f in frames[:15]:
            st = process_frame(st, f, net, vehicle="p" * 32).state
        snapshot = st.to_bytes()
        first = process_frame(st, frames[15], net, vehicle="p" * 32)
        again = process_frame(VehicleState.from_bytes(snapshot), frames[15], net, vehicle="p" * 32)
        assert first.state.to_bytes() == again.state.to_bytes()

    def test_privacy_trim_drops_trip_ends(self, net):
        tr, _ = _drive(net, seed=3)
        frames = _frames(tr, 2.0)
        trimmed, _ = _run(net, frames, PassParams(trim_m=300.0))
        untrimmed, _ = _run(net, frames, PassParams(trim_m=0.0))
        assert len(untrimmed) > len(trimmed)
        t0, t1 = tr["t"][0], tr["t"][-1]
        # no trimmed pass starts within 300 m (at 40 km/h: 27 s) of either end
        for p in trimmed:
            assert p.entry_time.timestamp() - t0 > 300 / (40 / 3.6) - 1
            assert t1 - p.exit_time.timestamp() > 300 / (40 / 3.6) - 1

    def test_replayed_frame_is_a_noop(self, net):
        tr, _ = _drive(net, seed=3)
        frames = _frames(tr, 2.0)
        st = None
        for f in frames[:20]:
            st = process_frame(st, f, net, vehicle="p" * 32).state
        again = process_frame(st, frames[10], net, vehicle="p" * 32)
        assert again.duplicate and again.passes == [] and again.state is st

    def test_state_is_small(self, net):
        tr, _ = _drive(net, seed=3)
        st = None
        sizes = []
        for f in _frames(tr, 2.0):
            st = process_frame(st, f, net, vehicle="p" * 32).state
            sizes.append(len(st.to_bytes()))
        # Measured (state v8, before the table's zstd): mean 13.2 KB, max 19.9 KB, most of it
        # the matcher's window and the 0.2 s blocks awaiting its decision (v7: 27 / 47 KB).
        assert max(sizes) < 30_000, max(sizes)


class TestLiveStateMemory:
    def test_a_live_state_holds_no_view_of_a_frame(self, net):
        # A worker caches live states (pipeline.stage1); an array sliced from a frame's
        # column kept the whole column alive: 558 KB per vehicle at 60 s frames against
        # 65 KB since. Every buffer the state's arrays keep must be about their own size.
        tr, _ = _drive(net, seed=5)
        st = None
        for f in _frames(tr, 60.0)[:-1]:
            st = process_frame(st, f, net, vehicle="p" * 32).state
            own, bases = 0, {}
            for a in _arrays(st).values():
                b = a
                while isinstance(b.base, np.ndarray):
                    b = b.base
                own += a.nbytes
                bases[id(b)] = b.nbytes
            assert sum(bases.values()) <= 1.5 * own + 4096, (sum(bases.values()), own)


def _arrays(st: VehicleState) -> dict:
    """Every array of a state (nested ones by path), for bit-for-bit comparisons."""
    out = {}
    for f in dataclasses.fields(st):
        v = getattr(st, f.name)
        if isinstance(v, np.ndarray):
            out[f.name] = v
        elif isinstance(v, dict) and f.name in ("tail", "blk"):
            out.update({f"{f.name}.{k}": a for k, a in v.items()})
    if st.impact is not None:
        out.update({f"impact.{k}": a for k, a in st.impact.parts()[1].items()})
    return out


def _mid_trip(net, *, decimal: bool) -> VehicleState:
    """A state 40 s into a drive, its times on the 10 ms grid (as a frame's JSON gives them,
    the simulator's) or 33 us off it."""
    tr, _ = _drive(net, seed=7)
    if decimal:
        tr["t"], tr["ft"] = np.round(tr["t"] * 100) / 100, np.round(tr["ft"] * 100) / 100
    else:
        tr["t"], tr["ft"] = tr["t"] + 1e-4 / 3, tr["ft"] + 1e-4 / 3
    st = None
    for f in _frames(tr, 1.0)[:40]:
        st = process_frame(st, f, net, vehicle="p" * 32).state
    assert st.blk and st.impact is not None and st.recent_t.size
    return st


@pytest.fixture(scope="module")
def mid_trip(net):
    return {decimal: _mid_trip(net, decimal=decimal) for decimal in (True, False)}


class TestStateBytes:
    def test_every_column_has_a_codec(self):
        from agents import passes

        for codec, cols in ((passes._BLK_CODEC, passes._BLK), (passes._TAIL_CODEC, passes._TAIL)):
            flat = [c for k in codec for c in (k if isinstance(k, tuple) else (k,))]
            assert sorted(flat) == sorted(cols)

    @pytest.mark.parametrize("decimal", [True, False])
    def test_round_trip_is_bit_for_bit(self, mid_trip, decimal):
        st = mid_trip[decimal]
        raw = st.to_bytes()
        back = VehicleState.from_bytes(raw)
        want, got = _arrays(st), _arrays(back)
        assert want.keys() == got.keys()
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), k
        assert back.match == st.match and back.to_bytes() == raw

    def test_decimal_times_are_stored_smaller(self, mid_trip):
        # The same drive with times on the 10 ms grid (decimal codec) and off it (raw bytes)
        on, off = mid_trip[True], mid_trip[False]
        assert on.blk["t0"].size == off.blk["t0"].size
        assert len(on.to_bytes()) < len(off.to_bytes()) - 4 * on.blk["t0"].size

    def test_values_off_every_grid_survive(self, net):
        st = _mid_trip(net, decimal=True)  # modified below: not the shared one
        st.recent_t = st.recent_t + 1e-7  # not decimal any more
        st.recent_d[0] = np.nan
        st.blk["t0"][-1] = np.inf
        st.fix_index = st.fix_index[::-1].copy()  # not monotone
        back = VehicleState.from_bytes(st.to_bytes())
        for k, a in _arrays(st).items():
            assert _arrays(back)[k].tobytes() == a.tobytes(), k

    def test_block_sums_keep_16_significant_bits(self, mid_trip):
        from agents import passes

        st = mid_trip[True]
        for k in passes._BLK_ROUNDED:
            assert st.blk[k].dtype == np.float32 and not (st.blk[k].view(np.uint32) & 0xFF).any(), k

    def test_the_cleared_byte_costs_nothing_stored(self, mid_trip):
        # What the table stores: the state record compressed in its envelope. Refilling the
        # sums' cleared low byte with noise (what full float32 sums hold) must cost about
        # one byte per value; that is what the rounding saves.
        from agents import passes
        from pipeline.stage1 import pack_envelope

        st = mid_trip[True]
        noisy = VehicleState.from_bytes(st.to_bytes())
        rng = np.random.default_rng(0)
        n = 0
        for k in passes._BLK_ROUNDED:
            u = noisy.blk[k].view(np.uint32)
            u |= rng.integers(0, 256, u.size, dtype=np.uint32)
            n += u.size
        saved = len(pack_envelope(noisy.to_bytes(), [])) - len(pack_envelope(st.to_bytes(), []))
        assert saved > 0.8 * n, (saved, n)

    @pytest.mark.parametrize("magic, version", [(b"RSV7", 7), (b"RSV8", 7), (b"RSV8", 9)])
    def test_other_versions_are_refused(self, mid_trip, magic, version):
        raw = mid_trip[True].to_bytes()
        other = magic + struct.pack("<H", version) + raw[6:]
        with pytest.raises(StateVersionError):
            VehicleState.from_bytes(other)

    def test_truncated_state_is_an_error(self, mid_trip):
        raw = mid_trip[True].to_bytes()
        with pytest.raises(ValueError):
            VehicleState.from_bytes(raw[:-3])
        with pytest.raises(ValueError, match="trailing"):
            VehicleState.from_bytes(raw + b"\x00")


class TestRecentPositions:
    def _state(self):
        from agents.passes import VehicleState

        st = VehicleState()
        st.recent_t = np.arange(0.0, 60.0, 0.2)
        n = st.recent_t.size
        st.recent_seg = np.full(n, 3, np.int32)
        st.recent_off = np.zeros(n, np.float32)
        st.recent_d = st.recent_t * 10.0
        st.recent_v = np.full(n, 36.0, np.float32)
        st.frontier_t_s = 60.0
        return st

    def test_positions_older_than_the_history_are_forgotten(self):
        from agents.passes import _trim_recent

        st = self._state()
        _trim_recent(st, PassParams(event_history_s=15.0))
        assert st.recent_t[0] >= 45.0 - 1e-9 and st.recent_d.size == st.recent_t.size

    def test_positions_an_unplaced_event_or_impact_needs_are_kept(self):
        # The decided fixes jumped 30 s past an event detected earlier: its positions must
        # still be there when it is placed (they were dropped: ~4 % of events lost).
        from agents.passes import _trim_recent

        st = self._state()
        st.unplaced_events = [["harsh_brake", 25.0, 1.0, -4.0]]
        _trim_recent(st, PassParams(event_history_s=15.0))
        assert st.recent_t[0] <= 25.0 - 0.2
        st = self._state()
        st.unplaced_impacts = [{"t_s": 31.0, "offset_m": 310.0}]
        _trim_recent(st, PassParams(event_history_s=15.0))
        assert st.recent_t[0] <= 31.0 - 0.2 + 1e-9 and st.recent_t[-1] > 59.7


    def test_a_stored_state_keeps_only_what_is_still_waiting(self, net):
        # 60 s frames of simulated vehicles (impacts and harsh events): once a frame's
        # events and impacts are placed, the positions kept reach back no further than the
        # history or what still waits. They used to be trimmed before this frame's events
        # and impacts were placed, which kept up to a frame's length of positions (10,288 B
        # per vehicle at 60 s frames against 9,954 B after; docs/benchmarks.md).
        from agents.passes import BLOCK_S
        from schemas.tracefile import iter_frames
        from simulator import simulate_fleet

        params = PassParams()
        fleet = simulate_fleet(net, n_vehicles=4, seed=3, trip_km=(1.5, 2.0), departure_spread_s=0, fs_hz=100.0)
        checked = 0
        for vid, tr in fleet.traces.items():
            st = None
            for f in iter_frames(tr, vid, frame_s=60.0):
                res = process_frame(st, FrameArrays.from_model(f), net, vehicle="p" * 32, params=params)
                st = res.state
                if f.trip_end or not st.recent_t.size:
                    continue
                waiting = [e[1] for e in st.unplaced_events] + [i["t_s"] for i in st.unplaced_impacts]
                cut = min([st.frontier_t_s - params.event_history_s, *(t - 2 * BLOCK_S for t in waiting)])
                assert st.recent_t[0] >= cut - 1e-9, (vid, f.seq)
                checked += 1
        assert checked >= 8


def test_roughness_windows_start_after_the_entry_skip():
    """A pass's 10 m roughness windows start ENTRY_SKIP_M after its entry: blocks whose
    middle is in the first 3 m (the rear axle still on the previous segment) are in no
    window, the others are counted from there."""
    from types import SimpleNamespace

    from agents.passes import _place_chain
    from agents.roughness import ENTRY_SKIP_M

    n = 12  # 2 m blocks: middles at 1, 3, 5, ... m
    ones = np.ones(n)
    blk = {"t0": np.arange(n) * 0.2, "dt": np.full(n, 0.2), "d0": np.arange(n) * 2.0, "dd": np.full(n, 2.0),
           "n": 20 * ones, "nm": 20 * ones, "sq": np.where(np.arange(n) == 0, 1e3, 1.0), "siv": ones,
           "sv": 200 * ones, "sy2": ones, "syn2": ones, "my": ones}  # fmt: skip
    blk = {k: v.astype(np.float64 if k in ("t0", "d0") else np.float32) for k, v in blk.items()}
    st = VehicleState(blk=blk)
    net = SimpleNamespace(length_m=np.array([24.0]))
    # two fixes on segment 0, 24 m apart: the blocks are placed at their trip distance
    _place_chain(st, [(0.0, 0.0, 0, 0.0), (2.4, 24.0, 0, 24.0)], [np.zeros(0, np.int64)], net, [])
    win = np.asarray(st.open_pass["win"])  # rows: sq, nm, siv, sv, n
    assert ENTRY_SKIP_M == 3.0
    # block 0 (middle 1 m) is out; blocks 1-6 (starts 2-12 m, middles 3-13 m) in window 0
    # ([3, 13) m, block 1 by its middle), blocks 7-11 (starts 14-22 m) in window 1
    np.testing.assert_allclose(win[0], [6.0, 5.0])
    np.testing.assert_allclose(win[1], [120.0, 100.0])
    assert st.open_pass["sq"] == pytest.approx(1e3 + 11)  # the pass's totals keep every block


# ----------------------------------------------------------------- batched placement
# The placement as it was before it placed a whole chain of fixes at once (one call per
# pair of consecutive fixes), kept as the reference the batched one must equal bit for bit.
import agents.passes as P  # noqa: E402
from agents.roughness import ENTRY_SKIP_M, WINDOW_M  # noqa: E402

_SUMS, _WIN = P._SUMS, P._WIN


def _ref_place(st: VehicleState, res, net) -> None:
    """Place buffered samples along the path between consecutive decided fixes."""
    if len(res.t_s) == 0:
        return
    k = np.searchsorted(st.fix_index, res.fix_index)
    res_d = st.fix_dist_m[np.clip(k, 0, len(st.fix_dist_m) - 1)]
    last_decided = int(res.fix_index[-1])
    keep = st.fix_index > last_decided
    st.fix_index, st.fix_dist_m = st.fix_index[keep], st.fix_dist_m[keep]

    recent: list[tuple] = []
    for j in range(len(res.t_s)):
        seg = int(res.segment[j])
        if seg < 0:
            continue
        fix = (float(res.t_s[j]), float(res_d[j]), seg, float(res.offset_m[j]))
        if st.anchor is None or bool(res.break_before[j]):
            # Samples before the first fix of a chain cannot be placed: drop them.
            P._drop_until(st, fix[0])
            P._close_open(st)
            st.anchor = fix
            continue
        _ref_place_between(st, st.anchor, fix, np.asarray(res.via[j], np.int64), net, recent)
        st.anchor = fix
    if recent:
        # recent placed positions, to place harsh events (by time) and impacts (by distance)
        t0, seg0, off0, d0, v0 = zip(*recent)
        st.recent_t = np.concatenate([st.recent_t, *t0])
        st.recent_seg = np.concatenate([st.recent_seg, *seg0])
        st.recent_off = np.concatenate([st.recent_off, *off0])
        st.recent_d = np.concatenate([st.recent_d, *d0])
        st.recent_v = np.concatenate([st.recent_v, *v0])



def _ref_place_between(st: VehicleState, a: tuple, b: tuple, via: np.ndarray, net, recent: list) -> None:
    ta, da, sa, oa = a
    tb, db, sb, ob = b
    if not st.blk:
        return
    n = int(np.searchsorted(st.blk["t0"], tb, side="left"))
    if n == 0:
        return
    blk = P._take_blocks(st, n)

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

    def locate(d: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Position along the path: proportional to distance driven (speed integral) when
        # the vehicle moved, else to time.
        if db - da > 0.5:
            p = (d - da) / (db - da) * total
        else:
            p = (t - ta) / max(tb - ta, 1e-9) * total
        p = np.clip(p, 0.0, total)
        idx = np.clip(np.searchsorted(cum, p, side="right") - 1, 0, len(segs) - 1)
        return segs[idx], starts[idx] + (p - cum[idx])

    seg0, off0 = locate(blk["d0"], blk["t0"])
    seg1, off1 = locate(blk["d0"] + blk["dd"], blk["t0"] + blk["dt"])
    _ref_accumulate(st, blk, seg0, off0, seg1, off1, net, recent)


_SUMS = ("n", "nm", "sq", "siv", "sv", "sy2", "syn2")
_WIN = (2, 1, 3, 4, 0)  # rows of _SUMS summed per 10 m window: sq, nm, siv, sv, n


def _ref_accumulate(st, blk, seg0, off0, seg1, off1, net, recent: list) -> None:
    """Fold placed blocks into passes; runs of one segment are one pass."""
    n = seg0.size
    starts = np.concatenate([[0], np.flatnonzero(seg0[1:] != seg0[:-1]) + 1])
    ends = np.append(starts[1:], n)
    sums = np.array([blk[k] for k in _SUMS], dtype=np.float64)
    run_sums = np.add.reduceat(sums, starts, axis=1).T.tolist()
    run_max = np.maximum.reduceat(blk["my"], starts).tolist()
    for r, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        sg = int(seg0[s])
        op = st.open_pass
        if op is None or op["seg"] != sg:
            P._close_open(st)
            st.open_pass = op = P._new_pass(sg, float(blk["t0"][s]), float(off0[s]), float(blk["d0"][s]))
        for k, x in zip(_SUMS, run_sums[r]):
            op[k] += x
        op["my"] = max(op["my"], float(run_max[r]))
        # 10 m windows of the roughness estimate, counted from ENTRY_SKIP_M after the pass's
        # entry; a block whose middle is before that is in no window (the rear axle was
        # still on the previous segment)
        rel = blk["d0"][s:e] - op["entry_d"] - ENTRY_SKIP_M
        inside = (rel + 0.5 * blk["dd"][s:e] >= 0.0).astype(np.float64)
        w = np.floor(np.maximum(rel, 0.0) / WINDOW_M).astype(np.int64)
        old = len(op["win"][0])
        size = max(int(w.max()) + 1, old)
        wts = (sums[_WIN, s:e] * inside).ravel()
        cur = np.bincount((w + size * np.arange(5)[:, None]).ravel(), weights=wts,
                          minlength=5 * size).reshape(5, size)
        if old:
            cur[:, :old] += op["win"]
        op["win"] = cur.tolist()
        last = e - 1
        op["exit_t"], op["exit_d"] = float(blk["t0"][last] + blk["dt"][last]), float(blk["d0"][last] + blk["dd"][last])
        op["exit_off"] = float(off1[last]) if int(seg1[last]) == sg else float(net.length_m[sg])
    st.frontier_t_s, st.frontier_d_m = float(blk["t0"][-1] + blk["dt"][-1]), float(blk["d0"][-1] + blk["dd"][-1])
    recent.append((blk["t0"], seg0.astype(np.int32), off0.astype(np.float32), blk["d0"],
                   (3.6 * blk["sv"] / np.maximum(blk["n"], 1)).astype(np.float32)))



def _frames_cut(trace, vid, rng):
    """A trace's frames cut at random (frames of 0.3 to 70 s, a new length each time)."""
    from schemas.tracefile import frames_of

    out = frames_of(trace, vid, frame_s=float(rng.choice([0.3, 0.7, 2.0, 3.3, 10.0, 13.7, 30.0, 70.0])))
    return [FrameArrays.from_model(f) for f in out]


def _spoil_gps(tr, rng):
    """The trace with a 90 s GPS gap and a few outliers (300 m off; one run of five):
    route breaks and unmatched fixes."""
    ft = tr.fix_t_s
    keep = np.ones(ft.size, bool)
    t_gap = ft[0] + rng.uniform(0.3, 0.6) * (ft[-1] - ft[0])
    keep[(ft >= t_gap) & (ft < t_gap + 90.0)] = False
    lat = tr.fix_lat_deg.copy()
    for i, n in zip(rng.choice(np.arange(5, ft.size - 10), 4, replace=False), (1, 2, 1, 5)):
        lat[i : i + n] += 0.003
    sel = lambda a: None if a is None else a[keep]  # noqa: E731
    return dataclasses.replace(tr, fix_t_s=ft[keep], fix_lat_deg=lat[keep], fix_lon_deg=tr.fix_lon_deg[keep],
                               fix_heading_deg=sel(tr.fix_heading_deg), fix_accuracy_m=sel(tr.fix_accuracy_m))


def _trace_outputs(net, frames, params, place, rng):
    """(passes, events, impacts, state bytes) after each frame, with ``place`` as the
    placement; the state goes through bytes or continues as an object, at random."""
    saved = P._place
    P._place = place
    try:
        st, out = None, []
        for f in frames:
            if st is not None and rng.random() < 0.5:
                st = VehicleState.from_bytes(st.to_bytes())
            res = process_frame(st, f, net, vehicle="p" * 32, params=params)
            st = res.state
            out.append((repr(res.passes), repr(res.events), repr(res.impacts), st.to_bytes()))
        return out
    finally:
        P._place = saved


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batched_placement_equals_pairwise_bit_for_bit(net, seed):
    """Placing a chain of fixes at once gives the very bytes the placement one pair of
    fixes at a time gave: passes, events, impacts and the vehicle state after every frame,
    over simulated trips (stops, harsh brakes, GPS dropouts), random framings, both
    matcher intervals, GPS gaps and outliers (route breaks, unmatched fixes)."""
    from simulator import simulate_fleet

    rng = np.random.default_rng(seed)
    fleet = simulate_fleet(net, n_vehicles=3, seed=100 + seed, trip_km=(1.0, 1.5), departure_spread_s=60,
                           gps_sigma_m=[4.0, 4.0, 15.0][seed - 1], gps_dropouts_per_h=20.0, stop_prob=0.5)
    n_passes = 0
    for vid, tr in fleet.traces.items():
        for params, spoil in ((PassParams(), False), (PassParams(match_interval_s=0.0), False), (PassParams(), True)):
            frames = _frames_cut(_spoil_gps(tr, rng) if spoil else tr, vid, rng)
            order = int(rng.integers(1 << 30))
            ref = _trace_outputs(net, frames, params, _ref_place, np.random.default_rng(order))
            got = _trace_outputs(net, frames, params, P._place, np.random.default_rng(order))
            for i, (a, b) in enumerate(zip(ref, got, strict=True)):
                assert a == b, f"{vid} frame {i}: {[x == y for x, y in zip(a, b)]}"
            n_passes += sum(r[0].count("SegmentPass(") for r in ref)
    assert n_passes > 20


@pytest.mark.parametrize("seed", range(6))
def test_batched_placement_groups_float_sums_as_pairwise(seed):
    """The same bytes on synthetic blocks whose sums span 12 decades (so that any other
    grouping of the float sums would show), with stops, route breaks, unmatched fixes and
    short segments, the decided fixes handed over in random groups as frames do."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    length = rng.uniform(3.0, 150.0, 60)
    cum = np.concatenate([[0.0], np.cumsum(length)])
    t_blk = np.arange(0.0, 400.0, 0.2)
    v = np.repeat(rng.choice([0.0, 0.2, 5.0, 15.0, 30.0], 40), 50)[: t_blk.size]  # m/s, 10 s each
    pos = np.concatenate([[0.0], np.cumsum(v[:-1] * 0.2)])
    pos *= cum[-1] * 0.999 / pos[-1]
    wide = lambda: (10.0 ** rng.uniform(-6, 6, t_blk.size)).astype(np.float32)  # noqa: E731
    blk = {"t0": t_blk, "dt": np.full(t_blk.size, 0.19, np.float32), "d0": pos,
           "dd": (np.append(pos[1:], pos[-1]) - pos).astype(np.float32) * np.float32(0.95),
           "n": np.full(t_blk.size, 20.0, np.float32), "nm": rng.integers(0, 21, t_blk.size).astype(np.float32),
           "sq": wide(), "siv": wide(), "sv": wide(), "sy2": wide(), "syn2": wide(), "my": wide()}  # fmt: skip
    t_fix = np.arange(0.0, 400.0, 2.0) + 0.1
    s_fix = np.interp(t_fix, t_blk, pos)
    seg = np.searchsorted(cum, s_fix, side="right") - 1
    off = s_fix - cum[seg]
    seg[rng.random(seg.size) < 0.05] = -1
    brk = rng.random(seg.size) < 0.03
    via, prev = [], None
    for j, sg in enumerate(seg.tolist()):
        ok = sg >= 0 and prev is not None and not brk[j]
        via.append(np.arange(prev + 1, sg) if ok else np.zeros(0, np.int64))
        prev = sg if sg >= 0 else prev
    net = SimpleNamespace(length_m=length)
    cuts = np.sort(rng.choice(np.arange(1, seg.size), 25, replace=False))

    def run(place):
        st = VehicleState(blk={k: x.copy() for k, x in blk.items()}, fs_hz=100.0)
        st.fix_index, st.fix_dist_m = np.arange(seg.size), s_fix
        out = []
        for a, b in zip([0, *cuts], [*cuts, seg.size]):
            res = SimpleNamespace(t_s=t_fix[a:b], fix_index=np.arange(a, b), segment=seg[a:b], offset_m=off[a:b],
                                  break_before=brk[a:b], via=via[a:b])
            place(st, res, net)
            out.append(st.to_bytes())
        return out

    assert run(P._place) == run(_ref_place)


def test_compile_kernels_leaves_nothing_for_the_first_frames():
    # a worker compiles stage 1's kernels before its first frame; then a drive through
    # process_frame (state through bytes, so restored states too) must need no kernel of
    # other argument types. In a fresh interpreter: this one's other tests compile them.
    import subprocess
    import sys
    from pathlib import Path

    code = """
import json
from agents import _arraycodec, _placement, _routes, _whitening, map_matching, passes, potholes
from roadnet import _network
from roadnet import load_network
from tests.unit.test_passes import _drive, _frames, _run

net = load_network()
# the kernels called from Python (the ones they call are compiled into them)
kernels = [_whitening._whiten_kernel, potholes._block_sigma_kernel, potholes._block_medians,
           potholes._trailing_max, map_matching._log_transitions, map_matching._log_transitions_table,
           map_matching._viterbi_column,
           _network._interpolate,
           _routes._table_distances, _arraycodec._int_payload_kernel, _arraycodec._float_int_payload_kernel,
           _arraycodec._scaled_payload_kernel, _placement.place_blocks]
passes.compile_kernels(net)
before = [len(k.signatures) for k in kernels]
tr, _ = _drive(net, seed=11, min_len_m=1500.0)
found, _ = _run(net, _frames(tr, 10.0))
print(json.dumps([before, [len(k.signatures) for k in kernels], len(found)]))
"""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    before, after, n_passes = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(before) and after == before and n_passes > 0


class TestRoundMantissa:
    def test_relative_error_and_cleared_byte(self):
        from agents.passes import _round_mantissa

        x = np.random.default_rng(1).lognormal(0.0, 8.0, 100_000).astype(np.float32)
        x[::2] *= -1
        r = _round_mantissa(x)
        assert r.dtype == np.float32 and not (r.view(np.uint32) & 0xFF).any()
        rel = np.abs(r.astype(np.float64) / x.astype(np.float64) - 1.0)
        assert rel.max() <= 2.0**-16 and rel.max() > 2.0**-17  # nearest, not truncated

    def test_ties_go_to_even_and_carries_reach_the_exponent(self):
        from agents.passes import _round_mantissa

        one = np.float32(1.0).view(np.uint32)
        u = np.array([one + 0x80, one + 0x180, one + 0x7F, 0x3FFFFFFF], np.uint32)  # last: just under 2
        got = _round_mantissa(u.view(np.float32)).view(np.uint32)
        assert got.tolist() == [one, one + 0x200, one, 0x40000000]

    def test_non_finite_values_are_kept(self):
        from agents.passes import _round_mantissa

        x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], np.float32)
        nan_payload = np.array([0x7F800001], np.uint32).view(np.float32)  # rounding would make it inf
        got = _round_mantissa(np.concatenate([x, nan_payload]))
        assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2]) and np.isnan(got[5])
        assert got[3:5].view(np.uint32).tolist() == [0, 0x80000000]
