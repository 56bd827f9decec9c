"""Stage 1's computation alone, per frame duration: no broker, no database, no Faust.

    .venv/bin/python bench/stage1_cpu.py [--vehicles 40] [--frame-s 2 5 10 20] [--trip-km 1 1.5] [--fs 100] [--digest]
                                         [--encoding cbor|json]

A simulated fleet (100 Hz, the real SQY network) is cut into frames of each duration (CBOR
unless told);
``pipeline.stage1.FrameHandler.handle`` (decode, pseudonymise, ``process_frame``, state
envelope) runs over all of them in arrival order with an in-memory table, on one core,
after one untimed vehicle's trace has warmed the process-wide caches (filter designs,
response tables), which a long-running worker pays once.
Reports CPU seconds (``time.process_time``), samples/s and milliseconds per frame: the
fixed cost per frame is the intercept of ms/frame against frame duration. Separates the
computation from the plumbing that ``bench/throughput.py`` measures end to end. Ends with
one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.pseudonym import Pseudonymiser  # noqa: E402
from pipeline.stage1 import FrameHandler  # noqa: E402
from roadnet import load_network  # noqa: E402
from schemas.frame import DEFAULT_FRAME_ENCODING, FRAME_ENCODINGS, encode_frame  # noqa: E402
from schemas.tracefile import iter_frames  # noqa: E402


def run(net, messages: list[bytes], digest=None) -> tuple[float, int]:
    """CPU seconds and samples to handle ``messages`` in order (state in a dict). With a
    ``hashlib`` object as ``digest``, every frame's records and state bytes are fed to it
    (outside the timed part): two commits that compute the same give the same digest."""
    h = FrameHandler(net, Pseudonymiser("bench-stage1-cpu-pseudonym-key-0123456789"))
    table: dict[str, bytes] = {}
    n = 0
    cpu = 0.0
    for m in messages:
        t0 = time.process_time()
        out = h.handle(m, table.get)
        cpu += time.process_time() - t0
        if out.dead_letter is not None:
            raise RuntimeError(f"unexpected dead letter: {out.dead_letter}")
        if out.state_key is not None and out.state is not None:
            table[out.state_key] = out.state
            h.confirm(out.state_key, out.seq)
        n += out.n_samples
        if digest is not None:
            for r in (*out.passes, *out.events, *out.impacts):
                digest.update(r.model_dump_json().encode())
            digest.update(out.state or b"-")
    return cpu, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=40)
    ap.add_argument("--frame-s", type=float, nargs="+", default=[2.0, 5.0, 10.0, 20.0])
    ap.add_argument("--seed", type=int, default=515)
    ap.add_argument("--trip-km", type=float, nargs=2, default=(1.0, 1.5))
    ap.add_argument("--fs", type=float, default=100.0, help="sample rate of the simulated fleet, Hz")
    ap.add_argument("--encoding", choices=FRAME_ENCODINGS, default=DEFAULT_FRAME_ENCODING)
    ap.add_argument("--digest", action="store_true",
                    help="also print a SHA-256 of every output record and state (compare two commits)")
    args = ap.parse_args(argv)
    from simulator import simulate_fleet

    net = load_network()
    fleet = simulate_fleet(net, n_vehicles=args.vehicles, seed=args.seed, trip_km=tuple(args.trip_km),
                           departure_spread_s=120, fs_hz=args.fs)
    rows = []
    # warm the process-wide caches (filter designs, response tables) outside the timed runs:
    # a worker pays them once, so in the first timed run they would bias its ms per frame
    run(net, [encode_frame(f, args.encoding) for f in iter_frames(next(iter(fleet.traces.values())), "warm-up",
                                                                  frame_s=10.0)])
    for fs in args.frame_s:
        frames = [f for vid, tr in fleet.traces.items() for f in iter_frames(tr, vid, frame_s=fs)]
        # arrival order: by frame end time, vehicles interleaved as on the topic
        frames.sort(key=lambda f: f.t_s[-1])
        msgs = [encode_frame(f, args.encoding) for f in frames]
        dg = hashlib.sha256() if args.digest else None
        cpu, n = run(net, msgs, dg)
        rows.append({"frame_s": fs, "frames": len(msgs), "samples": n, "cpu_s": round(cpu, 3),
                     "samples_per_s": round(n / cpu), "ms_per_frame": round(1e3 * cpu / len(msgs), 3),
                     **({"digest": dg.hexdigest()[:16]} if dg is not None else {})})
        print(f"frame {fs:5g} s: {len(msgs):6d} frames, {n / cpu:9.0f} samples/s, {1e3 * cpu / len(msgs):6.2f} ms/frame",
              file=sys.stderr)
    x = np.array([r["frame_s"] for r in rows])
    y = np.array([r["ms_per_frame"] for r in rows])
    slope, intercept = np.polyfit(x, y, 1) if len(rows) > 1 else (float("nan"), float("nan"))
    print(json.dumps({"vehicles": args.vehicles, "encoding": args.encoding, "rows": rows,
                      "fixed_ms_per_frame": round(float(intercept), 3),
                      "ms_per_second_of_driving": round(float(slope), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
