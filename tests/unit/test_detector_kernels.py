"""The pothole detector's compiled kernels (``agents._whitening``, the block scale of
``agents.potholes``) give the NumPy formulation's values to the bit. The oracles below are
that code as it was written in NumPy before it was compiled (fifteenth session), kept here
unchanged but for their names and the constants they read."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, signal

from agents import _whitening
from agents.potholes import (
    AXLE_SPACING_M,
    LOBE_FRACTION,
    _block_medians,
    _block_sigma,
    _first_lobe,
    _partner,
    _peaks,
    _sort_small,
    _trailing_max,
)


# ---------------------------------------------------------------- the NumPy formulation
def numpy_lpc(r: np.ndarray, white: float) -> np.ndarray:
    """Linear-predictor coefficients from autocorrelations ``r[..., 0..p]`` (Levinson-Durbin,
    over the last axis: one predictor per row)."""
    r = np.asarray(r, float)
    rows = r.reshape(-1, r.shape[-1])
    m, p = rows.shape[0], rows.shape[1] - 1
    a = np.zeros((m, p))
    err = rows[:, 0] * (1.0 + white)
    active = rows[:, 0] > 0
    masked = not active.all()
    for i in range(p):
        num = rows[:, i + 1] - (a[:, :i] * rows[:, i:0:-1]).sum(axis=1)
        if masked:
            k = np.divide(num, err, out=np.zeros(m), where=active)
            ok = active & (np.abs(k) < 1.0)
        else:  # every row still valid: the same values without the masked divide
            k = num / err
            ok = np.abs(k) < 1.0
        # |k| >= 1: not a valid autocorrelation (numerically); that row keeps its lower order
        upd = a[:, :i] - k[:, None] * a[:, i - 1 :: -1] if i else a[:, :0]
        if ok.all():
            # the usual case (the white-noise correction keeps |k| < 1): plain assignments,
            # the masked ones below were most of the time
            a[:, :i] = upd
            a[:, i] = k
            err = err * (1.0 - k * k)
        else:
            a[ok, :i] = upd[ok]
            a[ok, i] = k[ok]
            err = np.where(ok, err * (1.0 - k * k), err)
        active = ok & (err > 0)
        masked = not active.all()
    return a.reshape(r.shape[:-1] + (p,))


def numpy_whiten(
    y_all: np.ndarray, i0: int, n_new: int, r: np.ndarray, last: int, blk: int, p: int, lam: float, white: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Prediction error of the last ``n_new`` samples of ``y_all`` (absolute index of
    ``y_all[0]``: ``i0``; the samples before it, if any are needed, are taken as 0), each
    predicted from its ``p`` previous samples with the coefficients of the autocorrelation
    ``r`` of the complete blocks before its own (``r`` folds blocks up to ``last``,
    exponentially forgotten by ``lam`` per block). Returns (e, r, last) after folding every
    complete block. The tail keeps the open block and ``p`` samples before it, so any
    framing gives the same residual (each block's sums are computed alone)."""
    n_all = y_all.size
    first = i0 + n_all - n_new  # absolute index of the first new sample
    b0 = first // blk
    if r.size != p + 1 or last != b0 - 1:
        # fresh stream, or a gap: start the statistics at the first new sample's block
        r, last = np.zeros(p + 1), b0 - 1
    if n_new == 0:
        return np.zeros(0), r, last
    base = min(i0, b0 * blk) - p  # absolute index of yb[0]
    yb = np.concatenate([np.zeros(i0 - base), y_all])
    n_fold = (i0 + n_all) // blk - b0  # complete blocks b0 .. b0 + n_fold - 1
    hist = np.empty((n_fold + 1, p + 1))  # hist[j]: folded up to block b0 + j - 1
    hist[0] = r
    if n_fold:
        # each complete block with the p samples before it, gathered once (lag l of block
        # sample i is win[:, p + i - l])
        starts = (b0 + np.arange(n_fold)) * blk - base
        win = np.lib.stride_tricks.sliding_window_view(yb, blk + p)[starts - p]
        x = win[:, p:]
        lags = np.stack([(x * win[:, p - l : p - l + blk]).sum(axis=1) for l in range(p + 1)], axis=1)
        # hist[j + 1] = lam * hist[j] + lags[j], block after block (lfilter runs that
        # recursion in C with the same two operations per step)
        hist[1:], _ = signal.lfilter([1.0], [1.0, -lam], lags, axis=0, zi=(lam * r)[None, :])
    n_blk = (i0 + n_all - 1) // blk - b0 + 1  # blocks holding new samples
    coef = numpy_lpc(hist[:n_blk], white)
    s = np.arange(first, i0 + n_all)
    a = coef[s // blk - b0]
    j0 = first - base  # the new samples are yb[j0:], their lag l is yb[j0 - l: yb.size - l]
    pred = np.zeros(n_new)
    for l in range(p):
        pred += a[:, l] * yb[j0 - 1 - l : yb.size - 1 - l]
    return yb[j0:] - pred, hist[n_fold], b0 - 1 + n_fold


def numpy_block_sigma(
    b: np.ndarray, meds: np.ndarray, k0: int, k_past: int, k_ahead: int, final: bool, onset_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    waiting = np.zeros(b.shape, bool)
    last_b = k0 + meds.size - 1
    # every distinct block of the call at once (one median per block was a third of the
    # detector's time): past windows of k_past medians, later windows padded with +inf
    # one entry per run of equal block numbers (b is in sample order, so these are its
    # distinct blocks; any order gives the same result), without np.unique's sort
    new_b = np.empty(b.shape, bool)
    new_b[:1] = True
    np.not_equal(b[1:], b[:-1], out=new_b[1:])
    ub = b[new_b]
    inv = np.cumsum(new_b) - 1
    has_past = ub - k_past >= k0
    j = ub - k0  # index of the block in meds (may be past the end: not complete yet)
    s = np.full(ub.shape, np.nan)
    if has_past.any() and meds.size >= k_past:
        win = np.lib.stride_tricks.sliding_window_view(meds, k_past)  # win[i] = meds[i:i + k_past]
        s[has_past] = np.median(win[j[has_past] - k_past], axis=1)
    if k_ahead:
        wait_b = has_past & (ub + k_ahead > last_b) & (not final)
        padded = np.concatenate([meds, np.full(k_ahead + 1, np.inf)])
        idx = np.clip(j, -1, meds.size)[:, None] + 1 + np.arange(k_ahead)[None, :]
        ahead = padded[np.clip(idx, 0, padded.size - 1)]  # (n_blocks, k_ahead), +inf where absent
        n_in = np.isfinite(ahead).sum(axis=1)
        lo = ahead.min(axis=1)
        if k_ahead >= 3:  # onset of a rougher road (>= 3 later blocks in): the second smallest
            onset = (onset_ratio > 0) & (n_in >= 3) & (lo >= onset_ratio * s)
            lo = np.where(onset, np.partition(ahead, 1, axis=1)[:, 1], lo)
        s = np.where(n_in > 0, np.fmax(s, lo), s)
        s[~has_past] = np.nan
        s[wait_b] = np.nan
        waiting = wait_b[inv]
    sig = 1.4826 * s[inv]
    return sig, waiting


def loop_trailing_max(x: np.ndarray, win: int, n_out: int) -> np.ndarray:
    """The trailing maximum as the compiled loop computed it before its monotone queue: each
    window from its first value, a later value replacing the maximum when >= it (a window
    starting on NaN stays NaN, later NaNs are skipped)."""
    out = np.empty(n_out)
    for k in range(n_out):
        i = x.size - n_out + k
        j0 = max(0, i - win + 1)
        m = x[j0]
        for j in range(j0 + 1, i + 1):
            if x[j] >= m:
                m = x[j]
        out[k] = m
    return out


def numpy_peaks(
    mag: np.ndarray, sig: np.ndarray, v: np.ndarray, lo: int, hi: int, k_sigma: float, floor: float, min_speed: float
) -> np.ndarray:
    """The stream step's peaks as NumPy found them before their kernel."""
    m = mag.size
    with np.errstate(all="ignore"):  # the products of infinite scales or k are not used
        thr = np.where(np.isfinite(sig), np.maximum(k_sigma * np.nan_to_num(sig), floor), np.inf)
    if not hi > lo:
        return np.zeros(0, np.int64)
    i = np.arange(lo, hi)
    nxt = np.where(i + 1 < m, mag[np.minimum(i + 1, m - 1)], -np.inf)
    ok = (mag[i] > thr[i]) & (mag[i] >= mag[i - 1]) & (mag[i] > nxt) & (v[i] >= min_speed)
    return i[ok]


def numpy_first_lobe(y: np.ndarray, i0: int, peak: float, max_back: int) -> tuple[int, int]:
    """The first lobe's walk as NumPy took it before its kernel."""
    lo = max(0, i0 - max_back)
    s = np.sign(y[lo : i0 + 1])
    change = np.flatnonzero(np.diff(s) != 0) + lo + 1  # first index of each new lobe
    bounds = np.concatenate([[lo], change, [i0 + 1]])
    best = i0
    n = 1
    for k in range(len(bounds) - 2, 0, -1):
        a, b = bounds[k - 1], bounds[k]
        j = a + int(np.argmax(np.abs(y[a:b])))
        if abs(y[j]) < LOBE_FRACTION * peak:
            break
        best = j
        n += 1
    return best, n


def numpy_partner(mag: np.ndarray, d: np.ndarray, i_peak: int, wait_n: int, thr: float, default: float) -> float:
    """The other axle's hit as NumPy found it before its kernel."""
    lo, hi = AXLE_SPACING_M
    j = np.arange(i_peak + 1, min(mag.size - 1, i_peak + wait_n + 1))
    if j.size == 0:
        return default
    dd = d[j] - d[i_peak]
    j = j[(dd >= lo) & (dd <= hi) & (mag[j] >= thr) & (mag[j] >= mag[j - 1]) & (mag[j] > mag[j + 1])]
    if j.size == 0:
        return default
    return float(d[j[np.argmax(mag[j])]] - d[i_peak])


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, float).view(np.int64)


@pytest.mark.parametrize("n", [*range(0, 40), 127, 128, 129, 136, 255, 256, 257, 1000, 1031, 4099])
def test_np_sum_is_numpys_sum(n):
    rng = np.random.default_rng(n)
    # magnitudes over 12 decades and both signs: any other order of additions shows
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)
    assert _bits(np.array(_whitening._np_sum(x, n))) == _bits(np.array(x.sum()))
    assert _bits(np.array(_whitening._np_sum(x * 0.0 - 0.0, n))) == _bits(np.array((x * 0.0 - 0.0).sum()))


