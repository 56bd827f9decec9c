"""Did safety works help? A before/after study of hotspot zones from the database.

``roadsense before-after --date 2026-03-01 --zone J123 --zone S456#0`` splits the stored
passes and harsh events at the works' date, attributes them to the zones of
:func:`agents.hotspots.zoning` (the ids ``roadsense hotspots`` prints) and tests each zone
and the programme with :mod:`agents.before_after`:

* zones picked for works because of their record regress to the mean, so by default each
  gets the empirical-Bayes prior of a ranking of the *before* period
  (``selected_on_record=False`` for zones chosen for another reason);
* every zone farther than ``spill_m`` from the treated ones, with exposure in both periods,
  is the comparison group: its trend scales the expected after counts, and how much its
  zones' rates move between the periods (:func:`agents.before_after.period_variance`) is
  the variation a place shows without works.

Reads the raw tables (owner role): zones need event positions along segments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import psycopg

from agents.before_after import BeforeAfter, PeriodVariance, before_after, before_after_sites, period_variance
from agents.hotspots import Zoning, attribute_events, rank_hotspots, zone_label, zoning
from pipeline.report import ATTRIBUTION, passes_per_segment
from schemas._errors import RoadsenseError

__all__ = ["PeriodInputs", "WorksStudy", "WorksStudyError", "period_inputs_from_db", "print_works_study", "study_works"]

#: Zones within this distance (m, centre to centre) of a treated zone are left out of the
#: comparison group: approach braking of a junction starts up to ~100 m before it, and
#: works change the traffic around them.
SPILL_M = 250.0


class WorksStudyError(RoadsenseError, ValueError):
    """The study cannot be made: unknown zone, no data in a period, bad dates."""


@dataclass(frozen=True)
class PeriodInputs:
    """Passes per network segment in each period, and the located events with their period.

    ``n_before``/``n_after``: (n_segments,) pass counts; ``ev_segment``/``ev_offset_m``:
    network index and offset of each event; ``ev_after``: bool per event (False: before).
    """

    date: datetime
    before: tuple[datetime, datetime]
    after: tuple[datetime, datetime]
    n_before: np.ndarray
    n_after: np.ndarray
    ev_segment: np.ndarray
    ev_offset_m: np.ndarray
    ev_after: np.ndarray


@dataclass(frozen=True)
class ZoneResult:
    zone_id: str
    label: str
    selected_on_record: bool
    result: BeforeAfter


@dataclass(frozen=True)
class WorksStudy:
    """Per-zone results, the programme (all zones together) and the comparison group."""

    inputs: PeriodInputs
    zones: list[ZoneResult]
    programme: BeforeAfter
    comparison: tuple[float, float, float, float] | None
    period: PeriodVariance | None
    n_comparison_zones: int

    def as_dict(self) -> dict:
        iso = lambda d: d.isoformat()  # noqa: E731
        return {
            "date": iso(self.inputs.date),
            "before": [iso(d) for d in self.inputs.before],
            "after": [iso(d) for d in self.inputs.after],
            "zones": [dict(zone_id=z.zone_id, label=z.label, selected_on_record=z.selected_on_record, **z.result.as_dict())
                      for z in self.zones],  # fmt: skip
            "programme": self.programme.as_dict(),
            "comparison": None if self.comparison is None else dict(zip(
                ("events_before", "vehicle_km_before", "events_after", "vehicle_km_after"), self.comparison)),
            "period_variance": None if self.period is None else self.period.as_dict(),
            "n_comparison_zones": self.n_comparison_zones,
        }  # fmt: skip


def period_inputs_from_db(
    conn: psycopg.Connection, net, date: datetime, *, gap_days: float = 0.0,
    before_days: float | None = None, after_days: float | None = None,
) -> PeriodInputs:  # fmt: skip
    """Passes and events of the two periods around ``date`` (timezone-aware).

    ``gap_days`` after the date are left out (works in progress); ``before_days`` /
    ``after_days`` bound the periods (default: all stored data on each side).
    """
    if date.tzinfo is None:
        raise WorksStudyError(f"the date needs a timezone; got {date.isoformat()}")
    if gap_days < 0 or (before_days is not None and before_days <= 0) or (after_days is not None and after_days <= 0):
        raise WorksStudyError("gap_days must be >= 0 and before_days/after_days > 0")
    lo_t, hi_t = conn.execute("SELECT min(entry_time), max(entry_time) FROM segment_passes").fetchone()
    if lo_t is None:
        raise WorksStudyError("no segment pass in the database")
    b0 = lo_t if before_days is None else max(lo_t, date - timedelta(days=before_days))
    a0 = date + timedelta(days=gap_days)
    a1 = hi_t + timedelta(microseconds=1) if after_days is None else a0 + timedelta(days=after_days)
    if not (b0 < date and a0 < a1):
        raise WorksStudyError(f"need passes on both sides of {date.isoformat()}: stored passes run from "
                              f"{lo_t.isoformat()} to {hi_t.isoformat()}")  # fmt: skip

    n_b, n_a = passes_per_segment(conn, net, b0, date), passes_per_segment(conn, net, a0, a1)
    if n_b.sum() == 0 or n_a.sum() == 0:
        raise WorksStudyError(f"no pass {'before' if n_b.sum() == 0 else 'after'} the works "
                              f"(before {b0.isoformat()}–{date.isoformat()}, after {a0.isoformat()}–{a1.isoformat()})")  # fmt: skip
    ev = conn.execute(
        "SELECT segment_id, offset_m, start_time >= %s FROM harsh_events "
        "WHERE (start_time >= %s AND start_time < %s) OR (start_time >= %s AND start_time < %s) "
        "ORDER BY start_time, vehicle, type", (a0, b0, date, a0, a1),
    ).fetchall()  # fmt: skip
    seg = net.indices_of([r[0] for r in ev]) if ev else np.zeros(0, np.int64)
    return PeriodInputs(
        date=date, before=(b0, date), after=(a0, a1), n_before=n_b, n_after=n_a, ev_segment=seg,
        ev_offset_m=np.asarray([r[1] for r in ev], float), ev_after=np.asarray([r[2] for r in ev], bool),
    )  # fmt: skip


def study_works(
    inputs: PeriodInputs, net, zone_ids: list[str], *, selected_on_record: bool = True,
    spill_m: float = SPILL_M, alpha: float = 0.05, zn: Zoning | None = None,
) -> WorksStudy:  # fmt: skip
    """Test each treated zone and the programme (see the module docstring)."""
    if not zone_ids:
        raise WorksStudyError("name at least one zone (ids as printed by `roadsense hotspots`)")
    if not 0 < alpha < 1:
        raise WorksStudyError(f"alpha must be in (0, 1); got {alpha}")
    zn = zoning(net) if zn is None else zn
    index = {str(z): i for i, z in enumerate(zn.zone_id)}
    unknown = [z for z in zone_ids if z not in index]
    if unknown:
        raise WorksStudyError(f"unknown zone id(s) {unknown}: zone ids are printed by `roadsense hotspots` "
                              "(J<node> for a junction, S<segment> for a street)")  # fmt: skip
    treated = np.array(sorted({index[z] for z in zone_ids}))
    _, vkm_b = zn.exposure(inputs.n_before)
    _, vkm_a = zn.exposure(inputs.n_after)
    ev_zone = attribute_events(zn, inputs.ev_segment, inputs.ev_offset_m)
    ok = ev_zone >= 0
    y_b = np.bincount(ev_zone[ok & ~inputs.ev_after], minlength=len(zn))
    y_a = np.bincount(ev_zone[ok & inputs.ev_after], minlength=len(zn))
    no_exposure = [str(zn.zone_id[z]) for z in treated if not (vkm_b[z] > 0 and vkm_a[z] > 0)]
    if no_exposure:
        raise WorksStudyError(f"zone(s) {no_exposure} have no pass in one of the periods: nothing to compare")

    d = np.hypot(zn.zone_x_m[:, None] - zn.zone_x_m[treated][None, :], zn.zone_y_m[:, None] - zn.zone_y_m[treated][None, :])
    comp = np.flatnonzero((vkm_b > 0) & (vkm_a > 0) & (d.min(axis=1) > spill_m))
    comparison, pv = None, None
    try:
        pv = period_variance(y_b[comp], vkm_b[comp], y_a[comp], vkm_a[comp])
        comparison = (float(y_b[comp].sum()), float(vkm_b[comp].sum()), float(y_a[comp].sum()), float(vkm_a[comp].sum()))
        if comparison[0] < 2 or comparison[2] < 1:
            comparison = None
    except ValueError:
        pass  # too few comparison zones with events: no trend, no period variance
    kw: dict = {"alpha": alpha}
    if comparison is not None:
        kw.update(comparison=comparison, period_variance=pv.variance)

    priors: dict[int, np.ndarray] = {}
    weights = None
    if selected_on_record:
        rk = rank_hotspots(inputs.n_before, inputs.ev_segment[~inputs.ev_after], inputs.ev_offset_m[~inputs.ev_after], net)
        pos = {int(z): i for i, z in enumerate(rk.zone)}
        weights = rk.multiplier_weights
        priors = {int(z): rk.prior_rates(pos[int(z)]) for z in treated if int(z) in pos and rk.group_rate_per_vkm[pos[int(z)]] > 0}
    zones = []
    for z in treated:
        prior = dict(prior_rates=priors[int(z)], prior_weights=weights) if int(z) in priors else {}
        r = before_after(int(y_b[z]), float(vkm_b[z]), int(y_a[z]), float(vkm_a[z]), **prior, **kw)
        zones.append(ZoneResult(str(zn.zone_id[z]), zone_label(net, zn, int(z)), int(z) in priors, r))
    sites_kw = dict(kw)
    if selected_on_record and all(int(z) in priors for z in treated):
        sites_kw.update(prior_rates=np.array([priors[int(z)] for z in treated]), prior_weights=weights)
    programme = before_after_sites(y_b[treated], vkm_b[treated], y_a[treated], vkm_a[treated], **sites_kw)
    return WorksStudy(inputs, zones, programme, comparison, pv, int(len(comp)))


def _hi(x: float) -> str:
    return f"{x:.2f}" if x < 100 else ">100"  # the data cannot bound it


def _verdict(r: BeforeAfter) -> str:
    return {"decrease": "fewer events", "increase": "MORE events", "none": "no change shown"}[r.direction]


def print_works_study(study: WorksStudy, *, as_json: bool = False) -> None:
    """A table for a person (or one JSON document with ``as_json``)."""
    if as_json:
        print(json.dumps(dict(study.as_dict(), attribution=ATTRIBUTION)))
        return
    i = study.inputs
    a = study.programme.alpha
    t = lambda d: f"{d.astimezone(i.date.tzinfo):%Y-%m-%d %H:%M}"  # noqa: E731
    print(f"Before/after the works of {t(i.date)}: before {t(i.before[0])} – {t(i.before[1])}, "
          f"after {t(i.after[0])} – {t(i.after[1])} ({i.date:%Z}; harsh events per vehicle-km, exact test at α = {a:g})")  # fmt: skip
    if study.comparison is not None:
        cb, xb, ca, xa = study.comparison
        print(f"Comparison group: {study.n_comparison_zones} zones beyond {SPILL_M:g} m, {cb:.0f} → {ca:.0f} events, "
              f"trend {study.period.trend:.2f}; a zone's rate varies by {np.sqrt(study.period.variance) * 100:.0f} % between "
              f"the periods without works (from {study.period.n_sites} zones with >= 2 events)")  # fmt: skip
    else:
        print("Comparison group: too few events to estimate a trend (none applied)")
    print(f"{'zone':<16} {'events':>11} {'veh-km':>15} {'expected':>8} {'after/before [95 %]':>22} {'p':>8}  verdict / where")
    rows = [(z.zone_id + ("" if z.selected_on_record else "*"), z.result, z.label) for z in study.zones]
    if len(study.zones) > 1:
        rows.append(("programme", study.programme, f"{len(study.zones)} zones together"))
    for name, r, label in rows:
        print(f"{name:<16} {f'{r.events_before} → {r.events_after}':>11} {f'{r.exposure_before:.0f} → {r.exposure_after:.0f}':>15} "
              f"{r.expected_after:>8.1f} {f'{r.rate_ratio:.2f} [{r.ratio_lo:.2f}–{_hi(r.ratio_hi)}]':>22} {r.p_value:>8.2g}  "
              f"{_verdict(r)}: {label}")  # fmt: skip
    if any(not z.selected_on_record for z in study.zones):
        print("* no before-period prior (not selected on its record, or no ranking prior): no regression-to-the-mean correction")
    print(f"\n{ATTRIBUTION}")
