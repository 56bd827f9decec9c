"""The worker's Kafka fetch wait: Faust hard-codes 1500 ms; the worker sets its own."""

import asyncio

import aiokafka
import pytest

from pipeline.app import _FAUST_FETCH_WAIT_MS, _set_fetch_wait
from pipeline.settings import Settings


@pytest.fixture
def consumer_init(monkeypatch):
    # the patch is process-wide: undo it after each test
    monkeypatch.setattr(aiokafka.AIOKafkaConsumer, "__init__", aiokafka.AIOKafkaConsumer.__init__)


def _wait_of(fetch_max_wait_ms: int) -> int:
    async def make() -> int:
        c = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=fetch_max_wait_ms)
        try:
            return c._fetch_max_wait_ms
        finally:
            await c.stop()

    return asyncio.run(make())


def test_fausts_value_is_replaced_others_are_kept(consumer_init):
    _set_fetch_wait(100)
    assert _wait_of(_FAUST_FETCH_WAIT_MS) == 100
    assert _wait_of(700) == 700


def test_setting_it_again_does_not_stack_wrappers(consumer_init):
    _set_fetch_wait(100)
    _set_fetch_wait(250)
    assert _wait_of(_FAUST_FETCH_WAIT_MS) == 250
    assert not hasattr(aiokafka.AIOKafkaConsumer.__init__.__wrapped__, "_roadsense_fetch_wait")


def test_default_and_bounds():
    assert Settings(pseudonym_key="k" * 32).fetch_wait_ms == 100
    with pytest.raises(ValueError):
        Settings(pseudonym_key="k" * 32, fetch_wait_ms=0)
