"""Mounting misalignment of the inertial sensor: a small fixed rotation per vehicle.

A logger or phone is never mounted exactly along the vehicle's axes. With roll φ, pitch θ
and yaw ψ of a few degrees, the sensor reads ``R(φ, θ, ψ) f`` where ``f`` is the specific
force in the vehicle frame (ISO 8855: x forward, y left, z up; gravity included, ``+g`` on
z at rest). A 3° pitch leaks ``g sin 3° = 0.51 m/s²`` of gravity into the longitudinal
axis, and 5 % of every vertical impact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_misalignment_rad", "rotation_matrix", "apply_mounting"]


def draw_misalignment_rad(rng: np.random.Generator, *, sigma_deg: float = 2.0, max_deg: float = 5.0) -> np.ndarray:
    """(roll, pitch, yaw) in rad: normal with ``sigma_deg``, clipped to ±``max_deg``."""
    return np.radians(np.clip(rng.normal(0.0, sigma_deg, 3), -max_deg, max_deg))


def rotation_matrix(angles_rad: np.ndarray) -> np.ndarray:
    """Vehicle-to-sensor rotation ``Rx(roll) Ry(pitch) Rz(yaw)`` (3×3)."""
    r, p, y = (float(a) for a in angles_rad)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    rx = np.array([[1, 0, 0], [0, cr, sr], [0, -sr, cr]])
    ry = np.array([[cp, 0, -sp], [0, 1, 0], [sp, 0, cp]])
    rz = np.array([[cy, sy, 0], [-sy, cy, 0], [0, 0, 1]])
    return rx @ ry @ rz


def apply_mounting(f_vehicle: np.ndarray, angles_rad: np.ndarray) -> np.ndarray:
    """Specific force (3, n) in the vehicle frame -> what the misaligned sensor reads (3, n)."""
    return rotation_matrix(angles_rad) @ np.asarray(f_vehicle, float)
