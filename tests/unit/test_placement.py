"""agents._placement (the compiled core of agents.passes._place_chain) against the NumPy
form it replaced, kept here as the oracle: the same state bytes, passes and placed
positions, bit for bit, on random chains and their edge cases."""

from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace

import numpy as np
import pytest

import agents.passes as P
from agents.passes import VehicleState
from agents.roughness import ENTRY_SKIP_M, WINDOW_M


def _numpy_place_chain(st: VehicleState, fixes: list, vias: list, net, recent: list) -> None:
    """Place the buffered blocks along an unbroken chain of decided fixes (t s, trip
    distance m, segment, offset m; the anchor first) and fold them into passes.

    Interval k (fixes k..k+1) takes the blocks starting before fix k+1 that earlier
    intervals did not take, and locates them along its path (segment, start offset, end
    offset) in proportion to the distance driven, or to time when the vehicle moved
    <= 0.5 m. All intervals are done at once, but every float sum is grouped as one
    interval at a time would group it (see the comments), so the result does not depend
    on how fixes fall into frames.
    """
    if len(fixes) < 2 or not st.blk:
        return
    ta, da, _, _ = (np.array(c) for c in zip(*fixes[:-1]))
    tb, db, _, _ = (np.array(c) for c in zip(*fixes[1:]))
    n_k = np.maximum.accumulate(np.searchsorted(st.blk["t0"], tb, side="left"))
    if n_k[-1] == 0:
        return
    blk = P._take_blocks(st, int(n_k[-1]))
    iv = np.searchsorted(n_k, np.arange(n_k[-1]), side="right")  # interval of each block

    # the paths as pieces (segment, start offset, end offset), flat over the intervals;
    # cum (one more entry per interval) holds each interval's cumulative piece lengths
    psg: list[int] = []
    pst: list[float] = []
    cum: list[float] = []
    p0, total = [], []
    for (_, _, sa, oa), (_, _, sb, ob), via in zip(fixes[:-1], fixes[1:], vias):
        if sa == sb and via.size == 0:
            sg, s0, s1 = [sa], [oa], [max(ob, oa)]
        else:
            sg = [sa, *via.tolist(), sb]
            s0 = [oa] + [0.0] * (via.size + 1)
            s1 = [max(float(net.length_m[sa]), oa), *net.length_m[via].tolist(), ob]
        p0.append(len(psg))
        psg += sg
        pst += s0
        c = [0.0, *itertools.accumulate([e - s for s, e in zip(s0, s1)])]  # as np.cumsum
        cum += c
        total.append(c[-1])
    psg_a, pst_a, cum_a = np.array(psg, np.int64), np.array(pst), np.array(cum)
    p0_a, total_a = np.array(p0), np.array(total)
    c0 = p0_a + np.arange(len(p0))  # first cum entry of each interval
    last = np.append(p0_a[1:], len(psg)) - p0_a - 1  # last piece of each interval (local)
    # interval index as the real part: one searchsorted finds the piece within each
    # interval (complex numbers sort by real part, then imaginary part)
    key = np.empty(cum_a.size, complex)
    key.real, key.imag = np.repeat(np.arange(len(p0)), last + 2), cum_a
    moved = db - da > 0.5
    den_d = np.where(moved, db - da, 1.0)[iv]
    den_t = np.maximum(tb - ta, 1e-9)[iv]
    tot, moved, ta, da = total_a[iv], moved[iv], ta[iv], da[iv]

    def locate(d: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.where(moved, (d - da) / den_d * tot, (t - ta) / den_t * tot)
        p = np.clip(p, 0.0, tot)
        q = np.empty(p.size, complex)
        q.real, q.imag = iv, p
        i = np.clip(np.searchsorted(key, q, side="right") - c0[iv] - 1, 0, last[iv])
        return psg_a[p0_a[iv] + i], pst_a[p0_a[iv] + i] + (p - cum_a[c0[iv] + i])

    seg0, off0 = locate(blk["d0"], blk["t0"])
    seg1, off1 = locate(blk["d0"] + blk["dd"], blk["t0"] + blk["dt"])

    # Runs: blocks of one segment within one interval. Each run's sums (reduceat:
    # pairwise for long runs) and windows (bincount) cover exactly the blocks they cover
    # per interval, and are added to the pass in the same order.
    n = seg0.size
    starts = np.concatenate([[0], np.flatnonzero((seg0[1:] != seg0[:-1]) | (iv[1:] != iv[:-1])) + 1])
    ends = np.append(starts[1:], n)
    sums = np.array([blk[k] for k in P._SUMS], dtype=np.float64)
    run_sums = np.add.reduceat(sums, starts, axis=1).T.tolist()
    run_max = np.maximum.reduceat(blk["my"], starts).tolist()
    run_seg = seg0[starts]
    op = st.open_pass
    first = np.append(True, run_seg[1:] != run_seg[:-1])  # the run opens a pass
    cont = op is not None and op["seg"] == int(run_seg[0])  # the first run continues op
    pid = np.cumsum(first) - 1
    entry_d = blk["d0"][starts[first]]
    if cont:
        entry_d[0] = op["entry_d"]
    rb = np.repeat(np.arange(starts.size), ends - starts)  # run of each block

    # 10 m windows of the roughness estimate, counted from ENTRY_SKIP_M after the pass's
    # entry; a block whose middle is before that is in no window (the rear axle was still
    # on the previous segment)
    rel = blk["d0"] - entry_d[pid[rb]] - ENTRY_SKIP_M
    inside = (rel + 0.5 * blk["dd"] >= 0.0).astype(np.float64)
    w = np.floor(np.maximum(rel, 0.0) / WINDOW_M).astype(np.int64)
    wlo, whi = np.minimum.reduceat(w, starts), np.maximum.reduceat(w, starts)
    span = whi - wlo + 1
    base = np.concatenate([[0], np.cumsum(5 * span)[:-1]])
    # per run and row, the windows wlo..whi, each summed from 0 in block order as one
    # bincount per run does
    part = np.bincount((base[rb] + np.arange(5)[:, None] * span[rb] + (w - wlo[rb])).ravel(),
                       weights=(sums[P._WIN, :] * inside).ravel(), minlength=int(base[-1] + 5 * span[-1]))
    # then added to the pass's windows run after run (bincount adds in index order, from
    # 0: old windows first; no partial sum is -0.0, so 0.0 + x == x)
    size = np.maximum.reduceat(whi + 1, np.flatnonzero(first))
    old = len(op["win"][0]) if cont else 0
    size[0] = max(size[0], old)
    pbase = np.concatenate([[0], np.cumsum(5 * size)[:-1]])
    rr = np.repeat(np.arange(starts.size), 5 * span)
    o = np.arange(part.size) - base[rr]
    row = o // span[rr]
    tgt = pbase[pid[rr]] + row * size[pid[rr]] + wlo[rr] + (o - row * span[rr])
    old_tgt = (np.arange(5)[:, None] * size[0] + np.arange(old)).ravel()
    old_w = np.asarray(op["win"], np.float64).ravel() if old else np.zeros(0)
    win = np.bincount(np.concatenate([old_tgt, tgt]), weights=np.concatenate([old_w, part]),
                      minlength=int(pbase[-1] + 5 * size[-1])).tolist()
    wins = [[win[b + r * s : b + (r + 1) * s] for r in range(5)] for b, s in zip(pbase.tolist(), size.tolist())]

    t_end, d_end = blk["t0"] + blk["dt"], blk["d0"] + blk["dd"]
    for r, (s, e, sg, p) in enumerate(zip(starts.tolist(), ends.tolist(), run_seg.tolist(), pid.tolist())):
        op = st.open_pass
        if op is None or op["seg"] != sg:
            P._close_open(st)
            st.open_pass = op = P._new_pass(sg, float(blk["t0"][s]), float(off0[s]), float(blk["d0"][s]))
        for k, x in zip(P._SUMS, run_sums[r]):
            op[k] += x
        op["my"] = max(op["my"], float(run_max[r]))
        op["win"] = wins[p]
        op["exit_t"], op["exit_d"] = float(t_end[e - 1]), float(d_end[e - 1])
        op["exit_off"] = float(off1[e - 1]) if int(seg1[e - 1]) == sg else float(net.length_m[sg])
    st.frontier_t_s, st.frontier_d_m = float(t_end[-1]), float(d_end[-1])
    recent.append((blk["t0"], seg0.astype(np.int32), off0.astype(np.float32), blk["d0"],
                   (3.6 * blk["sv"] / np.maximum(blk["n"], 1)).astype(np.float32)))



def _chain(rng: np.random.Generator, kind: str):
    """(state, fixes, vias, net) of a random chain; ``kind`` picks an edge case."""
    n_seg = 12
    length = rng.uniform(2.0, 80.0, n_seg)
    if kind == "zero_length_via":
        length[rng.choice(n_seg, 3, replace=False)] = 0.0
    n_fix = 2 if kind in ("one_interval", "one_block") else int(rng.integers(2, 12))
    t_fix = np.cumsum(rng.uniform(0.5, 3.0, n_fix)) + 5.0
    d_fix = np.cumsum(rng.uniform(0.0, 30.0, n_fix))
    if kind == "stopped":
        d_fix[:] = d_fix[0] + rng.uniform(0.0, 0.5, n_fix).cumsum() / n_fix  # moved <= 0.5 m
    seg = np.sort(rng.integers(0, n_seg, n_fix))
    if kind == "one_segment":
        seg[:] = seg[0]
    off = np.array([rng.uniform(0.0, length[s]) for s in seg])
    if kind == "backwards":
        off[1:] = off[:-1] * rng.uniform(0.0, 1.0, n_fix - 1)  # ob < oa on one segment: empty path
        seg[:] = seg[0]
    fixes = [(float(t), float(d), int(s), float(o)) for t, d, s, o in zip(t_fix, d_fix, seg, off)]
    vias = []
    for a, b in zip(seg[:-1], seg[1:]):
        via = np.arange(a + 1, b, dtype=np.int64)
        if a == b and rng.random() < 0.2:
            via = np.array([(a + 1) % n_seg, a], np.int64)  # a loop back onto the segment
        vias.append(via)
    # blocks from a little before the anchor (placed before it: clipped) to after the
    # last fix (left for later), 0.2 s apart, with the odometer between the fixes'
    n_blk = 1 if kind == "one_block" else int(rng.integers(1, 200))
    t0 = t_fix[0] - 0.3 + 0.2 * np.arange(n_blk) * (t_fix[-1] - t_fix[0] + 1.0) / max(n_blk * 0.2, 1e-9)
    d0 = np.interp(t0, t_fix, d_fix) + rng.choice([0.0, -0.1, 0.1], n_blk)
    wide = lambda: (10.0 ** rng.uniform(-6, 6, n_blk)).astype(np.float32)  # noqa: E731
    blk = {"t0": t0, "dt": np.full(n_blk, 0.19, np.float32),
           "d0": d0, "dd": rng.uniform(0.0, 3.0, n_blk).astype(np.float32),
           "n": np.full(n_blk, 20.0, np.float32), "nm": rng.integers(0, 21, n_blk).astype(np.float32),
           "sq": wide(), "siv": wide(), "sv": wide(), "sy2": wide(), "syn2": wide(), "my": wide()}  # fmt: skip
    st = VehicleState(blk=blk, fs_hz=100.0)
    if kind == "open_pass" or rng.random() < 0.3:
        w = int(rng.integers(0, 4))
        same = kind == "open_pass" or rng.random() < 0.7
        st.open_pass = {
            "seg": int(seg[0]) if same else int((seg[0] + 1) % n_seg), "entry_t": float(t_fix[0] - 5.0),
            "entry_off": 0.0, "entry_d": float(d_fix[0] - rng.uniform(0.0, 40.0)), "n": 100.0, "nm": 80.0, "sq": 1.5,
            "siv": 2.0, "sv": 500.0, "sy2": 3.0, "syn2": 0.1, "my": 2.5, "n_events": 0,
            "win": rng.uniform(0.0, 50.0, (5, w)).tolist(), "exit_t": fixes[0][0], "exit_d": fixes[0][1],
            "exit_off": fixes[0][3],
        }
    return st, fixes, vias, SimpleNamespace(length_m=length)


_KINDS = ("random", "one_interval", "one_block", "stopped", "one_segment", "backwards", "zero_length_via",
          "open_pass")


@pytest.mark.parametrize("kind", _KINDS)
def test_compiled_placement_equals_numpy_form(kind):
    rng = np.random.default_rng(list(_KINDS).index(kind))
    for _ in range(60):
        st, fixes, vias, net = _chain(rng, kind)
        got_st, ref_st = copy.deepcopy(st), copy.deepcopy(st)
        got, ref = [], []
        P._place_chain(got_st, fixes, vias, net, got)
        _numpy_place_chain(ref_st, fixes, vias, net, ref)
        assert got_st.to_bytes() == ref_st.to_bytes()
        assert repr((got_st.open_pass, got_st.pending_passes)) == repr((ref_st.open_pass, ref_st.pending_passes))
        assert (got_st.frontier_t_s, got_st.frontier_d_m) == (ref_st.frontier_t_s, ref_st.frontier_d_m)
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            for x, y in zip(a, b, strict=True):
                assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
