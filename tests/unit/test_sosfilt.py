"""agents._sosfilt equals scipy.signal.sosfilt to the bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from agents import _sosfilt
from agents._sosfilt import sosfilt, sosfilt_zi


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


def test_one_pole_section_equals_lfilter():
    # agents.harsh_events runs its running means y = a x + (1 - a) y[-1] as one section
    # [a, 0, 0, 1, -(1 - a), 0] instead of lfilter([a], [1, -(1 - a)]): same recursion,
    # so the same bits, chunk after chunk (weights and signals as the detector's)
    rng = np.random.default_rng(5)
    alpha = 1.0 - np.exp(-1.0 / (3.0 * 100.0))
    x = rng.normal(size=(4, 900)) * (rng.random((4, 900)) < 0.7)
    zi = (1.0 - alpha) * rng.normal(size=(4, 1))
    sos = np.array([[alpha, 0.0, 0.0, 1.0, -(1.0 - alpha), 0.0]])
    z = np.zeros((1, 4, 2))
    z[0, :, 0] = zi[:, 0]
    want, want_z = signal.lfilter([alpha], [1.0, -(1.0 - alpha)], x, axis=-1, zi=zi)
    got = []
    for a, b in ((0, 300), (300, 301), (301, 900)):
        y, z = sosfilt(sos, x[:, a:b], z)
        got.append(y)
    assert np.array_equal(np.concatenate(got, axis=1), want)
    assert np.array_equal(z[0, :, :1], want_z) and not z[0, :, 1].any()


def test_sosfilt_zi_is_scipys_computed_once_per_design(monkeypatch):
    calls = []
    real = signal.sosfilt_zi
    monkeypatch.setattr(_sosfilt.signal, "sosfilt_zi", lambda sos: calls.append(1) or real(sos))
    low = signal.butter(4, 5.0, fs=97.0, output="sos")  # a design no other test uses
    band = signal.butter(2, [0.5, 20.0], btype="bandpass", fs=53.0, output="sos")
    a, b = sosfilt_zi(low), sosfilt_zi(band)
    assert np.array_equal(a, real(low)) and np.array_equal(b, real(band))
    a *= 2.0  # the caller's own copy: the kept one is not changed
    assert np.array_equal(sosfilt_zi(low.copy()), real(low))  # another array, the same design
    assert len(calls) == 2
