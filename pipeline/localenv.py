"""Settings for the local stack: environment variables first, then the stack's defaults.

On a developer machine nobody has to export anything: the DSN and the broker address come
from ``pipeline.stack.connection_info()`` and a development pseudonym key is generated once
in the stack directory. In production every value comes from ``ROADSENSE_*`` variables
(docker-compose sets them) and no file is read.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipeline.settings import Settings

__all__ = ["local_settings", "dev_pseudonym_key"]


def dev_pseudonym_key() -> str:
    """A random key kept in ``<stack dir>/pseudonym.key`` (created on first use, mode 600)."""
    from pipeline.stack import stack_dir

    path = Path(stack_dir()) / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def local_settings(**overrides: object) -> Settings:
    """Settings from ``ROADSENSE_*``, falling back to the local stack's addresses."""
    from pipeline.stack import connection_info, stack_dir

    info = connection_info()
    defaults: dict[str, object] = {}
    if "ROADSENSE_KAFKA_BOOTSTRAP" not in os.environ:
        defaults["kafka_bootstrap"] = info.kafka_bootstrap
    if "ROADSENSE_PG_DSN" not in os.environ:
        defaults["pg_dsn"] = info.pg_dsn
    if "ROADSENSE_PSEUDONYM_KEY" not in os.environ:
        defaults["pseudonym_key"] = dev_pseudonym_key()
    if "ROADSENSE_DATA_DIR" not in os.environ:
        defaults["data_dir"] = Path(stack_dir()) / "worker"
    defaults.update(overrides)
    return Settings(**defaults)  # type: ignore[arg-type]
