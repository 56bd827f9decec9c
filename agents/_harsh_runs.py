"""The harsh-event detector's runs of one chunk, as one compiled kernel.

:func:`run_table` finds, on the four channels (braking ``-a_long``, acceleration
``a_long``, left ``a_lat``, right ``-a_lat``), the runs beyond the release level and sums
over each what :mod:`agents.harsh_events` keeps of a run, together with the shock memory:
one call where ``_shocks``, ``_runs`` and ``_run_sums`` made some thirty small NumPy calls
per 30 s frame. Sums over a run are differences of sequential prefix sums over the whole chunk, as
``np.cumsum`` makes them, so the bits are those of the NumPy form that
``tests/unit/test_harsh_kernels.py`` keeps as its oracle.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["CHANNELS", "I_FIELDS", "F_FIELDS", "run_table"]

CHANNELS = ("brake", "accel", "latp", "latn")
# the integer and float columns of run_table's two tables
I_FIELDS = ("start", "end", "first_trig", "n_trig", "n_trig2", "n_abs", "n_shock", "n_trig_v")
F_FIELDS = ("start_t", "end_t", "trig_t", "peak", "sum_a", "v0", "v1", "sum_v", "head")
_NI, _NF = len(I_FIELDS), len(F_FIELDS)


@numba.njit(cache=True, error_model="numpy")
def _mag(base: np.ndarray, k: int, neg: bool) -> float:
    return -base[k] if neg else base[k]


@numba.njit(cache=True, error_model="numpy")
def run_table(ax, a_long, a_lat, v_lp, ab, t, fs, last_ax, last_shock_t, last_v_lp, shock_jerk, shock_memory,
              trig, rel, trig2):  # fmt: skip
    """Runs of ``mag > rel[c]`` on each channel ``c`` of :data:`CHANNELS`, in channel then
    time order.

    ``ax`` is the raw longitudinal acceleration (m/s², for the jerk), ``a_long``/``a_lat``
    the compensated ones (m/s²), ``v_lp`` the low-passed speed (m/s; empty: none), ``ab``
    the ABS flags (empty: none), ``t`` the times (s), ``fs`` the rate (Hz); ``last_*`` are
    the values carried from the previous chunk. ``trig``, ``rel``, ``trig2`` (4,) are per
    channel magnitudes (m/s²). Returns ``(counts (4,), ints (R, 8), floats (R, 9),
    last_shock_t)``: columns :data:`I_FIELDS` (indices in the chunk, ``first_trig`` -1 if
    none) and :data:`F_FIELDS` (s, m/s², m/s, m/s·s, rad); NaN speeds without speed.
    """
    n = ax.size
    has_v = v_lp.size > 0
    has_ab = ab.size > 0
    # the shock memory: samples within shock_memory after a raw jerk beyond shock_jerk
    shocked = np.empty(n, np.bool_)
    prev = ax[0] if not np.isfinite(last_ax) else last_ax
    latest = last_shock_t
    for k in range(n):
        jerk = np.abs(ax[k] - prev) * fs
        prev = ax[k]
        # np.maximum(latest, t if a shock else -inf): NaN wins, ties take the new value
        # (-inf leaves latest as it is)
        if jerk >= shock_jerk and not (latest > t[k] or latest != latest):
            latest = t[k]
        shocked[k] = t[k] - latest <= shock_memory
    # runs per channel: their starts, the four channels side by side (no carried
    # variable, so the loop vectorises)
    r0, r1, r2, r3 = rel[0], rel[1], rel[2], rel[3]
    n0 = np.int64(-a_long[0] > r0)
    n1 = np.int64(a_long[0] > r1)
    n2 = np.int64(a_lat[0] > r2)
    n3 = np.int64(-a_lat[0] > r3)
    for k in range(1, n):
        la, lt, pa, pt = a_long[k], a_lat[k], a_long[k - 1], a_lat[k - 1]
        n0 += np.int64(-la > r0) & np.int64(not -pa > r0)
        n1 += np.int64(la > r1) & np.int64(not pa > r1)
        n2 += np.int64(lt > r2) & np.int64(not pt > r2)
        n3 += np.int64(-lt > r3) & np.int64(not -pt > r3)
    counts = np.array([n0, n1, n2, n3], np.int64)
    total = counts.sum()
    ints = np.empty((total, _NI), np.int64)
    flts = np.empty((total, _NF))
    if total == 0:
        return counts, ints, flts, latest
    # the acceleration the low-passed speed gives (m/s²) and 1 / np.maximum(v, 1)
    a_v = np.empty(n if has_v else 0)
    inv_v = np.empty(n if has_v else 0)
    if has_v:
        pv = v_lp[0] if not np.isfinite(last_v_lp) else last_v_lp
        for k in range(n):
            vk = v_lp[k]
            a_v[k] = (vk - pv) * fs
            pv = vk
            inv_v[k] = 1.0 / (vk if (vk >= 1.0 or vk != vk) else 1.0)
    r = 0
    for c in range(4):
        if counts[c] == 0:
            continue
        base = a_long if c < 2 else a_lat
        neg = c == 0 or c == 3
        sign = -1.0 if neg else 1.0
        use_v = has_v and c < 2
        stop = r + counts[c]
        # prefix sums before sample k, as np.concatenate([[0], np.cumsum(x)])[k]
        cm = 0.0
        ch = 0.0
        cv = 0.0
        cm0 = ch0 = cv0 = 0.0
        s = -1
        j = ft = n_trig = n_trig2 = n_abs = n_shock = n_trig_v = 0
        for k in range(n + 1):
            mag = _mag(base, k, neg) if k < n else 0.0
            above = k < n and mag > rel[c]
            if s >= 0 and not above:  # the run [s, k) ends
                ints[r, 0] = s
                ints[r, 1] = k
                ints[r, 2] = ft
                ints[r, 3] = n_trig
                ints[r, 4] = n_trig2
                ints[r, 5] = n_abs
                ints[r, 6] = n_shock
                ints[r, 7] = n_trig_v
                flts[r, 0] = t[s]
                flts[r, 1] = t[k - 1] + 1.0 / fs
                flts[r, 2] = t[ft] if ft >= 0 else np.nan
                flts[r, 3] = sign * _mag(base, j, neg)
                flts[r, 4] = (cm - cm0) / fs
                flts[r, 5] = v_lp[s] if has_v else np.nan
                flts[r, 6] = v_lp[k - 1] if has_v else np.nan
                flts[r, 7] = cv - cv0 if has_v else np.nan
                flts[r, 8] = (ch - ch0) / fs
                r += 1
                s = -1
                if r == stop:
                    break  # the channel's last run: the rest of the chunk adds nothing
            if k == n:
                break
            if above and s < 0:
                s, j, ft = k, k, -1
                n_trig = n_trig2 = n_abs = n_shock = n_trig_v = 0
                cm0, ch0, cv0 = cm, ch, cv
            hk = mag * (inv_v[k] if has_v else 0.0)
            if k == 0:  # np.cumsum starts with the first element, not 0 + it (signed zeros)
                cm, ch = mag, hk
                cv = v_lp[0] if has_v else 0.0
            else:
                cm = cm + mag
                ch = ch + hk
                if has_v:
                    cv = cv + v_lp[k]
            if s >= 0:
                if mag > _mag(base, j, neg):
                    j = k
                if mag >= trig[c]:
                    n_trig += 1
                    if ft < 0:
                        ft = k
                if mag >= trig2[c]:
                    n_trig2 += 1
                if has_ab and ab[k]:
                    n_abs += 1
                if shocked[k]:
                    n_shock += 1
                if use_v and (-a_v[k] if neg else a_v[k]) >= trig[c]:
                    n_trig_v += 1
    return counts, ints, flts, latest
