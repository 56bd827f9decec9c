"""Errors of the road-network model."""

from schemas._errors import RoadsenseError


class NetworkError(RoadsenseError, ValueError):
    """A road network file is missing, malformed or unusable."""
