"""Errors of the simulator::

    RoadsenseError                 (schemas._errors)
    └── SimulatorError
        └── ReplayError            (also a RuntimeError) the broker is unreachable or refused frames
"""

from schemas._errors import RoadsenseError

__all__ = ["SimulatorError", "ReplayError"]


class SimulatorError(RoadsenseError):
    """Base class of the simulator's errors."""


class ReplayError(SimulatorError, RuntimeError):
    """Frames could not be delivered to Kafka; the message says why."""
