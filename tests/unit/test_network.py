"""roadnet.RoadNetwork geometry: the compiled interpolation against GEOS's."""

import numpy as np
import pytest
import shapely

from roadnet._network import _interpolate


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, float).view(np.int64)


@pytest.mark.parametrize("seed", range(3))
def test_interpolate_is_geos_to_the_bit(plaisir_net, seed):
    net = plaisir_net
    ptr, xy = net._vertices
    rng = np.random.default_rng(seed)
    n = len(net)
    seg = rng.integers(0, n, 200_000)
    off = rng.uniform(-1.2, 1.2, seg.size) * net.length_m[seg]  # negative: from the end, as GEOS
    k = seg.size // 8
    off[:k] = 0.0
    off[k : 2 * k] = net.length_m[seg[k : 2 * k]]
    off[2 * k : 3 * k] = np.minimum(rng.uniform(0, 1, k) * net.length_m[seg[2 * k : 3 * k]] + 1.0,
                                    net.length_m[seg[2 * k : 3 * k]])
    off[3 * k : 3 * k + 50] = np.nan
    off[3 * k + 50 : 3 * k + 100] = np.inf
    # every vertex of every segment, at its cumulative length summed as GEOS sums it
    every = np.repeat(np.arange(n), np.diff(ptr))
    piece = np.sqrt((np.diff(xy, axis=0) ** 2).sum(axis=1))
    cum = np.zeros(every.size)
    for s in range(n):
        acc = 0.0
        for j in range(ptr[s] + 1, ptr[s + 1]):
            acc += piece[j - 1]
            cum[j] = acc
    seg, off = np.concatenate([seg, every]), np.concatenate([off, cum])
    want = shapely.line_interpolate_point(net.geom_m[seg], off)
    x, y = _interpolate(seg, off, ptr, xy)
    assert np.array_equal(_bits(x), _bits(shapely.get_x(want)))
    assert np.array_equal(_bits(y), _bits(shapely.get_y(want)))


def test_heading_at_is_the_shapely_formulation(plaisir_net):
    net = plaisir_net
    rng = np.random.default_rng(7)
    seg = rng.integers(0, len(net), 50_000)
    off = rng.uniform(0, 1, seg.size) * net.length_m[seg]
    off[:1000] = 0.0
    off[1000:2000] = net.length_m[seg[1000:2000]]
    lo = np.clip(off - 1.0, 0.0, None)
    hi = np.minimum(off + 1.0, net.length_m[seg])
    x0, y0 = net.point_at(seg, lo)
    x1, y1 = net.point_at(seg, hi)
    want = np.degrees(np.arctan2(x1 - x0, y1 - y0)) % 360.0
    got = net.heading_at(seg, off)
    assert np.array_equal(_bits(got), _bits(want))
    # a two-way street: the two directions are opposite
    two = np.flatnonzero(net.reverse >= 0)[:200]
    h = net.heading_at(two, net.length_m[two] / 2)
    h_rev = net.heading_at(net.reverse[two], net.length_m[net.reverse[two]] / 2)
    assert np.median(np.abs(((h - h_rev) % 360.0) - 180.0)) < 10.0


def test_heading_at_keeps_the_shape_of_its_input(plaisir_net):
    net = plaisir_net
    one = net.heading_at(3, 5.0)
    assert np.shape(one) == () and one == net.heading_at(np.array([3]), np.array([5.0]))[0]
    grid = net.heading_at(np.array([[3], [4]]), np.array([1.0, 2.0, 3.0]))  # broadcast, as GEOS's calls did
    assert grid.shape == (2, 3) and grid[1, 2] == net.heading_at(np.array([4]), np.array([3.0]))[0]
