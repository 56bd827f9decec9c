"""The harsh-event detector's run kernel against the NumPy code it replaced.

``_shocks``, ``_runs`` and ``_run_sums`` are ``agents.harsh_events``'s as they were before
:func:`agents._harsh_runs.run_table` (sixteenth session), unchanged; ``_oracle`` is the
loop of ``detect_harsh_events`` that called them. :func:`agents.harsh_events._chunk_runs`
must give the same runs (same values, types and bits, by ``repr``) and the same carried
state, chunk after chunk, with and without speed and ABS, on random, edge and non-finite
input.
"""

import numpy as np
import pytest

from agents import harsh_events as he
from agents.harsh_events import HarshDetectorState, HarshParams, _merge


def _shocks(ax, t, v_lp, fs, st, p):
    prev = ax[0] if not np.isfinite(st.last_ax) else st.last_ax
    jerk = np.abs(np.diff(ax, prepend=prev)) * fs
    st.last_ax = float(ax[-1])
    shock_t = np.where(jerk >= p.shock_jerk_mps3, t, -np.inf)
    latest = np.maximum.accumulate(np.concatenate(([st.last_shock_t], shock_t)))[1:]  # last shock at or before each sample
    st.last_shock_t = float(latest[-1])
    shocked = t - latest <= p.shock_memory_s
    a_v = None
    if v_lp is not None:
        v_prev = v_lp[0] if not np.isfinite(st.last_v_lp) else st.last_v_lp
        a_v = np.diff(v_lp, prepend=v_prev) * fs
        st.last_v_lp = float(v_lp[-1])
    return shocked, a_v


def _runs(ch, mag, trig, rel, trig2, chunk, st, offset, final, *, mag_v=None):
    t, v, ab, fs = chunk["t"], chunk["v"], chunk["abs"], chunk["fs"]
    n = mag.size
    above = mag > rel
    carry = st.open_runs.pop(ch, None)
    if not above.any():  # most chunks of most channels: no run
        return [] if carry is None else [carry]  # the carried run ended at the chunk edge
    edges = np.diff(above.view(np.int8), prepend=0, append=0)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    out = []
    if carry is not None and (len(starts) == 0 or starts[0] != 0):
        out.append(carry)  # the carried run ended exactly at the chunk edge
        carry = None
    if len(starts) == 0:
        return out
    is_trig = mag >= trig
    is_trig2 = mag >= (trig2 if trig2 is not None else trig)
    n_trig = _run_sums(is_trig.astype(np.int64), starts, ends)
    n_trig2 = _run_sums(is_trig2.astype(np.int64), starts, ends)
    sum_a = _run_sums(mag, starts, ends) / fs
    vv = v if v is not None else np.full(n, np.nan)
    sum_v = _run_sums(vv, starts, ends)
    inv_v = 1.0 / np.maximum(vv, 1.0) if v is not None else np.zeros(n)
    head = _run_sums(mag * inv_v, starts, ends) / fs
    n_abs = _run_sums(ab.astype(np.int64), starts, ends) if ab is not None else np.zeros(len(starts), np.int64)
    n_shock = _run_sums(chunk["shocked"].astype(np.int64), starts, ends)
    n_trig_v = _run_sums((mag_v >= trig).astype(np.int64), starts, ends) if mag_v is not None else np.zeros(len(starts), np.int64)
    trig_idx = np.flatnonzero(is_trig)
    first_trig = trig_idx[np.minimum(np.searchsorted(trig_idx, starts), max(len(trig_idx) - 1, 0))] if len(trig_idx) else np.full(len(starts), -1)
    sign = 1.0 if ch in ("accel", "latp") else -1.0
    for k, (s, e) in enumerate(zip(starts, ends)):
        j = s + int(np.argmax(mag[s:e]))
        ft = int(first_trig[k]) if len(trig_idx) and s <= first_trig[k] < e else -1
        run = [
            offset + int(s), float(t[s]), float(t[e - 1]) + 1.0 / fs,
            offset + ft if ft >= 0 else -1, float(t[ft]) if ft >= 0 else float("nan"),
            int(n_trig[k]), int(n_trig2[k]), sign * float(mag[j]), float(sum_a[k]),
            float(vv[s]), float(vv[e - 1]), int(n_abs[k]), float(sum_v[k]), int(e - s), float(head[k]), sign,
            int(n_shock[k]), int(n_trig_v[k]),
        ]  # fmt: skip
        if k == 0 and s == 0 and carry is not None:
            run = _merge(carry, run)
        if e == n and not final:
            st.open_runs[ch] = run
        else:
            out.append(run)
    return out


def _run_sums(x, starts, ends):
    c = np.concatenate([[0], np.cumsum(x)])
    return c[ends] - c[starts]


