"""Exceptions raised by ``pipeline`` (the tree is rooted in ``schemas._errors``)::

    RoadsenseError
    ├── StackError (RuntimeError)   the local stack cannot start or stop, or a port is taken
    ├── OffsetHoleError             records a worker fetched never reached its agent (it stops)
    └── DatabaseError               the database is unreachable or refused a statement
        ├── MigrationError          a migration failed, or sql/ no longer matches the database
        └── SinkError               a batch of results was not written (nothing was written)

Catch ``RoadsenseError`` in entry points; catch ``SinkError`` in the stream worker to retry
the batch without committing Kafka offsets.
"""

from __future__ import annotations

from schemas._errors import RoadsenseError

__all__ = ["DatabaseError", "MigrationError", "OffsetHoleError", "RoadsenseError", "SinkError", "StackError"]


class StackError(RoadsenseError, RuntimeError):
    """A stack component is missing, cannot start or stop, or its port is taken."""


class OffsetHoleError(RoadsenseError):
    """Records of a partition were fetched and never reached the agent
    (``pipeline.offset_holes``): the worker stops before it can commit past them."""


class DatabaseError(RoadsenseError):
    """The database is unreachable or refused a statement.

    ``sqlstate`` is the five-character SQLSTATE when the server sent one, else ``None``.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class MigrationError(DatabaseError):
    """A migration failed, or the files in ``sql/`` no longer match what was applied."""


class SinkError(DatabaseError):
    """A batch of passes/events was not written; the transaction was rolled back.

    ``retriable`` is true for connection-level failures (the batch may succeed later).
    """

    def __init__(
        self, message: str, *, sqlstate: str | None = None, retriable: bool = False
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.retriable = retriable
