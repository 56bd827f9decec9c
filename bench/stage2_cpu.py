"""Stage 2's CPU per record against how full a segment's state is: no broker, no database.

    .venv/bin/python bench/stage2_cpu.py [--fill 0 500 2000 3000] [--coverage] [--vehicles 5000]

``bench/throughput.py`` starts every run from empty segment states, so it never sees what
stage 2 costs once a territory's fleet has driven for a while. A segment's state keeps up
to ``Stage2Params.max_passes`` passes (the coverage) and ``max_impacts`` impacts for
``ttl_days``; at 5,000 vehicles the SQY north network's segments get a pass every few
seconds, so they reach those caps within hours. This bench fills one segment's state
through ``pipeline.stage2.handle_records`` (as the agent does, one record at a time, in
time order), then times what the agent does for one more record at each fill level:
``handle_records`` and the state's ``to_bytes`` (the table write), and apart, the
``from_bytes`` of a state that is not in the worker's decoded-state cache.

By default stage 2 reads impacts only (``ROADSENSE_STAGE2_COVERAGE`` off): a pass record
is then timed on a state without passes and left out of the projection; ``--coverage``
feeds the passes too, as a worker with the option on does.

Two kinds of segment: a *smooth* one (a few random shocks, 0.1 impact per pass) and a
*rough* one (two potholes hit by 80 % of the passes, both axles, and random shocks all
along: 3.6 impacts per pass; on the accuracy bench's seed 2129 the eight segments with
most impacts got 1.3-11 per pass). Impacts are placed
with a fixed seed; times advance by ``--gap-s`` per pass.

The projection: passes and impacts per second of a fleet of ``--vehicles`` (1.86 passes
per vehicle and 30 s, 0.27 impacts per pass: the throughput bench's 400-vehicle fleet and
the accuracy bench's seed 2129), priced at the full states' cost: an impact record at the
rough segment's (impacts gather on rough roads) and, with ``--coverage``, a pass record at
the smooth segment's.
Ends with one JSON line (``ms_per_pass_full``, ``ms_per_impact_full``,
``stage2_cores_projected``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.stage2 import SegmentState, Stage2Params, handle_records  # noqa: E402
from schemas.records import PassImpact, SegmentPass  # noqa: E402

SEGMENT_M = 200.0
PASSES_PER_VEHICLE_S = 5156 / 2777 / 30.0  # bench/throughput.py, 400 vehicles, 30 s frames
IMPACTS_PER_PASS = 0.27  # bench/accuracy_roughness.py seed 2129: 1,204 impacts, 4,526 passes
T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Segment:
    """Records of one segment's traffic: pass ``i`` by one of ``n_vehicles`` vehicles."""

    def __init__(self, kind: str, seed: int, gap_s: float, n_vehicles: int = 500):
        self.rnd = random.Random(seed)
        self.kind = kind
        self.gap_s = gap_s
        self.vehicles = [f"{seed:08x}{k:024x}" for k in range(n_vehicles)]
        self.i = 0

    def next_records(self) -> tuple[SegmentPass, list[PassImpact]]:
        """The next pass and its impacts (front and rear axle at a pothole, shocks)."""
        r, i = self.rnd, self.i
        self.i += 1
        veh = self.vehicles[r.randrange(len(self.vehicles))]
        t = T0 + timedelta(seconds=self.gap_s * i)
        speed = r.uniform(30.0, 60.0)
        dur = SEGMENT_M / (speed / 3.6)
        p = SegmentPass(vehicle=veh, segment_id=self.kind, entry_time=t, exit_time=t + timedelta(seconds=dur),
                        entry_offset_m=0.0, exit_offset_m=SEGMENT_M, covered_m=SEGMENT_M, mean_speed_kmh=speed,
                        n_samples=int(100 * dur), fs_hz=100.0, max_vertical_mps2=4.0, n_harsh_events=0,
                        confidence=0.8)  # fmt: skip
        spots: list[tuple[float, int]] = []
        if self.kind == "rough":
            for hole in (62.0, 141.0):
                if r.random() < 0.8:  # both axles, one wheelbase apart
                    spots += [(hole + r.gauss(0, 0.4), -1), (hole + 2.6 + r.gauss(0, 0.4), -1)]
            n_shocks = 1 if r.random() < 0.4 else 0
        else:
            n_shocks = 1 if r.random() < 0.1 else 0
        spots += [(r.uniform(0, SEGMENT_M), r.choice((-1, 1))) for _ in range(n_shocks)]
        imps = []
        for off, pol in spots:
            it = t + timedelta(seconds=off / (speed / 3.6))
            imps.append(PassImpact(
                vehicle=veh, segment_id=self.kind, time=it, offset_m=round(min(max(off, 0.0), SEGMENT_M), 2),
                peak_mps2=round(r.uniform(2.0, 9.0), 3), polarity=pol, slowdown=1.0, n_lobes=2, n_peaks=1,
                speed_kmh=round(speed, 2), severity=round(r.uniform(4.0, 9.0), 3), duration_s=0.1, kind_score=0.5,
                fs_hz=100.0, speed_dip=1.0, rise_mps2=0.3,
            ))  # fmt: skip
        return p, imps