def _oracle(ax, a_long, a_lat, v_lp, ab, t, fs, st, p, offset, final):
    shocked, a_v = _shocks(ax, t, v_lp, fs, st, p)
    chunk = {"t": t, "v": v_lp, "abs": ab, "fs": fs, "shocked": shocked}
    lat_release = min(p.corner_release_mps2, p.swerve_release_mps2)
    out = []
    for ch, mag, trig, rel, trig2, mag_v in (
        ("brake", -a_long, -p.brake_trigger_mps2, -p.brake_release_mps2, None, None if a_v is None else -a_v),
        ("accel", a_long, p.accel_trigger_mps2, p.accel_release_mps2, None, a_v),
        ("latp", a_lat, p.corner_trigger_mps2, lat_release, p.swerve_trigger_mps2, None),
        ("latn", -a_lat, p.corner_trigger_mps2, lat_release, p.swerve_trigger_mps2, None),
    ):
        out.extend((ch, run) for run in _runs(ch, mag, trig, rel, trig2, chunk, st, offset, final, mag_v=mag_v))
    return out


def _state(st: HarshDetectorState) -> str:
    return repr((st.last_ax, st.last_shock_t, st.last_v_lp, sorted(st.open_runs.items())))


def _signals(rng, n, fs=100.0):
    """Compensated-looking signals with runs of every kind, touching chunk edges."""
    t = 1000.0 + np.arange(n) / fs
    a_long = 3.0 * np.sin(2 * np.pi * t / rng.uniform(2, 9)) + rng.normal(0, 0.8, n)
    a_lat = 4.0 * np.sin(2 * np.pi * t / rng.uniform(2, 9) + 1) + rng.normal(0, 0.8, n)
    ax = a_long + rng.normal(0, 0.3, n)
    ax[rng.random(n) < 0.01] += rng.choice([-9.0, 9.0])  # hub shocks: jerks beyond the limit
    a_long[rng.random(n) < 0.03] = -0.0  # signed zeros reach the sums
    a_lat[rng.random(n) < 0.03] = 0.0
    a_lat[rng.integers(0, n, 12)] = rng.choice([3.5, -3.5, 3.0, -3.0, 2.5, -2.5], 12)  # exactly a trigger or release
    a_long[rng.integers(0, n, 12)] = rng.choice([-3.0, -2.5, 2.5, 2.0], 12)
    v = np.abs(8 + 6 * np.sin(0.05 * t) + rng.normal(0, 0.5, n))
    v[rng.random(n) < 0.1] = rng.choice([0.0, 1.0, 0.5])  # standing, at the clamp
    ab = rng.random(n) < 0.05
    return ax, a_long, a_lat, v, ab, t


def _stream(rng, signals, cuts, *, with_speed, with_abs, final_at_end=True, fs=100.0, p=HarshParams()):
    ax, a_long, a_lat, v, ab, t = signals
    n = ax.size
    s_old, s_new = HarshDetectorState(), HarshDetectorState()
    edges = [0, *cuts, n]
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        final = final_at_end and i == len(edges) - 2
        args = (
            ax[lo:hi], a_long[lo:hi], a_lat[lo:hi], v[lo:hi] if with_speed else None,
            ab[lo:hi] if with_abs else None, t[lo:hi], fs,
        )  # fmt: skip
        old = _oracle(*args, s_old, p, lo, final)
        new = he._chunk_runs(*args, s_new, p, lo, final)
        assert repr(old) == repr(new), (lo, hi)
        assert [type(x) for _, r in old for x in r] == [type(x) for _, r in new for x in r]
        assert _state(s_old) == _state(s_new)
        # the stream restores its state from JSON between frames
        s_new = HarshDetectorState.from_dict(s_new.to_dict())
        s_old = HarshDetectorState.from_dict(s_old.to_dict())


