"""Vectorised computations of roadsense: map matching, roughness, potholes, harsh events,
hotspots and scores."""

from pathlib import Path

from agents._numba_cache import clear_if_sources_changed

# before any kernel loads from numba's cache: a kernel compiled against another module's
# older kernel must not be loaded (agents/_numba_cache.py)
clear_if_sources_changed(Path(__file__).resolve().parent)
