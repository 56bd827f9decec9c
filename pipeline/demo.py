"""``roadsense demo``: the whole pipeline on the real SQY network, end to end.

stack up -> migrations + road network in the database -> simulate a fleet (trace files
with ground truth) -> replay into Kafka -> one worker (stages 1 and 2) until the consumer
group has caught up with the frames and then the impacts -> the roughest segments, the
confirmed potholes and the harshest spots, read back from the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from schemas._errors import RoadsenseError
from schemas.bundle import DEFAULT_BUNDLE_FRAMES
from schemas.frame import DEFAULT_FRAME_S

__all__ = ["run_demo", "wait_until_consumed"]


def wait_until_consumed(bootstrap: str, group: str, topic: str, *, total: int, proc: subprocess.Popen | None = None,
                        timeout_s: float = 900.0, progress: bool = True, share: float = 1.0) -> None:
    """Block until ``group`` has committed every message of ``topic`` (or fail clearly);
    with ``share`` < 1, until it has committed that share of the ``total`` messages."""
    from tqdm import tqdm

    from pipeline.topics import LagProbe

    bar = tqdm(total=total, desc="worker", unit="msg", disable=not progress)
    deadline = time.monotonic() + timeout_s
    done = 0
    probe = None  # one connection for every poll (opening one costs more CPU than the poll)
    try:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RoadsenseError(f"the worker exited early with code {proc.returncode}; see its log")
            try:
                probe = probe or LagProbe(bootstrap, group)
                lag, end = probe(topic)
            except Exception:  # group not created yet while the worker joins
                lag, end = total, total
            now_done = max(0, end - lag)
            bar.update(max(0, now_done - done))
            done = max(done, now_done)
            if end >= total and (lag == 0 if share >= 1.0 else done >= share * total):
                return
            if time.monotonic() > deadline:
                raise RoadsenseError(f"the worker did not catch up within {timeout_s:.0f}s (lag {lag})")
            time.sleep(1.0)
    finally:
        bar.close()
        if probe is not None:
            probe.close()


def stop_workers(*procs: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """SIGTERM every worker (each commits its batch and leaves the group), then wait;
    one still running after ``timeout_s`` is killed."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_demo(*, vehicles: int = 40, seed: int = 7, out: Path = Path("out/demo"), frame_s: float = DEFAULT_FRAME_S,
             bundle: int = DEFAULT_BUNDLE_FRAMES) -> int:
    from pipeline import db, stack
    from pipeline.localenv import local_settings
    from pipeline.settings import settings_env
    from pipeline.report import print_hotspots, print_top
    from pipeline.topics import ensure_topics
    from roadnet import load_network
    from simulator import simulate_fleet, write_fleet
    from simulator.replay import replay

    t0 = time.monotonic()
    print("1/6 starting the local stack (Kafka KRaft + PostgreSQL) ...", flush=True)
    stack.up()
    s = local_settings(frame_s=frame_s)
    net = load_network(s.network_path)
    print(f"    road network: {net.name}, {len(net)} directed segments, {net.total_length_m / 1000:.0f} km "
          f"({net.attribution})")

    print("2/6 database: migrations and road network ...", flush=True)
    with db.connect(s.pg_dsn.get_secret_value(), autocommit=True) as conn:
        db.migrate(conn)
        db.load_network(conn, net)

    print(f"3/6 simulating {vehicles} vehicles (seed {seed}) ...", flush=True)
    out = Path(out)
    fleet = simulate_fleet(net, n_vehicles=vehicles, seed=seed)
    traces_path = write_fleet(fleet, out, format="parquet")
    traces = [traces_path]
    n_samples = sum(len(tr.t_s) for tr in fleet.traces.values())
    print(f"    {n_samples:,} samples at 100 Hz -> {traces_path} (ground truth beside it)")

    print("4/6 replaying the traces into Kafka ...", flush=True)
    ensure_topics(s)
    sent = replay(traces, s.kafka_bootstrap, s.frames_topic, frame_s=frame_s, speedup=0.0, progress=True,
                  bundle=bundle)
    print(f"    {sent.frames:,} frames of {frame_s:g} s in {sent.messages:,} messages"
          + (f" (bundles of up to {bundle}, as an ingestion gateway sends them)" if bundle > 1 else ""))

    print("5/6 running a worker (stages 1 and 2) until every frame and impact is processed ...",
          flush=True)
    log_path = Path(s.data_dir).parent / "worker-demo.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings_env(s)}
    from pipeline.topics import group_lag

    try:
        _, end_before = group_lag(s.kafka_bootstrap, s.app_id, s.frames_topic)
    except Exception:
        end_before = sent.messages
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_consumed(s.kafka_bootstrap, s.app_id, s.frames_topic, total=end_before, proc=proc)
            # every frame committed: its impacts are on the broker, and stage 2 confirms potholes from them
            _, impacts_end = group_lag(s.kafka_bootstrap, s.app_id, s.impacts_topic)
            wait_until_consumed(s.kafka_bootstrap, s.app_id, s.impacts_topic, total=impacts_end, proc=proc)
        finally:
            stop_workers(proc)

    print("6/6 results, read back from the database:\n", flush=True)
    with db.connect(s.pg_dsn.get_secret_value(), autocommit=True) as conn:
        db.refresh(conn)
        from pipeline.calibration import run_calibration

        cal = run_calibration(conn).calibration  # fleet self-calibration: scores read the gains
        print(f"fleet calibration: {len(cal.gains)} of {cal.n_vehicles} vehicles with their own gain, "
              f"anchor {cal.anchor}\n")
        print_top(conn, limit=10)
        print()
        print_hotspots(conn, net, limit=5)
    dsn_hidden = stack.connection_info().pg_dsn.split("@")[-1]
    print(f"""
Done in {time.monotonic() - t0:.0f} s.
  traces and ground truth : {out.resolve()}  (personal data in real life: raw traces stay private)
  database                : postgresql://roadsense@{dsn_hidden}  (password in {stack.stack_dir()}/password)
  worker log              : {log_path}
Query it:
  .venv/bin/roadsense top --limit 20
  psql "$(.venv/bin/python -c 'from pipeline.stack import connection_info as c; print(c().pg_dsn)')" \\
       -c "SELECT * FROM segment_scores ORDER BY iri_m_per_km DESC NULLS LAST LIMIT 10"
  .venv/bin/roadsense score {traces[0]} --out out/score   # the same computation offline
Road geometry © OpenStreetMap contributors, ODbL 1.0.
Stop the stack with: .venv/bin/roadsense stack down""")
    return 0
