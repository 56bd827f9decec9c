"""Simulate a fleet: trips, motion, sensors and GPS for N vehicles, with the ground truth.

Each vehicle draws from its own random streams (``numpy.random.SeedSequence(seed)``
spawned per vehicle, then per model), so a vehicle's trace does not depend on how many
vehicles are simulated, and replacing one physics model leaves the others' draws unchanged.
Same seed and parameters -> identical arrays (and byte-identical files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Sequence

import numpy as np

from roadnet import RoadNetwork
from schemas.tracefile import TRIP_GAP_S, VehicleTrace
from simulator.drivers import Driver, draw_driver
from simulator.events import (
    accel_envelope_var,
    accel_limits,
    apply_harsh_brakes,
    measure_harsh_brakes,
    measure_safety_events,
    plan_harsh_brakes,
    plan_safety_events,
    raise_corners,
    swerve_lateral,
)
from simulator.geometry import locate, route_geometry
from simulator.gps import gps_fixes
from simulator.grade import Terrain, draw_terrain, route_grade_rad
from simulator.hotspots import SafetyScenario
from simulator.impacts import Impacts, draw_impacts, impact_signals, impacts_on_route
from simulator.kinematics import (
    Motion,
    accel_envelope,
    brake_envelope,
    plan_stops,
    sample_motion,
    target_speed_sq,
)
from simulator.mounting import apply_mounting, draw_misalignment_rad
from simulator.quarter_car import FAMILIES, TRAIN_FAMILIES, VehicleModel
from simulator.quarter_car import draw_vehicle as draw_dynamics
from simulator.roughness import RoadSurface, road_surface, slow_for_features
from simulator.routes import TripPlanner
from simulator.vehicles import VehicleSpec, draw_vehicle, make_vin, soc_along
from simulator.vertical import vertical_response

__all__ = ["Fleet", "Truth", "simulate_fleet", "GRAVITY_MPS2"]

GRAVITY_MPS2 = 9.81
DEFAULT_START = datetime(2024, 3, 4, 7, 30, tzinfo=UTC)
_STREAMS = ("spec", "driver", "route", "speed", "events", "vertical", "gps", "sensors", "safety")

Table = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Truth:
    """Ground truth of a simulated fleet.

    Attributes
    ----------
    passes : columns ``vehicle_id, trip, seq, segment, segment_id, entry_t_s, exit_t_s,
        entry_offset_m, exit_offset_m``: every segment as driven, in order (epoch seconds, m)
    segment_id, iri_m_per_km : (n_segments,) the true ASTM IRI (m/km) of every segment
        driven in this simulation (NaN for the others; ``surface.iri_m_per_km()`` for all)
    events : columns ``vehicle_id, type, start_t_s, peak_t_s, duration_s, peak_mps2,
        speed_kmh, segment, segment_id, offset_m, lat_deg, lon_deg, clear, hotspot``
        (harsh events; ``clear`` False marks a marginal injected event, ``hotspot`` the id
        of the hotspot that caused it, '' for background)
    vehicles : vehicle id -> what it is (true powertrain, reported signals)
    drivers : vehicle id -> driver parameters
    impacts : columns ``vehicle_id, t_s, kind, height_m, speed_kmh, segment, offset_m``:
        every pothole or hump crossing (front axle; empty without a safety scenario)
    hotspots : the safety scenario's hotspots (empty without one)
    mounting_rad : vehicle id -> (roll, pitch, yaw) mounting misalignment, rad
    iso_class, gd0_m3 : (n_segments,) ISO 8608 class and Gd(n0) (m^3) of every segment
    features : columns ``segment, segment_id, offset_m, kind ('pothole' | 'bump' | 'rail'),
        height_m (negative: depth), length_m, detail`` of the driven segments
    dynamics : vehicle id -> its quarter-car model (family, parameters, gain error)
    surface : the road surface (true profiles; lazily built, cached)
    """

    passes: Table
    segment_id: np.ndarray
    iri_m_per_km: np.ndarray
    events: Table
    vehicles: dict[str, VehicleSpec]
    drivers: dict[str, Driver]
    impacts: Table = field(default_factory=dict)
    hotspots: tuple = ()
    mounting_rad: dict[str, np.ndarray] = field(default_factory=dict)
    iso_class: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    gd0_m3: np.ndarray = field(default_factory=lambda: np.zeros(0))
    features: Table = field(default_factory=dict)
    dynamics: dict[str, VehicleModel] = field(default_factory=dict)
    surface: RoadSurface | None = None

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
    safety: SafetyScenario | None = None,
    vehicle_families: Sequence[str] = TRAIN_FAMILIES,
    road_features: bool = True,
    world_seed: int | None = None,
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
    safety : SafetyScenario, optional
        Issue 6: inject all four harsh event types (background + hotspots, replacing
        ``harsh_brakes_per_km``), road grade, mounting misalignment and pothole/hump
        impacts; drivers' ordinary limits are capped by the scenario's comfort limits.

    vehicle_families : quarter-car families the vehicles are drawn from (uniformly), e.g.
        ``simulator.quarter_car.HOLDOUT_FAMILIES`` for models never used in tuning
    road_features : potholes, speed humps and rail crossings in the road profiles (off
        with a safety scenario, which brings its own impacts)
    world_seed : seed of a safety scenario's world (terrain, potholes, humps); default
        ``seed``. Give several fleets the same ``world_seed`` (and ``roughness_seed``) to
        simulate one territory in batches of vehicles.

    The vertical acceleration is each vehicle's body response to the true profile of the
    road under its wheels (:mod:`simulator.roughness`, :mod:`simulator.vertical`): every
    pass over a segment meets the same road. Drivers slow down for humps and rails.

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
    families = tuple(vehicle_families)
    if not families or any(f not in FAMILIES for f in families):
        raise ValueError(f"{vehicle_families=} must be a non-empty subset of {sorted(FAMILIES)}")
    params = dict(
        n_vehicles=n_vehicles, seed=seed, start=start.astimezone(UTC).isoformat(), fs_hz=fs_hz,
        gps_rate_hz=gps_rate_hz, gps_sigma_m=gps_sigma_m, gps_dropouts_per_h=gps_dropouts_per_h,
        gps_correlation_s=gps_correlation_s, trip_km=list(trip_km), trips_per_vehicle=trips_per_vehicle,
        departure_spread_s=departure_spread_s, stop_prob=stop_prob,
        harsh_brakes_per_km=harsh_brakes_per_km, accel_noise_mps2=accel_noise_mps2,
        roughness_seed=roughness_seed, safety=None if safety is None else repr(safety),
        vehicle_families=list(families), road_features=road_features,
    )  # fmt: skip
    if world_seed is not None:
        params["world_seed"] = int(world_seed)
    root = np.random.SeedSequence(seed)
    road_ss, *vehicle_ss = root.spawn(n_vehicles + 1)
    if roughness_seed is not None:
        road_ss = np.random.SeedSequence(roughness_seed)
    road_seed = int(roughness_seed) if roughness_seed is not None else int(road_ss.generate_state(1)[0])
    surface = road_surface(net, seed=road_seed, features=road_features and safety is None)
    planner = TripPlanner(net)
    t_start = start.timestamp()
    world = None
    if safety is not None:
        r_world = np.random.default_rng(np.random.SeedSequence([int(seed if world_seed is None else world_seed), 6]))
        terrain = draw_terrain(r_world) if safety.grade else None
        imp = draw_impacts(net, r_world, potholes_per_km=safety.potholes_per_km, bump_prob=safety.bump_prob)
        world = (safety, terrain, imp)
    impacts: list[Table] = []
    mounting: dict[str, np.ndarray] = {}

    traces: dict[str, VehicleTrace] = {}
    passes: list[Table] = []
    events: list[Table] = []
    specs: dict[str, VehicleSpec] = {}
    drivers: dict[str, Driver] = {}
    dynamics: dict[str, VehicleModel] = {}
    for ss in vehicle_ss:
        rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in ss.spawn(len(_STREAMS)))))
        vin = make_vin(rngs["spec"])
        while vin in specs:
            vin = make_vin(rngs["spec"])
        spec = draw_vehicle(rngs["spec"], vin)
        driver = draw_driver(rngs["driver"])
        angles = np.zeros(3)
        if safety is not None:
            from dataclasses import replace

            driver = replace(
                driver, decel_mps2=min(driver.decel_mps2, safety.comfort_decel_mps2),
                accel_mps2=min(driver.accel_mps2, safety.comfort_accel_mps2),
                lat_mps2=min(driver.lat_mps2, safety.comfort_lat_mps2),
            )  # fmt: skip
            if safety.misalignment_sigma_deg > 0:
                angles = draw_misalignment_rad(rngs["safety"], sigma_deg=safety.misalignment_sigma_deg)
            mounting[vin] = angles
        specs[vin], drivers[vin] = spec, driver
        r_vert = rngs["vertical"]
        dynamics[vin] = draw_dynamics(families[int(r_vert.integers(len(families)))], r_vert)
        t0 = t_start + round(float(rngs["route"].uniform(0.0, departure_spread_s)), 3)
        origin = None
        trips = []
        for trip in range(trips_per_vehicle):
            out = _one_trip(
                net, planner, surface, spec, driver, rngs, trip=trip, origin=origin, t0=t0,
                fs_hz=fs_hz, trip_km=trip_km, stop_prob=stop_prob,
                harsh_brakes_per_km=harsh_brakes_per_km, gps_rate_hz=gps_rate_hz,
                gps_sigma_m=gps_sigma_m, gps_dropouts_per_h=gps_dropouts_per_h,
                gps_correlation_s=gps_correlation_s, accel_noise_mps2=accel_noise_mps2,
                world=world, mounting_rad=angles, dynamics=dynamics[vin],
            )  # fmt: skip
            trips.append(out)
            origin = int(net.to_node[out["route"][-1]])
            pause = float(rngs["route"].uniform(max(600.0, TRIP_GAP_S * 1.5), 3600.0))
            t0 = round(out["t_s"][-1] + pause, 3)
        traces[vin] = _concat_trips(trips, spec)
        for out in trips:
            passes.append({"vehicle_id": np.full(len(out["passes"]["segment"]), vin, object), **out["passes"]})
            events.append({"vehicle_id": np.full(len(out["events"]["start_t_s"]), vin, object), **out["events"]})
            impacts.append({"vehicle_id": np.full(len(out["impacts"]["t_s"]), vin, object), **out["impacts"]})
    all_passes = _stack(passes)
    truth = Truth(
        passes=all_passes,
        segment_id=net.segment_id,
        iri_m_per_km=surface.iri_m_per_km(all_passes["segment"]),
        events=_stack(events),
        vehicles=specs,
        drivers=drivers,
        impacts=_stack(impacts),
        hotspots=() if safety is None else tuple(safety.hotspots),
        mounting_rad=mounting,
        iso_class=surface.iso_class,
        gd0_m3=surface.gd0_m3,
        features=surface.feature_table(all_passes["segment"]),
        dynamics=dynamics,
        surface=surface,
    )
    return Fleet(traces, truth, params, net.name, net.attribution)


def _stack(tables: list[Table]) -> Table:
    keys = list(tables[0])
    return {k: np.concatenate([t[k] for t in tables]) for k in keys}


def _one_trip(
    net: RoadNetwork, planner: TripPlanner, surface: RoadSurface, spec: VehicleSpec, driver: Driver,
    rngs: dict[str, np.random.Generator], *, trip: int, origin: int | None, t0: float,
    fs_hz: float, trip_km: tuple[float, float], stop_prob: float, harsh_brakes_per_km: float,
    gps_rate_hz: float, gps_sigma_m: float, gps_dropouts_per_h: float, gps_correlation_s: float,
    accel_noise_mps2: float, world: tuple | None = None, mounting_rad: np.ndarray | None = None,
    dynamics: VehicleModel | None = None,
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
    u = slow_for_features(u, s, geom.segments, geom.seg_start_m, surface, r_speed)
    safety_out = None
    if world is None:
        u = brake_envelope(u, s, driver.decel_mps2)
        brakes = plan_harsh_brakes(s, u, rngs["events"], per_km=harsh_brakes_per_km)
        u = apply_harsh_brakes(s, u, brakes)
        u = accel_envelope(u, s, driver.accel_mps2)
        motion = sample_motion(geom, u, stops, fs_hz=fs_hz)
    else:
        motion, safety_out = _safety_motion(net, geom, u, stops, driver, rngs["events"], world, t0=t0, fs_hz=fs_hz)
    n = len(motion.t_s)
    t_abs = np.round(t0 + motion.t_s, 6)

    k, off = locate(geom, motion.s_m)
    seg = geom.segments[k]
    x_road, z_road = surface.route_profile(geom.segments, geom.seg_start_m)
    assert dynamics is not None
    az_dyn = vertical_response(motion.t_s, motion.s_m, x_road, z_road, dynamics, fs_hz=fs_hz)

    # Sensors: bias + white noise, quantised like a real logger.
    r_sens = rngs["sensors"]
    bias = r_sens.normal(0.0, 0.02, 3)
    noise = r_sens.normal(0.0, accel_noise_mps2, (3, n))
    speed_scale = 1.0 + r_sens.normal(0.0, 0.005)
    if safety_out is None:
        ax = np.round(motion.accel_long_mps2 + bias[0] + noise[0], 3)
        ay = np.round(motion.accel_lat_mps2 + bias[1] + noise[1], 3)
        az = np.round(GRAVITY_MPS2 + az_dyn + bias[2] + noise[2], 3)
    else:
        # Specific force in the vehicle frame (gravity through the grade), then the
        # misaligned sensor, then bias and noise.
        theta = safety_out["grade_rad"]
        f = np.vstack([
            motion.accel_long_mps2 + safety_out["dax"] + GRAVITY_MPS2 * np.sin(theta),
            motion.accel_lat_mps2,
            GRAVITY_MPS2 * np.cos(theta) + az_dyn + safety_out["daz"],
        ])  # fmt: skip
        f = apply_mounting(f, mounting_rad if mounting_rad is not None else np.zeros(3))
        ax = np.round(f[0] + bias[0] + noise[0], 3)
        ay = np.round(f[1] + bias[1] + noise[1], 3)
        az = np.round(f[2] + bias[2] + noise[2], 3)
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

    if safety_out is None:
        found = measure_harsh_brakes(motion, s[brakes.grid_index])
        for e in found:
            e.update(type="harsh_brake", clear=True, src="")
    else:
        found = safety_out["events"]
    st = np.array([e["start"] for e in found], np.int64)
    pk = np.array([e["peak"] for e in found], np.int64)
    ev_seg, ev_off = seg[st], off[st]
    lon, lat = net.point_at_wgs84(ev_seg, ev_off) if len(st) else (np.zeros(0), np.zeros(0))
    events = {
        "type": np.array([e["type"] for e in found], object),
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
        "clear": np.array([e["clear"] for e in found], bool),
        "hotspot": np.array([e["src"] for e in found], object),
    }
    if safety_out is None:
        impacts = {"t_s": np.zeros(0), "kind": np.zeros(0, object), "height_m": np.zeros(0),
                   "speed_kmh": np.zeros(0), "segment": np.zeros(0, np.int64), "offset_m": np.zeros(0)}  # fmt: skip
    else:
        imp_t = safety_out["impact_t_s"]
        ok = np.isfinite(imp_t)
        j = safety_out["impact_idx"][ok]
        imp: Impacts = world[2]
        ti = np.searchsorted(motion.t_s, imp_t[ok])
        impacts = {"t_s": np.round(t0 + imp_t[ok], 6), "kind": imp.kind[j], "height_m": imp.height_m[j],
                   "speed_kmh": motion.v_mps[np.minimum(ti, n - 1)] * 3.6, "segment": imp.segment[j],
                   "offset_m": imp.offset_m[j]}  # fmt: skip
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
        "impacts": impacts,
    }


def _safety_motion(
    net: RoadNetwork, geom: Any, u: np.ndarray, stops: Any, driver: Driver, rng: np.random.Generator,
    world: tuple, *, t0: float, fs_hz: float,
) -> tuple[Motion, dict[str, Any]]:  # fmt: skip
    """Issue 6 motion: humps slow the driver; harsh events of all four types are planned
    (background + hotspots), injected in the speed profile (brakes, accelerations,
    corners) or the lateral acceleration (swerves) and measured on the true motion."""
    scenario: SafetyScenario = world[0]
    terrain: Terrain | None = world[1]
    imp: Impacts = world[2]
    s = geom.s_m
    ds = float(s[1] - s[0])
    s_feat, feat_idx = impacts_on_route(imp, geom.segments, geom.seg_start_m)
    bump = imp.kind[feat_idx] == "speed_bump"
    if bump.any():
        gi = np.clip(np.rint(s_feat[bump] / ds).astype(np.int64), 0, len(s) - 1)
        u[gi] = np.minimum(u[gi], (scenario.bump_speed_kmh / 3.6) ** 2)
    u_prov = accel_envelope(brake_envelope(u, s, driver.decel_mps2), s, driver.accel_mps2)
    k, _ = locate(geom, s)
    v_max = net.maxspeed_kmh[geom.segments[k]] / 3.6 * driver.speed_factor * 1.04
    plan = plan_safety_events(
        s, u, u_prov, junction_m=geom.junction_m, turn_deg=geom.turn_deg,
        junction_node=net.to_node[geom.segments[:-1]], seg_start_m=geom.seg_start_m,
        segments=geom.segments, curvature_per_m=geom.curvature_per_m, lat_mps2=driver.lat_mps2,
        hotspots=scenario.hotspots, background_per_km=scenario.background_per_km,
        corner_per_turn=scenario.corner_per_turn, t0_s=t0, rng=rng,
    )  # fmt: skip
    u = raise_corners(u, plan, v_max)
    u = brake_envelope(u, s, driver.decel_mps2)
    u = apply_harsh_brakes(s, u, _Brakes(plan))
    u = accel_envelope_var(u, s, accel_limits(len(s), driver.accel_mps2, plan))
    motion = sample_motion(geom, u, stops, fs_hz=fs_hz)
    dlat, sw_t0 = swerve_lateral(motion.t_s, motion.s_m, plan)
    motion = Motion(fs_hz=motion.fs_hz, t_s=motion.t_s, s_m=motion.s_m, v_mps=motion.v_mps,
                    accel_long_mps2=motion.accel_long_mps2, accel_lat_mps2=motion.accel_lat_mps2 + dlat)  # fmt: skip
    found = measure_safety_events(motion.t_s, motion.s_m, motion.v_mps, motion.accel_long_mps2,
                                  motion.accel_lat_mps2, s, plan, sw_t0, fs_hz)  # fmt: skip
    dax, daz, t_cross = impact_signals(motion.t_s, motion.s_m, motion.v_mps, s_feat, imp, feat_idx, fs_hz)
    grade = np.zeros(len(motion.t_s))
    if terrain is not None:
        grade = np.interp(motion.s_m, s, route_grade_rad(net, geom, terrain))
    return motion, {"events": found, "dax": dax, "daz": daz, "grade_rad": grade,
                    "impact_t_s": t_cross, "impact_idx": feat_idx}  # fmt: skip


class _Brakes:
    """Adapter: the plan's brakes as ``apply_harsh_brakes`` expects them."""

    def __init__(self, plan: Any) -> None:
        self.grid_index = np.asarray(plan.brake_idx, np.int64)
        self.u_target = np.asarray(plan.brake_u, float)
        self.decel_mps2 = np.asarray(plan.brake_decel, float)


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
