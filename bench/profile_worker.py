"""Where a stage-1 worker's time goes: one worker, sampled by py-spy, end to end.

    .venv/bin/pip install -e '.[bench]'       # py-spy
    .venv/bin/python bench/profile_worker.py [--vehicles 200] [--frame-s 5]

A topic is pre-loaded with the frames of a simulated fleet (100 Hz, the real SQY
network, as ``bench/throughput.py``); one ``roadsense worker`` consumes it into a fresh
PostgreSQL database. ``py-spy record`` samples its stacks (100 Hz, idle stacks excluded)
in the steady state only: it attaches once the group has committed a share of the topic
(``--window``, from 20 %) and detaches before the end (85 %), so the start-up (imports,
compiles, the group join) and the last partial batches stay out. Each sample is charged to the first category its stack matches, from the
innermost frame outwards:

- ``map matching``, ``placement`` (blocks to passes), ``impacts``, ``harsh events``,
  ``roughness terms``, ``other processing`` (the rest of ``process_frame``);
- ``frame decode`` (``schemas.frame``, ``schemas.frame_cbor``), ``state encode`` (envelope, zstd,
  state bytes);
- ``database`` (psycopg), ``table and changelog`` (Faust table, RocksDB),
  ``kafka client`` (aiokafka), ``faust plumbing`` (faust/mode: events, acks, streams),
  ``event loop`` (asyncio/uvloop), ``other``.

Each sample is also split by call site: inside ``FrameHandler.handle`` (stage 1: decode,
``process_frame``, state), the own frames of the consumer's and the database's thread
loops (waits that py-spy counts as busy), stage 2 (its agent and its alert writes), or
the rest (stage 1's plumbing: Faust, aiokafka, psycopg, table writes). From those shares
of the busy samples and the frames the worker handled in the profiled seconds it gives
the milliseconds of a frame spent in the handler, in stage 2 and in the rest, and the rate
the plumbing alone would allow.

Prints the shares, the 15 functions with most own time, and one JSON line with the shares
by category and call site and the samples/s the worker reached while profiled (py-spy
slows it a little). A fleet too small to leave whole seconds in the window is an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from throughput import drop_db, env_of, fresh_db, log, settings_for  # noqa: E402

from pipeline import stack  # noqa: E402
from pipeline.demo import stop_workers, wait_until_consumed  # noqa: E402
from pipeline.topics import ensure_topics  # noqa: E402
from schemas.frame import DEFAULT_FRAME_ENCODING, FRAME_ENCODINGS  # noqa: E402
from simulator.cli import bundle_size  # noqa: E402

# (category, substrings of a frame "function (file)"), innermost match wins
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("map matching", ("agents/map_matching.py", "agents/_routes.py", "roadnet/")),
    ("placement", ("_place (agents/passes.py", "_place_chain", "_close_open", "_add_blocks",
                   "agents/roughness.py:estimate")),
    ("impacts", ("agents/potholes.py",)),
    ("harsh events", ("agents/harsh_events.py",)),
    ("roughness terms", ("agents/roughness.py",)),
    ("frame decode", ("schemas/frame.py", "schemas/frame_cbor.py", "cbor2")),
    ("state encode", ("to_bytes", "from_bytes", "pack_envelope", "unpack_envelope", "zstandard")),
    ("other processing", ("agents/passes.py", "pipeline/stage1.py", "pipeline/stage2.py")),
    ("database", ("psycopg", "pipeline/sink.py")),
    ("table and changelog", ("faust/tables", "faust/stores", "rocksdict")),
    ("kafka client", ("aiokafka", "kafka/")),
    ("faust plumbing", ("faust/", "mode/")),
    ("event loop", ("asyncio", "uvloop")),
)


def categorise(stack: list[str]) -> str:
    """Category of one sampled stack (frames outermost first)."""
    for frame in reversed(stack):
        for name, keys in CATEGORIES:
            if any(k in frame for k in keys):
                return name
    return "other"


# Own frames of the threads' loops: the consumer thread waiting on its event loop, the
# database writes' thread pool waiting for work. py-spy's idle detection counts them busy.
WAIT_FRAMES = ("ServiceThread._start_thread (mode/threads.py", "_worker (concurrent/futures/thread.py")


# Stage 2's own frames: its agent (in the event loop) and its alert writes (a thread)
STAGE2_FRAMES = ("create_app.<locals>.stage2 (", "create_app.<locals>.stage2_event (", "write_alerts (")


def call_site(stack: list[str]) -> str:
    """``"handler"`` (under ``FrameHandler.handle``), ``"stage 2"``, ``"thread waits"`` or
    ``"rest"`` (stage 1's plumbing: Faust, aiokafka, the table, the database writes)."""
    if any(f.startswith("FrameHandler.handle (") for f in stack):
        return "handler"
    if stack and stack[-1].startswith(WAIT_FRAMES):
        return "thread waits"
    if any(f.startswith(STAGE2_FRAMES) for f in stack):
        return "stage 2"
    return "rest"


def parse_raw(path: Path) -> tuple[Counter, Counter, Counter, int]:
    """py-spy ``--format raw`` (collapsed stacks): per-category, own-function and
    call-site counts, and the number of samples."""
    cats: Counter = Counter()
    own: Counter = Counter()
    sites: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack_s, _, n = line.rpartition(" ")
        if not stack_s or not n.isdigit():
            continue
        frames = stack_s.split(";")
        k = int(n)
        total += k
        cats[categorise(frames)] += k
        own[frames[-1]] += k
        sites[call_site(frames)] += k
    return cats, own, sites, total


def frame_budget(sites: Counter, frames_per_s: float, samples_per_frame: float) -> dict:
    """Milliseconds of a frame in the stage-1 handler, in stage 2 and in the rest (thread
    waits left out), and the samples/s the rest and stage 2 alone would allow (the handler
    costing nothing)."""
    busy = sites["handler"] + sites["stage 2"] + sites["rest"]
    frame_ms = 1e3 / frames_per_s
    if not busy:  # nothing but waits: no split to give (and no NaN in the JSON line)
        return {"handler_share_of_busy": None, "frame_ms": round(frame_ms, 3), "handler_ms_per_frame": None,
                "stage2_ms_per_frame": None, "other_ms_per_frame": None, "samples_per_s_if_handler_free": None}
    share = sites["handler"] / busy
    s2_ms = sites["stage 2"] / busy * frame_ms
    rest_ms = sites["rest"] / busy * frame_ms
    out_ms = s2_ms + rest_ms
    return {"handler_share_of_busy": round(share, 4), "frame_ms": round(frame_ms, 3),
            "handler_ms_per_frame": round(share * frame_ms, 3), "stage2_ms_per_frame": round(s2_ms, 3),
            "other_ms_per_frame": round(rest_ms, 3),
            "samples_per_s_if_handler_free": round(1e3 / out_ms * samples_per_frame) if out_ms > 0 else None}


def window_rate(stats_file: Path, t0: float, t1: float) -> dict:
    """Frames, samples and seconds the worker handled in the whole seconds of [t0, t1]
    (its stats file counts samples per second; frames from its mean samples per frame)."""
    d = json.loads(stats_file.read_text())
    secs = range(int(t0) + 1, int(t1))
    samples = sum(n for sec, n in d["samples_by_s"] if sec in secs)
    if not secs or not samples:
        raise RuntimeError(f"no frame recorded while profiled ({t1 - t0:.1f} s); profile a larger fleet")
    return {"messages": samples / (d["samples"] / d["frames"]), "samples": samples, "elapsed_s": float(len(secs))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--frame-s", type=float, default=5.0)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--bundle", type=bundle_size, default=0, metavar="N",
                    help="pre-load bundles of up to N frames (schemas.bundle)")
    ap.add_argument("--encoding", choices=FRAME_ENCODINGS, default=DEFAULT_FRAME_ENCODING)
    ap.add_argument("--seed", type=int, default=515)
    ap.add_argument("--window", type=float, nargs=2, default=(0.2, 0.85), metavar=("FROM", "TO"),
                    help="profile while the committed share of the topic goes from FROM to TO")
    args = ap.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: install the bench extra (pip install -e '.[bench]')", file=sys.stderr)
        return 2

    from roadnet import load_network
    from simulator import simulate_fleet, write_fleet
    from simulator.replay import replay

    info = stack.up()
    net = load_network()
    work = Path(tempfile.mkdtemp(prefix="rs-prof-"))
    tag = uuid.uuid4().hex[:6]
    topic = f"prof.{tag}.frames"
    log(f"simulating {args.vehicles} vehicles ...")
    fleet = simulate_fleet(net, n_vehicles=args.vehicles, seed=args.seed, trip_km=(1.0, 1.5), departure_spread_s=120)
    traces = write_fleet(fleet, work / "fleet", format="parquet")
    dsn = fresh_db(info, net)
    s = settings_for(info, f"{tag}w", dsn, frames_topic=topic, partitions=args.partitions, data_dir=work / "w",
                     stats_file=work / "stats.json")
    ensure_topics(s)
    sent = replay([traces], info.kafka_bootstrap, topic, frame_s=args.frame_s, progress=False, bundle=args.bundle,
                  encoding=args.encoding)
    log(f"pre-loaded {sent.frames} frames ({sent.samples} samples) in {sent.messages} messages")

    out_raw = work / "profile.txt"
    log_f = (work / "worker.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env_of(s), cwd=REPO, stdout=log_f,
                            stderr=subprocess.STDOUT, start_new_session=True)
    spy_log = (work / "py-spy.log").open("wb")
    try:
        # py-spy attaches once a share of the topic is committed and detaches before the
        # end: the worker's start-up (imports, compiles, the group join) and its last
        # partial batches stay out of the profile, which is of the steady state only
        wait_until_consumed(info.kafka_bootstrap, s.app_id, topic, total=sent.messages, proc=proc, timeout_s=3600,
                            progress=False, share=args.window[0])  # fmt: skip
        spy_proc = subprocess.Popen([spy, "record", "--rate", "100", "--format", "raw", "--output", str(out_raw),
                                "--pid", str(proc.pid)], stdout=spy_log, stderr=subprocess.STDOUT)
        t0 = time.time()
        wait_until_consumed(info.kafka_bootstrap, s.app_id, topic, total=sent.messages, proc=proc, timeout_s=3600,
                            progress=False, share=args.window[1])  # fmt: skip
        spy_proc.send_signal(signal.SIGINT)  # py-spy writes the profile and exits
        t1 = time.time()
        spy_proc.wait(timeout=120)
        wait_until_consumed(info.kafka_bootstrap, s.app_id, topic, total=sent.messages, proc=proc, timeout_s=3600,
                            progress=False)  # fmt: skip
    finally:
        stop_workers(proc, timeout_s=120)
        drop_db(info, dsn)
    rate = window_rate(work / "stats.json", t0, t1)
    cats, own, sites, total = parse_raw(out_raw)
    if not total:
        raise RuntimeError(f"py-spy wrote no samples; see {work}")
    frames_per_s = rate["messages"] / rate["elapsed_s"]
    print(f"\nworker profile: {total} samples, {rate['samples'] / rate['elapsed_s']:.0f} samples/s "
          f"({frames_per_s:.0f} frames/s) while profiled, frame {args.frame_s:g} s")
    for name, n in cats.most_common():
        print(f"  {name:22s} {100 * n / total:5.1f} %")
    print("\nby call site:")
    for name, n in sites.most_common():
        print(f"  {name:22s} {100 * n / total:5.1f} %")
    budget = frame_budget(sites, frames_per_s, rate["samples"] / rate["messages"])
    if budget["handler_share_of_busy"] is not None:
        print(f"  a frame: {budget['handler_ms_per_frame']:.2f} ms in the handler, {budget['stage2_ms_per_frame']:.2f} "
              f"ms in stage 2, {budget['other_ms_per_frame']:.2f} ms in stage 1's plumbing; with a free handler: "
              f"{budget['samples_per_s_if_handler_free']} samples/s")
    print("\nmost own time:")
    for fn, n in own.most_common(15):
        print(f"  {100 * n / total:5.1f} %  {fn}")
    line = {"frame_s": args.frame_s, "vehicles": args.vehicles, "profile_samples": total,
            "samples_per_s_profiled": round(rate["samples"] / rate["elapsed_s"]),
            **{f"share_{k.replace(' ', '_')}": round(n / total, 4) for k, n in cats.items()},
            **{f"site_{k.replace(' ', '_')}": round(n / total, 4) for k, n in sites.items()}, **budget}
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
