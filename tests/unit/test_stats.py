"""Worker counters (pipeline.stats) and the bench's sustained rate computed from them."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import stats as stats_mod
from pipeline.stats import WorkerStats

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_throughput", REPO / "bench" / "throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_samples_per_second_add_up(tmp_path, monkeypatch):
    clock = iter([100.2, 100.7, 101.1, 103.9])
    monkeypatch.setattr(stats_mod.time, "time", lambda: next(clock))
    s = WorkerStats(tmp_path / "w.json", every=1)
    for n in (10, 20, 30, 40):
        s.record(kafka_ts_ms=None, samples=n, passes=0, vehicle="v", dead=False)
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc["samples_by_s"] == [[100, 30], [101, 30], [103, 40]]
    assert sum(n for _, n in doc["samples_by_s"]) == doc["samples"] == 100
    # the process CPU clock at the first frame of each second (never going back)
    assert [sec for sec, _ in doc["cpu_at_s"]] == [100, 101, 103]
    cpu = [c for _, c in doc["cpu_at_s"]]
    assert cpu == sorted(cpu) and cpu[0] > 0


def test_steady_rate_leaves_out_the_join_and_the_tail():
    bench = _bench()
    # worker a alone from t=10 (1000/s), b joins at 15.5; both at 600/s until b runs dry at 30.2
    a = {"first_t": 10.0, "last_t": 40.0, "samples_by_s": [[t, 1000 if t < 15 else 600] for t in range(10, 41)]}
    b = {"first_t": 15.5, "last_t": 30.2, "samples_by_s": [[t, 600] for t in range(15, 31)]}
    r = bench._steady_rate([a, b])
    assert r["steady_samples_per_s"] == pytest.approx(1200.0)
    assert r["steady_s"] == 14 and r["steady_start_delay_s"] == pytest.approx(5.5)


def test_a_worker_without_frames_leaves_no_steady_window(tmp_path):
    # on a small topic the first worker may consume everything before the second joins
    bench = _bench()
    a = {"frames": 69, "samples": 1000, "first_t": 10.0, "last_t": 20.0, "samples_by_s": [[t, 100] for t in range(10, 20)]}
    b = {"frames": 0, "samples": 0, "first_t": None, "last_t": None, "samples_by_s": []}
    for name, d in (("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
    r = bench._rate_from_stats([tmp_path / "a.json", tmp_path / "b.json"])
    assert r["messages"] == 69 and r["elapsed_s"] == pytest.approx(10.0)
    assert r["steady_samples_per_s"] is None and r["steady_s"] == 0


def test_steady_window_gives_each_workers_cores_cpu_per_sample_and_commit_wait():
    bench = _bench()
    # a: 0.9 CPU-s per second at 1000 samples/s, 0.1 s of it in commits; b: 0.5 CPU-s per
    # second at 250 samples/s, 0.3 s in commits
    a = {"first_t": 10.0, "last_t": 40.0, "samples_by_s": [[t, 1000] for t in range(10, 41)],
         "cpu_at_s": [[t, 0.9 * t] for t in range(10, 41)], "commit_wait_at_s": [[t, 0.1 * t] for t in range(10, 41)]}
    b = {"first_t": 12.5, "last_t": 30.2, "samples_by_s": [[t, 250] for t in range(12, 31)],
         "cpu_at_s": [[t, 100 + 0.5 * t] for t in range(12, 31)], "commit_wait_at_s": [[t, 5 + 0.3 * t] for t in range(12, 31)]}
    r = bench._steady_rate([a, b])
    assert r["steady_s"] == 17  # seconds 13..29
    assert r["steady_worker_cores"] == pytest.approx([0.9, 0.5])
    assert r["steady_cpu_s_per_million_samples"] == pytest.approx([900.0, 2000.0])
    assert r["steady_commit_wait_share"] == pytest.approx([0.1, 0.3])
    # stats files written before the commit counter existed: no share, no error
    del a["commit_wait_at_s"], b["commit_wait_at_s"]
    assert "steady_commit_wait_share" not in bench._steady_rate([a, b])


def test_commit_wait_is_kept_at_the_first_frame_of_each_second(tmp_path, monkeypatch):
    clock = iter([100.2, 100.7, 101.1, 103.9])
    monkeypatch.setattr(stats_mod.time, "time", lambda: next(clock))
    s = WorkerStats(tmp_path / "w.json", every=1)
    for wait in (0.0, 0.25, 0.5, 0.25):  # the commit that precedes each record
        s.commit_wait_s += wait
        s.record(kafka_ts_ms=None, samples=10, passes=0, vehicle="v", dead=False)
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc["commit_wait_at_s"] == [[100, 0.0], [101, 0.75], [103, 1.0]]
    assert doc["commit_wait_s"] == 1.0


def test_latency_replay_is_paced_on_the_busiest_window():
    bench = _bench()
    # 100 Hz: one trace for 60 s, a second one for the first 10 s only -> busiest 10 s at
    # 200 samples/s, mean 6,000 + 1,000 samples over 60 s
    a = np.arange(0, 60, 0.01)
    b = np.arange(0, 10, 0.01)
    speedup, peak, mean = bench.pace([a, b], 1000.0)
    assert peak == pytest.approx(200.0) and mean == pytest.approx(7000 / 59.99, rel=1e-3)
    assert speedup == pytest.approx(5.0)  # the busiest 10 s replayed at 1,000 samples/s
