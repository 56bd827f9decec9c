"""The shared road-network model (segments, metric geometry, STRtree, directed graph)."""

from roadnet._errors import NetworkError
from roadnet._network import (
    ATTRIBUTION,
    DATA_DIR,
    DEFAULT_NETWORK,
    METRIC_CRS,
    RoadNetwork,
    load_network,
    to_metric,
    to_wgs84,
)

__all__ = [
    "ATTRIBUTION",
    "DATA_DIR",
    "DEFAULT_NETWORK",
    "METRIC_CRS",
    "NetworkError",
    "RoadNetwork",
    "load_network",
    "to_metric",
    "to_wgs84",
]
