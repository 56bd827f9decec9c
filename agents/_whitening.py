"""Linear-prediction whitening of the pothole detector, compiled (numba).

:func:`whiten` is the detection signal of :mod:`agents.potholes`: each new sample minus its
prediction from the ``p`` samples before it, with coefficients fitted (Levinson-Durbin,
:func:`lpc`) on the exponentially forgotten autocorrelation of the complete blocks before
the sample's own block. Written as NumPy calls it was about sixty calls on arrays of a few
dozen values per frame, a third of the detector's time; compiled it is one call.

The results are the NumPy formulation's to the bit (``tests/unit/test_detector_kernels.py``
keeps that formulation as the oracle): every sum of products is taken as NumPy's pairwise
summation takes it (:func:`_np_sum`), the prediction is accumulated lag after lag as the
NumPy loop did, numba does not fuse multiply-adds without ``fastmath``, and nothing here is
recursive (numba's cache cannot load a recursive function: numba issue #6061).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["lpc", "whiten"]

_NJIT = {"cache": True, "error_model": "numpy"}
_PW_BLOCK = 128  # NumPy's PW_BLOCKSIZE: pairwise sums split above this many values


@numba.njit(**_NJIT)
def _np_leaf(x: np.ndarray) -> float:
    # indexed from 0 (callers pass a slice): an offset index defeats LLVM's optimisation of
    # these loops (about 3x slower)
    n = x.size
    if n < 8:
        res = 0.0
        for i in range(n):
            res += x[i]
        return res
    r0, r1, r2, r3 = x[0], x[1], x[2], x[3]
    r4, r5, r6, r7 = x[4], x[5], x[6], x[7]
    i = 8
    while i < n - n % 8:
        r0 += x[i]
        r1 += x[i + 1]
        r2 += x[i + 2]
        r3 += x[i + 3]
        r4 += x[i + 4]
        r5 += x[i + 5]
        r6 += x[i + 6]
        r7 += x[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += x[i]
        i += 1
    return res


@numba.njit(**_NJIT)
def _np_sum(x: np.ndarray, n: int) -> float:
    """``np.sum(x[:n])`` to the bit: NumPy's pairwise summation (8 accumulators per leaf of
    at most 128 values, halves above that), evaluated with an explicit stack."""
    if n <= _PW_BLOCK:
        return 0.0 + _np_leaf(x[:n])
    # tasks: (lo, n, 0) sums a range, (0, 0, 1) adds the two sums on top of the value stack
    t_lo = np.empty(256, np.int64)
    t_n = np.empty(256, np.int64)
    t_add = np.empty(256, np.bool_)
    vals = np.empty(128)
    nt, nv = 1, 0
    t_lo[0], t_n[0], t_add[0] = 0, n, False
    while nt:
        nt -= 1
        if t_add[nt]:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
        elif t_n[nt] <= _PW_BLOCK:
            vals[nv] = _np_leaf(x[t_lo[nt] : t_lo[nt] + t_n[nt]])
            nv += 1
        else:
            lo, m = t_lo[nt], t_n[nt]
            half = m // 2
            half -= half % 8
            t_add[nt] = True  # after both halves
            t_lo[nt + 1], t_n[nt + 1], t_add[nt + 1] = lo + half, m - half, False
            t_lo[nt + 2], t_n[nt + 2], t_add[nt + 2] = lo, half, False  # the left half first
            nt += 3
    return 0.0 + vals[0]


@numba.njit(**_NJIT)
def _lpc_rows(rows: np.ndarray, white: float) -> np.ndarray:
    m, p = rows.shape[0], rows.shape[1] - 1
    coef = np.zeros((m, p))
    upd = np.empty(max(p, 1))
    prod = np.empty(max(p, 1))
    for q in range(m):
        a, r = coef[q], rows[q]
        if not r[0] > 0:
            continue  # no energy: no predictor
        err = r[0] * (1.0 + white)
        for i in range(p):
            for j in range(i):
                prod[j] = a[j] * r[i - j]
            k = (r[i + 1] - _np_sum(prod, i)) / err
            if not abs(k) < 1.0:
                break  # not an autocorrelation (numerically): the row keeps its lower order
            for j in range(i):
                upd[j] = a[j] - k * a[i - 1 - j]
            a[:i] = upd[:i]
            a[i] = k
            err = err * (1.0 - k * k)
            if not err > 0:
                break
    return coef


def lpc(r: np.ndarray, white: float) -> np.ndarray:
    """Linear-predictor coefficients from autocorrelations ``r[..., 0..p]`` (Levinson-Durbin
    over the last axis, one predictor per row; ``r[0]`` raised by the share ``white``).

    A row with ``r[0] <= 0`` gives zeros; one that stops being an autocorrelation
    numerically (a reflection coefficient with ``|k| >= 1``) keeps its lower order.
    """
    r = np.asarray(r, float)
    rows = np.ascontiguousarray(r.reshape(-1, r.shape[-1]))
    return _lpc_rows(rows, float(white)).reshape(r.shape[:-1] + (r.shape[-1] - 1,))


@numba.njit(**_NJIT)
def _whiten_kernel(yb, j0, first, b0, blk, p, lam, r, n_fold, n_blk, white):  # noqa: ANN001, ANN202
    base = first - j0  # absolute index of yb[0]
    hist = np.empty((n_fold + 1, p + 1))
    hist[0] = r
    prod = np.empty(blk)
    for j in range(n_fold):
        s = (b0 + j) * blk - base
        cur = yb[s : s + blk]  # slices indexed from 0, as in _np_leaf
        for lag in range(p + 1):
            lagged = yb[s - lag : s - lag + blk]
            for i in range(blk):
                prod[i] = cur[i] * lagged[i]
            hist[j + 1, lag] = lam * hist[j, lag] + _np_sum(prod, blk)
    coef = _lpc_rows(hist[:n_blk], white)
    n_new = yb.size - j0
    # each sample's prediction accumulated lag after lag from 0.0, as the NumPy loop did;
    # a block's samples (one predictor) side by side, on slices indexed from 0, so the
    # inner loop vectorises (about 5x faster than one sample's lags after the other)
    pred = np.zeros(n_new)
    t0 = 0
    while t0 < n_new:
        q = (first + t0) // blk - b0
        t1 = min(n_new, (b0 + q + 1) * blk - first)
        out = pred[t0:t1]
        for lag in range(p):
            c = coef[q, lag]
            lagged = yb[j0 + t0 - 1 - lag : j0 + t1 - 1 - lag]
            for k in range(out.size):
                out[k] += c * lagged[k]
        t0 = t1
    return yb[j0:] - pred, hist[n_fold].copy()


def whiten(
    y_all: np.ndarray, i0: int, n_new: int, r: np.ndarray, last: int, blk: int, p: int,
    lam: float, white: float,
) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """Prediction error of the last ``n_new`` samples of ``y_all`` (absolute index of
    ``y_all[0]``: ``i0``; the samples before it, if any are needed, are taken as 0), each
    predicted from its ``p`` previous samples with the coefficients of the autocorrelation
    ``r`` of the complete blocks of ``blk`` samples before its own (``r`` folds blocks up to
    ``last``, exponentially forgotten by ``lam`` per block; :func:`lpc` with ``white``).

    Returns ``(e, r, last)`` after folding every complete block. The caller's tail keeps
    the open block and ``p`` samples before it, so any framing gives the same residual
    (each block's sums are computed alone). Units are those of ``y_all``.
    """
    n_all = y_all.size
    first = i0 + n_all - n_new  # absolute index of the first new sample
    b0 = first // blk
    if r.size != p + 1 or last != b0 - 1:
        # fresh stream, or a gap: start the statistics at the first new sample's block
        r, last = np.zeros(p + 1), b0 - 1
    if n_new == 0:
        return np.zeros(0), r, last
    base = min(i0, b0 * blk) - p  # absolute index of yb[0]
    yb = np.concatenate([np.zeros(i0 - base), np.asarray(y_all, float)])
    n_fold = (i0 + n_all) // blk - b0  # complete blocks b0 .. b0 + n_fold - 1
    n_blk = (i0 + n_all - 1) // blk - b0 + 1  # blocks holding new samples
    e, r_out = _whiten_kernel(yb, first - base, first, b0, blk, p, float(lam), np.asarray(r, float),
                              n_fold, n_blk, float(white))  # fmt: skip
    return e, r_out, b0 - 1 + n_fold
