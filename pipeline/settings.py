"""Settings of the pipeline, from environment variables (prefix ``ROADSENSE_``).

One frozen model; secrets are ``SecretStr`` and never printed. The local stack's defaults
point at ``roadsense stack up``; docker-compose sets the same variables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from roadnet import DEFAULT_NETWORK
from schemas.frame import DEFAULT_FRAME_S

__all__ = ["Settings", "load_settings", "settings_env"]


class Settings(BaseSettings):
    """Pipeline configuration; every field can be set as ``ROADSENSE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ROADSENSE_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:19092", description="host:port of a Kafka broker")
    pg_dsn: SecretStr = Field(default=SecretStr(""), description="libpq DSN of the results database")
    pseudonym_key: SecretStr = Field(default=SecretStr(""), description="HMAC key for vehicle pseudonyms (>= 32 chars)")
    network_path: Path = Field(default=DEFAULT_NETWORK, description="road network GeoJSON")
    app_id: str = "roadsense"
    frames_topic: str = "vehicle.frames"
    dlq_topic: str = "vehicle.frames.dlq"
    passes_topic: str = "segment.passes"
    alerts_topic: str = "road.alerts"
    impacts_topic: str = "segment.impacts"
    stage2_coverage: bool = Field(
        default=False,
        description="stage 2 also reads segment.passes to confirm potholes on the hit rate among the passes "
        "over them (docs/decisions.md: on the development seeds it trades recall for precision, for about a "
        "sixth of a worker's CPU)",
    )
    partitions: int = Field(default=4, ge=1, description="partitions of the keyed topics and tables")
    frame_s: float = Field(default=DEFAULT_FRAME_S, gt=0, le=60, description="seconds of samples per frame message")
    batch_max: int = Field(default=500, ge=1, description="frames per database commit (at most)")
    batch_s: float = Field(default=0.5, gt=0, le=30, description="longest wait before a commit, s")
    fetch_wait_ms: int = Field(
        default=100, ge=1, le=1500,
        description="longest wait of the worker's Kafka fetch, ms (Faust hard-codes 1500; one worker then used "
        "0.59 of a core, 0.94 at 100: docs/decisions.md)",
    )
    offset_holes: Literal["stop", "log"] = Field(
        default="stop",
        description="a record Faust fetched that never reached its agent (pipeline.offset_holes): stop the "
        "worker before committing past it, so that a restart reads it again, or only log and count it "
        "(for topics written by a transactional producer, whose markers leave holes)",
    )
    store: str = Field(default="rocksdb://", description="Faust table store: rocksdb:// or memory://")
    data_dir: Path = Field(default=Path(".stack/worker"), description="Faust data dir (RocksDB tables)")
    trim_m: float = Field(default=300.0, ge=0, description="privacy trim at trip start and end, m")
    db_timeout_s: float = Field(default=10.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    stats_file: Path | None = Field(default=None, description="if set, the worker keeps JSON counters and latencies here")


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``ROADSENSE_*`` variables that reproduce ``settings`` in a child process
    (secrets included: pass the result only to processes of this pipeline)."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        v = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[f"ROADSENSE_{name.upper()}"] = str(v)
    return env


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (for tests and the CLI)."""
    return Settings(**overrides)  # type: ignore[arg-type]
