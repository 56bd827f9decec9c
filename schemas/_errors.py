"""Exception tree of roadsense::

    RoadsenseError
    ├── SchemaError        a message, file or row breaks a contract in schemas/
    ├── NetworkError       (roadnet) a road network file is unusable
    ├── StackError         (pipeline.stack) the local stack cannot start or stop
    └── SinkError          (pipeline.sink) the database refused a write

Only ``SchemaError`` lives here; the others subclass ``RoadsenseError`` in their packages.
"""


class RoadsenseError(Exception):
    """Base class of every error roadsense raises on purpose."""


class SchemaError(RoadsenseError, ValueError):
    """Input that breaks a contract in ``schemas/``; the message says which and why."""
