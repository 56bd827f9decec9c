"""agents._sosfilt equals scipy.signal.sosfilt to the bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from agents._sosfilt import sosfilt


@pytest.mark.parametrize("n", [1, 7, 500])
@pytest.mark.parametrize("order,btype", [(2, "bandpass"), (4, "lowpass"), (1, "highpass")])
def test_same_as_scipy(n, order, btype):
    rng = np.random.default_rng(n + order)
    wn = [0.5, 20.0] if btype == "bandpass" else 5.0
    sos = signal.butter(order, wn, btype=btype, fs=100.0, output="sos")
    x = rng.normal(size=n)
    zi = rng.normal(size=(sos.shape[0], 2))
    x0, zi0 = x.copy(), zi.copy()
    y, zf = sosfilt(sos, x, zi)
    y_ref, zf_ref = signal.sosfilt(sos, x, zi=zi)
    assert np.array_equal(y, y_ref) and np.array_equal(zf, zf_ref)
    assert np.array_equal(x, x0) and np.array_equal(zi, zi0)  # inputs untouched


def test_chunks_equal_one_pass():
    sos = signal.butter(2, [0.5, 20.0], btype="bandpass", fs=100.0, output="sos")
    x = np.random.default_rng(3).normal(size=1000)
    z = signal.sosfilt_zi(sos) * x[0]
    whole, _ = sosfilt(sos, x, z)
    parts, zk = [], z
    for a in np.array_split(x, 7):
        y, zk = sosfilt(sos, a, zk)
        parts.append(y)
    assert np.array_equal(np.concatenate(parts), whole)


def test_empty_signal_keeps_the_state():
    sos = signal.butter(2, 5.0, fs=100.0, output="sos")
    zi = np.arange(4.0).reshape(2, 2)
    y, zf = sosfilt(sos, np.zeros(0), zi)
    assert y.size == 0 and np.array_equal(zf, zi) and zf is not zi


def test_two_signals_at_once():
    sos = signal.butter(2, [0.3, 10.0], btype="bandpass", fs=50.0, output="sos")
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 300))
    zi = rng.normal(size=(sos.shape[0], 2, 2))
    y, zf = sosfilt(sos, x, zi)
    y_ref, zf_ref = signal.sosfilt(sos, x, axis=-1, zi=zi)
    assert np.array_equal(y, y_ref) and np.array_equal(zf, zf_ref)
