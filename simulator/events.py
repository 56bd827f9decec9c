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
