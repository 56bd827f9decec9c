"""``roadsense`` command line: a thin layer over importable functions.

Catches only ``RoadsenseError``: prints its type and message and exits 1. Anything else
is a bug and shows its traceback.

    roadsense demo [--vehicles N] [--seed S]      the whole pipeline on the SQY network
    roadsense stack up|down|status [--timescale]  the local Kafka + PostgreSQL (+ TimescaleDB tier)
    roadsense simulate --vehicles N --seed S --out DIR
    roadsense replay TRACES... [--frame-s 30] [--speedup 0] [--bundle 10] [--encoding cbor|json]
    roadsense worker                              one stage-1 worker (until SIGTERM)
    roadsense score TRACES... --network FILE --out DIR [--references CSV]
    roadsense calibrate [--references CSV] [--days 90]   fleet self-calibration (vehicle gains)
    roadsense top [--limit 10]                    roughest segments, potholes, harshest spots
    roadsense hotspots [--limit 10]               accident-prone zones (empirical Bayes)
    roadsense before-after --date D --zone ID...  did safety works change a zone's harsh-event rate?
    roadsense db migrate
    roadsense schemas [--out schemas/json]        regenerate the JSON Schema files
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from schemas._errors import RoadsenseError
from schemas.bundle import DEFAULT_BUNDLE_FRAMES
from schemas.frame import DEFAULT_FRAME_S

__all__ = ["main"]


def _settings(**overrides):
    from pipeline.localenv import local_settings

    return local_settings(**overrides)


def cmd_stack(args: argparse.Namespace) -> int:
    from pipeline import stack

    argv = [args.action] + (["--timescale"] if args.timescale else [])
    return stack.main(argv) or 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulator import cli as sim_cli

    return sim_cli.generate_from_args(args)


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.topics import ensure_topics
    from simulator.replay import replay

    s = _settings()
    ensure_topics(s)
    n = replay(args.traces, s.kafka_bootstrap, s.frames_topic, frame_s=args.frame_s, speedup=args.speedup,
               progress=True, bundle=args.bundle, encoding=args.encoding)
    print(f"replayed {n.frames} frames, {n.samples} samples in {n.messages} messages to {s.frames_topic}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.app import run_worker
    from pipeline.topics import ensure_topics

    s = _settings()
    # The output topics must exist before the first send: a producer flush waits for
    # a topic's metadata, so a missing one (auto-creation off) would stall the worker.
    ensure_topics(s)
    run_worker(s, loglevel=args.loglevel)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from pipeline.offline import score_traces, write_outputs
    from pipeline.pseudonym import Pseudonymiser
    from roadnet import load_network

    from pipeline.calibration import load_reference_csv

    s = _settings()
    net = load_network(args.network)
    refs = {r[0]: r[1] for r in load_reference_csv(args.references)} if args.references else None
    run = score_traces(args.traces, net, pseudonymise=Pseudonymiser(s.pseudonym_key.get_secret_value()),
                       frame_s=args.frame_s, progress=True, reference_iri=refs, coverage=s.stage2_coverage)
    files = write_outputs(run, net, args.out)
    print(f"{run.n_vehicles} vehicles, {run.n_frames} frames -> {len(run.passes)} passes, "
          f"{len(run.events)} harsh events, {len(run.scores)} segments scored, {len(run.impacts)} impacts, "
          f"{len(run.alerts)} confirmed potholes")
    cal = run.calibration
    print(f"calibration: {len(cal.gains)} of {cal.n_vehicles} vehicles with their own gain, default gain "
          f"{cal.default_gain:.3f}, anchor {cal.anchor} ({cal.n_references} reference segments)")
    if run.dead_letters:
        print(f"{len(run.dead_letters)} frames rejected, first: {run.dead_letters[0][1]}", file=sys.stderr)
    for f in files:
        print(f"  {f}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pipeline import db
    from pipeline.calibration import load_reference_csv, run_calibration, write_references

    s = _settings()
    with db.connect(s.pg_dsn.get_secret_value(), autocommit=True) as conn:
        if args.references:
            n = write_references(conn, load_reference_csv(args.references))
            print(f"{n} reference segments written")
        run = run_calibration(conn, days=args.days)
    cal = run.calibration
    print(f"calibration run {run.run_id}: {len(cal.gains)} of {cal.n_vehicles} vehicles with their own gain, "
          f"default gain {cal.default_gain:.3f}, anchor {cal.anchor} ({cal.n_references} reference segments), "
          f"{cal.n_rows} (vehicle, segment) means from {run.window_from} to {run.window_to}")
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from pipeline import db
    from pipeline.report import print_top

    s = _settings()
    with db.connect(s.pg_dsn.get_secret_value()) as conn:
        print_top(conn, limit=args.limit)
    return 0


def cmd_hotspots(args: argparse.Namespace) -> int:
    from pipeline import db
    from pipeline.report import print_hotspots
    from roadnet import load_network

    s = _settings()
    with db.connect(s.pg_dsn.get_secret_value()) as conn:
        print_hotspots(conn, load_network(s.network_path), limit=args.limit)
    return 0


def _works_date(text: str):
    """An ISO date or date-time; without a timezone, the territory's (Europe/Paris)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from pipeline.works import WorksStudyError

    try:
        d = datetime.fromisoformat(text)
    except ValueError as exc:
        raise WorksStudyError(f"--date {text!r} is not an ISO date (2026-03-01 or 2026-03-01T06:00+01:00)") from exc
    return d if d.tzinfo is not None else d.replace(tzinfo=ZoneInfo("Europe/Paris"))


