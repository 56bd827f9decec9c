"""Harsh braking events: where they are injected and what they look like in the signals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.kinematics import Motion

__all__ = ["HARSH_THRESHOLD_MPS2", "HarshBrakes", "plan_harsh_brakes", "apply_harsh_brakes", "measure_harsh_brakes"]

#: Deceleration beyond which braking counts as harsh (m/s², about 0.3 g).
HARSH_THRESHOLD_MPS2 = 3.0


@dataclass(frozen=True, eq=False)
class HarshBrakes:
    """Injected emergency stops: grid index, target speed² (m²/s²) and deceleration (m/s²)."""

    grid_index: np.ndarray
    u_target: np.ndarray
    decel_mps2: np.ndarray


def plan_harsh_brakes(
    s_m: np.ndarray, u: np.ndarray, rng: np.random.Generator, *, per_km: float = 0.1
) -> HarshBrakes:
    """Random harsh brakes (Poisson, ``per_km``) where the vehicle drives over 30 km/h.

    Each slows to 10-50 % of its speed at 4.5-8 m/s².
    """
    length_km = float(s_m[-1]) / 1000.0
    n = rng.poisson(per_km * length_km)
    fast = np.flatnonzero((u > (30 / 3.6) ** 2) & (s_m > 100.0) & (s_m < s_m[-1] - 100.0))
    if n == 0 or len(fast) == 0:
        return HarshBrakes(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    idx = np.sort(rng.choice(fast, size=min(n, len(fast)), replace=False))
    frac = rng.uniform(0.1, 0.5, size=len(idx))
    decel = rng.uniform(4.5, 8.0, size=len(idx))
    return HarshBrakes(idx, u[idx] * frac**2, decel)


def apply_harsh_brakes(s_m: np.ndarray, u: np.ndarray, ev: HarshBrakes) -> np.ndarray:
    """Lower ``u`` by each event's braking cone (before the event point; recovery is left to
    the acceleration envelope)."""
    out = u.copy()
    for i, u_e, b in zip(ev.grid_index, ev.u_target, ev.decel_mps2):
        before = slice(0, i + 1)
        out[before] = np.minimum(out[before], u_e + 2.0 * b * (s_m[i] - s_m[before]))
    return out


def measure_harsh_brakes(motion: Motion, s_event_m: np.ndarray) -> list[dict[str, float]]:
    """Truth of each injected event as seen in the true motion (events that stayed below the
    harsh threshold after smoothing are left out): start index, duration, peak, speed."""
    out: list[dict[str, float]] = []
    ax = motion.accel_long_mps2
    for s_e in s_event_m:
        end = int(np.searchsorted(motion.s_m, s_e + 2.0, side="right"))
        lo = int(np.searchsorted(motion.s_m, s_e - 150.0))
        win = np.arange(lo, min(end + int(motion.fs_hz), len(ax)))
        if len(win) == 0:
            continue
        p = win[np.argmin(ax[win])]
        if ax[p] > -HARSH_THRESHOLD_MPS2 or any(e["peak"] == p for e in out):
            continue  # not harsh after all, or the same braking as an event already kept
        above = ax > -HARSH_THRESHOLD_MPS2
        start = int(np.flatnonzero(above[: p + 1])[-1] + 1) if above[: p + 1].any() else 0
        after = np.flatnonzero(above[p:])
        stop = int(p + after[0]) if len(after) else len(ax)
        out.append(
            {
                "start": start,
                "peak": int(p),
                "duration_s": (stop - start) / motion.fs_hz,
                "peak_mps2": float(ax[p]),
                "speed_kmh": float(motion.v_mps[start] * 3.6),
            }
        )
    return out


# --------------------------------------------------------------------------------------
# Issue 6: all four event types, background + hotspots (used when a SafetyScenario is given)
# --------------------------------------------------------------------------------------
#: Definition of each type on the TRUE motion (telematics practice, m/s²): the truth
#: interval of an injected event is where its true acceleration is beyond this.
TRUTH_THRESHOLD_MPS2 = {"harsh_brake": 3.0, "harsh_accel": 2.5, "harsh_corner": 3.5, "swerve": 3.0}
#: An injected event is *clear* when it stays beyond the threshold this long (s) and peaks
#: at least this far beyond it (m/s²); others are marginal (the bench ignores them).
CLEAR_MIN_DURATION_S = 0.4
CLEAR_MARGIN_MPS2 = 0.3

_EVENT_TYPES = ("harsh_brake", "harsh_accel", "harsh_corner", "swerve")


@dataclass
class SafetyPlan:
    """Events injected on one trip (distance-grid indices unless said otherwise)."""

    brake_idx: list = None  # grid index of the braking end point
    brake_u: list = None  # target speed² there, m²/s²
    brake_decel: list = None
    brake_src: list = None
    brake_s0: list = None  # distance (m) where the braking is planned to start
    accel_lo: list = None  # grid window of the harsh acceleration
    accel_hi: list = None
    accel_a: list = None
    accel_src: list = None
    corner_lo: list = None  # grid window where the cornering limit is raised
    corner_hi: list = None
    corner_factor: list = None
    corner_src: list = None
    swerve_s: list = None  # distance (m) where the swerve starts
    swerve_amp: list = None
    swerve_period: list = None
    swerve_src: list = None

    def __post_init__(self) -> None:
        for k in self.__dataclass_fields__:
            if getattr(self, k) is None:
                setattr(self, k, [])


def accel_envelope_var(u: np.ndarray, s: np.ndarray, accel_mps2: np.ndarray) -> np.ndarray:
    """Like ``kinematics.accel_envelope`` with an acceleration limit per grid point:
    ``u(s) <= min over s' <= s of u(s') + 2 int_{s'}^{s} a``, as one running minimum."""
    a_mid = 0.5 * (accel_mps2[1:] + accel_mps2[:-1])
    big_a = np.r_[0.0, np.cumsum(2.0 * a_mid * np.diff(s))]
    return np.minimum.accumulate(u - big_a) + big_a


def plan_safety_events(
    s_m: np.ndarray,
    u_target: np.ndarray,
    u_prov: np.ndarray,
    *,
    junction_m: np.ndarray,
    turn_deg: np.ndarray,
    junction_node: np.ndarray,
    seg_start_m: np.ndarray,
    segments: np.ndarray,
    curvature_per_m: np.ndarray,
    lat_mps2: float,
    hotspots: tuple,
    background_per_km: dict[str, float],
    corner_per_turn: float,
    t0_s: float,
    rng: np.random.Generator,
) -> SafetyPlan:
    """Draw the harsh events of one trip: background (Poisson per km, per sharp turn) and
    hotspot events (one Bernoulli draw per pass through each hotspot, type from its mix
    among the types feasible there).

    ``u_target`` is the squared target speed with the cornering limits (before the
    envelopes), ``u_prov`` the provisional feasible profile (both envelopes applied): it
    tells where the vehicle is fast or slow. Corner windows must be applied to the target
    *before* the envelopes; see :func:`apply_safety_plan`.
    """
    plan = SafetyPlan()
    ds = float(s_m[1] - s_m[0])
    n = len(s_m)
    length = float(s_m[-1])
    v_prov = np.sqrt(np.maximum(u_prov, 0.0))

    def gi(x: float) -> int:
        return int(np.clip(round(x / ds), 0, n - 1))

    def straight(i: int, span_m: float) -> bool:
        j = gi(s_m[i] + span_m)
        return bool(np.max(np.abs(curvature_per_m[i : j + 1]) * u_prov[i : j + 1]) < 1.0)

    def try_brake(s_start: float, src: str) -> bool:
        i = gi(s_start)
        v0 = float(v_prov[i])
        if v0 < 20 / 3.6 or s_start < 30.0 or s_start > length - 30.0:
            return False
        b = float(rng.uniform(3.8, 7.5))
        dur = float(rng.uniform(0.6, 2.5))
        v1 = max(v0 - b * dur, 0.1 * v0)
        if (v0 - v1) / b < 0.5:
            return False
        e = gi(s_start + (v0**2 - v1**2) / (2.0 * b))
        plan.brake_idx.append(e), plan.brake_u.append(v1**2), plan.brake_decel.append(b), plan.brake_src.append(src)
        plan.brake_s0.append(float(s_m[i]))
        return True

    def try_accel(s_start: float, src: str) -> bool:
        i = gi(s_start)
        v0 = float(v_prov[i])
        if v0 > 30 / 3.6 or s_start < 5.0:
            return False
        a = float(rng.uniform(3.0, 4.5))
        dur = float(rng.uniform(0.8, 2.5))
        reach = v0 * dur + 0.5 * a * dur**2
        j = gi(s_start + reach)
        room = np.sqrt(max(float(np.min(u_target[i : j + 1])), 0.0)) - v0
        dur = min(dur, room / a)
        if dur < 0.7:
            return False
        j = gi(s_start + v0 * dur + 0.5 * a * dur**2)
        plan.accel_lo.append(i), plan.accel_hi.append(j), plan.accel_a.append(a), plan.accel_src.append(src)
        return True

    def turns(lo_m: float, hi_m: float) -> bool:
        """The road really turns there: >= 30° of heading change, nearly all one way
        (not an S-shaped jog, which taken fast is a lane change, not a corner)."""
        i, j = gi(lo_m - 12.0), gi(hi_m + 12.0)
        k = curvature_per_m[i : j + 1] * ds
        net_turn = abs(float(k.sum()))
        return net_turn >= np.radians(30.0) and float(np.abs(k).sum()) <= 1.3 * net_turn

    def try_corner(lo_m: float, hi_m: float, centre: int, src: str) -> bool:
        if u_target[centre] <= 0.0:
            return False  # a stop at that junction
        if not turns(lo_m, hi_m):
            return False
        lat = float(rng.uniform(4.2, 6.0))
        plan.corner_lo.append(gi(lo_m)), plan.corner_hi.append(gi(hi_m))
        plan.corner_factor.append(lat / lat_mps2), plan.corner_src.append(src)
        return True

    def try_swerve(s_start: float, src: str) -> bool:
        i = gi(s_start)
        v0 = float(v_prov[i])
        period = float(rng.uniform(1.2, 2.5))
        if v0 < 25 / 3.6 or s_start < 30.0 or s_start + v0 * period > length - 30.0 or not straight(i, v0 * period):
            return False
        plan.swerve_s.append(float(s_m[i])), plan.swerve_amp.append(float(rng.uniform(4.0, 6.5)) * rng.choice([-1.0, 1.0]))
        plan.swerve_period.append(period), plan.swerve_src.append(src)
        return True

    # --- background: Poisson per km, positions uniform among feasible places
    length_km = length / 1000.0
    fast = np.flatnonzero((v_prov > 30 / 3.6) & (s_m > 100.0) & (s_m < length - 100.0))
    slow_rising = np.flatnonzero((v_prov < 25 / 3.6) & (np.r_[np.diff(u_prov), 0.0] > 0.0) & (s_m > 20.0))
    for kind, pool, fn in (
        ("harsh_brake", fast, try_brake),
        ("harsh_accel", slow_rising, try_accel),
        ("swerve", fast, try_swerve),
    ):
        k = int(rng.poisson(background_per_km.get(kind, 0.0) * length_km))
        if k and len(pool):
            for i in rng.choice(pool, size=min(k, len(pool)), replace=False):
                fn(float(s_m[i]), "")
    sharp = np.flatnonzero(np.abs(turn_deg) >= 40.0)
    for k in sharp[rng.random(len(sharp)) < corner_per_turn]:
        sj = float(junction_m[k])
        try_corner(sj - 8.0, sj + 8.0, gi(sj), "")

    # --- hotspots: one draw per pass
    node_hot = {}
    for h in hotspots:
        for v in h.nodes:
            node_hot[int(v)] = h
    seg_hot = {int(sg): h for h in hotspots for sg in h.segments}
    done: set[str] = set()
    for k, node in enumerate(junction_node):
        h = node_hot.get(int(node))
        if h is None or h.id in done:
            continue
        done.add(h.id)
        sj = float(junction_m[k])
        # the last junction of this hotspot on the route (a roundabout's exit)
        same = [kk for kk in range(k, len(junction_node)) if node_hot.get(int(junction_node[kk])) is h]
        s_exit = float(junction_m[same[-1]])
        if rng.random() >= h.rate_at(t0_s):
            continue
        feasible = []
        i = gi(sj)
        if v_prov[gi(sj - 20.0)] >= 20 / 3.6:
            feasible.append("harsh_brake")
        if v_prov[i] <= 30 / 3.6:
            feasible.append("harsh_accel")
        if (abs(turn_deg[k]) >= 40.0 or h.kind == "roundabout") and u_target[i] > 0.0 and turns(sj - 8.0, s_exit + 8.0):
            feasible.append("harsh_corner")
        if v_prov[gi(sj - 35.0)] >= 25 / 3.6:
            feasible.append("swerve")
        feasible = [t for t in feasible if h.mix.get(t, 0.0) > 0.0]
        if not feasible:
            continue
        w = np.array([h.mix[t] for t in feasible])
        kind = feasible[int(rng.choice(len(feasible), p=w / w.sum()))]
        if kind == "harsh_brake":
            try_brake(sj - float(rng.uniform(8.0, 30.0)), h.id)
        elif kind == "harsh_accel":
            try_accel(s_exit + float(rng.uniform(-3.0, 8.0)), h.id)
        elif kind == "harsh_corner":
            try_corner(sj - 8.0, s_exit + 8.0, i, h.id)
        else:
            try_swerve(sj - float(rng.uniform(15.0, 35.0)), h.id)
    for k, sg in enumerate(segments):
        h = seg_hot.get(int(sg))
        if h is None or h.id in done:
            continue
        done.add(h.id)
        lo, hi = float(seg_start_m[k]) + 45.0, float(seg_start_m[k + 1]) - 45.0
        if hi <= lo or rng.random() >= h.rate_at(t0_s):
            continue
        kinds = [t for t in ("harsh_brake", "swerve") if h.mix.get(t, 0.0) > 0.0]
        w = np.array([h.mix[t] for t in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=w / w.sum()))]
        (try_brake if kind == "harsh_brake" else try_swerve)(float(rng.uniform(lo, hi)), h.id)
    return plan


