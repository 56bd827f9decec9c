"""The harsh-event filters' compiled kernel against the NumPy and scipy code it replaced.

``_oracle`` is ``agents.harsh_events._compensate`` as it was before the kernel (fifteenth
session), unchanged but for its name and some comments: the kernel must give the same bits, outputs and
carried filter states, chunk after chunk, with and without speed.
"""

import numpy as np
import pytest
from scipy import signal

from agents import harsh_events as he
from agents._sosfilt import sosfilt
from agents.harsh_events import HarshDetectorState, HarshParams


def _oracle(ax, ay, v, fs, st, p):
    sos = he._lowpass_sos(float(fs), p.lowpass_hz)
    rows = [ax, ay] if v is None else [ax, ay, v]
    x = np.vstack(rows)
    if st.zi is None or st.zi.shape[1] != x.shape[0]:
        zi = signal.sosfilt_zi(sos)[:, None, :] * x[:, 0][None, :, None]  # start at rest on the first value
    else:
        zi = st.zi
    y, st.zi = sosfilt(sos, x, zi)
    ylong, ylat = y[0], y[1]
    v_lp = None if v is None else y[2]

    if v is not None:
        v_prev = v[0] if not np.isfinite(st.last_speed_mps) else st.last_speed_mps
        dvdt = np.clip(np.diff(v, prepend=v_prev) * fs, -12.0, 12.0)
        st.last_speed_mps = float(v[-1])
        bsos = he._lowpass_sos(float(fs), p.bias_hz)
        r = (ax - dvdt)[None, :]
        if st.bias_zi is None:
            st.bias_zi = signal.sosfilt_zi(bsos)[:, None, :] * r[:, 0][None, :, None]
        b, st.bias_zi = sosfilt(bsos, r, st.bias_zi)
        a_long = ylong - b[0]

    alpha = 1.0 - np.exp(-1.0 / (p.level_tau_s * fs))
    straight = np.abs(ylat) < p.straight_lat_mps2
    if v is not None:
        standing = v < 1.0 / 3.6
        steady = np.abs(a_long) < 0.3
        w_lat = np.where(standing, 1.0, np.where(straight & steady, 0.1, 0.0))
        w_long = np.zeros_like(w_lat)
    else:
        w_lat = np.where(straight & (np.abs(ylong) < p.steady_long_mps2), 0.1, 0.0)
        w_long = w_lat
    lev_in = np.vstack([w_lat * ylat, w_lat, w_long * ylong, w_long])
    if st.level_zi is None:
        prior = 1.0
        st.level_zi = (1.0 - alpha) * np.array([[prior * ylat[0]], [prior], [prior * ylong[0]], [prior]])
    lev_sos = np.array([[alpha, 0.0, 0.0, 1.0, -(1.0 - alpha), 0.0]])
    zi4 = np.zeros((1, 4, 2))
    zi4[0, :, 0] = st.level_zi[:, 0]
    lev, zf4 = sosfilt(lev_sos, lev_in, zi4)
    st.level_zi = zf4[0, :, :1].copy()
    a_lat = ylat - lev[0] / np.maximum(lev[1], 1e-9)
    if v is None:
        a_long = ylong - lev[2] / np.maximum(lev[3], 1e-9)
    return a_long, a_lat, v_lp


def _bits(a) -> bytes:
    return b"none" if a is None else np.asarray(a, np.float64).tobytes()


def _same_state(s1: HarshDetectorState, s2: HarshDetectorState) -> None:
    for name in ("zi", "bias_zi", "level_zi"):
        u, w = getattr(s1, name), getattr(s2, name)
        assert (u is None) == (w is None), name
        if u is not None:
            assert u.shape == w.shape and _bits(u) == _bits(w), name
    assert _bits(s1.last_speed_mps) == _bits(s2.last_speed_mps)


def _drive(rng, n, with_speed):
    t = np.arange(n) / 100.0
    ax = 0.8 * np.sin(0.7 * t) + rng.normal(0, 0.4, n)
    ay = 1.5 * np.sin(0.3 * t + 1) + rng.normal(0, 0.5, n)
    ax[rng.random(n) < 0.05] = 0.0
    ay[rng.random(n) < 0.05] = -0.0  # signed zeros reach the products
    v = None
    if with_speed:
        v = np.abs(8 + 6 * np.sin(0.05 * t) + rng.normal(0, 0.3, n))
        v[rng.random(n) < 0.1] = 0.0  # standing
        v[rng.integers(0, n, 3)] += 20.0  # glitches: dv/dt clipped
    return ax, ay, v


@pytest.mark.parametrize("with_speed", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kernel_gives_the_numpy_bits_chunk_after_chunk(with_speed, seed):
    rng = np.random.default_rng(seed)
    p = HarshParams()
    ax, ay, v = _drive(rng, 3000, with_speed)
    s_old, s_new = HarshDetectorState(), HarshDetectorState()
    cuts = np.sort(rng.choice(np.arange(1, 3000), 12, replace=False))
    for lo, hi in zip([0, *cuts], [*cuts, 3000]):
        vv = None if v is None else v[lo:hi]
        old = _oracle(ax[lo:hi], ay[lo:hi], vv, 100.0, s_old, p)
        new = he._compensate(ax[lo:hi], ay[lo:hi], vv, 100.0, s_new, p)
        assert [_bits(a) for a in old] == [_bits(a) for a in new]
        _same_state(s_old, s_new)


def test_the_kernel_gives_the_numpy_bits_at_other_rates_and_from_a_restored_state():
    rng = np.random.default_rng(9)
    p = HarshParams(lowpass_hz=3.0, level_tau_s=10.0)
    for fs in (10.0, 50.0):
        ax, ay, v = _drive(rng, 400, True)
        s_old, s_new = HarshDetectorState(), HarshDetectorState()
        _oracle(ax[:200], ay[:200], v[:200], fs, s_old, p)
        he._compensate(ax[:200], ay[:200], v[:200], fs, s_new, p)
        s_new = HarshDetectorState.from_dict(s_new.to_dict())  # as the stream restores it
        old = _oracle(ax[200:], ay[200:], v[200:], fs, s_old, p)
        new = he._compensate(ax[200:], ay[200:], v[200:], fs, s_new, p)
        assert [_bits(a) for a in old] == [_bits(a) for a in new]
        _same_state(s_old, s_new)


def test_nan_propagates_as_in_numpy():
    rng = np.random.default_rng(4)
    ax, ay, v = _drive(rng, 300, True)
    ax[100] = np.nan
    s_old, s_new = HarshDetectorState(), HarshDetectorState()
    old = _oracle(ax, ay, v, 100.0, s_old, HarshParams())
    new = he._compensate(ax, ay, v, 100.0, s_new, HarshParams())
    assert [_bits(a) for a in old] == [_bits(a) for a in new]
    assert np.isnan(new[0][100:]).any()


def test_the_kernels_maximum_is_numpys():
    vals = [np.nan, 1e-9, 0.0, -0.0, -1.0, 2.0, np.inf, -np.inf]
    for a in vals:
        assert _bits(he._np_max(a, 1e-9)) == _bits(np.maximum(a, 1e-9)), a
