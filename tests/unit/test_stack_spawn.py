"""Starting the local stack's servers (pipeline.stack): a spawned server is alive from the
moment its pid is returned, even while the kernel is still loading its program."""

import os
import signal
import sys
import time

from pipeline import stack


def _sequence(monkeypatch, answers):
    calls = []

    def fake(pid):
        calls.append(pid)
        return answers[min(len(calls), len(answers)) - 1]

    monkeypatch.setattr(stack, "_proc_state", fake)
    return calls


def test_the_wait_lasts_while_the_argument_list_is_empty(monkeypatch):
    # what /proc showed for node just after Popen returned: no arguments yet, then its own
    calls = _sequence(monkeypatch, [("D", ""), ("R", ""), ("R", ""), ("S", "/usr/bin/node server.mjs --port 1 ")])
    stack._wait_exec_done(4242, timeout_s=5.0)
    assert len(calls) == 4
    assert stack._pid_alive(4242, "server.mjs")


def test_the_wait_ends_when_the_process_is_gone_or_a_zombie(monkeypatch):
    calls = _sequence(monkeypatch, [("R", ""), None])
    stack._wait_exec_done(4242, timeout_s=5.0)
    assert len(calls) == 2
    calls = _sequence(monkeypatch, [("Z", "")])
    stack._wait_exec_done(4242, timeout_s=5.0)
    assert len(calls) == 1


def test_the_wait_gives_up_after_its_timeout(monkeypatch):
    _sequence(monkeypatch, [("R", "")])
    t0 = time.monotonic()
    stack._wait_exec_done(4242, timeout_s=0.05)
    assert 0.04 <= time.monotonic() - t0 < 1.0
    assert not stack._pid_alive(4242, "server.mjs")  # the caller's own check then decides


def test_a_spawned_process_is_alive_and_ours_as_soon_as_its_pid_is_returned(tmp_path):
    marker = f"roadsense-spawn-test-{os.getpid()}"
    pid = stack._spawn_detached(
        [sys.executable, "-c", "import time; time.sleep(30)", marker],
        cwd=tmp_path, log_path=tmp_path / "out.log", pid_file=tmp_path / "p.pid",
    )
    try:
        assert stack._pid_alive(pid, marker)
        assert (tmp_path / "p.pid").read_text() == f"{pid}\n"
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while stack._pid_alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stack._pid_alive(pid, marker)