@pytest.mark.parametrize("with_speed", [True, False])
@pytest.mark.parametrize("with_abs", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kernel_gives_the_numpy_runs_chunk_after_chunk(with_speed, with_abs, seed):
    rng = np.random.default_rng(seed)
    sig = _signals(rng, 4000)
    cuts = sorted(rng.choice(np.arange(1, 4000), 15, replace=False).tolist())
    _stream(rng, sig, cuts, with_speed=with_speed, with_abs=with_abs)
    _stream(rng, sig, cuts, with_speed=with_speed, with_abs=with_abs, final_at_end=False)


def test_runs_at_chunk_edges_single_samples_and_other_params():
    rng = np.random.default_rng(7)
    sig = _signals(rng, 600)
    ax, a_long, a_lat, v, ab, t = sig
    a_long[100:140] = -5.0  # a run across the cuts at 110 and 120, one running to the end
    a_long[-30:] = 4.0
    a_lat[:20] = -6.0  # a run from the first sample
    cuts = [1, 2, 20, 110, 111, 120, 300, 599]
    p = HarshParams(corner_release_mps2=2.0, swerve_release_mps2=2.8, swerve_trigger_mps2=3.2, shock_memory_s=0.2)
    for with_speed in (True, False):
        _stream(rng, sig, cuts, with_speed=with_speed, with_abs=True, p=p)
        _stream(rng, sig, cuts, with_speed=with_speed, with_abs=False, fs=20.0)
    quiet = tuple(np.zeros(50) if i < 3 else x[:50] for i, x in enumerate(sig))
    _stream(rng, quiet, [10], with_speed=True, with_abs=True)


def test_non_finite_input_gives_the_numpy_runs():
    rng = np.random.default_rng(11)
    sig = _signals(rng, 800)
    ax, a_long, a_lat, v, ab, t = sig
    ax[50] = np.nan  # a NaN jerk: no shock
    ax[300] = np.inf  # an infinite jerk: a shock, then inf - inf
    a_long[400:420] = np.nan  # NaN is beyond no level: it ends runs
    a_long[500] = -np.inf  # an infinite run: infinite sums from there on
    a_lat[600] = np.inf
    v[700] = np.nan  # inside a run
    a_lat[690:710] = 5.0
    with np.errstate(invalid="ignore"):  # inf - inf in the oracle's sums
        for with_speed in (True, False):
            _stream(rng, sig, [100, 410, 650], with_speed=with_speed, with_abs=True)
    t2 = t.copy()
    t2[200] = np.nan  # a NaN time wins the running maximum of shock times
    ax[199:202] = [0.0, 30.0, 0.0]
    with np.errstate(invalid="ignore"):
        _stream(rng, (ax, a_long, a_lat, v, ab, t2), [150, 400], with_speed=True, with_abs=True)


def _old_copy(st: HarshDetectorState) -> HarshDetectorState:
    return HarshDetectorState.from_dict(st.to_dict())


def _exact(st: HarshDetectorState) -> tuple:
    def arr(a):
        return None if a is None else (a.dtype.str, a.shape, a.flags.c_contiguous, a.tobytes())

    scalars = (st.last_speed_mps, st.last_ax, st.last_shock_t, st.last_v_lp, st.n_seen)
    return (arr(st.zi), arr(st.bias_zi), arr(st.level_zi), repr(scalars), [type(x) for x in scalars],
            repr(st.open_runs), repr(st.pending_lat))  # fmt: skip


def test_copy_is_the_json_round_trip():
    rng = np.random.default_rng(5)
    ax, a_long, a_lat, v, ab, t = _signals(rng, 2000)
    st = HarshDetectorState()
    for lo, hi in ((0, 700), (700, 1500)):
        _, st = he.detect_harsh_events(ax[lo:hi], a_lat[lo:hi], t[lo:hi], 100.0, state=st, speed_kmh=3.6 * v[lo:hi])
        assert _exact(st.copy()) == _exact(_old_copy(st))
    assert st.open_runs or st.pending_lat  # the runs are copied too
    run = [None, *range(5)]  # a run as read from JSON: null, and short (fields added since)
    odd = [
        HarshDetectorState(),
        HarshDetectorState(zi=np.zeros((1, 2, 2), np.float32), bias_zi=np.zeros((0, 1, 2)), level_zi=np.ones((4, 1))[::1]),
        HarshDetectorState(last_speed_mps=np.inf, last_ax=-np.inf, last_shock_t=np.nan, last_v_lp=np.float64(2.5),
                           n_seen=np.int64(7), open_runs={"latp": list(run)}, pending_lat=[list(run)]),
        HarshDetectorState(last_speed_mps=-0.0, last_ax=np.float64(np.nan), last_shock_t=np.inf, last_v_lp=-np.inf),
    ]  # fmt: skip
    for s in odd:
        assert _exact(s.copy()) == _exact(_old_copy(s))
    s = odd[2]
    c = s.copy()
    c.open_runs["latp"][1] = 99  # a copy shares no list with its original
    c.pending_lat[0][1] = 99
    assert s.open_runs["latp"][1] == 0 and s.pending_lat[0][1] == 0


@pytest.mark.parametrize("last", [0.0, -0.0])
def test_the_running_maximum_of_shock_times_is_numpys_on_signed_zeros(last):
    p = HarshParams()
    n = 5
    ax = np.zeros(n)  # from -9 m/s²: a shock at the first sample only
    t = np.array([-0.0, 0.01, 0.02, 0.03, 0.04]) if last == 0.0 else np.array([0.0, 0.01, 0.02, 0.03, 0.04])
    z = np.zeros(n)
    s_old = HarshDetectorState(last_ax=-9.0, last_shock_t=last)
    s_new = HarshDetectorState(last_ax=-9.0, last_shock_t=last)
    old = _oracle(ax, z, z, None, None, t, 100.0, s_old, p, 0, False)
    new = he._chunk_runs(ax, z, z, None, None, t, 100.0, s_new, p, 0, False)
    assert repr(old) == repr(new)
    assert repr(s_old.last_shock_t) == repr(s_new.last_shock_t) == repr(float(t[0]))  # ties take the new value
