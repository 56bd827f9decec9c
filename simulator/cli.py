"""Command line of the simulator (also wired into the ``roadsense`` CLI)::

    python -m simulator generate --vehicles N --seed S --out DIR [--network FILE] [--fs 100]
        [--gps-rate 1] [--gps-sigma 4] [--trip-km 2 6] [--trips 1] [--format csv|csv.gz|parquet]
    python -m simulator replay DIR_OR_FILES... --bootstrap HOST:PORT [--topic vehicle.frames]
        [--frame-s 30] [--speedup 0] [--bundle 10] [--encoding cbor|json] [--no-progress]

Errors of roadsense (bad files, unreachable broker) print their type and message and exit 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from schemas._errors import RoadsenseError
from schemas.bundle import DEFAULT_BUNDLE_FRAMES
from schemas.frame import DEFAULT_FRAME_ENCODING, DEFAULT_FRAME_S, FRAME_ENCODINGS
from simulator._errors import SimulatorError

__all__ = [
    "add_framing_arguments",
    "add_generate_arguments",
    "add_replay_arguments",
    "bundle_size",
    "build_parser",
    "generate",
    "generate_from_args",
    "main",
    "run_replay",
]


def add_generate_arguments(g: argparse.ArgumentParser) -> None:
    """The options of ``generate`` (also used by the ``roadsense simulate`` command)."""
    g.add_argument("--vehicles", type=int, required=True)
    g.add_argument("--seed", type=int, required=True)
    g.add_argument("--out", type=Path, required=True, help="output directory")
    g.add_argument("--network", type=Path, default=None, help="road network GeoJSON (default: SQY Plaisir)")
    g.add_argument("--fs", type=float, default=100.0, help="inertial sample rate, Hz (5-200)")
    g.add_argument("--gps-rate", type=float, default=1.0, help="GPS fixes per second (0.2-5)")
    g.add_argument("--gps-sigma", type=float, default=4.0, help="GPS noise per axis, m")
    g.add_argument("--gps-dropouts", type=float, default=1.0, help="GPS dropouts per hour")
    g.add_argument("--gps-correlation", type=float, default=0.0, help="GPS error time constant, s (0 = white)")
    g.add_argument("--trip-km", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"))
    g.add_argument("--trips", type=int, default=1, help="trips per vehicle")
    g.add_argument("--harsh-per-km", type=float, default=0.1, help="injected harsh brakes per km")
    g.add_argument("--start", default="2024-03-04T07:30:00+00:00", help="ISO 8601 start time with offset")
    g.add_argument("--format", choices=("csv", "csv.gz", "parquet"), default="csv")
    g.add_argument("--time-format", choices=("epoch", "iso"), default="epoch")


def bundle_size(text: str) -> int:
    """``argparse`` type of a ``--bundle`` option: frames per bundle, 0 for plain frames."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (plain frames) or more, not {n}")
    return n


def add_framing_arguments(r: argparse.ArgumentParser) -> None:
    """How a replay cuts and sends frames (``--frame-s``, ``--speedup``, ``--bundle``,
    ``--encoding``): the same options for ``python -m simulator replay`` and ``roadsense
    replay``."""
    r.add_argument("--frame-s", type=float, default=DEFAULT_FRAME_S)
    r.add_argument("--speedup", type=float, default=0.0, help="0 = as fast as possible, 1 = real time")
    r.add_argument("--bundle", type=bundle_size, default=DEFAULT_BUNDLE_FRAMES, metavar="N",
                   help="pack up to N frames per message, per partition, as a gateway would (schemas.bundle; "
                        "0 = one frame per message, keyed by vehicle)")
    r.add_argument("--encoding", choices=FRAME_ENCODINGS, default=DEFAULT_FRAME_ENCODING,
                   help="frame encoding (schemas.frame_cbor; the worker reads both)")


def add_replay_arguments(r: argparse.ArgumentParser) -> None:
    """The options of ``replay``."""
    r.add_argument("paths", nargs="+", type=Path, help="trace files or fleet directories")
    r.add_argument("--bootstrap", required=True, help="HOST:PORT of the Kafka broker")
    r.add_argument("--topic", default="vehicle.frames")
    add_framing_arguments(r)
    r.add_argument("--timeout", type=float, default=10.0, help="I/O timeout, s")
    r.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulator", description="Simulated vehicle traces with ground truth.")
    sub = p.add_subparsers(dest="command", required=True)
    add_generate_arguments(sub.add_parser("generate", help="simulate a fleet and write traces + ground truth"))
    add_replay_arguments(sub.add_parser("replay", help="send trace files to Kafka as frames"))
    return p


def generate_from_args(args: argparse.Namespace) -> int:
    """Run ``generate`` from parsed ``add_generate_arguments`` options; returns the exit code 0."""
    generate(args)
    return 0


def generate(args: argparse.Namespace) -> Path:
    from datetime import datetime

    from roadnet import load_network
    from simulator.fleet import simulate_fleet
    from simulator.io import write_fleet

    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        raise SimulatorError("--start needs a zone offset, e.g. 2024-03-04T07:30:00+00:00")
    t = time.perf_counter()
    net = load_network(args.network)
    fleet = simulate_fleet(
        net, n_vehicles=args.vehicles, seed=args.seed, start=start, fs_hz=args.fs,
        gps_rate_hz=args.gps_rate, gps_sigma_m=args.gps_sigma, gps_dropouts_per_h=args.gps_dropouts,
        gps_correlation_s=args.gps_correlation,
        trip_km=tuple(args.trip_km), trips_per_vehicle=args.trips,
        harsh_brakes_per_km=args.harsh_per_km,
    )  # fmt: skip
    path = write_fleet(fleet, args.out, format=args.format, time_format=args.time_format)
    n = sum(len(tr) for tr in fleet.traces.values())
    print(
        f"{len(fleet.traces)} vehicles, {n} samples, {len(fleet.truth.events['type'])} harsh events"
        f" -> {path} ({time.perf_counter() - t:.1f} s)"
    )
    return path


def run_replay(args: argparse.Namespace) -> None:
    from simulator.replay import replay

    t = time.perf_counter()
    res = replay(
        args.paths, args.bootstrap, args.topic, frame_s=args.frame_s, speedup=args.speedup,
        progress=not args.no_progress, timeout_s=args.timeout, bundle=args.bundle, encoding=args.encoding,
    )  # fmt: skip
    dt = time.perf_counter() - t
    print(f"sent {res.frames} frames, {res.samples} samples in {res.messages} messages to {args.topic} in {dt:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            generate(args)
        else:
            run_replay(args)
    except RoadsenseError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
