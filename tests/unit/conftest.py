"""Session fixtures of the unit tests: the road networks, loaded once."""

import pytest

from roadnet import DATA_DIR, RoadNetwork, load_network


@pytest.fixture(scope="session")
def plaisir_net() -> RoadNetwork:
    """The default network (Plaisir, 6,192 directed segments)."""
    return load_network()


@pytest.fixture(scope="session")
def centre_net() -> RoadNetwork:
    """The second network (SQY centre)."""
    return load_network(DATA_DIR / "sqy-centre-roads.geojson")
