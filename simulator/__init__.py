"""Simulated connected-vehicle traces with ground truth (roadsense issue 2).

One module per idea, so that each physics model can be replaced on its own:

- ``routes``     random plausible trips on the network (arterial-biased)
- ``geometry``   route distance grid, signed curvature, junction turn angles
- ``drivers``    per-driver speed and acceleration habits
- ``kinematics`` speed profile and longitudinal/lateral accelerations
- ``events``     injected harsh braking events and their truth
- ``profiles``   ISO 8608 profiles, potholes, humps, rail crossings, true ASTM IRI
- ``roughness``  the network's true road surface (``RoadSurface``: per-segment profiles)
- ``quarter_car`` vehicle vertical dynamics (families, hold-out families) and the IMU
- ``vertical``   a vehicle's body response to the route's true profile (``vertical_response``)
- ``gps``        GPS fixes from the true position
- ``vehicles``   VINs, powertrain, model year, state of charge
- ``fleet``      ``simulate_fleet`` ties them together
- ``io``         ``write_fleet`` (traces + truth + manifest)
- ``replay``     trace files -> Kafka frames
"""

from simulator.fleet import Fleet, Truth, simulate_fleet
from simulator.io import ODBL_ATTRIBUTION, read_truth, write_fleet

__all__ = [
    "Fleet",
    "ODBL_ATTRIBUTION",
    "Truth",
    "read_truth",
    "replay",
    "simulate_fleet",
    "write_fleet",
]


def __getattr__(name: str):  # replay imports kafka-python: load it only when asked
    if name == "replay":
        from simulator.replay import replay

        return replay
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
