"""True roughness (IRI, m/km) of every road segment."""

from __future__ import annotations

import numpy as np

from roadnet import RoadNetwork

__all__ = ["segment_iri"]

#: Median IRI (m/km) per road class: main roads are better kept.
MEDIAN_IRI = {
    "motorway": 1.3, "trunk": 1.5, "primary": 1.8, "secondary": 2.0, "tertiary": 2.4,
    "unclassified": 3.0, "residential": 3.0, "living_street": 3.5,
}  # fmt: skip


def segment_iri(net: RoadNetwork, rng: np.random.Generator, *, bad_fraction: float = 0.05) -> np.ndarray:
    """A true IRI per segment: lognormal around the class median, a few bad stretches.

    Both directions of a two-way road get nearly the same value (±10 %). Clipped to
    0.8-12 m/km.
    """
    n = len(net)
    base = np.array([MEDIAN_IRI.get(str(h).removesuffix("_link"), 2.5) for h in net.highway])
    iri = base * np.exp(rng.normal(0.0, 0.3, n))
    bad = rng.random(n) < bad_fraction
    iri[bad] *= rng.uniform(2.0, 3.0, bad.sum())
    twin = net.reverse
    lead = (twin >= 0) & (twin < np.arange(n))  # copy the lower index onto its twin
    iri[lead] = iri[twin[lead]] * np.exp(rng.normal(0.0, 0.1, lead.sum()))
    return np.round(np.clip(iri, 0.8, 12.0), 2)
