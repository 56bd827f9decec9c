"""Session fixtures of the unit tests: the road networks, loaded once; a producer that
records what the replay sends."""

import time

import pytest

from roadnet import DATA_DIR, RoadNetwork, load_network


@pytest.fixture(scope="session")
def plaisir_net() -> RoadNetwork:
    """The default network (Plaisir, 6,192 directed segments)."""
    return load_network()


@pytest.fixture(scope="session")
def centre_net() -> RoadNetwork:
    """The second network (SQY centre)."""
    return load_network(DATA_DIR / "sqy-centre-roads.geojson")


class _RecordingProducer:
    """Records what ``simulator.replay.replay`` sends, as (wall time, key, value, partition,
    timestamp ms): the broker is not what these tests test (tests/integration sends through
    a real one)."""

    def __init__(self, n_partitions: int) -> None:
        self.n, self.sent = n_partitions, []

    def partitions_for(self, topic):
        return set(range(self.n))

    def send(self, topic, *, key, value, partition=None, timestamp_ms=None):
        self.sent.append((time.time(), key, value, partition, timestamp_ms))

        class Future:
            def add_errback(self, fn):
                pass

        return Future()

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


@pytest.fixture
def replay_producer(monkeypatch):
    """``make(n_partitions)``: a recording producer that ``simulator.replay.replay`` connects to."""
    from simulator import replay as rp

    def make(n_partitions: int = 1) -> _RecordingProducer:
        producer = _RecordingProducer(n_partitions)
        monkeypatch.setattr(rp, "_connect", lambda bootstrap, timeout_s: producer)
        return producer

    return make
