"""The call-site split of ``bench/profile_worker.py`` (pure parsing, no profiler)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import profile_worker as pw  # noqa: E402

HANDLE = "FrameHandler.handle (pipeline/stage1.py:190)"


def _raw(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "profile.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_samples_are_split_by_call_site(tmp_path):
    path = _raw(tmp_path, [
        f"main (pipeline/cli.py:1);agent (faust/agents/agent.py:1);{HANDLE};process_frame (agents/passes.py:389) 60",
        f"main (pipeline/cli.py:1);{HANDLE};decode_frame (schemas/frame.py:140) 15",
        "Thread._bootstrap (threading.py:1002);ServiceThread._start_thread (mode/threads.py:211) 10",
        "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81) 5",
        "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83);write (psycopg/x.py:1) 3",
        "main (pipeline/cli.py:1);Stream.events (faust/streams.py:348) 7",
        "not a stack line",
    ])
    cats, own, sites, total = pw.parse_raw(path)
    assert total == 100
    # a thread loop's frame counts as a wait only when it is the innermost one
    assert sites == Counter({"handler": 75, "thread waits": 15, "rest": 10})
    assert cats["frame decode"] == 15 and cats["database"] == 3


def test_frame_budget_leaves_the_waits_out():
    b = pw.frame_budget(Counter({"handler": 75, "thread waits": 15, "rest": 25}), frames_per_s=200.0,
                        samples_per_frame=1000.0)
    assert b["handler_share_of_busy"] == 0.75
    assert b["frame_ms"] == 5.0
    assert b["handler_ms_per_frame"] == pytest.approx(3.75)
    assert b["other_ms_per_frame"] == pytest.approx(1.25)
    assert b["samples_per_s_if_handler_free"] == 800_000  # 1.25 ms per frame of 1000 samples


def test_frame_budget_of_a_profile_without_busy_samples():
    b = pw.frame_budget(Counter({"thread waits": 4}), frames_per_s=100.0, samples_per_frame=1000.0)
    assert b["frame_ms"] == 10.0
    assert b["handler_share_of_busy"] is None and b["samples_per_s_if_handler_free"] is None