def cmd_before_after(args: argparse.Namespace) -> int:
    from pipeline import db
    from pipeline.works import period_inputs_from_db, print_works_study, study_works
    from roadnet import load_network

    s = _settings()
    date = _works_date(args.date)
    net = load_network(s.network_path)
    with db.connect(s.pg_dsn.get_secret_value()) as conn:
        inputs = period_inputs_from_db(conn, net, date, gap_days=args.gap_days, before_days=args.before_days,
                                       after_days=args.after_days)  # fmt: skip
    study = study_works(inputs, net, args.zone, selected_on_record=not args.not_selected_on_record, alpha=args.alpha)
    print_works_study(study, as_json=args.json)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from pipeline import db
    from roadnet import load_network

    s = _settings()
    with db.connect(s.pg_dsn.get_secret_value(), autocommit=True) as conn:
        applied = db.migrate(conn)
        db.load_network(conn, load_network(s.network_path))
        grafana_password = os.environ.get("ROADSENSE_GRAFANA_PASSWORD")
        if grafana_password:
            # the dashboards' login, a member of the read-only role (sql/006)
            db.ensure_login(conn, "roadsense_grafana", grafana_password)
    print(f"applied {len(applied)} migration(s)")
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from schemas.generate import write_json_schemas

    for p in write_json_schemas(args.out):
        print(p)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(vehicles=args.vehicles, seed=args.seed, out=Path(args.out), frame_s=args.frame_s,
                    bundle=args.bundle)


def build_parser() -> argparse.ArgumentParser:
    from simulator.cli import add_framing_arguments, add_generate_arguments, bundle_size

    p = argparse.ArgumentParser(prog="roadsense", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="simulate a fleet over SQY and run it through the whole pipeline")
    d.add_argument("--vehicles", type=int, default=40)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--frame-s", type=float, default=DEFAULT_FRAME_S)
    d.add_argument("--out", default="out/demo")
    d.add_argument("--bundle", type=bundle_size, default=DEFAULT_BUNDLE_FRAMES, metavar="N",
                   help="frames per Kafka message, per partition (0 = one frame per message)")
    d.set_defaults(func=cmd_demo)

    st = sub.add_parser("stack", help="the local Kafka + PostgreSQL stack")
    st.add_argument("action", choices=["up", "down", "status", "clean"])
    st.add_argument("--timescale", action="store_true", help="also the TimescaleDB (PGlite) tier")
    st.set_defaults(func=cmd_stack)

    sm = sub.add_parser("simulate", help="generate trace files with ground truth")
    add_generate_arguments(sm)
    sm.set_defaults(func=cmd_simulate)

    r = sub.add_parser("replay", help="replay trace files into Kafka")
    r.add_argument("traces", nargs="+")
    add_framing_arguments(r)
    r.set_defaults(func=cmd_replay)

    w = sub.add_parser("worker", help="run a stage-1 worker")
    w.add_argument("--loglevel", default="info")
    w.set_defaults(func=cmd_worker)

    sc = sub.add_parser("score", help="score trace files offline (no Kafka, no database)")
    sc.add_argument("traces", nargs="+")
    sc.add_argument("--network", default=None, help="road network GeoJSON (default: SQY Plaisir)")
    sc.add_argument("--out", required=True)
    sc.add_argument("--frame-s", type=float, default=DEFAULT_FRAME_S)
    sc.add_argument("--references", default=None,
                    help="CSV segment_id,iri_m_per_km[,surveyed_on,source]: the calibration's anchor")
    sc.set_defaults(func=cmd_score)

    ca = sub.add_parser("calibrate", help="fleet self-calibration: per-vehicle roughness gains in the database")
    ca.add_argument("--references", default=None,
                    help="CSV segment_id,iri_m_per_km[,surveyed_on,source] upserted into reference_segments first")
    ca.add_argument("--days", type=float, default=90.0, help="days of data read, ending at the newest day stored")
    ca.set_defaults(func=cmd_calibrate)

    t = sub.add_parser("top", help="roughest segments, confirmed potholes and harshest spots from the database")
    t.add_argument("--limit", type=int, default=10)
    t.set_defaults(func=cmd_top)

    hs = sub.add_parser("hotspots", help="accident-prone zones, exposure-normalised (from the database)")
    hs.add_argument("--limit", type=int, default=10)
    hs.set_defaults(func=cmd_hotspots)

    ba = sub.add_parser("before-after", help="before/after study of safety works at hotspot zones (from the database)")
    ba.add_argument("--date", required=True, help="the works' date, ISO (Europe/Paris unless a timezone is given)")
    ba.add_argument("--zone", action="append", required=True, help="zone id from `roadsense hotspots` (repeat for a programme)")
    ba.add_argument("--gap-days", type=float, default=0.0, help="days after the date left out (works in progress)")
    ba.add_argument("--before-days", type=float, default=None, help="length of the before period (default: all data)")
    ba.add_argument("--after-days", type=float, default=None, help="length of the after period (default: all data)")
    ba.add_argument("--not-selected-on-record", action="store_true",
                    help="the zones were chosen for another reason than their event record: no regression-to-the-mean prior")
    ba.add_argument("--alpha", type=float, default=0.05, help="test level (two-sided)")
    ba.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    ba.set_defaults(func=cmd_before_after)

    dbp = sub.add_parser("db", help="database maintenance")
    dbp.add_argument("action", choices=["migrate"])
    dbp.set_defaults(func=cmd_db)

    js = sub.add_parser("schemas", help="write JSON Schema files generated from schemas/")
    js.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "schemas" / "json"))
    js.set_defaults(func=cmd_schemas)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RoadsenseError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