def feed(st: SegmentState | None, seg: Segment, n_passes: int, params: Stage2Params,
         coverage: bool) -> SegmentState | None:  # fmt: skip
    for _ in range(n_passes):
        p, imps = seg.next_records()
        if coverage:
            st, _ = handle_records(st, [], [p], p.exit_time, params=params)
        for imp in imps:
            st, _ = handle_records(st, [imp], [], imp.time, params=params)
    return st


def time_records(st: SegmentState, seg: Segment, reps: int, params: Stage2Params) -> dict:
    """CPU ms of one more pass and one more impact (handle_records + to_bytes), each on
    the same state, and of from_bytes."""
    probe = Segment(seg.kind, 99, seg.gap_s)
    probe.i = seg.i
    passes, impacts = [], []
    while len(passes) < reps or len(impacts) < reps:
        p, imps = probe.next_records()
        passes.append(p)
        impacts += imps
    out = {}
    for name, recs in (("pass", passes[:reps]), ("impact", impacts[:reps])):
        t0 = time.process_time()
        for rec in recs:
            new, _ = (handle_records(st, [rec], [], rec.time, params=params) if name == "impact"
                      else handle_records(st, [], [rec], rec.exit_time, params=params))
            new.to_bytes()
        out[f"ms_per_{name}"] = 1e3 * (time.process_time() - t0) / reps
    raw = st.to_bytes()
    t0 = time.process_time()
    for _ in range(reps):
        SegmentState.from_bytes(raw)
    out["ms_from_bytes"] = 1e3 * (time.process_time() - t0) / reps
    out["state_bytes"] = len(raw)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fill", type=int, nargs="+", default=[0, 250, 500, 1000, 2000, 3000],
                    help="passes already in the segment's state (beyond max_passes the oldest are dropped)")
    ap.add_argument("--reps", type=int, default=40, help="records timed per fill level and kind")
    ap.add_argument("--gap-s", type=float, default=20.0, help="seconds between two passes of the segment")
    ap.add_argument("--vehicles", type=int, default=5000, help="fleet size of the projection")
    ap.add_argument("--coverage", action="store_true",
                    help="stage 2 also reads the passes (ROADSENSE_STAGE2_COVERAGE; off by default)")
    ap.add_argument("--stage2", nargs="*", default=[], metavar="FIELD=VALUE", help="Stage2Params fields")
    args = ap.parse_args(argv)
    from pothole_replay import _pairs  # FIELD=VALUE as the replay bench reads them

    p = replace(Stage2Params(), **_pairs(args.stage2))
    rows = []
    full: dict[str, dict] = {}
    for kind in ("smooth", "rough"):
        seg = Segment(kind, 7, args.gap_s)
        st, done = None, 0
        for fill in sorted(args.fill):
            st = feed(st, seg, fill - done, p, args.coverage)
            done = fill
            if st is None:
                st = SegmentState(kind)
            row = {"segment": kind, "passes_fed": fill, "passes_kept": st.passes["t0"].size, "impacts_kept": st.impacts["t"].size,
                   **time_records(st, seg, args.reps, p)}  # fmt: skip
            rows.append(row)
            full[kind] = row
            print(f"{kind:6s} passes fed {fill:5d} (kept {row['passes_kept']:4d}, impacts {row['impacts_kept']:4d}, "
                  f"state {row['state_bytes']:6d} B): pass {row['ms_per_pass']:6.2f} ms, "
                  f"impact {row['ms_per_impact']:6.2f} ms, from_bytes {row['ms_from_bytes']:6.2f} ms",
                  file=sys.stderr, flush=True)  # fmt: skip
    passes_s = args.vehicles * PASSES_PER_VEHICLE_S
    impacts_s = passes_s * IMPACTS_PER_PASS
    cores = (impacts_s * full["rough"]["ms_per_impact"]
             + (passes_s * full["smooth"]["ms_per_pass"] if args.coverage else 0.0)) / 1e3
    fed = f"{impacts_s:.0f} impacts/s" + (f" and {passes_s:.0f} passes/s" if args.coverage else "")
    print(f"{args.vehicles} vehicles: {fed} -> stage 2 at full states ~{cores:.2f} cores (max_passes "
          f"{p.max_passes}, max_impacts {p.max_impacts}, coverage {'on' if args.coverage else 'off'})",
          file=sys.stderr)  # fmt: skip
    print(json.dumps({"ms_per_pass_full": round(full["smooth"]["ms_per_pass"], 3),
                      "ms_per_impact_full": round(full["rough"]["ms_per_impact"], 3),
                      "ms_per_pass_full_rough": round(full["rough"]["ms_per_pass"], 3),
                      "stage2_cores_projected": round(cores, 3), "vehicles": args.vehicles,
                      "coverage": args.coverage, "stage2": args.stage2,
                      "passes_per_s": round(passes_s, 1), "impacts_per_s": round(impacts_s, 1), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