def raise_corners(u_target: np.ndarray, plan: SafetyPlan, v_max_mps: np.ndarray) -> np.ndarray:
    """Raise the cornering limit in each corner window (the driver takes the turn too fast),
    never above ``v_max_mps`` (the driver's top speed there)."""
    out = u_target.copy()
    for lo, hi, f in zip(plan.corner_lo, plan.corner_hi, plan.corner_factor):
        sl = slice(lo, hi + 1)
        out[sl] = np.where(out[sl] > 0.0, np.minimum(out[sl] * f, v_max_mps[sl] ** 2), 0.0)
    return out


def accel_limits(n: int, accel_mps2: float, plan: SafetyPlan) -> np.ndarray:
    """Per-grid-point acceleration limit: the driver's, raised in harsh-acceleration windows."""
    a = np.full(n, float(accel_mps2))
    for lo, hi, ah in zip(plan.accel_lo, plan.accel_hi, plan.accel_a):
        a[lo : hi + 1] = ah
    return a


def swerve_lateral(t_s: np.ndarray, s_m: np.ndarray, plan: SafetyPlan) -> tuple[np.ndarray, np.ndarray]:
    """Lateral acceleration of the swerves (one sine period each: out and back into lane),
    and each swerve's start time (s from the trip start)."""
    out = np.zeros(len(t_s))
    starts = np.interp(np.asarray(plan.swerve_s, float), s_m, t_s) if plan.swerve_s else np.zeros(0)
    for t0, amp, per in zip(starts, plan.swerve_amp, plan.swerve_period):
        lo, hi = np.searchsorted(t_s, [t0, t0 + per])
        out[lo:hi] += amp * np.sin(2.0 * np.pi * (t_s[lo:hi] - t0) / per)
    return out, starts


