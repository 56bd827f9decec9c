"""Locating a chain's blocks along its matched path, and their 10 m window sums.

The compiled core of :func:`agents.passes._place_chain`. Per chain of decided fixes it
builds the path of each interval (fix k to k+1) as pieces (segment, start offset, end
offset), places each block's start and end on it, cuts the blocks into runs (one segment
within one interval) and sums the runs' blocks into the 10 m windows of their passes.

It was some eighty NumPy calls on arrays of a few to a few hundred elements per chain
(about 1 ms of a 30 s frame). Every float operation is the one the NumPy form did, on the
same operands in the same order (a window's sum starts from 0.0 and adds, block after
block and then run after run, as ``np.bincount`` did; the clip is ``np.clip``'s), so
the results are the same to the bit: ``tests/unit/test_passes.py`` keeps the NumPy form
as the oracle. The runs' totals stay with ``np.add.reduceat`` in the caller (its
pairwise summation is NumPy's to define).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["place_blocks", "compile_kernels"]


@numba.njit(cache=True, error_model="numpy")
def _position(d: float, t: float, da: float, ta: float, den_d: float, den_t: float, moved: bool, tot: float,
              cum: np.ndarray, c0: int, last: int) -> tuple[int, float]:
    """(piece index within the interval, distance along the path m) of trip distance
    ``d`` m at time ``t`` s."""
    p = (d - da) / den_d * tot if moved else (t - ta) / den_t * tot
    if not np.isnan(p):  # np.clip: NaN passes, max then min by plain comparisons
        p = p if p > 0.0 else 0.0
        p = p if p < tot else tot
    # np.searchsorted(cum, p, side="right") - 1 within the interval, clipped
    n_le = 0
    for j in range(c0, c0 + last + 2):
        if cum[j] <= p:
            n_le += 1
    return min(max(n_le - 1, 0), last), p


@numba.njit(cache=True, error_model="numpy")
def place_blocks(
    n_k: np.ndarray, fix_t: np.ndarray, fix_d: np.ndarray, fix_seg: np.ndarray, fix_off: np.ndarray,
    via: np.ndarray, via_ptr: np.ndarray, length_m: np.ndarray, t0: np.ndarray, dt: np.ndarray, d0: np.ndarray,
    dd: np.ndarray, sums: np.ndarray, win_rows: np.ndarray, op_seg: int, op_entry_d: float, old_win: np.ndarray,
    entry_skip_m: float, window_m: float,
):
    """Place the blocks of one chain of fixes and sum their windows.

    Parameters
    ----------
    n_k : (K,) int64
        Blocks taken by intervals 0..k (non-decreasing; ``n_k[-1]`` blocks in all).
    fix_t, fix_d, fix_seg, fix_off : (K + 1,)
        The fixes: time s, trip distance m, segment, offset m.
    via, via_ptr : int64
        The segments driven between fix k and k+1 are ``via[via_ptr[k]:via_ptr[k + 1]]``.
    length_m : (n_segments,) float64
        Segment lengths, m.
    t0, dt, d0, dd : (n,)
        Blocks' start time s, time span s, start trip distance m, distance span m.
    sums : (7, n) float64
        Blocks' sums (rows of ``passes._SUMS``); ``win_rows`` the 5 summed per window.
    op_seg, op_entry_d, old_win :
        The open pass's segment (-1: none), entry trip distance m and windows (5, w).

    Returns
    -------
    seg0, off0, seg1, off1 : (n,)
        Segment and offset m of each block's start and end.
    starts : (R,) int64
        First block of each run.
    run_pass : (R,) int64
        Pass of each run (0: the first run's, which continues the open pass when it is on
        its segment).
    run_edges : (6, R) float64
        Per run: entry time s, entry offset m, entry trip distance m (of its first
        block), exit time s, exit trip distance m, exit offset m (of its last block; the
        segment's length when that block ends on another segment).
    win, win_base, win_size :
        Windows of pass p: rows ``win[win_base[p] + r * win_size[p] :][:win_size[p]]``
        for r = 0..4.
    """
    n_int = n_k.size
    n = n_k[n_int - 1]
    # the paths as pieces, flat over the intervals; interval k's pieces start at p0[k],
    # its cumulative piece lengths (one more entry) at c0 = p0[k] + k
    n_pieces = 0
    for k in range(n_int):
        nv = via_ptr[k + 1] - via_ptr[k]
        n_pieces += 1 if fix_seg[k] == fix_seg[k + 1] and nv == 0 else nv + 2
    psg = np.empty(n_pieces, np.int64)
    pst = np.empty(n_pieces)
    cum = np.empty(n_pieces + n_int)
    p0 = np.empty(n_int + 1, np.int64)
    q = 0
    for k in range(n_int):
        sa, oa, sb, ob = fix_seg[k], fix_off[k], fix_seg[k + 1], fix_off[k + 1]
        v0, v1 = via_ptr[k], via_ptr[k + 1]
        p0[k] = q
        c = q + k
        psg[q], pst[q] = sa, oa
        if sa == sb and v1 == v0:
            cum[c], cum[c + 1] = 0.0, (oa if oa > ob else ob) - oa  # Python's max(ob, oa)
            q += 1
            continue
        la = length_m[sa]
        cum[c], cum[c + 1] = 0.0, (oa if oa > la else la) - oa  # accumulate: the first as it is
        for j in range(v0, v1):
            q += 1
            psg[q], pst[q] = via[j], 0.0
            cum[q + k + 1] = cum[q + k] + (length_m[via[j]] - 0.0)
        q += 1
        psg[q], pst[q] = sb, 0.0
        cum[q + k + 1] = cum[q + k] + (ob - 0.0)
        q += 1
    p0[n_int] = q

    seg0 = np.empty(n, np.int64)
    off0 = np.empty(n)
    seg1 = np.empty(n, np.int64)
    off1 = np.empty(n)
    starts = np.empty(n, np.int64)
    n_runs = 0
    b = 0
    for k in range(n_int):
        ta, da, tb, db = fix_t[k], fix_d[k], fix_t[k + 1], fix_d[k + 1]
        moved = db - da > 0.5
        den_d = db - da if moved else 1.0
        den_t = tb - ta
        den_t = den_t if den_t >= 1e-9 or np.isnan(den_t) else 1e-9  # np.maximum(., 1e-9)
        c0 = p0[k] + k
        last = p0[k + 1] - p0[k] - 1
        tot = cum[c0 + last + 1]
        first = b
        while b < n_k[k]:
            i, p = _position(d0[b], t0[b], da, ta, den_d, den_t, moved, tot, cum, c0, last)
            seg0[b], off0[b] = psg[p0[k] + i], pst[p0[k] + i] + (p - cum[c0 + i])
            i, p = _position(d0[b] + dd[b], t0[b] + dt[b], da, ta, den_d, den_t, moved, tot, cum, c0, last)
            seg1[b], off1[b] = psg[p0[k] + i], pst[p0[k] + i] + (p - cum[c0 + i])
            if b == first or seg0[b] != seg0[b - 1]:  # a run: one segment within one interval
                starts[n_runs] = b
                n_runs += 1
            b += 1
    starts = starts[:n_runs]

    # passes: runs of one segment, the first continuing the open pass on its segment
    run_pass = np.empty(n_runs, np.int64)
    run_edges = np.empty((6, n_runs))
    entry_d = np.empty(n_runs)  # per pass
    wlo = np.empty(n_runs, np.int64)
    whi = np.empty(n_runs, np.int64)
    size = np.zeros(n_runs, np.int64)
    w = np.empty(n, np.int64)
    inside = np.empty(n)
    cont = op_seg >= 0 and op_seg == seg0[0]
    old = old_win.shape[1] if cont else 0
    n_pass = 0
    for r in range(n_runs):
        s = starts[r]
        e = starts[r + 1] if r + 1 < n_runs else n
        sg = seg0[s]
        if r == 0 or sg != seg0[starts[r - 1]]:
            entry_d[n_pass] = op_entry_d if r == 0 and cont else d0[s]
            n_pass += 1
        p = n_pass - 1
        run_pass[r] = p
        run_edges[0, r], run_edges[1, r], run_edges[2, r] = t0[s], off0[s], d0[s]
        run_edges[3, r], run_edges[4, r] = t0[e - 1] + dt[e - 1], d0[e - 1] + dd[e - 1]
        run_edges[5, r] = off1[e - 1] if seg1[e - 1] == sg else length_m[sg]
        # 10 m windows counted from entry_skip_m after the pass's entry; a block whose
        # middle is before that is in no window
        lo, hi = np.int64(0), np.int64(0)
        for j in range(s, e):
            rel = d0[j] - entry_d[p] - entry_skip_m
            inside[j] = 1.0 if rel + np.float32(0.5) * dd[j] >= 0.0 else 0.0
            w[j] = np.int64(np.floor((rel if rel >= 0.0 or np.isnan(rel) else 0.0) / window_m))  # np.maximum
            lo, hi = (w[j], w[j]) if j == s else (min(lo, w[j]), max(hi, w[j]))
        wlo[r], whi[r] = lo, hi
        size[p] = max(size[p], hi + 1)
    if old:
        size[0] = max(size[0], old)
    win_base = np.empty(n_pass, np.int64)
    tot_size = 0
    for p in range(n_pass):
        win_base[p] = tot_size
        tot_size += 5 * size[p]
    win = np.zeros(tot_size)
    for row in range(5):
        for x in range(old):
            win[row * size[0] + x] += old_win[row, x]
    part = np.empty(0)
    for r in range(n_runs):
        s = starts[r]
        e = starts[r + 1] if r + 1 < n_runs else n
        p = run_pass[r]
        span = whi[r] - wlo[r] + 1
        for row in range(5):
            # the run's windows, each summed from 0.0 in block order, then added to the pass's
            part = np.zeros(span)
            src = win_rows[row]
            for j in range(s, e):
                part[w[j] - wlo[r]] += sums[src, j] * inside[j]
            out = win_base[p] + row * size[p] + wlo[r]
            for x in range(span):
                win[out + x] += part[x]
    return seg0, off0, seg1, off1, starts, run_pass, run_edges, win, win_base, size[:n_pass]


def compile_kernels() -> None:
    """Compile the kernel for the arrays a vehicle state holds (float32 spans, float64
    starts and sums), or load it from numba's cache: see :func:`agents.passes.compile_kernels`."""
    f8, i8 = np.float64, np.int64
    one = np.ones(2, np.float32)
    place_blocks(np.array([2], i8), np.array([0.0, 1.0]), np.array([0.0, 10.0]), np.array([0, 0], i8),
                 np.array([0.0, 10.0]), np.zeros(0, i8), np.zeros(2, i8), np.array([20.0]), np.array([0.0, 0.5]),
                 one, np.array([0.0, 5.0]), one, np.ones((7, 2)), np.arange(5, dtype=i8), 0, 0.0,
                 np.zeros((5, 1), f8), 3.0, 10.0)
