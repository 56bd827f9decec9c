"""Throughput, latency, scaling and state size of the stream path, in one run.

    .venv/bin/python bench/throughput.py [--vehicles 1000] [--frame-s 10] [--quick]

One topic is pre-loaded with frames of a simulated fleet (100 Hz, the real SQY network),
then, on that same topic:

1. raw: a plain aiokafka consumer that only reads and decodes the messages (cbor2, or orjson
   with ``--encoding json``);
2. naive: a per-event Faust agent doing the pipeline's work one message at a time
   (``bench/naive_app.py``);
3. pipeline: ``roadsense worker`` end to end into PostgreSQL, with 1 and with 2 worker
   processes in one consumer group (results compared row for row), the pair of runs
   repeated back to back ``--scaling-pairs`` times (the scaling factor is the median of
   the pairs' ratios: a single pair moved from x1.56 to x1.92 between two runs of the
   same code);

then latency at half the pipeline's sustained rate (a paced replay on a second topic,
paced so that its busiest 10 s offer half the rate: the fleet's traffic peaks at 2.3x its mean),
and the state per active vehicle over 10,000 simulated vehicles. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cbor2
import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline import db, stack, streamrun  # noqa: E402
from pipeline.app import FAIL_STOP_EXIT  # noqa: E402
from pipeline.demo import stop_workers  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.streamrun import env_of, pass_rows  # noqa: E402
from pipeline.topics import LagProbe, delete_topics, ensure_topics, list_topics  # noqa: E402
from schemas.bundle import is_bundle, split_bundle  # noqa: E402
from schemas.frame import DEFAULT_FRAME_ENCODING, DEFAULT_FRAME_S, FRAME_ENCODINGS  # noqa: E402
from schemas.frame_cbor import CBOR_MAGIC  # noqa: E402
from simulator.cli import bundle_size  # noqa: E402

KEY = "bench-throughput-pseudonym-key-0123456789"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ helpers
# Settings of an isolated consumer group (own app id and topics), this bench's key.
settings_for = functools.partial(streamrun.settings_for, key=KEY)


def fresh_db(info, net) -> str:
    return db.create_database(info.pg_dsn, "rs_bench", net=net)


def drop_db(info, dsn: str) -> None:
    db.drop_database(info.pg_dsn, dsn)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


#: The stack's processes: the broker (Java) and PostgreSQL (one backend per connection).
STACK_COMMS = ("java", "postgres")


def stack_cpu_s() -> dict[int, float]:
    """CPU seconds so far of every broker and PostgreSQL process, by pid."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in STACK_COMMS:
                    out[int(d.name)] = proc_cpu_s(int(d.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue  # exited meanwhile
    return out


def run_consumers(cmds: list[list[str]], envs: list[dict[str, str]], s: Settings, total: int, logdir: Path,
                  timeout_s: float) -> dict:
    """Start worker processes (one environment each), wait for zero lag; stop them.

    A worker that stops itself with ``FAIL_STOP_EXIT`` (a hole in a partition's offsets,
    ``pipeline.offset_holes``) is started again, as its supervisor would in production,
    with its own stats file (``<stats>.r<k>.json``); the run reports it in ``restarts`` (its
    CPU then misses the stopped process's). Any other exit fails the run.
    """
    procs = []

    def start(i: int, env: dict[str, str], mode: str = "wb") -> subprocess.Popen:
        fh = (logdir / f"{s.app_id}-{i}.log").open(mode)
        return subprocess.Popen(cmds[i], env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)

    for i, env in enumerate(envs):
        procs.append(start(i, env))
    restarts = 0
    # the stack's own idle CPU (broker housekeeping, this bench's lag polls) is not the workers'
    idle0, t_idle = stack_cpu_s(), time.monotonic()
    time.sleep(3.0)
    idle_cores = sum(c - idle0.get(pid, 0.0) for pid, c in stack_cpu_s().items()) / (time.monotonic() - t_idle)
    t_start = time.monotonic()
    t_first = None
    done_first = 0
    cpu0: dict[int, float] = {}
    # one connection for every poll: opening the clients each time cost ~14 ms of CPU
    # (and the broker's), taken from the workers when they use both cores
    probe = LagProbe(s.kafka_bootstrap, s.app_id)
    try:
        while True:
            for i, p in enumerate(procs):
                if p.poll() is None:
                    continue
                if p.returncode != FAIL_STOP_EXIT:
                    raise RuntimeError(f"worker exited with {p.returncode}; see {logdir}")
                restarts += 1
                env = {**envs[i], "ROADSENSE_STATS_FILE": f"{envs[i]['ROADSENSE_STATS_FILE']}.r{restarts}.json"}
                procs[i] = start(i, env, "ab")
            _check_logs(logdir, s.app_id)
            try:
                lag, end = probe(s.frames_topic)
            except Exception:
                lag, end = total, total
            done = end - lag
            if t_first is None and done > 0:
                t_first, done_first = time.monotonic(), done
                cpu0 = {p.pid: proc_cpu_s(p.pid) for p in procs}
                stack0 = stack_cpu_s()
            if lag == 0 and end >= total:
                t_end = time.monotonic()
                break
            if time.monotonic() - t_start > timeout_s:
                raise RuntimeError(f"not consumed within {timeout_s}s (lag {lag})")
            time.sleep(0.5)
        cpu = sum(proc_cpu_s(p.pid) - cpu0.get(p.pid, 0.0) for p in procs)
        # what the broker and the database spent meanwhile (backends born during the run
        # count whole); on a shared machine their CPU limits how far workers can scale
        stack_cpu = sum(c - stack0.get(pid, 0.0) for pid, c in stack_cpu_s().items())
        stack_cpu = max(stack_cpu - idle_cores * (t_end - (t_first or t_start)), 0.0)
        rss = max(proc_peak_rss_mb(p.pid) for p in procs)
    finally:
        probe.close()
        stop_workers(*procs)
    elapsed = max(t_end - (t_first or t_start), 1e-6)
    # a worker killed after not stopping in time wrote no final stats file (its counts are short)
    killed = sum(p.returncode == -signal.SIGKILL for p in procs)
    return {"elapsed_s": elapsed, "messages": total - done_first, "cpu_s": cpu, "stack_cpu_s": stack_cpu, "peak_rss_mb": rss,
            "workers_killed_at_stop": killed, "restarts": restarts}


def _samples_in(raw: bytes) -> int:
    """Decode one frame (CBOR or JSON, not validated) and count its samples."""
    if raw[:3] == CBOR_MAGIC:
        t = cbor2.loads(raw).get("t_s", ())
        return len(t.value) // 8 if isinstance(t, cbor2.CBORTag) else len(t)
    return len(orjson.loads(raw).get("t_s", ()))


async def raw_consume(bootstrap: str, topic: str, total: int) -> dict:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    n = samples = frames = 0
    t0 = None
    try:
        while n < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if t0 is None and batch:
                t0 = time.perf_counter()
            for records in batch.values():
                for r in records:
                    for raw in (split_bundle(r.value) if is_bundle(r.value) else (r.value,)):
                        samples += _samples_in(raw)
                        frames += 1
                    n += 1
        elapsed = time.perf_counter() - (t0 or time.perf_counter())
    finally:
        await consumer.stop()
    return {"messages": frames, "kafka_messages": n, "samples": samples, "elapsed_s": elapsed}


def sample_states(net, n_vehicles: int, frame_s: float, seed: int, *, chunk: int = 500):
    """Yield the ``VehicleState`` of ``n_vehicles`` simulated vehicles (1-1.5 km trips,
    all departing at once), each as it is at a random instant of its trip: a vehicle holds
    the state of its last frame while it drives the next one, so the state after frame
    ``k``, ``k`` uniform in ``0 .. n - 2`` (after the last one the trip has ended and the
    vehicle is not active). Fleets of ``chunk`` vehicles, seeds ``seed``, ``seed + chunk``,
    ...

    Until the seventeenth session ``k`` started at 1, which left out the first frame's
    state: a small one (the mean fell when it was let in), and a larger share of a trip
    the longer the frames (30 s of a 2-minute trip at 30 s frames, 10 s at 10 s frames),
    so the figures of different frame durations were not measured at the same instants of
    the trips (docs/benchmarks.md)."""
    from agents.passes import process_frame
    from pipeline.pseudonym import Pseudonymiser
    from schemas.frame import FrameArrays
    from schemas.tracefile import frames_of
    from simulator import simulate_fleet

    pseudo = Pseudonymiser(KEY)
    rng = np.random.default_rng(seed)
    for start in range(0, n_vehicles, chunk):
        fleet = simulate_fleet(net, n_vehicles=min(chunk, n_vehicles - start), seed=seed + start,
                               trip_km=(1.0, 1.5), departure_spread_s=0)
        for vid, tr in fleet.traces.items():
            frames = frames_of(tr, vid, frame_s=frame_s)
            if len(frames) < 2:
                continue
            stop = int(rng.integers(0, len(frames) - 1))  # frames[0..stop] processed, trip still open
            st = None
            for f in frames[: stop + 1]:
                st = process_frame(st, FrameArrays.from_model(f), net, vehicle=pseudo(vid)).state
            yield st


def state_size(net, n_vehicles: int, frame_s: float, seed: int, *, breakdown: bool = False) -> dict:
    """State of ``n_vehicles`` active vehicles (``sample_states``): the serialised
    ``VehicleState`` and the table value the worker stores (``pipeline.stage1`` envelope:
    zstd with the state dictionary, empty outbox). ``breakdown``: also what each part of
    the state weighs (``state_parts``)."""
    from pipeline.stage1 import pack_envelope

    raw, stored, parts = [], [], []
    t0 = time.perf_counter()
    for st in sample_states(net, n_vehicles, frame_s, seed):
        b = st.to_bytes()
        raw.append(len(b))
        stored.append(len(pack_envelope(b, [])))
        if breakdown:
            parts.append(state_parts(st))
    raw_a, stored_a = np.asarray(raw), np.asarray(stored)
    out = {"vehicles": int(raw_a.size), "mean_bytes": float(stored_a.mean()),
           "p99_bytes": float(np.percentile(stored_a, 99)), "max_bytes": int(stored_a.max()),
           "mean_bytes_uncompressed": float(raw_a.mean()), "total_mb": float(stored_a.sum() / 1e6),
           "elapsed_s": time.perf_counter() - t0}
    if breakdown:
        # per vehicle: a part a state lacks counts as 0 bytes
        keys = sorted({k for p in parts for k in p})
        out["parts"] = {k: {"raw_bytes": sum(p.get(k, (0, 0))[0] for p in parts) / len(parts),
                            "zstd_alone_bytes": sum(p.get(k, (0, 0))[1] for p in parts) / len(parts)} for k in keys}
    return out


def state_parts(st) -> dict[str, tuple[int, int]]:
    """Bytes of each part of a state as stored (array records by name, the JSON header's
    entries), raw and zstd-compressed alone with the table's compressor (less what an empty
    value costs): what to attack first, not an exact split of the stored total (zstd
    compresses the parts together)."""
    import struct

    from agents import _arraycodec, passes
    from pipeline.stage1 import pack_envelope

    b = st.to_bytes()
    n_head = struct.unpack_from("<HI", b, 4)[1]
    head = orjson.loads(b[10 : 10 + n_head])
    out = {f"header.{k}": orjson.dumps(v) for k, v in head.items()}
    names = [f"impact.{k}" for k in (head["impact"] or {"a": []})["a"]] + ["band_zi", "noise_zi"]
    names += [f"tail.{k}" for k in passes._TAIL_CODEC] if head["tail"] else []
    names += [f"blk.{'+'.join(k) if isinstance(k, tuple) else k}" for k in passes._BLK_CODEC] if head["blk"] else []
    names += ["match", *passes._ARRAY_CODEC]
    mv, pos = memoryview(b), 10 + n_head
    for name in names:
        _, end = _arraycodec.get(mv, pos)
        out[name] = bytes(mv[pos:end])
        pos = end
    empty = len(pack_envelope(b"", []))
    return {k: (len(v), len(pack_envelope(v, [])) - empty) for k, v in out.items()}


# --------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=1000)
    ap.add_argument("--trip-km", type=float, nargs=2, default=(1.0, 1.5))
    ap.add_argument("--frame-s", type=float, default=DEFAULT_FRAME_S)
    ap.add_argument("--encoding", choices=FRAME_ENCODINGS, default=DEFAULT_FRAME_ENCODING,
                    help="frame encoding on the pre-loaded topics")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--bundle", type=bundle_size, default=0, metavar="N",
                    help="pre-load the topics with bundles of up to N frames (schemas.bundle), as a gateway would")
    ap.add_argument("--naive-max", type=int, default=6000, help="frames the naive agent is timed on")
    ap.add_argument("--state-vehicles", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=515)
    ap.add_argument("--scaling-pairs", type=int, default=3,
                    help="runs of 1 then 2 workers, back to back; the scaling factor is the median over the pairs")
    ap.add_argument("--quick", action="store_true", help="small sizes, for checking the bench itself")
    ap.add_argument("--frame-sweep", type=float, nargs="+", metavar="S",
                    help="only compare frame durations: one worker's rate and latency at half of it, per duration")
    ap.add_argument("--bundle-sweep", type=bundle_size, nargs="+", metavar="N",
                    help="only compare bundle sizes (0 = plain frames), as --frame-sweep does durations")
    ap.add_argument("--state-only", action="store_true",
                    help="only the state per active vehicle (over --state-vehicles; no broker needed)")
    ap.add_argument("--state-breakdown", action="store_true",
                    help="with --state-only: also what each part of the state weighs, per vehicle")
    args = ap.parse_args(argv)
    if args.quick:
        args.vehicles, args.naive_max, args.state_vehicles, args.scaling_pairs = 60, 1000, 200, 1
    if args.frame_sweep or args.bundle_sweep:
        return frame_sweep(args)
    if args.state_only:
        from roadnet import load_network

        st = state_size(load_network(), args.state_vehicles, frame_s=args.frame_s, seed=args.seed + 1,
                        breakdown=args.state_breakdown)
        if args.state_breakdown:
            log(f"{'part':28s} {'raw B':>8s} {'zstd alone B':>12s}  (mean per vehicle)")
            for k, v in sorted(st["parts"].items(), key=lambda kv: -kv[1]["zstd_alone_bytes"]):
                log(f"{k:28s} {v['raw_bytes']:8.0f} {v['zstd_alone_bytes']:12.0f}")
        print(json.dumps({"frame_s": args.frame_s, "state_bytes_per_vehicle": st["mean_bytes"],
                          "state_bytes_per_vehicle_uncompressed": st["mean_bytes_uncompressed"],
                          "state_vehicles": st["vehicles"], **st}))
        return 0

    from roadnet import load_network
    from simulator import simulate_fleet, write_fleet
    from simulator.replay import replay

    info = stack.up()
    net = load_network()
    work = Path(tempfile.mkdtemp(prefix="rs-bench-"))
    tag = uuid.uuid4().hex[:6]
    topic = f"bench.{tag}.frames"
    out: dict = {"machine": f"{platform.node()} {os.cpu_count()} cores", "frame_s": args.frame_s,
                 "vehicles_simulated": args.vehicles, "partitions": args.partitions, "bundle": args.bundle,
                 "frame_encoding": args.encoding}

    log(f"simulating {args.vehicles} vehicles ...")
    fleet = simulate_fleet(net, n_vehicles=args.vehicles, seed=args.seed, trip_km=tuple(args.trip_km),
                           departure_spread_s=120)
    traces = write_fleet(fleet, work / "fleet", format="parquet")
    base = settings_for(info, tag, info.pg_dsn, frames_topic=topic, partitions=args.partitions,
                        data_dir=work / "w", stats_file=None)
    ensure_topics(base)
    t = time.perf_counter()
    sent = replay([traces], info.kafka_bootstrap, topic, frame_s=args.frame_s, progress=False, bundle=args.bundle,
                  encoding=args.encoding)
    out["preload"] = {"frames": sent.frames, "samples": sent.samples, "messages": sent.messages,
                      "produce_s": time.perf_counter() - t}
    samples_per_msg = sent.samples / sent.frames
    log(f"pre-loaded {sent.frames} frames ({sent.samples} samples, {samples_per_msg:.0f}/frame) "
        f"in {sent.messages} messages")

    # 1. raw client limit
    raw = asyncio.run(raw_consume(info.kafka_bootstrap, topic, sent.messages))
    out["raw"] = {**raw, "messages_per_s": raw["messages"] / raw["elapsed_s"],
                  "samples_per_s": raw["samples"] / raw["elapsed_s"]}
    log(f"raw: {out['raw']['messages_per_s']:.0f} msg/s")

    # 2. naive per-event agent, on the first naive_max frames of a copy of the topic
    naive_topic = f"bench.{tag}.naive"
    s2 = settings_for(info, tag + "n", "", frames_topic=naive_topic, partitions=args.partitions,
                      data_dir=work / "naive", stats_file=work / "naive.json")
    ensure_topics(s2)
    sub = _copy_prefix(info.kafka_bootstrap, topic, naive_topic, max(1, args.naive_max // max(1, args.bundle)))
    dsn2 = fresh_db(info, net)
    s2 = s2.model_copy(update={"pg_dsn": dsn2})
    r2 = run_consumers([[sys.executable, str(REPO / "bench" / "naive_app.py")]], [env_of(s2)], s2, sub, work,
                       timeout_s=3600)
    drop_db(info, dsn2)
    r2.update(_rate_from_stats([work / "naive.json"]))
    out["naive"] = {**r2, "messages_per_s": r2["messages"] / r2["elapsed_s"],
                    "samples_per_s": r2["samples"] / r2["elapsed_s"]}
    log(f"naive: {out['naive']['messages_per_s']:.0f} msg/s")

    # 3. the pipeline, 1 and 2 workers, same topic; the pair run --scaling-pairs times
    #    back to back (1, 2, 1, 2, ...): on a shared machine the rate drifts between runs
    #    by as much as the scaling factor's margin, so each pair gives its own ratio
    runs: list[tuple[int, dict]] = []
    first_rows = None
    identical = True
    for k in range(args.scaling_pairs):
        for n_workers in (1, 2):
            dsn = fresh_db(info, net)
            s3 = settings_for(info, f"{tag}p{n_workers}r{k}", dsn, frames_topic=topic, partitions=args.partitions,
                              data_dir=work / f"p{n_workers}r{k}", stats_file=None)
            ensure_topics(s3)  # as a deployment does: output topics exist before workers start
            cmds = [[sys.executable, "-m", "pipeline.cli", "worker"] for _ in range(n_workers)]
            # each worker its own data dir (RocksDB) and stats file
            r = _run_workers(cmds, s3, sent.messages, work, n_workers)
            r.update(_rate_from_stats(sorted(work.glob(f"{s3.app_id}-*.json"))))  # restarts' files too
            with db.connect(dsn) as conn:
                rows = pass_rows(conn)
            drop_db(info, dsn)
            if first_rows is None:
                first_rows = rows
            identical = identical and rows == first_rows
            runs.append((n_workers, {**r, "messages_per_s": r["messages"] / r["elapsed_s"],
                                     "samples_per_s": r["samples"] / r["elapsed_s"], "passes": len(rows)}))
            log(f"pipeline x{n_workers} (pair {k + 1}): {runs[-1][1]['messages_per_s']:.0f} msg/s")
    ones = [r for n, r in runs if n == 1]
    twos = [r for n, r in runs if n == 2]
    pair_scaling = [b["steady_samples_per_s"] / a["steady_samples_per_s"]
                    if a["steady_samples_per_s"] and b["steady_samples_per_s"] else None for a, b in zip(ones, twos)]
    # the headline 1-worker figures are those of its median run (a real run: its CPU,
    # memory and rate belong together)
    p1 = sorted(ones, key=lambda r: r["samples_per_s"])[(len(ones) - 1) // 2]
    p2 = twos[ones.index(p1)]
    out["pipeline_1_runs"], out["pipeline_2_runs"] = ones, twos
    out["pipeline_1"], out["pipeline_2"] = p1, p2
    out["identical_results_1_vs_2"] = identical
    # a duplicate counts no samples: a frame no worker processed leaves the sum short
    # (runs with a worker killed at its stop have no final counts, and a restarted worker
    # counts the frames of the stopped one's last uncommitted batch as duplicates: left out;
    # their results are compared row for row like every run's)
    out["every_frame_processed"] = all(r["samples"] == sent.samples for _, r in runs
                                       if not r["workers_killed_at_stop"] and not r["restarts"])
    out["runs_with_a_worker_killed_at_stop"] = sum(bool(r["workers_killed_at_stop"]) for _, r in runs)
    out["worker_restarts"] = sum(r["restarts"] for _, r in runs)
    out["cpu_s_per_million_samples"] = p1["cpu_s"] / (p1["messages"] * samples_per_msg / 1e6)

    # latency at half the sustained rate: a paced replay of a part of the fleet
    lat = _latency_run(info, net, fleet, work, tag, args, rate_samples_per_s=0.5 * p1["samples_per_s"])
    out["latency"] = lat

    # state per active vehicle
    log(f"state size over {args.state_vehicles} vehicles ...")
    out["state"] = state_size(net, args.state_vehicles, frame_s=args.frame_s, seed=args.seed + 1)

    headline = {
        "samples_per_s_pipeline": p1["samples_per_s"],
        "messages_per_s_pipeline": p1["messages_per_s"],
        "samples_per_s_raw": out["raw"]["samples_per_s"],
        "samples_per_s_naive": out["naive"]["samples_per_s"],
        "ratio_to_raw": p1["samples_per_s"] / out["raw"]["samples_per_s"],
        "ratio_to_naive": p1["samples_per_s"] / out["naive"]["samples_per_s"],
        "vehicles_real_time_100hz": p1["samples_per_s"] / 100.0,
        "p50_latency_s": lat["p50_s"],
        "p99_latency_s": lat["p99_s"],
        "frame_s": args.frame_s,
        "bundle_frames": args.bundle,
        "frame_encoding": args.encoding,
        # sustained rates (both workers consuming; see _steady_rate); the whole run's
        # ratio also counts the group's join and the tail where one worker has run dry
        # median over the back-to-back pairs of runs
        "scaling_2_workers": (float(np.median([x for x in pair_scaling if x is not None]))
                              if any(x is not None for x in pair_scaling) else None),
        "scaling_2_workers_pairs": pair_scaling,
        "scaling_2_workers_whole_run": p2["samples_per_s"] / p1["samples_per_s"],
        "samples_per_s_pipeline_steady": p1["steady_samples_per_s"],
        "samples_per_s_2_workers_steady": p2["steady_samples_per_s"],
        "steady_worker_cores_1_worker": p1.get("steady_worker_cores"),
        "steady_worker_cores_2_workers": p2.get("steady_worker_cores"),
        "steady_cpu_s_per_million_1_worker": p1.get("steady_cpu_s_per_million_samples"),
        "steady_cpu_s_per_million_2_workers": p2.get("steady_cpu_s_per_million_samples"),
        "steady_commit_wait_share_1_worker": p1.get("steady_commit_wait_share"),
        "steady_commit_wait_share_2_workers": p2.get("steady_commit_wait_share"),
        "steady_worker_cores_naive": out["naive"].get("steady_worker_cores"),
        "steady_commit_wait_share_naive": out["naive"].get("steady_commit_wait_share"),
        # the most 2 workers could give on this machine: one worker is bound by its own core;
        # two share os.cpu_count() cores with the broker and the database, which spend
        # stack_cpu_s for every cpu_s of a worker (CPU per sample, so the machine's other
        # load does not enter)
        "scaling_bound_2_workers": min(2.0, (os.cpu_count() or 1) * p1["cpu_s"] / (p1["cpu_s"] + p1["stack_cpu_s"])),
        "stack_cores_1_worker": p1["stack_cpu_s"] / p1["elapsed_s"],
        "worker_cores_1_worker": p1["cpu_s"] / p1["elapsed_s"],
        "identical_results_2_workers": out["identical_results_1_vs_2"],
        "every_frame_processed": out["every_frame_processed"],
        "runs_with_a_worker_killed_at_stop": out["runs_with_a_worker_killed_at_stop"],
        "worker_restarts": out["worker_restarts"],
        "cpu_s_per_million_samples": out["cpu_s_per_million_samples"],
        "peak_rss_mb_1_worker": p1["peak_rss_mb"],
        "state_bytes_per_vehicle": out["state"]["mean_bytes"],
        "state_bytes_per_vehicle_uncompressed": out["state"]["mean_bytes_uncompressed"],
        "state_vehicles": out["state"]["vehicles"],
    }
    (work / "throughput.json").write_text(json.dumps(out, indent=2, default=str))
    log(json.dumps(out, indent=2, default=str))
    _delete_run_topics(info, tag)
    print(json.dumps(headline))
    return 0


def _delete_run_topics(info, tag: str) -> None:
    """Delete the topics of this run (``bench.{tag}.…``, apps ``bench-{tag}…``): left on a
    long-lived development broker, thousands of them slowed it (docs/benchmarks.md)."""
    delete_topics(info.kafka_bootstrap, list_topics(info.kafka_bootstrap, (f"bench.{tag}.", f"bench-{tag}")))


def frame_sweep(args: argparse.Namespace) -> int:
    """The frame-duration and bundle-size trade-offs, in one run on one fleet: per frame
    duration (``--frame-sweep``) and bundle size (``--bundle-sweep``), in that order, one
    worker's sustained rate (pre-loaded topic) and the latency at half that rate."""
    from roadnet import load_network
    from simulator import simulate_fleet, write_fleet
    from simulator.replay import replay

    info = stack.up()
    net = load_network()
    work = Path(tempfile.mkdtemp(prefix="rs-sweep-"))
    tag = uuid.uuid4().hex[:6]
    log(f"simulating {args.vehicles} vehicles ...")
    fleet = simulate_fleet(net, n_vehicles=args.vehicles, seed=args.seed, trip_km=tuple(args.trip_km),
                           departure_spread_s=120)
    traces = write_fleet(fleet, work / "fleet", format="parquet")
    rows = []
    combos = [(f, b) for f in (args.frame_sweep or [args.frame_s]) for b in (args.bundle_sweep or [args.bundle])]
    for k, (frame_s, bundle) in enumerate(combos):
        topic = f"bench.{tag}.f{k}"
        dsn = fresh_db(info, net)
        s = settings_for(info, f"{tag}f{k}", dsn, frames_topic=topic, partitions=args.partitions,
                         data_dir=work / f"f{k}", stats_file=None)
        ensure_topics(s)
        sent = replay([traces], info.kafka_bootstrap, topic, frame_s=frame_s, progress=False, bundle=bundle,
                      encoding=args.encoding)
        r = _run_workers([[sys.executable, "-m", "pipeline.cli", "worker"]], s, sent.messages, work, 1)
        r.update(_rate_from_stats([work / f"{s.app_id}-0.json"]))
        drop_db(info, dsn)
        rate = r["samples"] / r["elapsed_s"]
        args.frame_s, args.bundle = frame_s, bundle
        lat = _latency_run(info, net, fleet, work, f"{tag}l{k}", args, rate_samples_per_s=0.5 * rate)
        row = {"frame_s": frame_s, "bundle": bundle, "kafka_messages": sent.messages,
               "samples_per_frame": sent.samples / sent.frames, "samples_per_s": rate,
               "messages_per_s": r["messages"] / r["elapsed_s"],
               "cpu_s_per_million_samples": r["cpu_s"] / (sent.samples / 1e6), "p50_latency_s": lat["p50_s"],
               "p99_latency_s": lat["p99_s"], "p99_bound_s": frame_s + 3.0}
        rows.append(row)
        log(json.dumps(row))
    print(f"{'frame s':>7} {'bundle':>6} {'samples/s':>10} {'frame/s':>7} {'CPU-s/M':>8} {'p50 s':>6} {'p99 s':>6} "
          f"{'bound':>6}", file=sys.stderr)
    for r in rows:
        print(f"{r['frame_s']:7g} {r['bundle']:6d} {r['samples_per_s']:10.0f} {r['messages_per_s']:7.0f} "
              f"{r['cpu_s_per_million_samples']:8.2f} {r['p50_latency_s']:6.2f} {r['p99_latency_s']:6.2f} "
              f"{r['p99_bound_s']:6.1f}", file=sys.stderr)
    _delete_run_topics(info, tag)
    print(json.dumps({"vehicles": args.vehicles, "frame_sweep": rows}))
    return 0


def _rate_from_stats(files: list[Path]) -> dict:
    """Frames, samples and the span between the first and last recorded frame, over the
    workers' stats files (the consumer-group lag is only committed every second or so)."""
    docs = [json.loads(f.read_text()) for f in files if f.exists()]
    first = min(d["first_t"] for d in docs if d["first_t"])
    last = max(d["last_t"] for d in docs if d["last_t"])  # a worker may get no frame at all
    return {"messages": sum(d["frames"] for d in docs), "samples": sum(d["samples"] for d in docs),
            "elapsed_s": max(last - first, 1e-6), "elapsed_wall_s_lag_based": None, **_steady_rate(docs)}


def _steady_rate(docs: list[dict]) -> dict:
    """Samples/s while every worker is consuming: the whole seconds after the last worker's
    first frame and before the first worker's last frame. A group's start (the second
    worker joins a group the first already consumes alone, then both wait for the
    rebalance) and its end (one worker's partitions run dry first) are left out. None when a
    worker got no frame (a small topic consumed before it joined)."""
    if any(d["first_t"] is None for d in docs):
        return {"steady_samples_per_s": None, "steady_s": 0}
    start = max(d["first_t"] for d in docs)
    end = min(d["last_t"] for d in docs)
    secs = range(int(start) + 1, int(end))  # whole seconds strictly inside
    if len(secs) < 3:
        return {"steady_samples_per_s": None, "steady_s": 0}
    per_s = np.zeros(len(secs))
    for d in docs:
        for sec, n in d.get("samples_by_s", []):
            if secs.start <= sec < secs.stop:
                per_s[sec - secs.start] += n
    out = {"steady_samples_per_s": float(per_s.mean()), "steady_s": len(secs),
           "steady_start_delay_s": start - min(d["first_t"] for d in docs)}
    # each worker's cores (CPU seconds of its process per second) and CPU per million
    # samples over the same seconds: tells a worker that waits from one that got slower
    # samples over the same seconds, and the share of them its stage 1 spent in its batch
    # commit (database, producer flush, acks) rather than reading frames
    cores, cpu_per_m, commit_share = [], [], []
    for d in docs:
        cpu = dict(d.get("cpu_at_s", []))
        if secs.start in cpu and secs.stop in cpu:
            c = cpu[secs.stop] - cpu[secs.start]
            n = sum(k for sec, k in d.get("samples_by_s", []) if secs.start <= sec < secs.stop)
            cores.append(c / len(secs))
            cpu_per_m.append(c / (n / 1e6) if n else None)
        wait = dict(d.get("commit_wait_at_s", []))
        if secs.start in wait and secs.stop in wait:
            commit_share.append((wait[secs.stop] - wait[secs.start]) / len(secs))
    if cores:
        out["steady_worker_cores"] = cores
        out["steady_cpu_s_per_million_samples"] = cpu_per_m
    if commit_share:
        out["steady_commit_wait_share"] = commit_share
    return out


def _check_logs(logdir: Path, app_id: str) -> None:
    """A crashed Faust agent stalls its partitions while the process lives: fail fast."""
    for f in logdir.glob(f"{app_id}-*.log"):
        text = f.read_text(errors="replace")
        if "Crashed reason=" in text:
            raise RuntimeError(f"an agent crashed, see {f}:\n" + text[text.index("Crashed reason="):][:2000])


def _copy_prefix(bootstrap: str, src: str, dst: str, n: int) -> int:
    """Copy the first ``n`` messages of ``src`` (keys and partitions kept) into ``dst``."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(src, p) for p in sorted(consumer.partitions_for_topic(src) or ())]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    per_tp = max(1, n // len(tps))
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, batch_size=256 * 1024,
                             max_request_size=4 * 1024 * 1024)
    k = 0
    left = {tp: min(per_tp, ends[tp]) for tp in tps}
    deadline = time.monotonic() + 120
    while any(v > 0 for v in left.values()) and time.monotonic() < deadline:
        for tp, recs in consumer.poll(timeout_ms=1000, max_records=2000).items():
            for rec in recs:
                if left[tp] > 0:
                    producer.send(dst, key=rec.key, value=rec.value, partition=tp.partition)
                    left[tp] -= 1
                    k += 1
    producer.flush()
    producer.close()
    consumer.close()
    return k


def _run_workers(cmds, s: Settings, total: int, work: Path, n: int) -> dict:
    # Workers of one group must not share a RocksDB dir or a stats file.
    envs = [
        env_of(s.model_copy(update={"data_dir": Path(f"{s.data_dir}-{i}"), "stats_file": work / f"{s.app_id}-{i}.json"}))
        for i in range(n)
    ]
    return run_consumers(cmds, envs, s, total, work, timeout_s=3600)


def pace(times: list, rate_samples_per_s: float, window_s: float = 10.0) -> tuple[float, float, float]:
    """Replay speed-up at which the busiest ``window_s`` of the traces (sample times, s)
    offer ``rate_samples_per_s``; also their peak and mean rates in real time, samples/s."""
    t_all = np.concatenate([np.asarray(t, float) for t in times])
    t0 = float(t_all.min())
    peak = float(np.bincount(((t_all - t0) // window_s).astype(np.int64)).max()) / window_s
    mean = t_all.size / max(float(t_all.max()) - t0, 1e-9)
    return max(rate_samples_per_s / peak, 0.01), peak, mean


def _latency_run(info, net, fleet, work: Path, tag: str, args, *, rate_samples_per_s: float) -> dict:
    """Replay at a paced rate while one worker runs; latencies from the worker's stats file."""
    from simulator.replay import replay

    topic = f"bench.{tag}.latency"
    dsn = fresh_db(info, net)
    stats_file = work / f"latency-stats-{tag}.json"
    s = settings_for(info, tag + "l", dsn, frames_topic=topic, partitions=args.partitions,
                     data_dir=work / f"lat-{tag}", stats_file=stats_file)
    ensure_topics(s)
    # The fleet's traffic is not flat: vehicles depart over a few minutes, so its busiest
    # 10 s carry 2.3-2.4x its mean rate (400 and 800 vehicles). Paced on the mean, the
    # busiest stretch offered more than the worker's whole capacity and the backlog, not
    # the pipeline, set the latency (p99 27 s with 800 vehicles). The replay is paced so
    # that its busiest 10 s offer the target rate: the load never exceeds half capacity.
    speedup, peak_rate, mean_rate = pace([tr.t_s for tr in fleet.traces.values()], rate_samples_per_s)
    fh = (work / f"{s.app_id}-latency.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env_of(s), cwd=REPO,
                            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(8.0)  # let the worker join the group before the paced replay starts
        t = time.perf_counter()
        sent = replay([work / "fleet"], info.kafka_bootstrap, topic, frame_s=args.frame_s, speedup=speedup,
                      progress=False, bundle=args.bundle, encoding=args.encoding)
        replay_s = time.perf_counter() - t
        deadline = time.monotonic() + 3600
        with LagProbe(s.kafka_bootstrap, s.app_id) as probe:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"latency worker exited with {proc.returncode}; see {work}")
                _check_logs(work, s.app_id)
                lag, end = probe(topic)
                if lag == 0 and end >= sent.messages:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"latency run not consumed within an hour (lag {lag})")
                time.sleep(0.5)
        time.sleep(1.0)
    finally:
        stop_workers(proc)
    drop_db(info, dsn)
    doc = json.loads(stats_file.read_text())
    lat = np.asarray(doc["latency_s"])
    return {"target_samples_per_s": rate_samples_per_s, "achieved_samples_per_s": sent.samples / replay_s,
            "offered_peak_samples_per_s": peak_rate * speedup, "offered_mean_samples_per_s": mean_rate * speedup,
            "speedup": speedup, "frames": sent.frames, "p50_s": float(np.percentile(lat, 50)),
            "p99_s": float(np.percentile(lat, 99)), "n": int(lat.size)}


if __name__ == "__main__":
    sys.exit(main())