def _run_around(x: np.ndarray, p: int, thr: float) -> tuple[int, int]:
    """[start, stop) of the run of ``x > thr`` containing index ``p``."""
    below = x <= thr
    b = np.flatnonzero(below[: p + 1])
    start = int(b[-1] + 1) if len(b) else 0
    a = np.flatnonzero(below[p:])
    stop = int(p + a[0]) if len(a) else len(x)
    return start, stop


def measure_safety_events(
    t_s: np.ndarray, s_m: np.ndarray, v_mps: np.ndarray, ax: np.ndarray, ay: np.ndarray,
    s_grid: np.ndarray, plan: SafetyPlan, swerve_t0: np.ndarray, fs_hz: float,
) -> list[dict]:  # fmt: skip
    """Truth of each injected event, measured on the TRUE motion (noise-free, vehicle
    frame, no grade or mounting): start/peak sample, duration beyond the type's threshold,
    signed peak, speed at start, source hotspot, and whether it is clear (not marginal)."""
    out: list[dict] = []
    seen: set[tuple[str, int]] = set()

    def add(kind: str, x: np.ndarray, sign: float, lo: int, hi: int, src: str) -> None:
        lo, hi = max(lo, 0), min(hi, len(x))
        if hi <= lo:
            return
        p = lo + int(np.argmax(sign * x[lo:hi]))
        thr = TRUTH_THRESHOLD_MPS2[kind]
        if sign * x[p] <= thr:
            return
        a, b = _run_around(sign * x, p, thr)
        if (kind, a) in seen:
            return  # the same manoeuvre as an event already kept
        seen.add((kind, a))
        dur = (b - a) / fs_hz
        clear = dur >= CLEAR_MIN_DURATION_S and sign * x[p] >= thr + CLEAR_MARGIN_MPS2
        out.append(dict(type=kind, start=a, peak=p, duration_s=dur, peak_mps2=float(x[p]),
                        speed_kmh=float(v_mps[a] * 3.6), src=src, clear=bool(clear)))  # fmt: skip

    fs = int(round(fs_hz))
    for e, s0, src in zip(plan.brake_idx, plan.brake_s0, plan.brake_src):
        j = int(np.searchsorted(s_m, s_grid[e], side="left"))
        lo = int(np.searchsorted(s_m, s0 - 5.0))
        add("harsh_brake", ax, -1.0, lo, j + fs // 2, src)
    for lo_g, hi_g, src in zip(plan.accel_lo, plan.accel_hi, plan.accel_src):
        lo, hi = np.searchsorted(s_m, [s_grid[lo_g], s_grid[hi_g]])
        add("harsh_accel", ax, 1.0, int(lo) - fs // 2, int(hi) + fs // 2, src)
    for lo_g, hi_g, src in zip(plan.corner_lo, plan.corner_hi, plan.corner_src):
        lo, hi = np.searchsorted(s_m, [s_grid[lo_g], s_grid[hi_g]])
        # every lobe beyond the threshold in the window is one harsh cornering (a raised
        # speed through an S-bend or a roundabout gives several)
        for sign in (1.0, -1.0):
            above = sign * ay[lo:hi] > TRUTH_THRESHOLD_MPS2["harsh_corner"]
            edges = np.diff(np.r_[0, above.astype(np.int8), 0])
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                add("harsh_corner", ay, sign, int(lo + a), int(lo + b), src)
    for t0, amp, per, src in zip(swerve_t0, plan.swerve_amp, plan.swerve_period, plan.swerve_src):
        a = int(np.searchsorted(t_s, t0))
        b = int(np.searchsorted(t_s, t0 + per))
        if b <= a:
            continue
        p = a + int(np.argmax(np.abs(ay[a:b])))
        out.append(dict(type="swerve", start=a, peak=p, duration_s=(b - a) / fs_hz, peak_mps2=float(ay[p]),
                        speed_kmh=float(v_mps[a] * 3.6), src=src, clear=bool(abs(amp) >= 4.0 and per >= 1.0)))  # fmt: skip
    out.sort(key=lambda d: d["start"])
    return out