@pytest.mark.parametrize("p", [1, 2, 8, 12])
def test_lpc_matches_numpy(p):
    rng = np.random.default_rng(p)
    x = signal.lfilter([1.0], [1.0, -1.2, 0.6], rng.standard_normal((20, 300)), axis=1)
    r = np.stack([[row[k:] @ row[: row.size - k] for k in range(p + 1)] for row in x])
    # rows that stop early: zero energy, |k| >= 1 at once, a non-positive r[0]
    stops = [np.zeros(p + 1), np.r_[1.0, 1.0, np.zeros(p - 1)], -r[0], r[1] * np.r_[1.0, -np.ones(p)]]
    r = np.vstack([r, *stops])
    for white in (1e-3, 0.0):
        assert np.array_equal(_bits(_whitening.lpc(r, white)), _bits(numpy_lpc(r, white)))
    assert _whitening.lpc(r[0], 1e-3).shape == (p,)


@pytest.mark.parametrize("grid", [True, False])
@pytest.mark.parametrize(
    ("blk", "p", "seed"), [(25, 8, 0), (25, 8, 1), (5, 8, 2), (3, 2, 3), (130, 4, 4), (13, 1, 5)]
)
def test_whiten_matches_numpy_in_any_framing(blk, p, seed, grid):
    rng = np.random.default_rng(seed)
    n = 40 * blk + 17
    # a resonance, then a quiet stretch of exact zeros (lag products of zeros), then a shock
    y = signal.lfilter([1.0], [1.0, -1.6, 0.8], rng.standard_normal(n))
    y[n // 3 : n // 3 + 3 * blk] = 0.0
    y[n // 2] += 50.0
    if grid:  # the detector's grid: its lag products sum exactly, in any order
        y = np.round(y / 2.0**-12) * 2.0**-12
    lam = float(np.exp(-0.25 / 2.0))
    cuts = np.sort(rng.choice(np.arange(1, n), 25, replace=False))
    r_n = r_c = np.zeros(0)
    l_n = l_c = -1
    start = 0
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, n]):
        e_n, r_n, l_n = numpy_whiten(y[start:b], start, b - a, r_n, l_n, blk, p, lam, 1e-3)
        e_c, r_c, l_c = _whitening.whiten(y[start:b], start, b - a, r_c, l_c, blk, p, lam, 1e-3)
        assert np.array_equal(_bits(e_c), _bits(e_n)) and np.array_equal(_bits(r_c), _bits(r_n))
        assert l_c == l_n
        start = max(0, (b // blk) * blk - p)
    # a gap (the next index is not the one after the last) restarts both the same way
    e_n, r_n, l_n = numpy_whiten(y[:50], 10 * n, 50, r_n, l_n, blk, p, lam, 1e-3)
    e_c, r_c, l_c = _whitening.whiten(y[:50], 10 * n, 50, r_c, l_c, blk, p, lam, 1e-3)
    assert np.array_equal(_bits(e_c), _bits(e_n)) and np.array_equal(_bits(r_c), _bits(r_n))
    assert l_c == l_n
    assert _whitening.whiten(y[:5], 0, 0, np.zeros(p + 1), -1, blk, p, lam, 1e-3)[0].size == 0


@pytest.mark.parametrize("seed", range(6))
def test_block_sigma_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    k_past, k_ahead = [(8, 4), (8, 4), (4, 2), (3, 0), (5, 3), (1, 1)][seed]
    k0 = int(rng.integers(0, 50))
    # block medians of a road that changes (onsets), with ties and a calm stretch of zeros
    meds = np.abs(rng.standard_normal(30)) * np.repeat(rng.choice([0.5, 1.0, 3.0], 6), 5)
    meds[10:13] = 0.0
    meds[20:23] = meds[19]
    for start in range(k0 - 3, k0 + meds.size, 2):
        # samples of a few consecutive blocks, 25 per block, up to the open one (k0 + 30)
        stop = min(start + int(rng.integers(1, 6)), k0 + meds.size + 1)
        b = np.repeat(np.arange(start, stop), 25)[int(rng.integers(0, 25)) :]
        for final in (False, True):
            for ratio in (1.2, 0.0):
                want = numpy_block_sigma(b, meds, k0, k_past, k_ahead, final, ratio)
                got = _block_sigma(b, meds, k0, k_past, k_ahead, final, onset_ratio=ratio)
                assert np.array_equal(_bits(got[0]), _bits(want[0])) and np.array_equal(got[1], want[1])
    # blocks not in sample order (each run its own window), and no medians at all
    b = np.array([14, 14, 13, 15, 15])
    for m in (meds, meds[:0]):
        want = numpy_block_sigma(b, m, 10, 4, 2, False, 1.2)
        got = _block_sigma(b, m, 10, 4, 2, False, onset_ratio=1.2)
        assert np.array_equal(_bits(got[0]), _bits(want[0])) and np.array_equal(got[1], want[1])


@pytest.mark.parametrize("blk", [1, 2, 5, 12, 25, 50])
def test_block_medians_are_numpys(blk):
    rng = np.random.default_rng(blk)
    # |values| on the detector's grid (ties) and off it, and a block with a NaN
    x = np.abs(np.r_[np.round(rng.normal(0, 1, 20 * blk) * 64) / 64, rng.normal(0, 1, 20 * blk)])
    x[3 * blk + blk // 2] = np.nan
    n_b = x.size // blk
    want = np.median(x.reshape(n_b, blk), axis=1)
    assert np.array_equal(_bits(_block_medians(x, n_b, blk)), _bits(want))
    assert np.isnan(want[3])


@pytest.mark.parametrize("win", [1, 2, 3, 25, 26])
def test_trailing_max_is_the_max_filter(win):
    rng = np.random.default_rng(win)
    for n in (1, 3, 30, 400):
        for x in (
            np.round(rng.normal(0, 1, n) * 1000) / 1000,  # the rise's mm/s^2 grid: ties
            rng.choice([-0.0, 0.0, 0.001, -0.001], n),  # ties of the two zeros: the latest wins
        ):
            want = ndimage.maximum_filter1d(x, size=win, origin=(win - 1) // 2, mode="nearest")
            for n_out in {1, n // 2 + 1, n}:
                assert np.array_equal(_bits(_trailing_max(x, win, n_out)), _bits(want[-n_out:]))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 8, 25, 26, 60])
def test_sort_small_is_numpys_sort(n):
    rng = np.random.default_rng(n)
    for x in (
        np.abs(np.round(rng.normal(0, 1, n) * 8) / 8),  # ties
        rng.choice([0.0, 1.0, np.inf, np.nan, 0.5], n),  # the look-ahead's +inf padding, NaN medians
        rng.standard_normal(n),
    ):
        buf = np.r_[x, 7.0]  # a value past n stays where it is
        _sort_small(buf, n)
        assert np.array_equal(_bits(buf), _bits(np.r_[np.sort(x), 7.0]))


@pytest.mark.parametrize("win", [1, 2, 3, 25, 26])
def test_trailing_max_with_nans_is_the_loops(win):
    rng = np.random.default_rng(win)
    for n in (1, 3, 30, 400):
        x = rng.choice([-0.0, 0.0, 0.001, -0.001, 0.5, np.nan], n)
        x[: n // 3] = np.round(rng.normal(0, 1, n // 3) * 1000) / 1000
        for n_out in {1, n // 2 + 1, n}:
            assert np.array_equal(_bits(_trailing_max(x, win, n_out)), _bits(loop_trailing_max(x, win, n_out)))
    assert _trailing_max(np.zeros(0), win, 0).size == 0


@pytest.mark.parametrize("seed", range(4))
def test_peaks_match_numpy(seed):
    rng = np.random.default_rng(seed)
    n = 300
    # plateaus (ties on the grid), NaN and infinite scales, a slow stretch, NaN samples
    mag = np.abs(np.round(rng.standard_normal(n) * 4) / 4)
    mag[rng.integers(0, n, 5)] = np.nan
    sig = np.abs(rng.standard_normal(n)) * 0.3
    sig[:20] = np.nan
    sig[rng.integers(0, n, 5)] = np.inf
    sig[rng.integers(20, n, 5)] = 0.0
    v = rng.choice([0.0, 4.9, 5.0, 50.0], n)
    for lo, hi in ((1, n), (1, n - 1), (40, 41), (7, 3), (1, 1), (n - 1, n)):
        for k_sigma, floor in ((4.0, 0.3), (0.0, 0.0), (4.0, np.nan), (np.inf, 0.3)):
            got = _peaks(mag, sig, v, lo, hi, k_sigma, floor, 5.0)
            assert np.array_equal(got, numpy_peaks(mag, sig, v, lo, hi, k_sigma, floor, 5.0))
    assert _peaks(mag[:0], sig[:0], v[:0], 1, -1, 4.0, 0.3, 5.0).size == 0


@pytest.mark.parametrize("seed", range(5))
def test_first_lobe_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    n = 200
    # a ringing shock on the detector's grid (ties, exact zeros), with NaNs in one case
    y = np.round(np.sin(np.arange(n) * 0.6) * np.exp(-np.abs(np.arange(n) - 100) / 30.0) * 64) / 64
    y += np.round(rng.normal(0, 0.05, n) * 64) / 64
    y[rng.integers(0, n, 10)] = rng.choice([0.0, -0.0, 0.5, -0.5], 10)
    if seed == 4:
        y[rng.integers(0, n, 6)] = np.nan
    for i0 in (0, 1, 5, 60, 99, 100, n - 1):
        for peak in (0.0, 0.1, 0.5, 2.0, np.nan):
            for max_back in (0, 1, 30, 300):
                got = _first_lobe(y, i0, peak, max_back)
                want = numpy_first_lobe(y, i0, peak, max_back)
                assert got == (int(want[0]), want[1])


@pytest.mark.parametrize("seed", range(5))
def test_partner_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    n = 150
    mag = np.abs(np.round(rng.normal(0, 1, n) * 8) / 8)  # ties
    mag[rng.integers(0, n, 4)] = np.nan
    d = np.cumsum(rng.uniform(0.0, 0.3, n))  # steady, crawling and stopped (equal d)
    d[40:50] = d[40]
    for i_peak in (0, 10, 39, 100, n - 3, n - 2, n - 1):
        for wait_n in (1, 5, 60, 1000):
            for thr in (0.0, 0.5, 1.5, np.nan):
                for default in (np.nan, 1.25):
                    got = _partner(mag, d, i_peak, wait_n, thr, default)
                    want = numpy_partner(mag, d, i_peak, wait_n, thr, default)
                    assert _bits(np.array(got)) == _bits(np.array(want))
