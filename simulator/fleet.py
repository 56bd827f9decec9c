"""Simulate a fleet: trips, motion, sensors and GPS for N vehicles, with the ground truth.

Each vehicle draws from its own random streams (``numpy.random.SeedSequence(seed)``
spawned per vehicle, then per model), so a vehicle's trace does not depend on how many
vehicles are simulated, and replacing one physics model leaves the others' draws unchanged.
Same seed and parameters -> identical arrays (and byte-identical files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from roadnet import RoadNetwork
from schemas.tracefile import TRIP_GAP_S, VehicleTrace
from simulator.drivers import Driver, draw_driver
from simulator.events import apply_harsh_brakes, measure_harsh_brakes, plan_harsh_brakes
from simulator.geometry import locate, route_geometry
from simulator.gps import gps_fixes
from simulator.kinematics import (
    accel_envelope,
    brake_envelope,
    plan_stops,
    sample_motion,
    target_speed_sq,
)
from simulator.roughness import segment_iri
from simulator.routes import TripPlanner
from simulator.vehicles import VehicleSpec, draw_vehicle, make_vin, soc_along
from simulator.vertical import vertical_response

__all__ = ["Fleet", "Truth", "simulate_fleet", "GRAVITY_MPS2"]

GRAVITY_MPS2 = 9.81
DEFAULT_START = datetime(2024, 3, 4, 7, 30, tzinfo=UTC)
_STREAMS = ("spec", "driver", "route", "speed", "events", "vertical", "gps", "sensors")

Table = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Truth:
    """Ground truth of a simulated fleet.

    Attributes
    ----------
    passes : columns ``vehicle_id, trip, seq, segment, segment_id, entry_t_s, exit_t_s,
        entry_offset_m, exit_offset_m``: every segment as driven, in order (epoch seconds, m)
    segment_id, iri_m_per_km : (n_segments,) the true roughness of every network segment
    events : columns ``vehicle_id, type, start_t_s, peak_t_s, duration_s, peak_mps2,
        speed_kmh, segment, segment_id, offset_m, lat_deg, lon_deg`` (harsh events)
    vehicles : vehicle id -> what it is (true powertrain, reported signals)
    drivers : vehicle id -> driver parameters
    """

    passes: Table
    segment_id: np.ndarray
    iri_m_per_km: np.ndarray
    events: Table
    vehicles: dict[str, VehicleSpec]
    drivers: dict[str, Driver]

    def passes_of(self, vehicle_id: str) -> Table:
        m = self.passes["vehicle_id"] == vehicle_id
        return {k: v[m] for k, v in self.passes.items()}


@dataclass(frozen=True, eq=False)
class Fleet:
    """Simulated traces (one per vehicle) and their ground truth."""

    traces: dict[str, VehicleTrace]
    truth: Truth
    params: dict[str, Any] = field(default_factory=dict)
    network_name: str = ""
    attribution: str = ""


def simulate_fleet(
    net: RoadNetwork,
    *,
    n_vehicles: int,
    seed: int,
    start: datetime = DEFAULT_START,
    fs_hz: float = 100.0,
    gps_rate_hz: float = 1.0,
    gps_sigma_m: float = 4.0,
    gps_dropouts_per_h: float = 1.0,
    gps_correlation_s: float = 0.0,
    trip_km: tuple[float, float] = (2.0, 6.0),
    trips_per_vehicle: int = 1,
    departure_spread_s: float = 1800.0,
    stop_prob: float = 0.25,
    harsh_brakes_per_km: float = 0.1,
    accel_noise_mps2: float = 0.05,
    roughness_seed: int | None = None,
) -> Fleet:
    """Simulate ``n_vehicles`` vehicles driving random trips on ``net``.

    Parameters
    ----------
    net : the road network
    n_vehicles : number of vehicles (each gets a VIN-like id)
    seed : seed of everything (roads' roughness too unless ``roughness_seed`` is given)
    start : UTC-aware datetime; departures are spread over ``departure_spread_s`` after it
    fs_hz : inertial sample rate, Hz (5-200)
    gps_rate_hz, gps_sigma_m, gps_dropouts_per_h : GPS fix rate (Hz), noise per axis (m),
        mean number of stretches without fixes per hour
    gps_correlation_s : time constant of the GPS error (s); 0 = independent between fixes
    trip_km : (min, max) trip length, km
    trips_per_vehicle : trips in a row, separated by parked pauses of 10-60 min
    stop_prob : probability of a stop at an intersection
    harsh_brakes_per_km : mean number of injected harsh brakes per km
    accel_noise_mps2 : white noise of the accelerometer, m/s² (per axis)

    Returns
    -------
    Fleet with ``traces`` (vehicle id -> VehicleTrace) and ``truth``.
    """
    if n_vehicles < 1:
        raise ValueError(f"{n_vehicles=} must be >= 1")
    if not 5.0 <= fs_hz <= 200.0:
        raise ValueError(f"{fs_hz=} must be in [5, 200] Hz")
    if start.tzinfo is None:
        raise ValueError("start must be a timezone-aware datetime (UTC)")
    if not 0 < trip_km[0] <= trip_km[1]:
        raise ValueError(f"{trip_km=} must be (min, max) with 0 < min <= max")
    params = dict(
        n_vehicles=n_vehicles, seed=seed, start=start.astimezone(UTC).isoformat(), fs_hz=fs_hz,
        gps_rate_hz=gps_rate_hz, gps_sigma_m=gps_sigma_m, gps_dropouts_per_h=gps_dropouts_per_h,
        gps_correlation_s=gps_correlation_s, trip_km=list(trip_km), trips_per_vehicle=trips_per_vehicle,
        departure_spread_s=departure_spread_s, stop_prob=stop_prob,
        harsh_brakes_per_km=harsh_brakes_per_km, accel_noise_mps2=accel_noise_mps2,
        roughness_seed=roughness_seed,
    )  # fmt: skip
    root = np.random.SeedSequence(seed)
    road_ss, *vehicle_ss = root.spawn(n_vehicles + 1)
    if roughness_seed is not None:
        road_ss = np.random.SeedSequence(roughness_seed)
    iri = segment_iri(net, np.random.default_rng(road_ss))
    planner = TripPlanner(net)
    t_start = start.timestamp()

    traces: dict[str, VehicleTrace] = {}
    passes: list[Table] = []
    events: list[Table] = []
    specs: dict[str, VehicleSpec] = {}
    drivers: dict[str, Driver] = {}
    for ss in vehicle_ss:
        rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in ss.spawn(len(_STREAMS)))))
        vin = make_vin(rngs["spec"])
        while vin in specs:
            vin = make_vin(rngs["spec"])
        spec = draw_vehicle(rngs["spec"], vin)
        driver = draw_driver(rngs["driver"])
        specs[vin], drivers[vin] = spec, driver
        t0 = t_start + round(float(rngs["route"].uniform(0.0, departure_spread_s)), 3)
        origin = None
        trips = []
        for trip in range(trips_per_vehicle):
            out = _one_trip(
                net, planner, iri, spec, driver, rngs, trip=trip, origin=origin, t0=t0,
                fs_hz=fs_hz, trip_km=trip_km, stop_prob=stop_prob,
                harsh_brakes_per_km=harsh_brakes_per_km, gps_rate_hz=gps_rate_hz,
                gps_sigma_m=gps_sigma_m, gps_dropouts_per_h=gps_dropouts_per_h,
                gps_correlation_s=gps_correlation_s, accel_noise_mps2=accel_noise_mps2,
            )  # fmt: skip
            trips.append(out)
            origin = int(net.to_node[out["route"][-1]])
            pause = float(rngs["route"].uniform(max(600.0, TRIP_GAP_S * 1.5), 3600.0))
            t0 = round(out["t_s"][-1] + pause, 3)
        traces[vin] = _concat_trips(trips, spec)
        for out in trips:
            passes.append({"vehicle_id": np.full(len(out["passes"]["segment"]), vin, object), **out["passes"]})
            events.append({"vehicle_id": np.full(len(out["events"]["start_t_s"]), vin, object), **out["events"]})
    truth = Truth(
        passes=_stack(passes),
        segment_id=net.segment_id,
        iri_m_per_km=iri,
        events=_stack(events),
        vehicles=specs,
        drivers=drivers,
    )
    return Fleet(traces, truth, params, net.name, net.attribution)


def _stack(tables: list[Table]) -> Table:
    keys = list(tables[0])
    return {k: np.concatenate([t[k] for t in tables]) for k in keys}


def _one_trip(
    net: RoadNetwork, planner: TripPlanner, iri: np.ndarray, spec: VehicleSpec, driver: Driver,
    rngs: dict[str, np.random.Generator], *, trip: int, origin: int | None, t0: float,
    fs_hz: float, trip_km: tuple[float, float], stop_prob: float, harsh_brakes_per_km: float,
    gps_rate_hz: float, gps_sigma_m: float, gps_dropouts_per_h: float, gps_correlation_s: float,
    accel_noise_mps2: float,
) -> dict[str, Any]:  # fmt: skip
    r_route = rngs["route"]
    route: list[int] = []
    for _ in range(10):
        route = planner.plan(r_route, trip_m=1000.0 * r_route.uniform(*trip_km), origin=origin)
        if route:
            break
        origin = None
    if not route:
        raise RuntimeError("could not plan a trip on this network")
    geom = route_geometry(net, route)
    s = geom.s_m

    # Speed: target, stops, braking envelope, harsh brakes, acceleration envelope.
    r_speed = rngs["speed"]
    u = target_speed_sq(net, geom, driver, r_speed)
    stops = plan_stops(geom, r_speed, stop_prob=stop_prob)
    u[stops.grid_index] = 0.0
    u = brake_envelope(u, s, driver.decel_mps2)
    brakes = plan_harsh_brakes(s, u, rngs["events"], per_km=harsh_brakes_per_km)
    u = apply_harsh_brakes(s, u, brakes)
    u = accel_envelope(u, s, driver.accel_mps2)
    motion = sample_motion(geom, u, stops, fs_hz=fs_hz)
    n = len(motion.t_s)
    t_abs = np.round(t0 + motion.t_s, 6)

    k, off = locate(geom, motion.s_m)
    seg = geom.segments[k]
    az_dyn = vertical_response(motion.s_m, motion.v_mps, seg, iri, fs_hz=fs_hz, rng=rngs["vertical"])

    # Sensors: bias + white noise, quantised like a real logger.
    r_sens = rngs["sensors"]
    bias = r_sens.normal(0.0, 0.02, 3)
    noise = r_sens.normal(0.0, accel_noise_mps2, (3, n))
    speed_scale = 1.0 + r_sens.normal(0.0, 0.005)
    ax = np.round(motion.accel_long_mps2 + bias[0] + noise[0], 3)
    ay = np.round(motion.accel_lat_mps2 + bias[1] + noise[1], 3)
    az = np.round(GRAVITY_MPS2 + az_dyn + bias[2] + noise[2], 3)
    speed_kmh = np.round(np.maximum(motion.v_mps * 3.6 * speed_scale, 0.0), 2)

    fixes = gps_fixes(
        net, geom, motion, rngs["gps"], rate_hz=gps_rate_hz, sigma_m=gps_sigma_m,
        dropouts_per_h=gps_dropouts_per_h, correlation_s=gps_correlation_s,
    )  # fmt: skip

    brake = None
    abs_on = None
    if spec.sends_brake:
        decel = -motion.accel_long_mps2
        pedal = np.clip((decel - 0.4) * 12.0, 0.0, 100.0)
        pedal = np.where(motion.v_mps < 0.05, np.maximum(pedal, 20.0), pedal)
        brake = np.round(pedal, 1)
        abs_on = (decel > 7.0) & (motion.v_mps > 2.0)
    soc = None
    if spec.soc_start_pct is not None:
        soc = np.round(soc_along(spec.soc_start_pct, motion.s_m), 1)

    # Truth: segments as driven (those the vehicle reached), crossing times interpolated.
    s_end = float(motion.s_m[-1])
    reached = np.r_[True, geom.seg_start_m[1:-1] < s_end]
    m = int(reached.sum())
    bounds = geom.seg_start_m[1:m]
    j = np.clip(np.searchsorted(motion.s_m, bounds, side="right"), 1, n - 1)
    s0, s1 = motion.s_m[j - 1], motion.s_m[j]
    frac = np.clip((bounds - s0) / np.maximum(s1 - s0, 1e-12), 0.0, 1.0)
    t_cross = t_abs[j - 1] + frac * (t_abs[j] - t_abs[j - 1])
    segs = geom.segments[:m]
    lengths = net.length_m[segs]
    exit_off = lengths.copy()
    exit_off[-1] = s_end - geom.seg_start_m[m - 1]
    passes = {
        "trip": np.full(m, trip, np.int64),
        "seq": np.arange(m, dtype=np.int64),
        "segment": segs,
        "segment_id": net.segment_id[segs],
        "entry_t_s": np.r_[t_abs[0], t_cross],
        "exit_t_s": np.r_[t_cross, t_abs[-1]],
        "entry_offset_m": np.zeros(m),
        "exit_offset_m": exit_off,
    }

    found = measure_harsh_brakes(motion, s[brakes.grid_index])
    st = np.array([e["start"] for e in found], np.int64)
    pk = np.array([e["peak"] for e in found], np.int64)
    ev_seg, ev_off = seg[st], off[st]
    lon, lat = net.point_at_wgs84(ev_seg, ev_off) if len(st) else (np.zeros(0), np.zeros(0))
    events = {
        "type": np.full(len(st), "harsh_brake", object),
        "start_t_s": t_abs[st],
        "peak_t_s": t_abs[pk],
        "duration_s": np.array([e["duration_s"] for e in found], float),
        "peak_mps2": np.array([e["peak_mps2"] for e in found], float),
        "speed_kmh": np.array([e["speed_kmh"] for e in found], float),
        "segment": ev_seg,
        "segment_id": net.segment_id[ev_seg],
        "offset_m": ev_off,
        "lat_deg": np.asarray(lat, float),
        "lon_deg": np.asarray(lon, float),
    }
    fix_heading = np.round(fixes.heading_deg, 1) % 360.0
    return {
        "route": route,
        "t_s": t_abs,
        "speed_kmh": speed_kmh,
        "ax": ax,
        "ay": ay,
        "az": az,
        "brake": brake,
        "abs": abs_on,
        "soc": soc,
        "fix_index": fixes.index,
        "fix_lat": np.round(fixes.lat_deg, 7),
        "fix_lon": np.round(fixes.lon_deg, 7),
        "fix_heading": fix_heading,
        "fix_accuracy": np.round(fixes.accuracy_m, 1),
        "passes": passes,
        "events": events,
    }


def _concat_trips(trips: list[dict[str, Any]], spec: VehicleSpec) -> VehicleTrace:
    def cat(key: str) -> np.ndarray:
        return np.concatenate([t[key] for t in trips])

    offsets = np.cumsum([0] + [len(t["t_s"]) for t in trips[:-1]])
    fix_idx = np.concatenate([t["fix_index"] + o for t, o in zip(trips, offsets)])
    t = cat("t_s")
    return VehicleTrace(
        t_s=t,
        speed_kmh=cat("speed_kmh"),
        accel_long_mps2=cat("ax"),
        accel_lat_mps2=cat("ay"),
        accel_vert_mps2=cat("az"),
        fix_t_s=t[fix_idx],
        fix_lat_deg=cat("fix_lat"),
        fix_lon_deg=cat("fix_lon"),
        fix_heading_deg=cat("fix_heading"),
        fix_accuracy_m=cat("fix_accuracy"),
        brake_pedal_pct=cat("brake") if spec.sends_brake else None,
        abs_engaged=cat("abs") if spec.sends_brake else None,
        powertrain=spec.powertrain,
        soc_pct=cat("soc") if spec.soc_start_pct is not None else None,
        model_year=spec.model_year,
    )
